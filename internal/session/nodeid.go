package session

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"golang.org/x/crypto/blake2s"
)

// NodeID identifies a node: the first 8 bytes (big-endian uint64) of
// BLAKE2s-256 of its signing (Ed25519) public key. Its text form is 16
// lowercase hex digits.
type NodeID uint64

// NodeIDOf returns the NodeID of the node whose signing public key is pub.
func NodeIDOf(pub [SigningKeyLen]byte) NodeID {
	sum := blake2s.Sum256(pub[:])
	return NodeID(binary.BigEndian.Uint64(sum[:8]))
}

// String returns the ID as 16 lowercase hex digits.
func (id NodeID) String() string {
	return fmt.Sprintf("%016x", uint64(id))
}

// ParseNodeID parses the 16-hex-digit form produced by NodeID.String (upper
// case digits are accepted).
func ParseNodeID(s string) (NodeID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("parse node ID %q: want exactly 16 hex digits, got %d characters", s, len(s))
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("parse node ID %q: want 16 hex digits (0-9, a-f)", s)
	}
	return NodeID(v), nil
}

// MarshalText implements encoding.TextMarshaler (the String form), so IDs
// appear as hex strings in JSON and TOML.
func (id NodeID) MarshalText() ([]byte, error) {
	return []byte(id.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler using ParseNodeID.
func (id *NodeID) UnmarshalText(text []byte) error {
	v, err := ParseNodeID(string(text))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
