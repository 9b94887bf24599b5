package session

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// CipherID names a data-packet AEAD. Its value is what travels in the
// handshake payload of message 2.
type CipherID uint8

// The data ciphers. ChaCha20-Poly1305 is mandatory for every node; AES-256-GCM
// is chosen only when both ends report AES hardware.
const (
	CipherChaCha20Poly1305 CipherID = 1
	CipherAES256GCM        CipherID = 2
)

// String returns "chacha20-poly1305", "aes-256-gcm" or "cipher(N)" for an
// unknown value.
func (c CipherID) String() string {
	switch c {
	case CipherChaCha20Poly1305:
		return "chacha20-poly1305"
	case CipherAES256GCM:
		return "aes-256-gcm"
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// bit is the cipher's bit in the message-1 "supported ciphers" mask:
// bit 0 = ChaCha20-Poly1305, bit 1 = AES-256-GCM. Unknown bits are ignored by
// the responder, so later versions can offer more.
func (c CipherID) bit() uint8 {
	if c < 1 || c > 8 {
		return 0
	}
	return 1 << (c - 1)
}

// supportedCiphers is the mask a node offers in message 1.
func supportedCiphers(aesHardware bool) uint8 {
	m := CipherChaCha20Poly1305.bit()
	if aesHardware {
		m |= CipherAES256GCM.bit()
	}
	return m
}

// HasAESHardware reports whether this CPU has AES and carry-less multiply
// instructions (x86 AES-NI + PCLMULQDQ, arm64 AES + PMULL), i.e. whether
// AES-GCM is fast here. Other architectures report false.
func HasAESHardware() bool {
	return (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)
}

// newAEAD builds the data AEAD for cipher c from a 32-byte key.
func newAEAD(c CipherID, key [32]byte) (cipher.AEAD, error) {
	switch c {
	case CipherChaCha20Poly1305:
		a, err := chacha20poly1305.New(key[:])
		if err != nil {
			return nil, fmt.Errorf("new %s: %w", c, err)
		}
		return a, nil
	case CipherAES256GCM:
		b, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, fmt.Errorf("new %s: %w", c, err)
		}
		a, err := cipher.NewGCM(b)
		if err != nil {
			return nil, fmt.Errorf("new %s: %w", c, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("new data cipher: unknown %s", c)
}
