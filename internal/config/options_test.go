package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// sampleTOML has, for every TOML key, a non-default value and its flag text. A new setting must add
// one here.
var sampleTOML = map[string]struct{ toml, text string }{
	"hostname":            {`"n2"`, "n2"},
	"network_name":        {`"net"`, "net"},
	"network_secret":      {`"s"`, "s"},
	"network_secret_file": {`"/etc/weft/secret"`, "/etc/weft/secret"},
	"ca":                  {`"/etc/weft/ca.crt"`, "/etc/weft/ca.crt"},
	"cert":                {`"/etc/weft/node.crt"`, "/etc/weft/node.crt"},
	"cert_key":            {`"/etc/weft/node.key"`, "/etc/weft/node.key"},
	"ipv4":                {`"10.9.9.9/16"`, "10.9.9.9/16"},
	"dev":                 {`"wx0"`, "wx0"},
	"mtu":                 {`1500`, "1500"},
	"listen":              {`["tcp://0.0.0.0:1", "udp://[::]:3"]`, "tcp://0.0.0.0:1,udp://[::]:3"},
	"peer":                {`["udp://192.0.2.1:2"]`, "udp://192.0.2.1:2"},
	"no_punch":            {`true`, "true"},
	"control":             {`"/tmp/x.sock"`, "/tmp/x.sock"},
	"state_dir":           {`"/tmp/x"`, "/tmp/x"},
	"log_level":           {`"warn"`, "warn"},
	"metrics_listen":      {`":9100"`, ":9100"},
	"debug_pprof":         {`true`, "true"},
	"subnet":              {`["192.168.0.0/16"]`, "192.168.0.0/16"},
	"subnet_snat":         {`false`, "false"},
	"kernel_forward_only": {`true`, "true"},
	"accept_subnets":      {`["all"]`, "all"},
	"tcp_proxy":           {`"kcp"`, "kcp"},
	"no_proxy_input":      {`true`, "true"},
	"kcp.interval_ms":     {`20`, "20"},
	"kcp.window":          {`2048`, "2048"},
	"kcp.resend":          {`0`, "0"},
}

func TestEveryOptionHasFlagAndKey(t *testing.T) {
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	RegisterFlags(fs)
	opts := Options()
	registered := 0
	fs.VisitAll(func(*pflag.Flag) { registered++ })
	if registered != len(opts) {
		t.Errorf("RegisterFlags registered %d flags, Options lists %d", registered, len(opts))
	}
	var keys []string
	for _, o := range opts {
		name := strings.TrimPrefix(o.Flag, "--")
		if fs.Lookup(name) == nil {
			t.Errorf("%s: no flag registered", o.Flag)
		}
		if o.Help == "" || o.Type == "" {
			t.Errorf("%s: empty help or type: %+v", o.Flag, o)
		}
		if o.Key == "" {
			if o.Flag != "--config" {
				t.Errorf("%s: no TOML key", o.Flag)
			}
			continue
		}
		keys = append(keys, o.Key)
		// A key in a TOML table is dotted: --kcp-window is kcp.window.
		if want := strings.ReplaceAll(name, "-", "_"); strings.ReplaceAll(o.Key, ".", "_") != want {
			t.Errorf("%s: TOML key %q, want %q", o.Flag, o.Key, want)
		}
		sample, ok := sampleTOML[o.Key]
		if !ok {
			t.Errorf("%s: add a sample value for key %q to sampleTOML", o.Flag, o.Key)
			continue
		}
		path := writeFile(t, "one.toml", o.Key+" = "+sample.toml+"\n")
		l, defined, err := loadFile(path, settings())
		if err != nil {
			t.Errorf("key %s: %v", o.Key, err)
			continue
		}
		got := "(no setting)"
		for _, s := range settings() {
			if s.flag == name {
				got = s.bind(&l).String()
			}
		}
		if !defined[name] || got != sample.text {
			t.Errorf("key %s = %s: setting %s holds %q (defined %v), want %q", o.Key, sample.toml, o.Flag, got, defined[name], sample.text)
		}
	}
	for key := range sampleTOML {
		if !slices.Contains(keys, key) {
			t.Errorf("sampleTOML has %q, which no option has", key)
		}
	}
}

func TestFlagUsage(t *testing.T) {
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	RegisterFlags(fs)
	usage := fs.FlagUsages()
	for _, want := range []string{
		"--mtu int", "(default 1400)",
		"--ipv4 ADDR/PREFIX", "--peer URI", "--subnet CIDR", "--config FILE",
		"--network-name NAME", "every node (required)", "(default: machine hostname)",
		"--control PATH", `(default "/run/weft/<dev>.sock")`,
		"(default udp://0.0.0.0:11010)",
		"--subnet-snat ", "(default true)",
		"(env WEFT_NETWORK_SECRET)",
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("flag usage lacks %q:\n%s", want, usage)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	table := MarkdownTable()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if lines[0] != "| flag | TOML key | type | default | meaning |" {
		t.Errorf("header = %q", lines[0])
	}
	if got, want := len(lines), len(Options())+2; got != want {
		t.Errorf("table has %d lines, want %d", got, want)
	}
	for _, want := range []string{
		"| `--mtu` | `mtu` | int | `1400` | MTU of the TUN interface (576..9000) |",
		"| `--listen` | `listen` | URI (repeatable) | `udp://0.0.0.0:11010` |",
		"| `--network-name` | `network_name` | string | (required) |",
		"| `--config` | (command line only) | string |  | read settings from this TOML FILE;",
		"| `--state-dir` | `state_dir` | string | `/var/lib/weft/<dev>` |",
		"also $WEFT_NETWORK_SECRET |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// TestTableKey checks that a setting in a TOML table (as a future [kcp] table would be) decodes, and
// that unknown keys inside the table are rejected.
func TestTableKey(t *testing.T) {
	all := []setting{
		scalar(intCodec(), "kcp-window", "window", func(l *layer) *int { return &l.MTU }).withKey("kcp.window"),
	}
	tests := []struct {
		name    string
		file    string
		want    int
		wantErr string
	}{
		{name: "table", file: "[kcp]\nwindow = 512\n", want: 512},
		{name: "dotted", file: "kcp.window = 256\n", want: 256},
		{name: "absent", file: "", want: 0},
		{name: "unknown in table", file: "[kcp]\nwindow = 1\nwindw = 2\n", wantErr: `unknown key "kcp.windw"`},
		{name: "not a table", file: "kcp = 3\n", wantErr: `key "kcp" must be a table, e.g. [kcp]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, err := loadFile(writeFile(t, "kcp.toml", tt.file), all)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadFile() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || l.MTU != tt.want {
				t.Fatalf("loadFile() = %d, %v; want %d", l.MTU, err, tt.want)
			}
		})
	}
}

func TestLogValueHidesSecret(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", validConfig())
	out := buf.String()
	if strings.Contains(out, "s3cret-value") {
		t.Errorf("log shows the secret: %s", out)
	}
	for _, want := range []string{"config.network_secret=(hidden)", "config.ipv4=10.144.144.1/24", "config.mtu=1400", "config.listen=udp://0.0.0.0:11010"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: %s", want, out)
		}
	}
}

// TestExampleFile checks that testdata/example.toml, linked from the README, loads, validates and
// mentions every key.
func TestExampleFile(t *testing.T) {
	path := filepath.Join("testdata", "example.toml")
	c, err := resolve([]string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("example.toml: %v", err)
	}
	if c.NetworkSecret != "example-secret" || c.IPv4.String() != "10.144.144.1/24" || len(c.Peer) != 3 {
		t.Errorf("example.toml resolved to %+v", c)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		if o.Key == "" {
			continue
		}
		// A dotted key is shown inside its table: kcp.window as "window = " after "[kcp]".
		key, table := o.Key, ""
		if i := strings.LastIndex(key, "."); i >= 0 {
			table, key = key[:i], key[i+1:]
		}
		body := text
		if table != "" {
			i := strings.Index(string(text), "["+table+"]")
			if i < 0 {
				t.Errorf("example.toml has no [%s] table for key %q", table, o.Key)
				continue
			}
			body = text[i:]
		}
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(key) + ` = `).Match(body) {
			t.Errorf("example.toml does not show key %q", o.Key)
		}
	}
}
