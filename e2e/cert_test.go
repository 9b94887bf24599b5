package e2e

// Certificate mode: a network CA signs each node's address and subnets (weft cert), nodes join with
// --ca/--cert/--cert-key, and accept from each other only what the certificates list. Every check is
// made as an operator would: with the real CLI, real nodes in namespaces, their logs and `weft status`.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-vpn/weft/internal/netlab"
)

// certs makes certificates with the real `weft cert` CLI in a temporary directory.
type certs struct {
	t   *testing.T
	dir string
}

func newCerts(t *testing.T) *certs { return &certs{t: t, dir: t.TempDir()} }

func (c *certs) run(args ...string) string {
	c.t.Helper()
	out, err := hostCmd(weftBin, args...)
	if err != nil {
		c.t.Fatalf("weft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ca makes a CA named name and returns its directory.
func (c *certs) ca(name string) string {
	c.t.Helper()
	dir := filepath.Join(c.dir, name)
	c.run("cert", "ca", "--name", name, "--out", dir)
	return dir
}

// node issues a certificate from the CA in caDir and returns the directory of node.crt and node.key.
func (c *certs) node(caDir, hostname, ipv4, validity string, subnets ...string) string {
	c.t.Helper()
	dir := filepath.Join(c.dir, hostname+"-"+filepath.Base(caDir))
	args := []string{"cert", "sign", "--ca", caDir, "--hostname", hostname, "--ipv4", ipv4, "--duration", validity, "--out", dir}
	for _, s := range subnets {
		args = append(args, "--subnet", s)
	}
	c.run(args...)
	return dir
}

// upFails runs `weft up` with args on h and checks that it exits with an error naming want.
func upFails(t *testing.T, h *netlab.Host, want string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	args = append([]string{"up", "--network-name", testNetwork, "--dev", "weftx", "--control", filepath.Join(dir, "c.sock"),
		"--state-dir", filepath.Join(dir, "state")}, args...)
	out, err := h.RunErr(ctx, weftBin, args...)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("weft %s: want a refusal to start, got %v:\n%s", strings.Join(args, " "), err, out)
	}
	if !strings.Contains(out, want) {
		t.Fatalf("weft up refused to start, but does not say %q:\n%s", want, out)
	}
	t.Logf("refused to start: %s", strings.TrimSpace(out))
}

// waitLog waits until n's log contains text.
func waitLog(t *testing.T, n *weftNode, text string, timeout time.Duration) {
	t.Helper()
	netlab.Eventually(t, timeout, func() bool { return strings.Contains(n.proc.Log(), text) },
		"%s never logged %q:\n%s", n.name, text, n.proc.Log())
}

// TestCertificateMode: nodes with certificates of one CA (and the network secret) form the mesh; a
// node refuses to start with an address, a subnet or a key its certificate does not give it, or with
// an expired certificate; a running node whose certificate expired, and a node of another CA, are
// refused by their peers, and both sides say why; a member with a valid certificate for one address
// cannot announce or send from another.
func TestCertificateMode(t *testing.T) {
	cs := newCerts(t)
	caDir, otherDir := cs.ca("e2e-ca"), cs.ca("other-ca")
	caCrt := filepath.Join(caDir, "ca.crt")
	alphaDir := cs.node(caDir, "alpha", "10.144.144.1/24", "24h")
	betaDir := cs.node(caDir, "beta", "10.144.144.2/24", "24h", "192.168.77.0/24")
	gammaDir := cs.node(caDir, "gamma", "10.144.144.3/24", "8s")
	epsDir := cs.node(caDir, "epsilon", "10.144.144.6/24", "24h")
	malloryDir := cs.node(caDir, "mallory", "10.144.144.5/24", "24h")
	deltaDir := cs.node(otherDir, "delta", "10.144.144.7/24", "24h")
	if out := cs.run("cert", "print", filepath.Join(betaDir, "node.crt")); !strings.Contains(out, "10.144.144.2/24") ||
		!strings.Contains(out, "192.168.77.0/24") {
		t.Fatalf("weft cert print does not show the address and subnet:\n%s", out)
	}

	lab := netlab.New(t)
	ha, hb, hc, hd, he, hm := lab.Host("a"), lab.Host("b"), lab.Host("c"), lab.Host("d"), lab.Host("e"), lab.Host("m")
	aOnAB, _ := link(lab, ha, hb, 1)
	aOnAC, _ := link(lab, ha, hc, 2)
	aOnAD, _ := link(lab, ha, hd, 3)
	cOnCE, _ := link(lab, hc, he, 4)
	aOnAM, _ := link(lab, ha, hm, 5)

	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", ca: caCrt, certDir: alphaDir})
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", ca: caCrt, certDir: betaDir, peers: []string{udpPeer(aOnAB)}})
	b.waitPeer(a.ip, 10*time.Second)
	mustPing(t, hb, a.ip, 5*time.Second)
	if st := b.status(); st.IPv4 != "10.144.144.2/24" || st.Hostname != "beta" || !strings.HasPrefix(st.Certificate, "beta, CA e2e-ca (") {
		t.Errorf("beta's address and name did not default to its certificate's, or status does not show it: %s, %q, %q",
			st.IPv4, st.Hostname, st.Certificate)
	}
	// gamma starts while its 8 s certificate is valid and joins alpha.
	c := startNode(t, hc, "gamma", nodeOpts{ip: "10.144.144.3/24", ca: caCrt, certDir: gammaDir, peers: []string{udpPeer(aOnAC)}})
	gammaUntil := time.Now().Add(8 * time.Second)
	c.waitPeer(a.ip, 10*time.Second)

	t.Run("a node uses only what its certificate lists", func(t *testing.T) {
		base := []string{"--network-secret", testSecret, "--ca", caCrt}
		withCert := func(dir string, extra ...string) []string {
			return append(append(append([]string{}, base...), "--cert", filepath.Join(dir, "node.crt"), "--cert-key", filepath.Join(dir, "node.key")), extra...)
		}
		upFails(t, hd, "lists 10.144.144.2/24", withCert(betaDir, "--ipv4", "10.144.144.4/24")...)
		upFails(t, hd, "--subnet 192.168.88.0/24: not in the certificate", withCert(betaDir, "--subnet", "192.168.88.0/24")...)
		upFails(t, hd, "issued by another CA", withCert(deltaDir)...)
		mixed := append(append([]string{}, base...), "--cert", filepath.Join(betaDir, "node.crt"), "--cert-key", filepath.Join(alphaDir, "node.key"))
		upFails(t, hd, "is not the key of", mixed...)
		upFails(t, hd, "needs --ca, --cert and --cert-key together: --cert-key missing",
			"--network-secret", testSecret, "--ca", caCrt, "--cert", filepath.Join(betaDir, "node.crt"))
		expired := cs.node(caDir, "late", "10.144.144.8/24", "1s")
		time.Sleep(1100 * time.Millisecond)
		upFails(t, hd, "expired at", withCert(expired)...)
	})

	t.Run("a node of another CA is refused, both sides say why", func(t *testing.T) {
		// delta trusts its own CA and knows the network secret: the handshake completes, the
		// certificates do not pass. Each side refuses the other.
		d := startNode(t, hd, "delta", nodeOpts{ip: "10.144.144.7/24", ca: filepath.Join(otherDir, "ca.crt"), certDir: deltaDir,
			peers: []string{udpPeer(aOnAD)}})
		waitLog(t, a, "refused peer delta", 10*time.Second)
		waitLog(t, a, "issued by another CA", time.Second)
		waitLog(t, d, "refused peer alpha", 10*time.Second)
		if _, ok := a.peer(d.ip); ok {
			t.Errorf("alpha lists delta as a peer: %+v", a.peers())
		}
		if canPing(hd, a.ip) {
			t.Error("delta reaches alpha")
		}
		if got := a.status().Drops["cert_refused"]; got == 0 {
			t.Errorf("alpha counted no cert_refused drops: %v", a.status().Drops)
		}
	})

	t.Run("an expired certificate is refused, both sides say why", func(t *testing.T) {
		time.Sleep(time.Until(gammaUntil) + time.Second)
		waitLog(t, c, "certificate "+filepath.Join(gammaDir, "node.crt")+" expired at", 5*time.Second)
		// epsilon, a fresh node, dials gamma, whose certificate has expired while it ran.
		e := startNode(t, he, "epsilon", nodeOpts{ip: "10.144.144.6/24", ca: caCrt, certDir: epsDir, peers: []string{udpPeer(cOnCE)}})
		waitLog(t, e, "refused peer gamma", 10*time.Second)
		waitLog(t, e, "certificate expired", time.Second)
		waitLog(t, c, "refused this node", 10*time.Second)
		if _, ok := e.peer(c.ip); ok {
			t.Errorf("epsilon lists gamma as a peer: %+v", e.peers())
		}
	})

	t.Run("a member cannot use an address its certificate does not list", func(t *testing.T) {
		// alpha's service logs every datagram it gets, with the sender's address.
		srv := ha.Start(t, "socat", "-u", "UDP4-RECVFROM:7000,bind=10.144.144.1,fork", "SYSTEM:echo got $SOCAT_PEERADDR")
		time.Sleep(300 * time.Millisecond)
		before := a.status().Drops
		const count = 20
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := hm.RunErr(ctx, hostileBin, "-peer", netip.AddrPortFrom(aOnAM, 11010).String(), "-ca", caCrt,
			"-cert", filepath.Join(malloryDir, "node.crt"), "-cert-key", filepath.Join(malloryDir, "node.key"),
			"-ipv4", "10.144.144.5/24", "-count", fmt.Sprint(count), "claim-ip", "-ip", "10.144.144.4/24", "-to", "10.144.144.1:7000")
		if err != nil || strings.TrimSpace(out) != fmt.Sprintf("sent %d", count) {
			t.Fatalf("hostile member: %v: %q", err, out)
		}
		var now map[string]uint64
		waitFor(t, 3*time.Second, func() bool {
			now = a.status().Drops
			return now["announce_uncertified"] > before["announce_uncertified"] && now["src_unknown"] >= before["src_unknown"]+count
		}, func() string {
			return fmt.Sprintf("alpha's drops before %v, after %v: want announce_uncertified +1 and src_unknown +%d", before, now, count)
		})
		if _, ok := routeTo(a, "10.144.144.4/32"); ok {
			t.Error("alpha routes 10.144.144.4 to the member whose certificate lists 10.144.144.5")
		}
		// The real owner of an address gets through to the same service.
		hb.Run(t, "sh", "-c", "echo hi | socat -u - UDP4-SENDTO:10.144.144.1:7000")
		netlab.Eventually(t, 3*time.Second, func() bool { return strings.Contains(srv.Log(), "got 10.144.144.2") },
			"beta's datagram did not reach alpha's service:\n%s", srv.Log())
		if strings.Contains(srv.Log(), "10.144.144.4") {
			t.Fatalf("alpha's service got a datagram from 10.144.144.4:\n%s", srv.Log())
		}
		waitLog(t, a, "certificate does not cover it", time.Second)
	})
}

// TestCertificateModeWithoutSecret: without --network-secret, the network key derives from the CA, so
// certificates of one CA are all it takes to join, and a node of another CA fails at the first
// handshake message with a message that names certificate mode.
func TestCertificateModeWithoutSecret(t *testing.T) {
	cs := newCerts(t)
	caDir, otherDir := cs.ca("e2e-ca"), cs.ca("other-ca")
	caCrt := filepath.Join(caDir, "ca.crt")
	_, ha, hb := pair(t)
	a := startNode(t, ha, "alpha", nodeOpts{ip: "10.144.144.1/24", ca: caCrt, certDir: cs.node(caDir, "alpha", "10.144.144.1/24", "1h"), noSecret: true})
	b := startNode(t, hb, "beta", nodeOpts{ip: "10.144.144.2/24", ca: caCrt, certDir: cs.node(caDir, "beta", "10.144.144.2/24", "1h"),
		noSecret: true, peers: []string{"udp://192.0.2.1:11010"}})
	b.waitPeer(a.ip, 10*time.Second)
	mustPing(t, hb, a.ip, 5*time.Second)
	b.stop()
	d := startNode(t, hb, "delta", nodeOpts{ip: "10.144.144.7/24", ca: filepath.Join(otherDir, "ca.crt"),
		certDir: cs.node(otherDir, "delta", "10.144.144.7/24", "1h"), noSecret: true, peers: []string{"udp://192.0.2.1:11010"}})
	waitLog(t, a, "another --ca", 10*time.Second)
	if _, ok := a.peer(d.ip); ok {
		t.Errorf("alpha took delta, of another CA, as a peer: %+v", a.peers())
	}
	if _, err := os.Stat(filepath.Join(a.state, "node.key")); err == nil {
		t.Error("alpha made an identity in its state dir although it runs with --cert-key")
	}
}
