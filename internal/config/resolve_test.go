package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// resolve parses args as `weft up` would and resolves them with env as the environment.
func resolve(args []string, env map[string]string) (Config, error) {
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	f := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	return f.Resolve(func(k string) string { return env[k] })
}

// writeFile writes content to name in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const requiredTOML = `
network_name = "home"
network_secret = "file-secret"
ipv4 = "10.144.144.1/24"
`

var required = []string{"--network-name", "home", "--network-secret", "flag-secret", "--ipv4", "10.144.144.1/24"}

func uris(t *testing.T, texts ...string) []URI {
	t.Helper()
	var out []URI
	for _, s := range texts {
		u, err := ParseURI(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// TestResolveFileEveryKey sets every TOML key to a value other than its default.
func TestResolveFileEveryKey(t *testing.T) {
	secretFile := writeFile(t, "secret", "unused\n")
	file := writeFile(t, "weft.toml", `
hostname = "node7"
network_name = "office"
network_secret = "file-secret"
ipv4 = "10.1.2.3/16"
dev = "mesh1"
mtu = 1280
listen = ["tcp://[::]:443", "udp://192.0.2.1:5000"]
peer = ["udp://hub.example.net:11010", "tcp://[2001:db8::1]:443"]
control = "/tmp/weft.sock"
state_dir = "/tmp/weft-state"
log_level = "debug"
metrics_listen = "127.0.0.1:9100"
debug_pprof = true
subnet = ["192.168.50.0/24", "172.16.0.0/12"]
subnet_snat = false
kernel_forward_only = true
accept_subnets = ["all", "169.254.169.254/32"]
tcp_proxy = "kcp"
no_proxy_input = true

[kcp]
interval_ms = 20
window = 2048
resend = 0
`)
	got, err := resolve([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Hostname: "node7", NetworkName: "office", NetworkSecret: "file-secret",
		IPv4: netip.MustParsePrefix("10.1.2.3/16"), Dev: "mesh1", MTU: 1280,
		Listen:  uris(t, "tcp://[::]:443", "udp://192.0.2.1:5000"),
		Peer:    uris(t, "udp://hub.example.net:11010", "tcp://[2001:db8::1]:443"),
		Control: "/tmp/weft.sock", StateDir: "/tmp/weft-state", LogLevel: "debug", MetricsListen: "127.0.0.1:9100", DebugPprof: true,
		Subnet:     []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24"), netip.MustParsePrefix("172.16.0.0/12")},
		SubnetSNAT: false, KernelForwardOnly: true,
		AcceptSubnets: []AcceptSubnet{{All: true}, {Prefix: netip.MustParsePrefix("169.254.169.254/32")}},
		TCPProxy:      "kcp", NoProxyInput: true, KCP: KCPConfig{IntervalMS: 20, Window: 2048, Resend: 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Resolve() =\n%+v\nwant\n%+v", got, want)
	}

	// The remaining key, network_secret_file, is covered here.
	file2 := writeFile(t, "weft.toml", `network_name = "n"
ipv4 = "10.1.2.3/16"
network_secret_file = "`+secretFile+`"`)
	got, err = resolve([]string{"--config", file2}, nil)
	if err != nil || got.NetworkSecret != "unused" {
		t.Errorf("network_secret_file: NetworkSecret = %q, err %v; want %q", got.NetworkSecret, err, "unused")
	}
}

func TestResolve(t *testing.T) {
	secretFile := writeFile(t, "secret", "from-file\n")
	crlfFile := writeFile(t, "crlf", "from-crlf\r\n")
	emptyFile := writeFile(t, "empty", "\n")
	base := writeFile(t, "base.toml", requiredTOML+`
mtu = 1300
listen = ["udp://0.0.0.0:1", "udp://0.0.0.0:2"]
peer = ["udp://192.0.2.1:1"]
subnet_snat = false
`)
	fileWithSecretFile := writeFile(t, "sf.toml", "network_name = \"n\"\nipv4 = \"10.0.0.1/8\"\nnetwork_secret_file = \""+secretFile+"\"\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) string // returns what is wrong, "" if nothing
		wantErr string
	}{
		{name: "flags only", args: required, check: func(c Config) string {
			return diff(c.NetworkName, "home") + diff(c.NetworkSecret, "flag-secret") + diff(c.IPv4.String(), "10.144.144.1/24") +
				diff(c.MTU, 1400) + diff(len(c.Listen), 1) + diff(c.SubnetSNAT, true)
		}},
		{name: "file values kept when flags absent", args: []string{"--config", base}, check: func(c Config) string {
			return diff(c.MTU, 1300) + diff(c.Listen[1].Port, uint16(2)) + diff(c.SubnetSNAT, false) + diff(c.NetworkSecret, "file-secret")
		}},
		{name: "flag replaces file value", args: []string{"--config", base, "--mtu", "1500", "--subnet-snat"}, check: func(c Config) string {
			return diff(c.MTU, 1500) + diff(c.SubnetSNAT, true)
		}},
		{name: "list flag replaces the file list", args: []string{"--config", base, "--listen", "tcp://0.0.0.0:9", "--listen", "udp://0.0.0.0:8"}, check: func(c Config) string {
			return diff(len(c.Listen), 2) + diff(c.Listen[0].String(), "tcp://0.0.0.0:9") + diff(c.Listen[1].String(), "udp://0.0.0.0:8") +
				diff(len(c.Peer), 1)
		}},
		{name: "repeated flag appends", args: append([]string{"--peer", "udp://192.0.2.1:1", "--peer", "udp://[::1]:2", "--subnet", "192.168.1.0/24"}, required...), check: func(c Config) string {
			return diff(len(c.Peer), 2) + diff(c.Peer[1].Host, "::1") + diff(len(c.Subnet), 1) + diff(len(c.Listen), 1)
		}},
		{name: "bool flag false", args: append([]string{"--subnet-snat=false"}, required...), check: func(c Config) string {
			return diff(c.SubnetSNAT, false)
		}},
		{name: "env secret", args: []string{"--network-name", "n", "--ipv4", "10.0.0.1/8"}, env: map[string]string{EnvNetworkSecret: "env-secret"}, check: func(c Config) string {
			return diff(c.NetworkSecret, "env-secret")
		}},
		{name: "env beats file secret", args: []string{"--config", base}, env: map[string]string{EnvNetworkSecret: "env-secret"}, check: func(c Config) string {
			return diff(c.NetworkSecret, "env-secret")
		}},
		{name: "flag beats env secret", args: required, env: map[string]string{EnvNetworkSecret: "env-secret"}, check: func(c Config) string {
			return diff(c.NetworkSecret, "flag-secret")
		}},
		{name: "flag secret file beats env", args: []string{"--network-name", "n", "--ipv4", "10.0.0.1/8", "--network-secret-file", secretFile}, env: map[string]string{EnvNetworkSecret: "env-secret"}, check: func(c Config) string {
			return diff(c.NetworkSecret, "from-file")
		}},
		{name: "flag secret file beats file secret", args: []string{"--config", base, "--network-secret-file", crlfFile}, check: func(c Config) string {
			return diff(c.NetworkSecret, "from-crlf")
		}},
		{name: "env beats file's secret file", args: []string{"--config", fileWithSecretFile}, env: map[string]string{EnvNetworkSecret: "env-secret"}, check: func(c Config) string {
			return diff(c.NetworkSecret, "env-secret")
		}},
		{name: "flag secret beats file's secret file", args: append([]string{"--config", fileWithSecretFile}, required...), check: func(c Config) string {
			return diff(c.NetworkSecret, "flag-secret")
		}},
		{name: "file's secret file", args: []string{"--config", fileWithSecretFile}, check: func(c Config) string {
			return diff(c.NetworkSecret, "from-file")
		}},
		{name: "secret file relative to config file", args: []string{"--config", writeFileIn(t, filepath.Dir(secretFile), "rel.toml", `network_name = "n"
ipv4 = "10.0.0.1/8"
network_secret_file = "secret"`)}, check: func(c Config) string {
			return diff(c.NetworkSecret, "from-file")
		}},
		{name: "empty secret file", args: []string{"--network-name", "n", "--ipv4", "10.0.0.1/8", "--network-secret-file", emptyFile}, wantErr: "--network-secret-file " + emptyFile + ": the file is empty"},
		{name: "missing secret file", args: []string{"--network-name", "n", "--ipv4", "10.0.0.1/8", "--network-secret-file", "/nonexistent/secret"}, wantErr: "--network-secret-file: open /nonexistent/secret: no such file"},
		{name: "two secret flags", args: append([]string{"--network-secret-file", secretFile}, required...), wantErr: "--network-secret and --network-secret-file are both given: keep one"},
		{name: "two secret keys in file", args: []string{"--config", writeFile(t, "two.toml", requiredTOML+`network_secret_file = "x"`)}, wantErr: "network_secret and network_secret_file are both given: keep one"},
		{name: "no secret anywhere", args: []string{"--network-name", "n", "--ipv4", "10.0.0.1/8"}, wantErr: "--network-secret is required"},
		{name: "control and state dir follow dev", args: append([]string{"--dev", "mesh3"}, required...), check: func(c Config) string {
			return diff(c.Control, "/run/weft/mesh3.sock") + diff(c.StateDir, "/var/lib/weft/mesh3")
		}},
		{name: "dev from file moves control", args: []string{"--config", writeFile(t, "dev.toml", requiredTOML+`dev = "wf9"`)}, check: func(c Config) string {
			return diff(c.Control, "/run/weft/wf9.sock") + diff(c.StateDir, "/var/lib/weft/wf9")
		}},
		{name: "explicit control stays", args: append([]string{"--dev", "mesh3", "--control", "/tmp/c.sock"}, required...), check: func(c Config) string {
			return diff(c.Control, "/tmp/c.sock") + diff(c.StateDir, "/var/lib/weft/mesh3")
		}},
		{name: "unknown key", args: []string{"--config", writeFile(t, "unknown.toml", requiredTOML+"colour = 1\n[kcp]\nwindow = 3\n")}, wantErr: `unknown key "colour"`},
		{name: "unknown table", args: []string{"--config", writeFile(t, "table.toml", requiredTOML+"[tuning]\nwindow = 3\n")}, wantErr: `unknown key "tuning"`},
		{name: "dash key suggests underscore", args: []string{"--config", writeFile(t, "dash.toml", requiredTOML+`log-level = "debug"`)}, wantErr: `unknown key "log-level": did you mean "log_level"?`},
		{name: "wrong type", args: []string{"--config", writeFile(t, "type.toml", requiredTOML+`mtu = "big"`)}, wantErr: `type.toml: toml: line 5 (last key "mtu"): incompatible types`},
		{name: "wrong list element", args: []string{"--config", writeFile(t, "list.toml", requiredTOML+`peer = ["udp://1.2.3.4"]`)}, wantErr: `list.toml: toml: line 5 (last key "peer")`},
		{name: "bad prefix in file", args: []string{"--config", writeFile(t, "prefix.toml", "network_name = \"n\"\nipv4 = \"10.0.0.1\"")}, wantErr: `line 2 (last key "ipv4")`},
		{name: "toml syntax", args: []string{"--config", writeFile(t, "syntax.toml", "mtu = \n")}, wantErr: "syntax.toml: toml: line 1"},
		{name: "missing config file", args: []string{"--config", "/nonexistent/weft.toml"}, wantErr: "read config file: open /nonexistent/weft.toml"},
		{name: "bad flag value", args: []string{"--mtu", "big"}, wantErr: `invalid argument "big" for "--mtu" flag: want a whole number`},
		{name: "bad ipv4 flag", args: []string{"--ipv4", "10.0.0.1"}, wantErr: `"--ipv4" flag: want address/prefix-length, e.g. 10.144.144.1/24`},
		{name: "bad uri flag", args: []string{"--peer", "udp://1.2.3.4:0"}, wantErr: `"--peer" flag: "udp://1.2.3.4:0": port "0"`},
		{name: "validation runs", args: append([]string{"--mtu", "70000"}, required...), wantErr: "--mtu 70000: must be between 576 and 9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := resolve(tt.args, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve() error = %v, want it to contain %q", err, tt.wantErr)
				}
				for _, secret := range []string{"file-secret", "flag-secret", "env-secret", "from-file"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error shows a secret: %q", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(): %v", err)
			}
			if problem := tt.check(c); problem != "" {
				t.Error(problem)
			}
		})
	}
}

func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func diff(got, want any) string {
	if got == want {
		return ""
	}
	return fmt.Sprintf("got %v, want %v; ", got, want)
}
