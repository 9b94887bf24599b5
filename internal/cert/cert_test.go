package cert

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func newCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, t0, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func nodeCert(t testing.TB, ca *CA, ip string, validity time.Duration, subnets ...string) (*Cert, session.Identity) {
	t.Helper()
	id, err := session.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	r := NodeRequest{Name: "gamma", IPv4: netip.MustParsePrefix(ip), SigningKey: id.SigningPublic(), Validity: validity}
	for _, s := range subnets {
		r.Subnets = append(r.Subnets, netip.MustParsePrefix(s))
	}
	c, err := ca.Sign(r, t0)
	if err != nil {
		t.Fatal(err)
	}
	return c, id
}

func TestSignVerifyRoundTrip(t *testing.T) {
	ca := newCA(t, "home")
	c, id := nodeCert(t, ca, "10.144.144.3/24", 24*time.Hour, "192.168.50.0/24")
	got, err := Decode(c.Raw())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(ca.Cert, t0.Add(time.Hour)); err != nil {
		t.Fatalf("a fresh certificate does not verify: %v", err)
	}
	if got.IPv4 != netip.MustParsePrefix("10.144.144.3/24") || got.Name != "gamma" || got.PublicKey != id.SigningPublic() ||
		len(got.Subnets) != 1 || got.Subnets[0] != netip.MustParsePrefix("192.168.50.0/24") {
		t.Fatalf("decoded %+v", got)
	}
	if !got.Covers(netip.MustParsePrefix("192.168.50.0/25")) || !got.Covers(netip.MustParsePrefix("192.168.50.0/24")) {
		t.Error("a prefix inside the listed subnet is not covered")
	}
	if got.Covers(netip.MustParsePrefix("192.168.0.0/16")) || got.Covers(netip.MustParsePrefix("192.168.51.0/24")) {
		t.Error("a prefix outside the listed subnet is covered")
	}
	if err := ca.Cert.VerifyCA(t0); err != nil {
		t.Fatal(err)
	}
	d := got.Describe()
	for _, want := range []string{"10.144.144.3/24", "192.168.50.0/24", id.NodeID().String(), "2026-12-04T10:00:00Z"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe lacks %q:\n%s", want, d)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	ca, other := newCA(t, "home"), newCA(t, "elsewhere")
	c, _ := nodeCert(t, ca, "10.144.144.3/24", time.Hour)
	foreign, _ := nodeCert(t, other, "10.144.144.3/24", time.Hour)
	for _, tc := range []struct {
		name string
		err  error
		c    *Cert
		now  time.Time
	}{
		{"expired", ErrExpired, c, t0.Add(time.Hour)},
		{"not yet valid", ErrNotYetValid, c, t0.Add(-time.Second)},
		{"another CA", ErrForeignCA, foreign, t0},
		{"a CA certificate as node", ErrNotNode, ca.Cert, t0},
	} {
		if err := tc.c.Verify(ca.Cert, tc.now); !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
	// Node certificates never outlive their CA.
	short, err := NewCA("short", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	long, _ := nodeCert(t, short, "10.144.144.3/24", 24*time.Hour)
	if !long.NotAfter.Equal(short.Cert.NotAfter) {
		t.Errorf("node certificate ends %v, after its CA's %v", long.NotAfter, short.Cert.NotAfter)
	}
}

// Every single-byte change of a certificate is refused, by Decode or by Verify.
func TestTamperedRefused(t *testing.T) {
	ca := newCA(t, "home")
	c, _ := nodeCert(t, ca, "10.144.144.3/24", time.Hour, "192.168.50.0/24")
	for i := range c.Raw() {
		b := append([]byte(nil), c.Raw()...)
		b[i] ^= 0x01
		d, err := Decode(b)
		if err == nil {
			err = d.Verify(ca.Cert, t0)
		}
		if err == nil {
			t.Fatalf("byte %d flipped: certificate still accepted", i)
		}
	}
	for n := range len(c.Raw()) {
		if _, err := Decode(c.Raw()[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v, want ErrMalformed", n, err)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "home")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("second Save into the same directory: %v, want a refusal to overwrite", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v, mode %v, want 0600", err, fi.Mode())
	}
	loaded, err := LoadCA(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := nodeCert(t, loaded, "10.144.144.3/24", time.Hour)
	if err := c.Verify(ca.Cert, t0); err != nil {
		t.Fatalf("a certificate signed by the loaded CA: %v", err)
	}
	// A certificate file given as the CA key, and a key that is not the certificate's.
	if err := os.WriteFile(filepath.Join(dir, "x.crt"), c.EncodePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(filepath.Join(dir, CAKeyFile)); err == nil || !strings.Contains(err.Error(), "WEFT CERTIFICATE") {
		t.Errorf("reading a key as a certificate: %v", err)
	}
	other := t.TempDir()
	if err := newCA(t, "other").Save(other); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, CAKeyFile))
	os.Link(filepath.Join(other, CAKeyFile), filepath.Join(dir, CAKeyFile))
	if _, err := LoadCA(dir, t0); err == nil || !strings.Contains(err.Error(), "is not the key of") {
		t.Errorf("a CA key that is not the certificate's: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	ca := newCA(f, "home")
	c, _ := nodeCert(f, ca, "10.144.144.3/24", time.Hour, "192.168.50.0/24", "10.0.0.0/8")
	f.Add(c.Raw())
	f.Add(ca.Cert.Raw())
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b)
		if err != nil {
			return
		}
		_ = d.Verify(ca.Cert, t0)
		_ = d.VerifyCA(t0)
		_ = d.Describe()
		if string(d.Raw()) != string(b) {
			t.Fatal("Raw differs from the decoded bytes")
		}
	})
}
