// Package cert is weft's certificate mode: a network CA (an Ed25519 key) signs, for each node, the
// addresses it may use. A node certificate binds a node's signing key (and so its node ID) to a name,
// one virtual IPv4 address with the mesh prefix, the LAN prefixes it may expose and a validity period.
// Nodes carry their certificate in the handshake and in every announcement, and accept from a node
// only what its certificate lists, so that address ownership no longer rests on first claims.
//
// The encoding is weft's own, fixed-order binary (no ASN.1, nothing optional):
//
//	magic "WCRT" | version u8 | kind u8 (1 CA, 2 node) | name len u8 | name |
//	ipv4 [4] | prefix len u8 | subnet count u8 | { addr [4] | prefix len u8 } ... |
//	not before i64 | not after i64 (unix seconds) | public key [32] | issuer key [32] |
//	Ed25519 signature [64] by the issuer key over everything before it
//
// A CA certificate is self-signed (issuer key = public key) and lists no addresses. Files are PEM:
// "WEFT CERTIFICATE" for both kinds, "WEFT CA KEY" for the CA's 32-byte Ed25519 seed; a node's key is
// weft's identity key file (node.key: 64 hex digits), from which its signing key derives.
package cert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// Kind says what a certificate is for.
type Kind byte

// The kinds of certificate.
const (
	KindCA   Kind = 1
	KindNode Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindCA:
		return "CA"
	case KindNode:
		return "node"
	}
	return fmt.Sprintf("kind %d", byte(k))
}

const (
	magic      = "WCRT"
	version    = 1
	keyLen     = ed25519.PublicKeySize
	sigLen     = ed25519.SignatureSize
	maxName    = 253
	maxSubnets = 64
	// MaxLen bounds an encoded certificate (the largest name and subnet list).
	MaxLen = len(magic) + 3 + maxName + 6 + maxSubnets*5 + 16 + 2*keyLen + sigLen
)

// Errors of Verify and Decode (test with errors.Is).
var (
	ErrMalformed    = errors.New("malformed certificate")
	ErrBadSignature = errors.New("certificate signature does not verify")
	ErrForeignCA    = errors.New("certificate issued by another CA")
	ErrExpired      = errors.New("certificate expired")
	ErrNotYetValid  = errors.New("certificate not yet valid")
	ErrNotNode      = errors.New("not a node certificate")
)

// Cert is a decoded certificate.
type Cert struct {
	Kind Kind
	Name string
	// IPv4 is the node's virtual address with the mesh prefix length (node certificates only).
	IPv4 netip.Prefix
	// Subnets are the LAN prefixes the node may expose (node certificates only).
	Subnets   []netip.Prefix
	NotBefore time.Time
	NotAfter  time.Time
	// PublicKey is the CA's key (CA) or the node's signing key (node).
	PublicKey [keyLen]byte
	// Issuer is the key of the CA that signed it (for a CA, its own key).
	Issuer    [keyLen]byte
	Signature [sigLen]byte

	raw []byte // the signed encoding
}

// Raw returns the signed encoding (shared; do not modify).
func (c *Cert) Raw() []byte { return c.raw }

// Fingerprint is the first 8 bytes of the SHA-256 of a key, in hex: how keys are shown.
func Fingerprint(key [keyLen]byte) string {
	h := sha256.Sum256(key[:])
	return hex.EncodeToString(h[:8])
}

// body appends the encoding of c up to (not including) its signature.
func (c *Cert) body(b []byte) ([]byte, error) {
	if len(c.Name) == 0 || len(c.Name) > maxName {
		return nil, fmt.Errorf("certificate name %q: must be 1 to %d bytes", c.Name, maxName)
	}
	if len(c.Subnets) > maxSubnets {
		return nil, fmt.Errorf("certificate lists %d subnets, at most %d", len(c.Subnets), maxSubnets)
	}
	b = append(b, magic...)
	b = append(b, version, byte(c.Kind), byte(len(c.Name)))
	b = append(b, c.Name...)
	ip := netip.IPv4Unspecified()
	bits := 0
	if c.IPv4.IsValid() {
		if !c.IPv4.Addr().Is4() {
			return nil, fmt.Errorf("certificate address %v is not IPv4", c.IPv4)
		}
		ip, bits = c.IPv4.Addr(), c.IPv4.Bits()
	}
	a := ip.As4()
	b = append(b, a[:]...)
	b = append(b, byte(bits), byte(len(c.Subnets)))
	for _, s := range c.Subnets {
		if !s.Addr().Is4() {
			return nil, fmt.Errorf("certificate subnet %v is not IPv4", s)
		}
		sa := s.Masked().Addr().As4()
		b = append(b, sa[:]...)
		b = append(b, byte(s.Bits()))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
	b = append(b, c.PublicKey[:]...)
	return append(b, c.Issuer[:]...), nil
}

// sign encodes c, signs it with the issuer's private key and sets Signature and the encoding.
func (c *Cert) sign(issuer ed25519.PrivateKey) error {
	c.Issuer = [keyLen]byte(issuer.Public().(ed25519.PublicKey))
	b, err := c.body(nil)
	if err != nil {
		return err
	}
	c.Signature = [sigLen]byte(ed25519.Sign(issuer, b))
	c.raw = append(b, c.Signature[:]...)
	return nil
}

// Decode parses a certificate's encoding. It checks the form only (never panics on any input); Verify
// checks the signature and the validity period.
func Decode(b []byte) (*Cert, error) {
	if len(b) > MaxLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxLen)
	}
	r := reader{b: b}
	if string(r.take(len(magic))) != magic {
		return nil, fmt.Errorf("%w: not a weft certificate", ErrMalformed)
	}
	if v := r.u8(); v != version {
		return nil, fmt.Errorf("%w: version %d, this weft reads version %d", ErrMalformed, v, version)
	}
	c := &Cert{Kind: Kind(r.u8())}
	if c.Kind != KindCA && c.Kind != KindNode {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrMalformed, byte(c.Kind))
	}
	c.Name = string(r.take(int(r.u8())))
	ip := r.take(4)
	bits := int(r.u8())
	if r.bad || bits > 32 {
		return nil, fmt.Errorf("%w: address", ErrMalformed)
	}
	if bits > 0 {
		c.IPv4 = netip.PrefixFrom(netip.AddrFrom4([4]byte(ip)), bits)
	}
	ns := int(r.u8())
	if ns > maxSubnets {
		return nil, fmt.Errorf("%w: %d subnets", ErrMalformed, ns)
	}
	for i := 0; i < ns && !r.bad; i++ {
		sa := r.take(4)
		sb := int(r.u8())
		if r.bad || sb > 32 {
			return nil, fmt.Errorf("%w: subnet", ErrMalformed)
		}
		c.Subnets = append(c.Subnets, netip.PrefixFrom(netip.AddrFrom4([4]byte(sa)), sb))
	}
	c.NotBefore = time.Unix(int64(r.u64()), 0).UTC()
	c.NotAfter = time.Unix(int64(r.u64()), 0).UTC()
	copy(c.PublicKey[:], r.take(keyLen))
	copy(c.Issuer[:], r.take(keyLen))
	copy(c.Signature[:], r.take(sigLen))
	if r.bad {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if c.Name == "" {
		return nil, fmt.Errorf("%w: empty name", ErrMalformed)
	}
	if c.Kind == KindNode && !c.IPv4.IsValid() {
		return nil, fmt.Errorf("%w: node certificate without an address", ErrMalformed)
	}
	c.raw = bytes.Clone(b)
	return c, nil
}

// checkTime checks that now is inside c's validity period.
func (c *Cert) checkTime(now time.Time) error {
	switch {
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: %s certificate %q is valid from %s", ErrNotYetValid, c.Kind, c.Name, c.NotBefore.Format(time.RFC3339))
	case !now.Before(c.NotAfter):
		return fmt.Errorf("%w: %s certificate %q expired at %s", ErrExpired, c.Kind, c.Name, c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

func (c *Cert) signatureOK() bool {
	return ed25519.Verify(c.Issuer[:], c.raw[:len(c.raw)-sigLen], c.Signature[:])
}

// VerifyCA checks that c is a self-signed CA certificate valid at now.
func (c *Cert) VerifyCA(now time.Time) error {
	if c.Kind != KindCA {
		return fmt.Errorf("%q is a %s certificate, not a CA certificate", c.Name, c.Kind)
	}
	if c.Issuer != c.PublicKey || !c.signatureOK() {
		return fmt.Errorf("CA certificate %q: %w", c.Name, ErrBadSignature)
	}
	return c.checkTime(now)
}

// Verify checks that c is a node certificate signed by ca and that both are valid at now. ca must
// have passed VerifyCA (its own signature is not checked again).
func (c *Cert) Verify(ca *Cert, now time.Time) error {
	if c.Kind != KindNode {
		return fmt.Errorf("%q: %w (a %s certificate)", c.Name, ErrNotNode, c.Kind)
	}
	if c.Issuer != ca.PublicKey {
		return fmt.Errorf("%w: node certificate %q was signed by CA key %s, this network's CA %q is %s",
			ErrForeignCA, c.Name, Fingerprint(c.Issuer), ca.Name, Fingerprint(ca.PublicKey))
	}
	if !c.signatureOK() {
		return fmt.Errorf("node certificate %q: %w", c.Name, ErrBadSignature)
	}
	if err := ca.checkTime(now); err != nil {
		return err
	}
	return c.checkTime(now)
}

// Covers reports whether the certificate lets its node expose p: p lies inside one of its subnets.
func (c *Cert) Covers(p netip.Prefix) bool {
	for _, s := range c.Subnets {
		if s.Bits() <= p.Bits() && s.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// reader is a bounds-checked cursor; after the first short read every read returns zero values and
// bad is true.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte    { return r.take(1)[0] }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

// Describe returns the certificate as `weft cert print` shows it, one field per line.
func (c *Cert) Describe() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "kind:        %s\n", c.Kind)
	fmt.Fprintf(&b, "name:        %s\n", c.Name)
	if c.Kind == KindNode {
		fmt.Fprintf(&b, "ipv4:        %s\n", c.IPv4)
		subnets := "(none)"
		if len(c.Subnets) > 0 {
			subnets = fmt.Sprint(c.Subnets)
			subnets = subnets[1 : len(subnets)-1]
		}
		fmt.Fprintf(&b, "subnets:     %s\n", subnets)
		fmt.Fprintf(&b, "node id:     %s\n", session.NodeIDOf(c.PublicKey))
	}
	fmt.Fprintf(&b, "not before:  %s\n", c.NotBefore.Format(time.RFC3339))
	fmt.Fprintf(&b, "not after:   %s\n", c.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(&b, "key:         %s\n", Fingerprint(c.PublicKey))
	fmt.Fprintf(&b, "issuer key:  %s\n", Fingerprint(c.Issuer))
	return b.String()
}

// Checker accepts what a network's CA certifies: a node's certificate, matched against the signing
// key the node proved in its handshake or signed its announcement with, and against the addresses it
// claims.
type Checker struct {
	CA *Cert
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Check decodes and verifies raw, the certificate a node presented, and checks that it belongs to the
// node with signingKey and lists ipv4 (address and prefix) and every one of subnets. The error says
// what is wrong in words an operator can act on.
func (k *Checker) Check(raw []byte, signingKey [keyLen]byte, ipv4 netip.Prefix, subnets []netip.Prefix) (*Cert, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("node %v presents no certificate (this network runs in certificate mode: give it --ca, --cert and --cert-key)",
			session.NodeIDOf(signingKey))
	}
	c, err := Decode(raw)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if k.Now != nil {
		now = k.Now()
	}
	if err := c.Verify(k.CA, now); err != nil {
		return nil, err
	}
	if c.PublicKey != signingKey {
		return nil, fmt.Errorf("node %v presents the certificate of node %v (%q)", session.NodeIDOf(signingKey), session.NodeIDOf(c.PublicKey), c.Name)
	}
	if ipv4 != c.IPv4 {
		return nil, fmt.Errorf("node %q (%v) uses %v, its certificate lists %v", c.Name, session.NodeIDOf(signingKey), ipv4, c.IPv4)
	}
	for _, s := range subnets {
		if !c.Covers(s) {
			return nil, fmt.Errorf("node %q (%v) exposes subnet %v, which its certificate does not list (it lists %v)",
				c.Name, session.NodeIDOf(signingKey), s, c.Subnets)
		}
	}
	return c, nil
}
