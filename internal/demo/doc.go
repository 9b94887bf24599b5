// Package demo builds a small weft mesh inside network namespaces on this machine and shows it
// working: a relayed ping, a TCP service and Redis that see the real client address, a LAN host
// behind a node, and the CLI tables. It backs the `weft demo` command.
//
// The topology (namespaces named "weftdemo-*"):
//
//	alpha (A) 192.0.2.1 --- 192.0.2.2 beta (B, relay) 198.51.100.2 --- 198.51.100.3 gamma (C)
//	                                                                   192.168.50.1 --- 192.168.50.10 lan (L)
//
// alpha and gamma share no underlay network, so everything between them crosses beta; gamma exposes
// its LAN with --subnet and masquerades into it, so the LAN host needs no route back to the mesh.
//
// Unlike the daemon, which uses netlink, the demo builds its network with ip(8) and runs real tools
// (ping, socat, redis) the way a user would. Everything it creates is removed when Run returns.
package demo
