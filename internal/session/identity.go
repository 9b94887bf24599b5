package session

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeyFileName is the name of the identity key file inside the state
// directory given to LoadOrCreateIdentity.
const KeyFileName = "node.key"

// maxKeyFileSize bounds how much of a key file is read; a valid file is 65
// bytes.
const maxKeyFileSize = 1024

// Identity is the node's static Curve25519 key pair; its Ed25519 signing key
// derives from the same private key (signing.go). Its String, GoString and
// LogValue methods print only the NodeID, never the private key.
type Identity struct {
	Private, Public [32]byte
}

// GenerateIdentity returns a fresh random identity (private key clamped as
// X25519 requires).
func GenerateIdentity() (Identity, error) {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return Identity{}, fmt.Errorf("generate identity: read random: %w", err)
	}
	return identityFromPrivate(priv)
}

// identityFromPrivate clamps priv and computes its public key.
func identityFromPrivate(priv [32]byte) (Identity, error) {
	priv[0] &= 248
	priv[31] = (priv[31] & 127) | 64
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return Identity{}, fmt.Errorf("derive public key: %w", err)
	}
	id := Identity{Private: priv}
	copy(id.Public[:], pub)
	return id, nil
}

// NodeID returns the node's ID, derived from its signing public key.
func (id Identity) NodeID() NodeID { return NodeIDOf(id.SigningPublic()) }

// String returns "identity <node ID>"; the private key is never printed.
func (id Identity) String() string { return "identity " + id.NodeID().String() }

// GoString is like String, so %#v does not print the private key either.
func (id Identity) GoString() string { return id.String() }

// LogValue implements slog.LogValuer: logs show the node ID only.
func (id Identity) LogValue() slog.Value { return slog.StringValue(id.NodeID().String()) }

// LoadOrCreateIdentity reads the identity from dir/node.key, or creates one on
// first start: dir is created with mode 0700 if missing and the key file is
// written atomically with mode 0600.
//
// The file holds the 32-byte private key as 64 hex digits followed by a
// newline (surrounding white space is ignored when reading). A key file that
// group or others may read is refused (the error says to chmod 600 it); a
// file that does not hold 64 hex digits is reported as corrupt, naming the
// path.
func LoadOrCreateIdentity(dir string) (Identity, error) {
	if dir == "" {
		return Identity{}, errors.New("load identity: state directory is empty; set it to where node.key should live")
	}
	path := filepath.Join(dir, KeyFileName)
	id, err := loadIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Identity{}, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	id, err = GenerateIdentity()
	if err != nil {
		return Identity{}, err
	}
	created, err := writeKeyFile(dir, path, id)
	if err != nil {
		return Identity{}, err
	}
	if !created { // another process created it first: use theirs
		return loadIdentity(path)
	}
	return id, nil
}

// loadIdentity reads and checks an existing key file. A missing file gives
// an error that wraps fs.ErrNotExist.
func loadIdentity(path string) (Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, fmt.Errorf("open identity key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Identity{}, fmt.Errorf("stat identity key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Identity{}, fmt.Errorf("identity key %s is not a regular file (%s); move it away and restart to create a new identity", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Identity{}, fmt.Errorf("identity key %s has mode %04o and is readable by group or others: run `chmod 600 %s` and restart", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return Identity{}, fmt.Errorf("read identity key %s: %w", path, err)
	}
	text := strings.TrimSpace(string(data))
	raw, err := hex.DecodeString(text)
	if len(data) > maxKeyFileSize || err != nil || len(raw) != 32 {
		return Identity{}, fmt.Errorf("identity key %s is corrupt: want 64 hex digits (a 32-byte Curve25519 private key); restore it from a backup, or delete it to create a new identity (the node ID will change)", path)
	}
	var priv [32]byte
	copy(priv[:], raw)
	id, err := identityFromPrivate(priv)
	if err != nil {
		return Identity{}, fmt.Errorf("identity key %s: %w", path, err)
	}
	return id, nil
}

// writeKeyFile writes id to path through a temporary file and a hard link,
// so the key file is either absent or complete and an existing file is never
// overwritten. created is false when path already existed.
func writeKeyFile(dir, path string, id Identity) (created bool, err error) {
	tmp, err := os.CreateTemp(dir, ".node.key-*") // mode 0600
	if err != nil {
		return false, fmt.Errorf("create identity key in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(id.Private[:]) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("write identity key %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("install identity key %s: %w", path, err)
	}
	return true, nil
}

// LoadIdentityFile reads an identity key file (the format of node.key, e.g. one made by `weft cert
// sign`), with the same checks as LoadOrCreateIdentity; it never creates one.
func LoadIdentityFile(path string) (Identity, error) {
	return loadIdentity(path)
}

// WriteIdentityFile writes id to a new key file at path (mode 0600, its directory created with mode
// 0700 if missing); an existing file is never overwritten.
func WriteIdentityFile(path string, id Identity) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	created, err := writeKeyFile(dir, path, id)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("%s exists already: move it away or choose another --out", path)
	}
	return nil
}
