package node

// Credentials and certificate mode. In shared-secret mode (the default) the node's identity lives in
// its state directory and the network key derives from --network-secret. In certificate mode (--ca,
// --cert, --cert-key) the identity is the key the certificate was issued for, and:
//
//	handshake: the hello carries this node's certificate; establish checks the peer's (CA signature,
//	           expiry, the key the peer proved, the virtual IP it claims) and refuses the session
//	           otherwise, telling the peer why (msgRefused) so both sides log one clear line
//	announce:  every announcement carries its origin's certificate; receiveAnnounce drops one whose
//	           certificate does not list its address and subnets (announce_uncertified)
//
// Everything the node then believes about ownership (routes, source validation, the proxy's opener
// check) derives from announcements, so in certificate mode it is what the CA signed.

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/weft-vpn/weft/internal/cert"
	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/underlay"
)

// certMode is what a node in certificate mode checks against.
type certMode struct {
	checker cert.Checker
	own     *cert.Cert
}

// credentials are the node's identity, its network key and, in certificate mode, its certificates.
type credentials struct {
	id    session.Identity
	psk   [32]byte
	certs *certMode // nil in shared-secret mode
}

// loadCredentials reads the identity and derives the network key; in certificate mode it checks this
// node's own certificate and configuration against each other, so a node never starts with an address
// or subnet its certificate does not list.
func loadCredentials(cfg config.Config, now time.Time) (credentials, error) {
	if cfg.CA == "" {
		id, err := session.LoadOrCreateIdentity(cfg.StateDir)
		if err != nil {
			return credentials{}, fmt.Errorf("node identity: %w", err)
		}
		return credentials{id: id, psk: session.DerivePSK(cfg.NetworkName, cfg.NetworkSecret)}, nil
	}
	ca, err := cert.ReadFile(cfg.CA)
	if err != nil {
		return credentials{}, fmt.Errorf("--ca: %w", err)
	}
	if err := ca.VerifyCA(now); err != nil {
		return credentials{}, fmt.Errorf("--ca %s: %w", cfg.CA, err)
	}
	own, err := cert.ReadFile(cfg.Cert)
	if err != nil {
		return credentials{}, fmt.Errorf("--cert: %w", err)
	}
	if err := own.Verify(ca, now); err != nil {
		return credentials{}, fmt.Errorf("--cert %s: %w", cfg.Cert, err)
	}
	id, err := session.LoadIdentityFile(cfg.CertKey)
	if err != nil {
		return credentials{}, fmt.Errorf("--cert-key: %w", err)
	}
	if id.SigningPublic() != own.PublicKey {
		return credentials{}, fmt.Errorf("--cert-key %s is not the key of --cert %s (it is node %v's, the certificate is node %v's)",
			cfg.CertKey, cfg.Cert, id.NodeID(), session.NodeIDOf(own.PublicKey))
	}
	if cfg.IPv4 != own.IPv4 {
		return credentials{}, fmt.Errorf("--ipv4 %v: the certificate %s lists %v; in certificate mode a node uses only the address its certificate lists",
			cfg.IPv4, cfg.Cert, own.IPv4)
	}
	for _, s := range cfg.Subnet {
		if !own.Covers(s) {
			return credentials{}, fmt.Errorf("--subnet %v: not in the certificate %s (it lists %v); have the CA sign one with --subnet %v",
				s, cfg.Cert, own.Subnets, s)
		}
	}
	secret := cfg.NetworkSecret
	if secret == "" {
		secret = "weft-ca:" + hex.EncodeToString(ca.PublicKey[:])
	}
	return credentials{id: id, psk: session.DerivePSK(cfg.NetworkName, secret),
		certs: &certMode{checker: cert.Checker{CA: ca}, own: own}}, nil
}

// ownCert is this node's certificate encoding, nil in shared-secret mode.
func (n *Node) ownCert() []byte {
	if n.certs == nil {
		return nil
	}
	return n.certs.own.Raw()
}

// certDescription is this node's certificate as `weft status` shows it ("" in shared-secret mode).
func (n *Node) certDescription() string {
	if n.certs == nil {
		return ""
	}
	c, ca := n.certs.own, n.certs.checker.CA
	return fmt.Sprintf("%s, CA %s (%s), until %s", c.Name, ca.Name, cert.Fingerprint(ca.PublicKey), c.NotAfter.Format(time.RFC3339))
}

// checkPeerCert checks, in certificate mode, the certificate a peer presented in its hello.
func (n *Node) checkPeerCert(kp *session.Keypair, h hello) error {
	if n.certs == nil {
		return nil
	}
	_, err := n.certs.checker.Check(h.Cert, kp.PeerSigning(), h.IPv4, nil)
	return err
}

// checkAnnounceCert checks, in certificate mode, that a's certificate lists its address and subnets.
func (n *Node) checkAnnounceCert(a mesh.Announce) error {
	if n.certs == nil {
		return nil
	}
	subnets := make([]netip.Prefix, len(a.Subnets))
	for i, s := range a.Subnets {
		subnets[i] = s.Prefix
	}
	_, err := n.certs.checker.Check(a.Cert, a.SigningKey, a.IPv4, subnets)
	return err
}

// refusePeer ends a handshake whose peer this node will not accept: it logs why (at most once per
// interval per node), and tells the peer over the fresh session, which is never installed here.
func (n *Node) refusePeer(kp *session.Keypair, link underlay.Link, h hello, why error) {
	n.drops.inc("cert_refused")
	id := kp.PeerID()
	if n.warnDue(&n.refusedAt, id) {
		n.log.Warn("refused peer "+h.Hostname+" ("+id.String()+") at "+link.Network()+"://"+link.RemoteAddr().String()+
			": "+why.Error(), "peer", id.String())
	}
	// Its answers on the session we never installed would each start a handshake back
	// (unknownSession); hold those off for a while, so a refused peer costs one handshake per dial.
	n.hs.holdHints(link.RemoteAddr().Addr(), time.Now().Add(refusedHold))
	reason := why.Error()
	if len(reason) > 512 {
		reason = reason[:512]
	}
	msg := append([]byte{msgRefused}, reason...)
	buf := make([]byte, session.DataHeaderLen+len(msg), session.Overhead+len(msg))
	copy(buf[session.DataHeaderLen:], msg)
	if out, err := kp.SealInPlace(buf, len(msg)); err == nil {
		_ = link.Send(out)
	}
}

// receiveRefused handles a peer's refusal of this node (msgRefused): the session goes down and the
// reason is logged (at most once per interval per peer).
func (n *Node) receiveRefused(p *peer, reason []byte) {
	if n.warnDue(&n.refusedBy, p.id) {
		n.log.Warn("peer "+n.peerTab.hostname(p)+" ("+p.id.String()+") refused this node: "+string(reason), "peer", p.id.String())
	}
	n.peerDown(p, "refused by the peer")
}

// refusedHold is how long after refusing a peer this node starts no handshake towards its address
// on its own (the peer's dials are still answered).
const refusedHold = 30 * time.Second

// certWarnBefore is how long before its certificate expires a node starts to warn.
const certWarnBefore = 7 * 24 * time.Hour

// tickCert warns (in the log and `weft status`) when this node's certificate nears its expiry or has
// expired: peers refuse an expired certificate at the next handshake (every rekey is one).
func (n *Node) tickCert(now time.Time) {
	if n.certs == nil {
		return
	}
	c := n.certs.own
	text := ""
	switch left := c.NotAfter.Sub(now); {
	case left <= 0:
		text = "this node's certificate " + n.cfg.Cert + " expired at " + c.NotAfter.Format(time.RFC3339) +
			": peers refuse it from their next handshake on; have the CA sign a new one (weft cert sign) and restart"
	case left < certWarnBefore:
		text = "this node's certificate " + n.cfg.Cert + " expires at " + c.NotAfter.Format(time.RFC3339) +
			": have the CA sign a new one (weft cert sign) before then"
	}
	n.setWarning("cert-expiry", text)
}
