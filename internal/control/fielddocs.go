package control

import (
	"fmt"
	"strings"
)

// TypeDoc documents one JSON type of the control API.
type TypeDoc struct {
	// Name is the Go type name, e.g. "Status".
	Name string
	// Endpoint is the request that returns the type, e.g. "GET /v1/status".
	Endpoint string
	// Field is the JSON field of the Endpoint's answer that holds the type, e.g. "proxy"; "" when the
	// answer is the type itself.
	Field string
	// Array is true when the endpoint returns a JSON array of the type.
	Array bool
	// Fields lists the type's JSON fields in encoding order.
	Fields []FieldDoc
}

// FieldDoc documents one JSON field.
type FieldDoc struct {
	// JSON is the field's JSON name, e.g. "node_id".
	JSON string
	// Type is the field's JSON type: "string", "integer", "number", "boolean", "array of string",
	// "object of integer", "object" (a nested type documented by its own TypeDoc) or "string or null".
	Type string
	// Meaning says what the field means; it is the field's doc comment in types.go, word for word.
	Meaning string
}

// FieldDocs returns the documentation of every field of Status, ProxyStatus, Peer, Route and ProxyFlow. It is the single source
// the README and the field doc comments are checked against.
func FieldDocs() []TypeDoc {
	return []TypeDoc{
		{Name: "Status", Endpoint: "GET /v1/status", Fields: []FieldDoc{
			{"hostname", "string", "The node's hostname, as announced to the other nodes."},
			{"node_id", "string", "The node's ID: 16 hex digits derived from its signing public key."},
			{"ipv4", "string", `The node's virtual IPv4 address with its prefix length, e.g. "10.144.144.1/24".`},
			{"network_name", "string", "The name of the network the node belongs to."},
			{"certificate", "string", `Certificate mode: this node's certificate as "NAME, CA CANAME (KEY), until TIME"; "" in shared-secret mode.`},
			{"dev", "string", `The name of the TUN device, e.g. "weft0".`},
			{"mtu", "integer", "The MTU of the TUN device in bytes."},
			{"listeners", "array of string", `The URIs the node actually listens on, e.g. "udp://0.0.0.0:11010"; [] when none.`},
			{"version", "string", "The version of the weft binary running the node."},
			{"warnings", "array of string", "Problems the node detected that need attention (e.g. a duplicate virtual IP); [] when none."},
			{"drops", "object of integer", `Dropped packets by reason ("malformed", "decrypt", "replay", "no_route", "unknown_session", "psk_mismatch", "ttl_exceeded", ...); {} when none.`},
			{"uptime_s", "number", "Seconds since the node started."},
			{"nat", "string", `The NAT in front of this node, from what its peers see: "public" (no NAT), "cone" (the same public mapping towards every peer), "symmetric" (a mapping per peer), or "unknown" (fewer than two peers report it).`},
			{"endpoints", "array of string", "The UDP endpoints this node announces for NAT traversal: its listeners' local addresses, then the public mappings its peers see; [] when none."},
			{"punch", "boolean", "Whether this node punches through NATs to nodes it has no direct session with (false with --no-punch)."},
			{"proxy", "object", "The transparent TCP proxy over KCP: its settings and counters (see ProxyStatus)."},
		}},
		{Name: "ProxyStatus", Endpoint: "GET /v1/status", Field: "proxy", Fields: []FieldDoc{
			{"mode", "string", `Whether this node intercepts TCP flows to proxy-enabled prefixes and carries them over KCP: "off" or "kcp" (--tcp-proxy).`},
			{"input", "string", `Whether this node accepts proxied flows from other nodes and re-originates them: "allow", or "deny" with --no-proxy-input.`},
			{"flows_active", "integer", "TCP flows this node carries over KCP right now, on either side."},
			{"flows_opened", "integer", "TCP flows opened since the node started, on either side."},
			{"flows_refused", "integer", "Flows whose destination refused the connection or could not reach the server."},
			{"flows_reset", "integer", "Flows ended by a reset: from either end of the connection, or because the peer was lost."},
			{"kcp_bytes_tx", "integer", "Flow payload bytes sent over KCP."},
			{"kcp_bytes_rx", "integer", "Flow payload bytes received over KCP."},
			{"kcp_retransmits", "integer", "KCP segments retransmitted."},
			{"kcp_conversations", "integer", "KCP conversations this node holds now (one per flow, and briefly after it ends)."},
			{"kcp_conversations_refused", "integer", "New KCP conversations refused because the node (16384) or the peer (4096) was at its cap."},
		}},
		{Name: "Peer", Endpoint: "GET /v1/peers", Array: true, Fields: []FieldDoc{
			{"hostname", "string", "The peer's hostname, as it announced it."},
			{"node_id", "string", "The peer's ID: 16 hex digits derived from its signing public key."},
			{"ipv4", "string", `The peer's virtual IPv4 address, without prefix length, e.g. "10.144.144.2".`},
			{"direct", "boolean", "Whether this node has a session with the peer itself (false when traffic goes through relays)."},
			{"endpoint", "string", `The underlay address of the direct session, e.g. "203.0.113.7:11010"; "" when not direct.`},
			{"next_hop", "string", "The virtual IPv4 address of the next hop towards the peer; the peer's own address when direct."},
			{"tunnel", "string", `How traffic reaches the peer: "udp" or "tcp" for a direct session, "relay" otherwise.`},
			{"latency_ms", "number", "The measured round-trip time to the peer in milliseconds; 0 when not measured yet."},
			{"rx_bytes", "integer", "Bytes received from the peer."},
			{"tx_bytes", "integer", "Bytes sent to the peer."},
			{"last_handshake", "string or null", "When the last handshake with the peer completed (RFC 3339); null when relayed or never."},
			{"path", "string", `The path to the peer: "direct", "relayed" (through NextHop), "punching" (relayed, an attempt to go direct under way), or "relayed, no endpoints" (the peer announced none).`},
			{"candidates", "array of string", "The UDP endpoints the peer announced (its candidates for NAT traversal); [] when none."},
			{"punch_attempts", "integer", "Attempts to punch through to the peer since it became known."},
			{"punch_failures", "integer", "Failed punch attempts in a row; after 5, one attempt a minute at most."},
			{"time_to_direct_ms", "number", "How long the last move from relayed to direct took, in milliseconds; 0 when it never happened."},
		}},
		{Name: "Route", Endpoint: "GET /v1/routes", Array: true, Fields: []FieldDoc{
			{"prefix", "string", `The destination prefix, e.g. "10.144.144.2/32" or "192.168.1.0/24".`},
			{"node_id", "string", "The ID of the node that announces the prefix."},
			{"hostname", "string", "The hostname of the node that announces the prefix."},
			{"next_hop", "string", "The virtual IPv4 address of the next hop towards the prefix."},
			{"hops", "integer", "The number of hops to the announcing node; 1 for a direct peer."},
			{"cost", "number", "The path cost to the announcing node in milliseconds."},
			{"proxy", "string", `Whether the announcing node accepts TCP-proxied (KCP) flows to the prefix: "allow" or "deny".`},
		}},
		{Name: "ProxyFlow", Endpoint: "GET /v1/proxy", Array: true, Fields: []FieldDoc{
			{"src", "string", `The client's "ip:port": the real 4-tuple, the same on both nodes, e.g. "10.144.144.1:40312".`},
			{"dst", "string", `The server's "ip:port" as the client dialled it, e.g. "192.168.1.10:443".`},
			{"side", "string", `This node's end of the flow: "source" (it accepted the client's connection) or "destination" (it re-originated the connection to the server).`},
			{"transport", "string", `How the flow travels between the two nodes: "kcp".`},
			{"state", "string", `The flow's state: "connecting", "established", "half-closed" or "closing".`},
			{"bytes_up", "integer", "Payload bytes from the client to the server."},
			{"bytes_down", "integer", "Payload bytes from the server to the client."},
			{"age_s", "number", "Seconds since the flow was opened."},
			{"peer", "string", "The ID of the node at the other end of the flow."},
		}},
	}
}

// FieldDocsMarkdown renders FieldDocs as markdown: one heading and one table per type. The README
// includes this text verbatim; a test keeps the two in step.
func FieldDocsMarkdown() string {
	var b strings.Builder
	for i, td := range FieldDocs() {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "#### %s\n\n", td.Name)
		switch {
		case td.Field != "":
			fmt.Fprintf(&b, "The `%s` field of the answer to `%s` is a JSON object with these fields:\n\n", td.Field, td.Endpoint)
		case td.Array:
			fmt.Fprintf(&b, "`%s` returns a JSON array of objects with these fields:\n\n", td.Endpoint)
		default:
			fmt.Fprintf(&b, "`%s` returns a JSON object with these fields:\n\n", td.Endpoint)
		}
		b.WriteString("| field | type | meaning |\n| --- | --- | --- |\n")
		for _, f := range td.Fields {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.JSON, f.Type, markdownCell(f.Meaning))
		}
	}
	return b.String()
}

// markdownCell escapes text for a markdown table cell.
func markdownCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
