package session

import (
	"errors"
	"testing"
	"time"
)

// TestReplayedInitRefused: a first message answered once is refused the second time, before any
// Diffie-Hellman work, while the InitCache remembers it; without a cache only the clock protects.
func TestReplayedInitRefused(t *testing.T) {
	ini, resp := testConfig(t, false), testConfig(t, false)
	resp.InitCache = NewInitCache(0)
	_, msg1, err := NewInitiator(ini, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Respond(resp, msg1, 2, nil); err != nil {
		t.Fatalf("first message 1: %v", err)
	}
	if _, _, _, err := Respond(resp, msg1, 3, nil); !errors.Is(err, ErrReplayedInit) {
		t.Fatalf("replayed message 1: %v, want ErrReplayedInit", err)
	}
	// A fresh handshake from the same node is not a replay.
	ikp, rkp := handshake(t, ini, resp)
	if ikp.PeerID() != resp.Identity.NodeID() || rkp.PeerID() != ini.Identity.NodeID() {
		t.Fatal("a fresh handshake after a replay did not authenticate both ends")
	}
	if n := resp.InitCache.Len(); n != 2 {
		t.Fatalf("cache holds %d first messages, want 2", n)
	}
}

// TestStaleInitRefused: a first message stamped more than MaxClockSkew from the responder's clock is
// refused (a replay of an old capture, or clocks that differ), with the offset in the error; within the
// window it passes, both ways.
func TestStaleInitRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		offset time.Duration // initiator's clock minus the responder's
		ok     bool
	}{
		{0, true}, {-MaxClockSkew + time.Second, true}, {MaxClockSkew - time.Second, true},
		{-MaxClockSkew - time.Second, false}, {MaxClockSkew + time.Second, false}, {-24 * time.Hour, false},
	} {
		ini, resp := testConfig(t, false), testConfig(t, false)
		ini.Now, resp.Now = fixedClock(now.Add(c.offset)), fixedClock(now)
		resp.InitCache = NewInitCache(0)
		_, msg1, err := NewInitiator(ini, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = Respond(resp, msg1, 2, nil)
		if c.ok && err != nil {
			t.Errorf("clock offset %v: %v, want accepted", c.offset, err)
		}
		if !c.ok && !errors.Is(err, ErrStaleInit) {
			t.Errorf("clock offset %v: %v, want ErrStaleInit", c.offset, err)
		}
		if !c.ok && resp.InitCache.Len() != 0 {
			t.Errorf("clock offset %v: a refused message 1 was remembered", c.offset)
		}
	}
}

// TestInitCacheBounded: the cache never holds more than its size; entries leave when their window
// passes, and a full cache forgets its oldest entry first.
func TestInitCacheBounded(t *testing.T) {
	c := NewInitCache(4)
	now := time.Unix(1_800_000_000, 0)
	key := func(i int) [32]byte { return [32]byte{0: byte(i), 1: byte(i >> 8)} }
	for i := 0; i < 1000; i++ {
		c.add(key(i), now.Add(time.Hour), now)
		if c.Len() > 4 {
			t.Fatalf("after %d entries the cache holds %d, want at most 4", i+1, c.Len())
		}
	}
	if c.seenBefore(key(995), now) || !c.seenBefore(key(996), now) || !c.seenBefore(key(999), now) {
		t.Fatal("a full cache did not keep exactly its newest entries")
	}
	later := now.Add(2 * time.Hour)
	if c.seenBefore(key(999), later) {
		t.Fatal("an entry was remembered past its expiry")
	}
	c.add(key(5000), later.Add(time.Hour), later) // expired entries leave as new ones come
	if c.Len() != 1 {
		t.Fatalf("after expiry the cache holds %d entries, want 1", c.Len())
	}
}

// BenchmarkRespondReplayed is what refusing a replayed first message costs, against answering one.
func BenchmarkRespondReplayed(b *testing.B) {
	ini, resp := testConfig(b, false), testConfig(b, false)
	resp.InitCache = NewInitCache(0)
	_, msg1, err := NewInitiator(ini, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, _, err := Respond(resp, msg1, 2, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, _, err := Respond(resp, msg1, 3, nil); !errors.Is(err, ErrReplayedInit) {
			b.Fatal(err)
		}
	}
}

func BenchmarkRespondFresh(b *testing.B) {
	ini, resp := testConfig(b, false), testConfig(b, false)
	resp.InitCache = NewInitCache(0)
	msgs := make([][]byte, b.N)
	for i := range msgs {
		_, m, err := NewInitiator(ini, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, _, err := Respond(resp, msgs[i], 3, nil); err != nil {
			b.Fatal(err)
		}
	}
}
