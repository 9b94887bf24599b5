// Package config is the typed configuration of `weft up`.
//
// Every setting is declared once, in the table returned by settings() in options.go. That table
// registers the command-line flags (RegisterFlags), decodes the TOML file (its keys are the flag names
// with '_' for '-'), reads the environment, and documents itself (Options, MarkdownTable), so flags,
// file keys and docs cannot drift apart.
//
// Resolve merges, from lowest to highest precedence:
//
//	Default()  <  the --config TOML file  <  the environment  <  flags given on the command line
//
// A flag replaces the file's value only when it is given on the command line, and a repeatable flag
// (--listen, --peer, --subnet) given there replaces the file's whole list. Control and StateDir, when
// not given anywhere, follow --dev. Resolve ends with Config.Validate, whose errors name the flag and
// say how to fix it.
package config
