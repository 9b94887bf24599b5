package node

// What a running node shows: the control API's status, peers and routes, drop counters, and the
// Prometheus metrics (read from the same atomic counters at scrape time, so the data path pays nothing
// for them).

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/punch"
	"github.com/weft-vpn/weft/internal/session"
)

// dropReasons are the reasons a packet is dropped; each has its own counter.
var dropReasons = [...]string{
	"malformed", "decrypt", "replay", "unknown_session", "psk_mismatch", "handshake_flood", "no_route",
	"no_session", "no_proxy", "ttl_exceeded", "not_ipv4", "seal", "send", "tun_read", "tun_write", "announce_forged",
	"src_not_owned", "src_spoofed", "src_unknown", "proxy_open_spoofed", "cert_refused", "announce_uncertified",
	"src_not_sender", "not_local", "e2e_queue_full", "e2e_wrong_peer", "e2e_decrypt", "e2e_replay",
	"handshake_rate", "handshake_replay", "handshake_stale",
	"tcp_conn_limit", "tcp_handshake_timeout", "tcp_frame_before_session", "announce_db_full",
	"handshake_cookie", "cookie_invalid",
	"other",
}

// limitReasons are the drop reasons that mean a limit on outside input was reached (pending.go,
// underlay's TCP limits, the announcement cap): logLimits reports them once per interval.
var limitReasons = []string{"handshake_rate", "handshake_flood", "handshake_replay", "handshake_stale",
	"tcp_conn_limit", "tcp_handshake_timeout", "tcp_frame_before_session", "announce_db_full", "e2e_queue_full", "handshake_cookie"}

// limitLogEvery is how often reached limits are summed up in the log.
const limitLogEvery = 10 * time.Second

// logLimits logs, at most once per limitLogEvery, one line naming every limit reached since the last
// time and how often.
func (n *Node) logLimits(now time.Time) {
	if now.Sub(n.limitsLogged) < limitLogEvery {
		return
	}
	n.limitsLogged = now
	if n.limitsSeen == nil {
		n.limitsSeen = map[string]uint64{}
	}
	var parts []string
	for _, r := range limitReasons {
		v := n.drops.get(r)
		if d := v - n.limitsSeen[r]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s +%d", r, d))
		}
		n.limitsSeen[r] = v
	}
	if len(parts) > 0 {
		n.log.Warn("limits on outside input reached in the last " + limitLogEvery.String() + " (floods or a misbehaving node; " +
			"the counters are in weft status drops): " + strings.Join(parts, ", "))
	}
}

// dropCounters counts dropped packets by reason without locks.
type dropCounters struct {
	c [len(dropReasons)]atomic.Uint64
}

func (d *dropCounters) inc(reason string) {
	i := slices.Index(dropReasons[:], reason)
	if i < 0 {
		i = len(dropReasons) - 1
	}
	d.c[i].Add(1)
}

// get returns the count of one reason.
func (d *dropCounters) get(reason string) uint64 {
	if i := slices.Index(dropReasons[:], reason); i >= 0 {
		return d.c[i].Load()
	}
	return 0
}

func (d *dropCounters) snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range d.c {
		if v := d.c[i].Load(); v != 0 {
			m[dropReasons[i]] = v
		}
	}
	return m
}

// backend implements control.Backend for a node.
type backend struct{ n *Node }

func (b backend) Status() control.Status {
	n := b.n
	n.warnMu.Lock()
	warnings := make([]string, 0, len(n.warnings))
	for _, w := range n.warnings {
		warnings = append(warnings, w)
	}
	n.warnMu.Unlock()
	slices.Sort(warnings)
	return control.Status{
		Hostname:    n.cfg.Hostname,
		NodeID:      n.self.String(),
		IPv4:        n.cfg.IPv4.String(),
		NetworkName: n.cfg.NetworkName,
		Certificate: n.certDescription(),
		Dev:         n.cfg.Dev,
		MTU:         n.cfg.MTU,
		Listeners:   n.listeners,
		Version:     n.version,
		Warnings:    warnings,
		Drops:       b.drops(),
		UptimeS:     time.Since(n.started).Seconds(),
		Proxy:       b.proxyStatus(),
		NAT:         n.natType(),
		Endpoints:   addrPortStrings(n.ownEndpoints(time.Now())),
		Punch:       n.punch != nil,
	}
}

func addrPortStrings(aps []netip.AddrPort) []string {
	out := make([]string, 0, len(aps))
	for _, a := range aps {
		out = append(out, a.String())
	}
	return out
}

// drops are the node's drop counters and, with a proxy, netstack's (prefixed "netstack_").
func (b backend) drops() map[string]uint64 {
	m := b.n.drops.snapshot()
	if p := b.n.proxy; p != nil {
		ns := p.Netstack()
		for k, v := range map[string]uint64{"netstack_queue_full": ns.QueueFull, "netstack_tcp_timeouts": ns.Timeouts,
			"netstack_segments_dropped": ns.SegmentsDropped} {
			if v != 0 {
				m[k] = v
			}
		}
	}
	return m
}

func (b backend) proxyStatus() control.ProxyStatus {
	n := b.n
	ps := control.ProxyStatus{Mode: n.cfg.TCPProxy, Input: "allow"}
	if n.cfg.NoProxyInput {
		ps.Input = "deny"
	}
	p := n.proxy
	if p == nil {
		return ps
	}
	cs := p.Counters()
	st := cs.Transport
	ps.FlowsActive = uint64(len(p.Flows()))
	ps.FlowsOpened = cs.Opened
	ps.FlowsRefused = cs.Refused
	ps.FlowsReset = cs.Reset
	ps.KCPBytesTx = uint64(max(st.PayloadSent, 0))
	ps.KCPBytesRx = uint64(max(st.PayloadReceived, 0))
	ps.KCPRetransmits = uint64(max(st.Retransmits, 0))
	ps.KCPConversations = uint64(max(st.Conversations, 0))
	ps.KCPConversationsRefused = uint64(max(st.Refused, 0))
	return ps
}

func (b backend) Proxy() []control.ProxyFlow {
	p := b.n.proxy
	if p == nil {
		return nil
	}
	now := time.Now()
	var out []control.ProxyFlow
	for _, r := range p.Flows() {
		out = append(out, control.ProxyFlow{
			Src:       r.ID.Src.String(),
			Dst:       r.ID.Dst.String(),
			Side:      r.Side,
			Transport: "kcp",
			State:     r.State(),
			BytesUp:   r.Up.Load(),
			BytesDown: r.Down.Load(),
			AgeS:      now.Sub(r.Start).Seconds(),
			Peer:      r.Peer.String(),
		})
	}
	return out
}

func (b backend) Peers() []control.Peer {
	n := b.n
	tab := n.table.Load()
	var out []control.Peer
	for _, info := range tab.Nodes() {
		cp := control.Peer{
			Hostname: info.Hostname,
			NodeID:   info.ID.String(),
			IPv4:     info.IPv4.Addr().String(),
			Tunnel:   "relay",
		}
		if hop, ok := tab.Node(info.NextHop); ok {
			cp.NextHop = hop.IPv4.Addr().String()
		}
		// Latency of a relayed node: the sum of the measured link RTTs on its path.
		cp.LatencyMS = float64(info.CostUS-uint64(info.Hops)*mesh.HopPenaltyUS) / 1000
		if p := n.livePeer(info.ID); p != nil && info.Hops == 1 {
			cp.Direct = true
			if l := p.sendLink(); l != nil {
				cp.Endpoint = endpointString(l)
				cp.Tunnel = l.Network()
			}
			cp.LatencyMS = float64(p.rttUS.Load()) / 1000
			if t := p.lastHandshake.Load(); t != 0 {
				ts := time.Unix(0, t).UTC()
				cp.LastHandshake = &ts
			}
		}
		c := n.trafficOf(info.ID)
		cp.RxBytes, cp.TxBytes = c.RxBytes.Load(), c.TxBytes.Load()
		cp.Candidates = []string{}
		if a, ok := n.db.Get(info.ID); ok {
			cp.Candidates = addrPortStrings(a.Endpoints)
		}
		path, known := n.punchPath(info.ID)
		switch {
		case cp.Direct:
			cp.Path = "direct"
		case len(cp.Candidates) == 0:
			cp.Path = "relayed, no endpoints"
		case known && path.State == punch.Punching:
			cp.Path = "punching"
		default:
			cp.Path = "relayed"
		}
		cp.PunchAttempts, cp.PunchFailures = path.Attempts, path.Failures
		cp.TimeToDirectMS = float64(path.TimeToDirect.Microseconds()) / 1000
		out = append(out, cp)
	}
	return out
}

func (b backend) Routes() []control.Route {
	tab := b.n.table.Load()
	var out []control.Route
	for _, r := range tab.Routes() {
		info, ok := tab.Node(r.Node)
		if !ok {
			continue
		}
		cr := control.Route{
			Prefix:   r.Prefix.String(),
			NodeID:   r.Node.String(),
			Hostname: info.Hostname,
			Hops:     info.Hops,
			Cost:     float64(info.CostUS) / 1000,
			Proxy:    "deny",
		}
		if r.Proxy {
			cr.Proxy = "allow"
		}
		if hop, ok := tab.Node(info.NextHop); ok {
			cr.NextHop = hop.IPv4.Addr().String()
		}
		out = append(out, cr)
	}
	return out
}

// collector exposes the node's counters as Prometheus metrics.
type collector struct{ n *Node }

var (
	descPeerRx      = prometheus.NewDesc("weft_peer_rx_bytes_total", "Bytes of IP packets received from a node.", []string{"node_id", "hostname"}, nil)
	descPeerTx      = prometheus.NewDesc("weft_peer_tx_bytes_total", "Bytes of IP packets sent to a node.", []string{"node_id", "hostname"}, nil)
	descPeerRxPkts  = prometheus.NewDesc("weft_peer_rx_packets_total", "IP packets received from a node.", []string{"node_id", "hostname"}, nil)
	descPeerTxPkts  = prometheus.NewDesc("weft_peer_tx_packets_total", "IP packets sent to a node.", []string{"node_id", "hostname"}, nil)
	descHandshakes  = prometheus.NewDesc("weft_peer_handshakes_total", "Completed handshakes with a direct peer.", []string{"node_id", "hostname"}, nil)
	descPeerLatency = prometheus.NewDesc("weft_peer_latency_seconds", "Smoothed round-trip time to a direct peer.", []string{"node_id", "hostname"}, nil)
	descDrops       = prometheus.NewDesc("weft_dropped_packets_total", "Packets dropped, by reason.", []string{"reason"}, nil)
	descReachable   = prometheus.NewDesc("weft_nodes_reachable", "Nodes reachable through the mesh, this one excluded.", nil, nil)
	descDirectPeers = prometheus.NewDesc("weft_direct_peers", "Direct peers with a live session.", nil, nil)
	descPunch       = prometheus.NewDesc("weft_peer_punch_attempts_total", "NAT traversal attempts towards a node.", []string{"node_id", "hostname"}, nil)
	descPunchFailed = prometheus.NewDesc("weft_peer_punch_failures", "Failed NAT traversal attempts towards a node in a row.", []string{"node_id", "hostname"}, nil)
	descToDirect    = prometheus.NewDesc("weft_peer_time_to_direct_seconds", "How long the last move of a node from relayed to direct took.", []string{"node_id", "hostname"}, nil)
	descNAT         = prometheus.NewDesc("weft_nat_type", "The NAT in front of this node, from its peers' reports (1 for the type in the label).", []string{"type"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeerRx, descPeerTx, descPeerRxPkts, descPeerTxPkts, descHandshakes,
		descPeerLatency, descDrops, descReachable, descDirectPeers, descPunch, descPunchFailed, descToDirect, descNAT} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	tab := n.table.Load()
	names := map[session.NodeID]string{}
	for _, info := range tab.Nodes() {
		names[info.ID] = info.Hostname
	}
	n.traffic.Range(func(k, v any) bool {
		id, cn := k.(session.NodeID), v.(*dataplane.Counters)
		lv := []string{id.String(), names[id]}
		ch <- prometheus.MustNewConstMetric(descPeerRx, prometheus.CounterValue, float64(cn.RxBytes.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(descPeerTx, prometheus.CounterValue, float64(cn.TxBytes.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(descPeerRxPkts, prometheus.CounterValue, float64(cn.RxPackets.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(descPeerTxPkts, prometheus.CounterValue, float64(cn.TxPackets.Load()), lv...)
		return true
	})
	direct := 0
	var ms []prometheus.Metric
	n.peerTab.eachRead(func(p *peer) {
		lv := []string{p.id.String(), p.hello.Hostname}
		ms = append(ms, prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(p.handshakes.Load()), lv...))
		if p.alive {
			direct++
			ms = append(ms, prometheus.MustNewConstMetric(descPeerLatency, prometheus.GaugeValue, float64(p.rttUS.Load())/1e6, lv...))
		}
	})
	for _, m := range ms {
		ch <- m // not under the table's lock: the registry may block on ch
	}
	for i, r := range dropReasons {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n.drops.c[i].Load()), r)
	}
	ch <- prometheus.MustNewConstMetric(descReachable, prometheus.GaugeValue, float64(len(names)))
	ch <- prometheus.MustNewConstMetric(descDirectPeers, prometheus.GaugeValue, float64(direct))
	for id, name := range names {
		if path, ok := n.punchPath(id); ok {
			lv := []string{id.String(), name}
			ch <- prometheus.MustNewConstMetric(descPunch, prometheus.CounterValue, float64(path.Attempts), lv...)
			ch <- prometheus.MustNewConstMetric(descPunchFailed, prometheus.GaugeValue, float64(path.Failures), lv...)
			ch <- prometheus.MustNewConstMetric(descToDirect, prometheus.GaugeValue, path.TimeToDirect.Seconds(), lv...)
		}
	}
	ch <- prometheus.MustNewConstMetric(descNAT, prometheus.GaugeValue, 1, n.natType())
}

var _ control.Backend = backend{}
