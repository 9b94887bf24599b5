//go:build race

package dataplane

// raceEnabled: the race detector makes sync.Pool drop items at random, so allocations are not zero.
const raceEnabled = true
