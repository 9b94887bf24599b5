package cert

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// PEM block types and the file names `weft cert` writes.
const (
	pemCert  = "WEFT CERTIFICATE"
	pemCAKey = "WEFT CA KEY"

	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	// NodeKeyFile is the node's identity key (session.KeyFileName's format).
	NodeKeyFile = "node.key"

	maxFileSize = 16 << 10
)

// CA is a network CA: its certificate and private key.
type CA struct {
	Cert *Cert
	key  ed25519.PrivateKey
}

// NewCA makes a CA named name, valid from now for validity.
func NewCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	if validity < time.Second {
		return nil, fmt.Errorf("CA validity %v: must be at least 1s", validity)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	c := &Cert{Kind: KindCA, Name: name, NotBefore: now.Truncate(time.Second), NotAfter: now.Add(validity).Truncate(time.Second),
		PublicKey: [keyLen]byte(pub)}
	if err := c.sign(priv); err != nil {
		return nil, err
	}
	return &CA{Cert: c, key: priv}, nil
}

// NodeRequest is what a node certificate lists.
type NodeRequest struct {
	Name       string
	IPv4       netip.Prefix
	Subnets    []netip.Prefix
	SigningKey [keyLen]byte // the node's signing public key (session.Identity.SigningPublic)
	Validity   time.Duration
}

// Sign issues a node certificate, valid from now for r.Validity but never past the CA's own expiry.
func (ca *CA) Sign(r NodeRequest, now time.Time) (*Cert, error) {
	if !r.IPv4.IsValid() || !r.IPv4.Addr().Is4() || r.IPv4.Bits() < 8 || r.IPv4.Bits() > 30 {
		return nil, fmt.Errorf("--ipv4 %v: want this node's IPv4 address with the mesh prefix, e.g. 10.144.144.3/24", r.IPv4)
	}
	if r.Validity < time.Second {
		return nil, fmt.Errorf("validity %v: must be at least 1s", r.Validity)
	}
	for _, s := range r.Subnets {
		if !s.Addr().Is4() || s != s.Masked() {
			return nil, fmt.Errorf("--subnet %v: want an IPv4 network with its prefix length, e.g. 192.168.50.0/24", s)
		}
	}
	notAfter := now.Add(r.Validity).Truncate(time.Second)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	c := &Cert{Kind: KindNode, Name: r.Name, IPv4: r.IPv4, Subnets: slices.Clone(r.Subnets),
		NotBefore: now.Truncate(time.Second), NotAfter: notAfter, PublicKey: r.SigningKey}
	if err := c.sign(ca.key); err != nil {
		return nil, err
	}
	return c, nil
}

// EncodePEM returns the certificate as a PEM file's content.
func (c *Cert) EncodePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: c.raw})
}

// ReadFile reads and decodes a certificate file (form only; see Verify).
func ReadFile(path string) (*Cert, error) {
	b, err := readPEM(path, pemCert)
	if err != nil {
		return nil, err
	}
	c, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadCA reads a CA from dir (ca.crt and ca.key) and checks that the key is the certificate's and
// that the CA is valid at now.
func LoadCA(dir string, now time.Time) (*CA, error) {
	c, err := ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	if err := c.VerifyCA(now); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	seed, err := readPEM(keyPath, pemCAKey)
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: a CA key is %d bytes, this one %d", keyPath, ed25519.SeedSize, len(seed))
	}
	key := ed25519.NewKeyFromSeed(seed)
	if [keyLen]byte(key.Public().(ed25519.PublicKey)) != c.PublicKey {
		return nil, fmt.Errorf("%s is not the key of %s", keyPath, filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: c, key: key}, nil
}

// Save writes the CA to dir as ca.crt and ca.key (mode 0600); it never overwrites a file.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := WriteNew(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: pemCAKey, Bytes: ca.key.Seed()}), 0o600); err != nil {
		return err
	}
	return WriteNew(filepath.Join(dir, CACertFile), ca.Cert.EncodePEM(), 0o644)
}

// WriteNew creates path with data and mode; an existing file is an error (never overwritten).
func WriteNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists already: move it away or choose another --out", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readPEM(path, typ string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a weft certificate or key", path, maxFileSize)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block; want a %q file made by weft cert", path, typ)
	}
	if blk.Type != typ {
		return nil, fmt.Errorf("%s: holds a %q, want a %q", path, blk.Type, typ)
	}
	return blk.Bytes, nil
}
