package proxy

// The scheduler: one goroutine and one timer heap for every conversation of a Transport. A
// conversation is on the heap only while it has a timer pending (a retransmission, a delayed ACK, a
// zero-window probe, the end of its linger); an idle flow is not on it at all and costs no CPU.

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler calls fire(c) when c's deadline (ms on the Transport's clock) has come.
type scheduler struct {
	now  func() int64
	fire func(c *conv)

	mu   sync.Mutex
	h    convHeap
	wake chan struct{}
}

func newScheduler(now func() int64, fire func(*conv)) *scheduler {
	return &scheduler{now: now, fire: fire, wake: make(chan struct{}, 1)}
}

// set puts c on the heap at ms at, moves it there, or (at < 0) takes it off.
func (s *scheduler) set(c *conv, at int64) {
	s.mu.Lock()
	switch {
	case at < 0:
		if c.hidx >= 0 {
			heap.Remove(&s.h, c.hidx)
		}
		s.mu.Unlock()
		return
	case c.hidx >= 0:
		if c.at == at {
			s.mu.Unlock()
			return
		}
		c.at = at
		heap.Fix(&s.h, c.hidx)
	default:
		c.at = at
		heap.Push(&s.h, c)
	}
	first := s.h[0] == c
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// len is the number of conversations with a timer pending.
func (s *scheduler) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// run fires due conversations until stop is closed.
func (s *scheduler) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []*conv
	for {
		s.mu.Lock()
		now := s.now()
		due = due[:0]
		for len(s.h) > 0 && s.h[0].at <= now {
			due = append(due, heap.Pop(&s.h).(*conv))
		}
		wait := time.Hour
		if len(s.h) > 0 {
			wait = time.Duration(s.h[0].at-now) * time.Millisecond
		}
		s.mu.Unlock()
		for _, c := range due {
			s.fire(c)
		}
		if len(due) > 0 {
			clear(due)
			continue // firing took time; look again before sleeping
		}
		t.Reset(wait)
		select {
		case <-stop:
			return
		case <-s.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// convHeap orders conversations by deadline; conv.hidx is the index (-1 when off the heap).
type convHeap []*conv

func (h convHeap) Len() int           { return len(h) }
func (h convHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h convHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *convHeap) Push(x any) {
	c := x.(*conv)
	c.hidx = len(*h)
	*h = append(*h, c)
}
func (h *convHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.hidx = -1
	return c
}
