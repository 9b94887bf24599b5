package node

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/cert"
	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/session"
)

// certFiles issues a certificate for ip valid for validity and writes it, the CA's certificate and
// the node's key into dir; it returns the config change that runs a node with them.
func certFiles(t *testing.T, ca *cert.CA, dir, ip string, validity time.Duration) func(*config.Config) {
	t.Helper()
	id, err := session.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Sign(cert.NodeRequest{Name: "n" + ip, IPv4: netip.MustParsePrefix(ip + "/24"), SigningKey: id.SigningPublic(),
		Validity: validity}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile, crtFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	if err := os.WriteFile(caFile, ca.Cert.EncodePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crtFile, c.EncodePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := session.WriteIdentityFile(keyFile, id); err != nil {
		t.Fatal(err)
	}
	return func(cfg *config.Config) { cfg.CA, cfg.Cert, cfg.CertKey = caFile, crtFile, keyFile }
}

// A certificate that expires while its node runs ends its sessions at the next rekey: the peer
// refuses the renewed handshake and drops the session it would have renewed.
func TestCertificateExpiryEndsSession(t *testing.T) {
	ca, err := cert.NewCA("unit", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Keys and peers live long here, so that only the refused rekey can end the session in time.
	timers := Timers{RekeyAfter: time.Second, RejectAfter: time.Minute, DeadPeerTimeout: time.Minute,
		KeepaliveInterval: 200 * time.Millisecond, HandshakeTimeout: time.Second}
	a := startTestNodeWith(t, "10.1.0.1", timers, certFiles(t, ca, t.TempDir(), "10.1.0.1", time.Hour))
	// Certificates have whole seconds; 3 s leave time for the session to form first.
	b := startTestNodeWith(t, "10.1.0.2", timers, certFiles(t, ca, t.TempDir(), "10.1.0.2", 3*time.Second), a.port)
	waitSession(t, b, a, "10.1.0.2", "10.1.0.1")
	expires := time.Now().Add(3 * time.Second)

	before := dropsOf(a.n, "cert_refused")
	deadline := time.Now().Add(time.Until(expires) + 3*(timers.RekeyAfter+timers.HandshakeTimeout))
	for {
		if p := a.n.livePeer(b.n.self); p == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a still has a live session with b %v after b's certificate expired", time.Since(expires))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dropsOf(a.n, "cert_refused") == before {
		t.Error("the session ended, but not by a refused certificate")
	}
	if w := (backend{b.n}).Status().Warnings; !strings.Contains(strings.Join(w, "\n"), "expired at") {
		t.Errorf("b's status does not warn that its certificate expired: %q", w)
	}
}
