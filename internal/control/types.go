package control

import (
	"encoding/json"
	"time"
)

// Status is the answer to GET /v1/status, printed by `weft status`.
type Status struct {
	// The node's hostname, as announced to the other nodes.
	Hostname string `json:"hostname"`
	// The node's ID: 16 hex digits derived from its signing public key.
	NodeID string `json:"node_id"`
	// The node's virtual IPv4 address with its prefix length, e.g. "10.144.144.1/24".
	IPv4 string `json:"ipv4"`
	// The name of the network the node belongs to.
	NetworkName string `json:"network_name"`
	// Certificate mode: this node's certificate as "NAME, CA CANAME (KEY), until TIME"; "" in shared-secret mode.
	Certificate string `json:"certificate"`
	// The name of the TUN device, e.g. "weft0".
	Dev string `json:"dev"`
	// The MTU of the TUN device in bytes.
	MTU int `json:"mtu"`
	// The URIs the node actually listens on, e.g. "udp://0.0.0.0:11010"; [] when none.
	Listeners []string `json:"listeners"`
	// The version of the weft binary running the node.
	Version string `json:"version"`
	// Problems the node detected that need attention (e.g. a duplicate virtual IP); [] when none.
	Warnings []string `json:"warnings"`
	// Dropped packets by reason ("malformed", "decrypt", "replay", "no_route", "unknown_session", "psk_mismatch", "ttl_exceeded", ...); {} when none.
	Drops map[string]uint64 `json:"drops"`
	// Seconds since the node started.
	UptimeS float64 `json:"uptime_s"`
	// The NAT in front of this node, from what its peers see: "public" (no NAT), "cone" (the same public mapping towards every peer), "symmetric" (a mapping per peer), or "unknown" (fewer than two peers report it).
	NAT string `json:"nat"`
	// The UDP endpoints this node announces for NAT traversal: its listeners' local addresses, then the public mappings its peers see; [] when none.
	Endpoints []string `json:"endpoints"`
	// Whether this node punches through NATs to nodes it has no direct session with (false with --no-punch).
	Punch bool `json:"punch"`
	// The transparent TCP proxy over KCP: its settings and counters (see ProxyStatus).
	Proxy ProxyStatus `json:"proxy"`
}

// ProxyStatus is the "proxy" object of Status: the settings and counters of the transparent TCP proxy over
// KCP. Counters are totals since the node started.
type ProxyStatus struct {
	// Whether this node intercepts TCP flows to proxy-enabled prefixes and carries them over KCP: "off" or "kcp" (--tcp-proxy).
	Mode string `json:"mode"`
	// Whether this node accepts proxied flows from other nodes and re-originates them: "allow", or "deny" with --no-proxy-input.
	Input string `json:"input"`
	// TCP flows this node carries over KCP right now, on either side.
	FlowsActive uint64 `json:"flows_active"`
	// TCP flows opened since the node started, on either side.
	FlowsOpened uint64 `json:"flows_opened"`
	// Flows whose destination refused the connection or could not reach the server.
	FlowsRefused uint64 `json:"flows_refused"`
	// Flows ended by a reset: from either end of the connection, or because the peer was lost.
	FlowsReset uint64 `json:"flows_reset"`
	// Flow payload bytes sent over KCP.
	KCPBytesTx uint64 `json:"kcp_bytes_tx"`
	// Flow payload bytes received over KCP.
	KCPBytesRx uint64 `json:"kcp_bytes_rx"`
	// KCP segments retransmitted.
	KCPRetransmits uint64 `json:"kcp_retransmits"`
	// KCP conversations this node holds now (one per flow, and briefly after it ends).
	KCPConversations uint64 `json:"kcp_conversations"`
	// New KCP conversations refused because the node (16384) or the peer (4096) was at its cap.
	KCPConversationsRefused uint64 `json:"kcp_conversations_refused"`
}

// MarshalJSON encodes s with [] and {} in place of nil Listeners, Warnings and Drops, so clients never
// see null for them.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status // no methods: avoids recursion
	if s.Listeners == nil {
		s.Listeners = []string{}
	}
	if s.Warnings == nil {
		s.Warnings = []string{}
	}
	if s.Drops == nil {
		s.Drops = map[string]uint64{}
	}
	return json.Marshal(plain(s))
}

// Peer is one element of the answer to GET /v1/peers, printed by `weft peers`: one per other node in the
// network, reached directly or through relays.
type Peer struct {
	// The peer's hostname, as it announced it.
	Hostname string `json:"hostname"`
	// The peer's ID: 16 hex digits derived from its signing public key.
	NodeID string `json:"node_id"`
	// The peer's virtual IPv4 address, without prefix length, e.g. "10.144.144.2".
	IPv4 string `json:"ipv4"`
	// Whether this node has a session with the peer itself (false when traffic goes through relays).
	Direct bool `json:"direct"`
	// The underlay address of the direct session, e.g. "203.0.113.7:11010"; "" when not direct.
	Endpoint string `json:"endpoint"`
	// The virtual IPv4 address of the next hop towards the peer; the peer's own address when direct.
	NextHop string `json:"next_hop"`
	// How traffic reaches the peer: "udp" or "tcp" for a direct session, "relay" otherwise.
	Tunnel string `json:"tunnel"`
	// The measured round-trip time to the peer in milliseconds; 0 when not measured yet.
	LatencyMS float64 `json:"latency_ms"`
	// Bytes received from the peer.
	RxBytes uint64 `json:"rx_bytes"`
	// Bytes sent to the peer.
	TxBytes uint64 `json:"tx_bytes"`
	// When the last handshake with the peer completed (RFC 3339); null when relayed or never.
	LastHandshake *time.Time `json:"last_handshake"`
	// The path to the peer: "direct", "relayed" (through NextHop), "punching" (relayed, an attempt to go direct under way), or "relayed, no endpoints" (the peer announced none).
	Path string `json:"path"`
	// The UDP endpoints the peer announced (its candidates for NAT traversal); [] when none.
	Candidates []string `json:"candidates"`
	// Attempts to punch through to the peer since it became known.
	PunchAttempts int `json:"punch_attempts"`
	// Failed punch attempts in a row; after 5, one attempt a minute at most.
	PunchFailures int `json:"punch_failures"`
	// How long the last move from relayed to direct took, in milliseconds; 0 when it never happened.
	TimeToDirectMS float64 `json:"time_to_direct_ms"`
}

// Route is one element of the answer to GET /v1/routes, printed by `weft routes`: one per remote prefix.
type Route struct {
	// The destination prefix, e.g. "10.144.144.2/32" or "192.168.1.0/24".
	Prefix string `json:"prefix"`
	// The ID of the node that announces the prefix.
	NodeID string `json:"node_id"`
	// The hostname of the node that announces the prefix.
	Hostname string `json:"hostname"`
	// The virtual IPv4 address of the next hop towards the prefix.
	NextHop string `json:"next_hop"`
	// The number of hops to the announcing node; 1 for a direct peer.
	Hops int `json:"hops"`
	// The path cost to the announcing node in milliseconds.
	Cost float64 `json:"cost"`
	// Whether the announcing node accepts TCP-proxied (KCP) flows to the prefix: "allow" or "deny".
	Proxy string `json:"proxy"`
}

// ProxyFlow is one element of the answer to GET /v1/proxy, printed by `weft proxy`: one per TCP flow this
// node carries over the KCP proxy.
type ProxyFlow struct {
	// The client's "ip:port": the real 4-tuple, the same on both nodes, e.g. "10.144.144.1:40312".
	Src string `json:"src"`
	// The server's "ip:port" as the client dialled it, e.g. "192.168.1.10:443".
	Dst string `json:"dst"`
	// This node's end of the flow: "source" (it accepted the client's connection) or "destination" (it re-originated the connection to the server).
	Side string `json:"side"`
	// How the flow travels between the two nodes: "kcp".
	Transport string `json:"transport"`
	// The flow's state: "connecting", "established", "half-closed" or "closing".
	State string `json:"state"`
	// Payload bytes from the client to the server.
	BytesUp uint64 `json:"bytes_up"`
	// Payload bytes from the server to the client.
	BytesDown uint64 `json:"bytes_down"`
	// Seconds since the flow was opened.
	AgeS float64 `json:"age_s"`
	// The ID of the node at the other end of the flow.
	Peer string `json:"peer"`
}
