// Package lanfw is the kernel side of exposing a LAN behind a weft node
// (`weft up --subnet 192.168.50.0/24`): mesh traffic arrives on the TUN device
// and the kernel forwards it into the LAN.
//
// [CheckForwarding] makes sure net.ipv4.ip_forward is on. [Install] puts
// weft's own nftables table in place, "weft_<dev>" ([TableName]) in the inet
// family, talking netlink through github.com/google/nftables (never the nft
// binary). The table holds two base chains:
//
//	table inet weft_weft0 {
//		chain postrouting {	# only with Options.SNAT
//			type nat hook postrouting priority srcnat; policy accept;
//			iifname "weft0" oifname != "weft0" ip daddr 192.168.50.0/24 masquerade
//		}
//		chain forward {	# MTU 1420
//			type filter hook forward priority mangle; policy accept;
//			iifname "weft0" ip daddr 192.168.50.0/24 tcp flags syn / syn,rst tcp option maxseg size > 1380 tcp option maxseg size set 1380
//			oifname "weft0" ip saddr 192.168.50.0/24 tcp flags syn / syn,rst tcp option maxseg size > 1380 tcp option maxseg size set 1380
//		}
//	}
//
// The family is inet rather than ip so that the table's name never meets the
// "ip nat"/"ip filter" tables of iptables-nft, docker or ufw, and so that IPv6
// rules can join later; every rule matches IPv4 explicitly, since weft's
// virtual network is IPv4 (nft shows that match only implicitly). In
// postrouting, iifname is the device a forwarded packet came in on. The
// masquerade lets LAN hosts answer without a route back to the mesh; the MSS
// clamp (MTU-40, only ever lowering) keeps TCP segments of SYN and SYN-ACK
// flows within the TUN MTU. The forward chain only mangles, it never drops. Installing replaces a
// stale table of the same name in one atomic transaction, so a node killed
// without cleanup is repaired by its next start; no other table is touched.
//
// [ForwardWarnings] looks for other tables' forward base chains with policy
// drop (docker, ufw and firewalld install those), which would drop the
// forwarded traffic whatever weft's table says, and words a fix for each.
//
// Everything acts on the network namespace of the calling OS thread; a
// [Table] remembers its namespace, so Close may run on any thread.
package lanfw
