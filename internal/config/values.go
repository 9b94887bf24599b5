package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// codec converts one type of setting between its command-line text and its Go value.
type codec[T any] struct {
	typ    string // shown in --help and the docs, e.g. "int", "URI"
	parse  func(string) (T, error)
	format func(T) string
	noArg  string // value of the flag given without "=value" ("true" for bools)
}

func stringCodec() codec[string] {
	return codec[string]{
		typ:    "string",
		parse:  func(s string) (string, error) { return s, nil },
		format: func(s string) string { return s },
	}
}

func intCodec() codec[int] {
	return codec[int]{
		typ: "int",
		parse: func(s string) (int, error) {
			n, err := strconv.Atoi(s)
			if err != nil {
				return 0, fmt.Errorf("want a whole number, e.g. 1400")
			}
			return n, nil
		},
		format: strconv.Itoa,
	}
}

func boolCodec() codec[bool] {
	return codec[bool]{
		typ: "bool",
		parse: func(s string) (bool, error) {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return false, fmt.Errorf("want true or false")
			}
			return b, nil
		},
		format: strconv.FormatBool,
		noArg:  "true",
	}
}

// prefixCodec reads ADDR/PREFIX keeping the address bits (10.144.144.1/24 stays as written).
func prefixCodec(typ, example string) codec[netip.Prefix] {
	return codec[netip.Prefix]{
		typ: typ,
		parse: func(s string) (netip.Prefix, error) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return netip.Prefix{}, fmt.Errorf("want address/prefix-length, e.g. %s", example)
			}
			return p, nil
		},
		format: func(p netip.Prefix) string {
			if !p.IsValid() {
				return ""
			}
			return p.String()
		},
	}
}

func acceptCodec() codec[AcceptSubnet] {
	return codec[AcceptSubnet]{typ: "CIDR|all", parse: parseAcceptSubnet, format: AcceptSubnet.String}
}

func uriCodec() codec[URI] {
	return codec[URI]{typ: "URI", parse: ParseURI, format: URI.String}
}

// scalarValue is the pflag.Value of a single-valued setting, bound to its field.
type scalarValue[T any] struct {
	p *T
	c codec[T]
}

func (v *scalarValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.c.format(*v.p)
}

func (v *scalarValue[T]) Set(s string) error {
	parsed, err := v.c.parse(s)
	if err != nil {
		return err
	}
	*v.p = parsed
	return nil
}

func (v *scalarValue[T]) Type() string { return v.c.typ }

// listValue is the pflag.Value of a repeatable setting: each Set appends. The flags' layer starts
// empty, and merge copies a changed list whole, so a list flag replaces the file's list.
type listValue[T any] struct {
	p *[]T
	c codec[T]
}

func (v *listValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	texts := make([]string, len(*v.p))
	for i, item := range *v.p {
		texts[i] = v.c.format(item)
	}
	return strings.Join(texts, ",")
}

func (v *listValue[T]) Set(s string) error {
	parsed, err := v.c.parse(s)
	if err != nil {
		return err
	}
	*v.p = append(*v.p, parsed)
	return nil
}

func (v *listValue[T]) Type() string { return v.c.typ }

// scalar declares a single-valued setting stored in the field that field returns.
func scalar[T any](c codec[T], flag, help string, field func(*layer) *T) setting {
	return setting{
		flag:  flag,
		key:   strings.ReplaceAll(flag, "-", "_"),
		typ:   c.typ,
		help:  help,
		noArg: c.noArg,
		bind:  func(l *layer) pflag.Value { return &scalarValue[T]{p: field(l), c: c} },
		field: func(l *layer) any { return field(l) },
		copy:  func(dst, src *layer) { *field(dst) = *field(src) },
		clear: func(l *layer) { var zero T; *field(l) = zero },
	}
}

// list declares a repeatable setting stored in the slice that field returns.
func list[T any](c codec[T], flag, help string, field func(*layer) *[]T) setting {
	return setting{
		flag:  flag,
		key:   strings.ReplaceAll(flag, "-", "_"),
		typ:   c.typ + " (repeatable)",
		help:  help + "; repeatable",
		bind:  func(l *layer) pflag.Value { return &listValue[T]{p: field(l), c: c} },
		field: func(l *layer) any { return field(l) },
		copy:  func(dst, src *layer) { *field(dst) = slices.Clone(*field(src)) },
		clear: func(l *layer) { *field(l) = nil },
	}
}
