package config

import (
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		in       string
		want     URI
		hostPort string
		wantErr  string // substring of the error; "" for success
	}{
		{in: "udp://1.2.3.4:11010", want: URI{"udp", "1.2.3.4", 11010}, hostPort: "1.2.3.4:11010"},
		{in: "tcp://[2001:db8::1]:443", want: URI{"tcp", "2001:db8::1", 443}, hostPort: "[2001:db8::1]:443"},
		{in: "udp://[::1]:11010", want: URI{"udp", "::1", 11010}, hostPort: "[::1]:11010"},
		{in: "udp://hub.example.net:11010", want: URI{"udp", "hub.example.net", 11010}, hostPort: "hub.example.net:11010"},
		{in: "tcp://localhost:1", want: URI{"tcp", "localhost", 1}, hostPort: "localhost:1"},
		{in: "udp://0.0.0.0:65535", want: URI{"udp", "0.0.0.0", 65535}, hostPort: "0.0.0.0:65535"},
		{in: "udp//1.2.3.4", wantErr: `"udp//1.2.3.4": want scheme://host:port with scheme udp or tcp`},
		{in: "http://1.2.3.4:80", wantErr: "with scheme udp or tcp"},
		{in: "UDP://1.2.3.4:80", wantErr: "with scheme udp or tcp"},
		{in: "1.2.3.4:11010", wantErr: "want scheme://host:port"},
		{in: "udp://1.2.3.4", wantErr: "missing port"},
		{in: "udp://[::1]", wantErr: "missing port"},
		{in: "udp://1.2.3.4:0", wantErr: `port "0" must be a number between 1 and 65535`},
		{in: "udp://1.2.3.4:65536", wantErr: `port "65536" must be a number between 1 and 65535`},
		{in: "udp://1.2.3.4:-1", wantErr: "must be a number between 1 and 65535"},
		{in: "udp://1.2.3.4:http", wantErr: "must be a number between 1 and 65535"},
		{in: "udp://1.2.3.4:80/path", wantErr: "must be a number between 1 and 65535"},
		{in: "udp://2001:db8::1:11010", wantErr: "put an IPv6 address in brackets"},
		{in: "udp://[1.2.3.4]:80", wantErr: "brackets are only for IPv6"},
		{in: "udp://:11010", wantErr: "missing host"},
		{in: "udp://bad_host!:11010", wantErr: "not an IP address or a DNS name"},
		{in: "udp://-bad.example:11010", wantErr: "not an IP address or a DNS name"},
		{in: "udp://1.2.3.400:11010", wantErr: "not a valid IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURI(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseURI(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
			if got.HostPort() != tt.hostPort {
				t.Errorf("HostPort() = %q, want %q", got.HostPort(), tt.hostPort)
			}
			var back URI
			if err := back.UnmarshalText([]byte(got.String())); err != nil || back != got {
				t.Errorf("UnmarshalText(String()) = %v, %v; want %v", back, err, got)
			}
		})
	}
}
