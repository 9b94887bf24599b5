package session

import (
	"sync"
	"testing"
)

func TestReplayWindow(t *testing.T) {
	const W = ReplayWindowSize
	type step struct {
		counter uint64
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, true}, {1, true}, {2, true}, {3, true}}},
		{"reordered within window", []step{{5, true}, {2, true}, {0, true}, {4, true}, {1, true}, {3, true}}},
		{"duplicate dropped", []step{{0, true}, {0, false}, {7, true}, {7, false}, {6, true}, {6, false}}},
		{"too old dropped", []step{{W + 10, true}, {10, false}, {11, true}, {9, false}}},
		{"oldest in window kept", []step{{W - 1, true}, {0, true}, {W, true}, {1, true}, {1, false}}},
		{"big jump then old", []step{{1, true}, {2, true}, {1 << 40, true}, {3, false}, {1<<40 - W + 1, true}, {1<<40 - W, false}, {1 << 40, false}}},
		// 100+W and 16548 share a ring bit (129 words of 64 bits apart): moving
		// past 16548 must clear it, or 16548 would look like a duplicate.
		{"ring reuse clears stale bits", []step{{100, true}, {100 + W, true}, {16570, true}, {16548, true}, {16548, false}}},
		{"word boundaries", []step{{63, true}, {64, true}, {65, true}, {64, false}, {127, true}, {128, true}, {127, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w replayWindow
			for i, s := range tt.steps {
				if got := w.accept(s.counter); got != s.want {
					t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.counter, got, s.want)
				}
			}
		})
	}
}

// Every counter is accepted exactly once, however goroutines interleave.
func TestReplayWindowConcurrent(t *testing.T) {
	var w replayWindow
	var mu sync.Mutex
	accepted := 0
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := uint64(0); c < 2000; c++ {
				if w.accept(c) {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if accepted != 2000 {
		t.Fatalf("accepted %d counters, want each of 2000 exactly once", accepted)
	}
}
