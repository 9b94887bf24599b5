package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// loadFile decodes the TOML file at path into a layer. It returns the flag names of the settings the
// file defines. Relative paths of settings marked fileRelative are made relative to the file. Unknown keys and values of the wrong type are errors naming the file, the key and,
// where the TOML decoder knows it, the line.
func loadFile(path string, all []setting) (layer, map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return layer{}, nil, fmt.Errorf("read config file: %w", err)
	}
	var root map[string]toml.Primitive
	md, err := toml.Decode(string(data), &root)
	if err != nil {
		return layer{}, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if err := checkKeys(md, all); err != nil {
		return layer{}, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	var l layer
	defined := make(map[string]bool)
	for _, s := range all {
		if s.key == "" {
			continue
		}
		parts := strings.Split(s.key, ".")
		if !md.IsDefined(parts...) {
			continue
		}
		prim, err := lookup(md, root, parts)
		if err != nil {
			return layer{}, nil, fmt.Errorf("config file %s: %w", path, err)
		}
		// The decoder's errors name the line and the key.
		if err := md.PrimitiveDecode(prim, s.field(&l)); err != nil {
			return layer{}, nil, fmt.Errorf("config file %s: %w", path, err)
		}
		defined[s.flag] = true
		if p, ok := s.field(&l).(*string); ok && s.relPath && *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(filepath.Dir(path), *p)
		}
	}
	return l, defined, nil
}

// checkKeys rejects keys that no setting has. Tables are known when some key lies inside them.
func checkKeys(md toml.MetaData, all []setting) error {
	known := make(map[string]bool)  // keys of settings
	tables := make(map[string]bool) // tables that hold keys of settings
	for _, s := range all {
		if s.key == "" {
			continue
		}
		parts := strings.Split(s.key, ".")
		known[s.key] = true
		for i := 1; i < len(parts); i++ {
			tables[strings.Join(parts[:i], ".")] = true
		}
	}
	var errs []error
	for _, k := range md.Keys() {
		name := k.String()
		if known[name] {
			continue
		}
		if tables[name] {
			if md.Type(k...) != "Hash" {
				errs = append(errs, fmt.Errorf("key %q must be a table, e.g. [%s]", name, name))
			}
			continue
		}
		hint := "keys are the flag names with '_' for '-'; see weft up --help"
		if fixed := strings.ReplaceAll(strings.ToLower(name), "-", "_"); known[fixed] {
			hint = fmt.Sprintf("did you mean %q?", fixed)
		}
		errs = append(errs, fmt.Errorf("unknown key %q: %s", name, hint))
	}
	return errors.Join(errs...)
}

// lookup finds the value of a (possibly dotted) key in the decoded file.
func lookup(md toml.MetaData, root map[string]toml.Primitive, parts []string) (toml.Primitive, error) {
	table := root
	for i, part := range parts[:len(parts)-1] {
		var next map[string]toml.Primitive
		if err := md.PrimitiveDecode(table[part], &next); err != nil {
			return toml.Primitive{}, fmt.Errorf("%s must be a table: %w", strings.Join(parts[:i+1], "."), err)
		}
		table = next
	}
	return table[parts[len(parts)-1]], nil
}
