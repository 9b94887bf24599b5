// Package netlab builds throwaway test networks for end-to-end tests and benchmarks: hosts are Linux
// network namespaces, joined by veth pairs, with optional packet loss from nftables, and long-lived
// processes (such as `weft up`) run inside them.
//
// It shells out to ip, nft and ethtool, which is fine for test helpers (the daemon itself never does).
// Everything a Lab creates is removed in t.Cleanup, also when the test fails or a process hangs:
// processes are stopped first (their own cleanup runs before the Lab's, since they are registered
// later), then any process still inside a namespace is killed and the namespaces are deleted, which
// removes their veth links and nftables tables with them.
//
// Methods that take a testing.TB call t.Fatal on error, so they must be called from the test's own
// goroutine. All names start with "wl-" so that SweepAll can clear the debris of a killed run.
package netlab
