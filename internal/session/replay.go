package session

import "sync"

// ReplayWindowSize is how many counters the anti-replay window spans: a data
// packet is accepted if its counter is new and newest-ReplayWindowSize <
// counter, so reordering by up to 8191 packets is tolerated.
const ReplayWindowSize = 8192

const (
	replayWordBits = 64
	// One word more than the window: the newest counter's word may be only
	// partly used, and the oldest acceptable counter must still have a bit.
	replayWords = ReplayWindowSize/replayWordBits + 1
)

// replayWindow is a sliding bitmap of received counters, in the manner of
// RFC 6479: the bitmap is a ring of 64-bit words indexed by counter/64; when
// the newest counter moves forward, the words it skips are cleared instead of
// shifting the whole bitmap. The zero value is ready (no counter seen yet).
// It is safe for concurrent use.
type replayWindow struct {
	mu     sync.Mutex
	newest uint64 // highest counter accepted so far (0 before any)
	ring   [replayWords]uint64
}

// accept reports whether counter is new and within the window, and if so
// marks it as seen. Call it only for authenticated packets.
func (w *replayWindow) accept(counter uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if counter > w.newest {
		cur, next := w.newest/replayWordBits, counter/replayWordBits
		skip := next - cur
		if skip > replayWords {
			skip = replayWords
		}
		for i := uint64(1); i <= skip; i++ {
			w.ring[(cur+i)%replayWords] = 0
		}
		w.newest = counter
	} else if w.newest-counter >= ReplayWindowSize {
		return false
	}
	word := &w.ring[(counter/replayWordBits)%replayWords]
	bit := uint64(1) << (counter % replayWordBits)
	if *word&bit != 0 {
		return false
	}
	*word |= bit
	return true
}
