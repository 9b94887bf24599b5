//go:build race

package arq

// raceEnabled: the race detector makes sync.Pool drop items at random, so allocations are not zero.
const raceEnabled = true
