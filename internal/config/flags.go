package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/weft-vpn/weft/internal/cert"
)

// Flags holds the `weft up` flags registered on a FlagSet. Call Resolve after the FlagSet is parsed.
type Flags struct {
	fs       *pflag.FlagSet
	settings []setting
	values   *layer // what the command line set; only flags marked Changed are used
}

// RegisterFlags registers every `weft up` flag on fs. It panics, as pflag does, if fs already has a
// flag of the same name.
func RegisterFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs, settings: settings(), values: &layer{}}
	for _, s := range f.settings {
		usage := s.help
		if s.env != "" {
			usage += " (env " + s.env + ")"
		}
		flag := fs.VarPF(s.bind(f.values), s.flag, "", usage)
		flag.NoOptDefVal = s.noArg
		flag.DefValue = s.defaultText()
		if remark, ok := strings.CutPrefix(flag.DefValue, "("); ok {
			remark = strings.TrimSuffix(remark, ")")
			if remark != "required" {
				remark = "default: " + remark
			}
			flag.Usage += " (" + remark + ")"
			flag.DefValue = ""
		}
	}
	return f
}

// Resolve merges Default() < the --config file < the environment < flags changed on the command line,
// reads the network secret file, derives Control and StateDir from Dev when they are not given, and
// returns the Config if it passes Validate. getenv is usually os.Getenv; nil reads no environment.
func (f *Flags) Resolve(getenv func(string) string) (Config, error) {
	merged := layer{Config: Default()}
	merged.Control, merged.StateDir = "", "" // derived from the final Dev below unless given
	hostnameGiven := false                   // else certificate mode takes the certificate's name

	if path := f.values.ConfigFile; path != "" {
		file, defined, err := loadFile(path, f.settings)
		if err != nil {
			return Config{}, err
		}
		hostnameGiven = defined["hostname"]
		fileName := func(s setting) string { return s.key }
		if err := merged.merge(f.settings, &file, defined, fileName); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}

	var env layer
	envSet := make(map[string]bool)
	for _, s := range f.settings {
		if s.env == "" || getenv == nil {
			continue
		}
		text := getenv(s.env)
		if text == "" {
			continue
		}
		if err := s.bind(&env).Set(text); err != nil {
			return Config{}, fmt.Errorf("environment variable %s: %w", s.env, err)
		}
		envSet[s.flag] = true
	}
	envName := func(s setting) string { return s.env }
	if err := merged.merge(f.settings, &env, envSet, envName); err != nil {
		return Config{}, err
	}

	changed := make(map[string]bool)
	for _, s := range f.settings {
		changed[s.flag] = f.fs.Changed(s.flag)
	}
	hostnameGiven = hostnameGiven || changed["hostname"]
	flagName := func(s setting) string { return "--" + s.flag }
	if err := merged.merge(f.settings, f.values, changed, flagName); err != nil {
		return Config{}, err
	}

	if merged.NetworkSecretFile != "" {
		secret, err := readSecretFile(merged.NetworkSecretFile)
		if err != nil {
			return Config{}, err
		}
		merged.NetworkSecret = secret
	}
	c := merged.Config
	if c.Cert != "" {
		// Certificate mode: the address and name default to the certificate's (node.Run checks that
		// what is used is what the certificate lists).
		crt, err := cert.ReadFile(c.Cert)
		if err != nil {
			return Config{}, fmt.Errorf("--cert: %w", err)
		}
		if !c.IPv4.IsValid() {
			c.IPv4 = crt.IPv4
		}
		if !hostnameGiven {
			c.Hostname = crt.Name
		}
	}
	if c.Control == "" {
		c.Control = defaultControl(c.Dev)
	}
	if c.StateDir == "" {
		c.StateDir = defaultStateDir(c.Dev)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// merge copies into l the settings given in src. Two settings that exclude each other must not both
// be given in src; the one given replaces the other's value from lower levels. name says how a
// setting is spelled at this level, for errors.
func (l *layer) merge(all []setting, src *layer, given map[string]bool, name func(setting) string) error {
	byFlag := make(map[string]setting, len(all))
	for _, s := range all {
		byFlag[s.flag] = s
	}
	for _, s := range all {
		if !given[s.flag] || s.excludes == "" {
			continue
		}
		other := byFlag[s.excludes]
		if given[other.flag] && s.flag < other.flag {
			return fmt.Errorf("%s and %s are both given: keep one", name(s), name(other))
		}
	}
	for _, s := range all {
		if !given[s.flag] {
			continue
		}
		if s.excludes != "" {
			byFlag[s.excludes].clear(l)
		}
		s.copy(l, src)
	}
	return nil
}

// readSecretFile reads the network secret from path, without its trailing newline.
func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--network-secret-file: %w", err)
	}
	secret := strings.TrimRight(string(data), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("--network-secret-file %s: the file is empty: write the network secret into it", path)
	}
	return secret, nil
}
