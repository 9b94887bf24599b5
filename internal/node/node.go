// Package node runs one weft node: the TUN device, the underlay sockets, the encrypted sessions with its
// direct peers, the link-state mesh and the local control API.
//
// Goroutines and their owners (all started and waited for by Run):
//   - the data plane (internal/dataplane): reads IP packets from the TUN and sends each to the next hop of
//     its destination; the underlay readers hand it every datagram (data.go opens them)
//   - the underlay's reader goroutines: hand every received packet to handlePacket (handshake or data)
//   - timerLoop: keepalives, dead-peer detection, rekeying, handshake timeouts, announce refresh (peer.go),
//     NAT traversal: mapping probes and punching (nat.go)
//   - one dialer per --peer: keeps a session to that address, retrying with capped backoff (handshake.go)
//   - the control server and, if asked for, the metrics server
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weft-vpn/weft/internal/config"
	"github.com/weft-vpn/weft/internal/control"
	"github.com/weft-vpn/weft/internal/dataplane"
	"github.com/weft-vpn/weft/internal/lanfw"
	"github.com/weft-vpn/weft/internal/mesh"
	"github.com/weft-vpn/weft/internal/proxy"
	"github.com/weft-vpn/weft/internal/punch"
	"github.com/weft-vpn/weft/internal/session"
	"github.com/weft-vpn/weft/internal/tun"
	"github.com/weft-vpn/weft/internal/underlay"
)

// Default timers of the peer protocol. The failover bound stated in the README is DeadPeerTimeout + 2 s.
const (
	// KeepaliveInterval is how often a ping goes to every direct peer (liveness and latency).
	KeepaliveInterval = time.Second
	// DeadPeerTimeout is how long a peer may stay silent before its session is declared dead.
	DeadPeerTimeout = 5 * time.Second
	// HandshakeTimeout is how long an initiator waits for the answer to one handshake attempt.
	HandshakeTimeout = 2 * time.Second
	// BackoffMin and BackoffMax bound the wait between two attempts to reach a --peer that is down.
	BackoffMin = 500 * time.Millisecond
	BackoffMax = 4 * time.Second
	// RekeyAfter is the age at which the initiator of a session replaces its keys; RejectAfter is the age
	// past which a keypair is no longer used at all.
	RekeyAfter  = 120 * time.Second
	RejectAfter = 180 * time.Second
	timerTick   = 200 * time.Millisecond
	// claimsFile, in the state directory, records which node claimed each virtual IP first.
	claimsFile = "claims.json"
)

// Timers tune the peer protocol; a zero field takes the default constant of the same name. Tests shorten
// them; production nodes use the defaults.
type Timers struct {
	KeepaliveInterval, DeadPeerTimeout, HandshakeTimeout time.Duration
	BackoffMin, BackoffMax, RekeyAfter, RejectAfter      time.Duration
}

func (t Timers) withDefaults() Timers {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.KeepaliveInterval, KeepaliveInterval)
	def(&t.DeadPeerTimeout, DeadPeerTimeout)
	def(&t.HandshakeTimeout, HandshakeTimeout)
	def(&t.BackoffMin, BackoffMin)
	def(&t.BackoffMax, BackoffMax)
	def(&t.RekeyAfter, RekeyAfter)
	def(&t.RejectAfter, RejectAfter)
	return t
}

// Options configure a Node.
type Options struct {
	Config  config.Config
	Version string
	// Log receives the node's logs; nil means slog.Default().
	Log *slog.Logger
	// Device, when set, is used instead of creating the TUN device Config.Dev, and the node then leaves
	// the kernel alone: no address, link or route configuration (tests pass a tun.Fake).
	Device tun.Device
	// Timers override protocol timers; the zero value means the defaults.
	Timers Timers
}

// Node is one running weft node. Create it with New and run it with Run.
type Node struct {
	cfg     config.Config
	version string
	timers  Timers
	fakeDev tun.Device
	ready   chan struct{}
	log     *slog.Logger
	started time.Time

	id   session.Identity
	self session.NodeID
	scfg session.Config
	// claims records which node this node saw claim each virtual IP first (state dir, claims.json).
	claims *mesh.Claims
	// signer signs this node's announcements; its key is bound to the Noise key in every handshake.
	signer *session.Signer
	hello  []byte
	// certs is what certificate mode checks peers and announcements against; nil in shared-secret mode.
	certs *certMode

	dev       tun.Device
	local     dataplane.Local // what this node owns: its virtual IP and exposed subnets
	plane     *dataplane.Plane
	tr        *underlay.Transport
	proxy     *proxy.Proxy              // nil when this node neither proxies nor accepts proxied flows
	proxyable func(dst netip.Addr) bool // wantsProxyTo, as a value made once
	listeners []string
	udpListen []netip.AddrPort // the UDP listeners' bound addresses (nat.go)

	// NAT traversal (nat.go): the path state machine (nil with --no-punch), what peers report about this
	// node's address, and its local endpoints (cached).
	punch     *punch.Puncher
	observed  punch.Observations
	natMu     sync.Mutex
	localEP   []netip.AddrPort
	localEPAt time.Time
	// Mapping probes (nat.go): when each peer was last probed, the probes this node sent, and the
	// tokens peers asked it to watch for; guarded by natMu.
	probedAt   map[session.NodeID]time.Time
	ownProbes  map[[8]byte]ownProbe
	probeWatch map[[8]byte]probeWatch

	db    *mesh.DB
	table atomic.Pointer[mesh.Table]

	// peerTab holds the direct peers and their session indices (peertable.go).
	peerTab *peerTable
	// e2e holds the end-to-end sessions with nodes that are not direct peers (e2e.go).
	e2e *e2eTable

	// hs holds the handshakes in flight and the limits on unauthenticated input (pending.go).
	hs *handshakeTable
	// cookies is this node's cookie secret, for handshakes under load (session/cookie.go).
	cookies *session.CookieJar

	recomputeMu  sync.Mutex
	recomputeReq chan struct{} // recomputeSoon -> recomputeLoop
	annMu        sync.Mutex
	annSeq       uint64
	annDirty     bool
	annFlooded   time.Time
	routes       *routeSync   // the TUN's routes besides its connected network (routes.go)
	guard        *lanfw.Guard // drops mesh sources arriving on other interfaces; nil without nftables

	warnMu    sync.Mutex
	warnings  map[string]string            // key -> text
	forgedAt  map[session.NodeID]time.Time // last warning about a forged announcement, per neighbour
	spoofedAt map[session.NodeID]time.Time // last warning about spoofed sources, per direct peer
	refusedAt map[session.NodeID]time.Time // last warning about a peer this node refused
	refusedBy map[session.NodeID]time.Time // last warning about a peer that refused this node
	uncertAt  map[session.NodeID]time.Time // last warning about an uncertified announcement, per neighbour
	fullAt    map[session.NodeID]time.Time // last warning about a full announcement database, per neighbour

	traffic   sync.Map // session.NodeID -> *dataplane.Counters, traffic this node originates or terminates
	dialAddrs sync.Map // config.URI -> netip.Addr, the last address each --peer resolved to
	drops     dropCounters
	// Owned by the timer goroutine: when reached limits were last logged, and their counts then.
	limitsLogged time.Time
	limitsSeen   map[string]uint64
	metrics      *prometheus.Registry

	ctx context.Context
	wg  sync.WaitGroup
}

// New checks what can be checked without touching the system and returns a node ready to Run.
func New(opts Options) (*Node, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	n := &Node{
		cfg:          opts.Config,
		version:      opts.Version,
		timers:       opts.Timers.withDefaults(),
		fakeDev:      opts.Device,
		ready:        make(chan struct{}),
		log:          log,
		peerTab:      newPeerTable(),
		e2e:          newE2ETable(),
		hs:           newHandshakeTable(),
		recomputeReq: make(chan struct{}, 1),
		warnings:     make(map[string]string),
		local:        dataplane.Local{IP: opts.Config.IPv4.Addr(), Subnets: opts.Config.Subnet},
		probedAt:     map[session.NodeID]time.Time{},
		ownProbes:    map[[8]byte]ownProbe{},
		probeWatch:   map[[8]byte]probeWatch{},
	}
	return n, nil
}

// Run brings the node up, serves until ctx is cancelled or a fatal error happens, then takes everything
// down again (TUN, routes, sockets, control socket). It returns the first fatal error, or nil after ctx
// was cancelled.
func (n *Node) Run(ctx context.Context) error {
	cfg := n.cfg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.ctx = ctx

	// Claim the control socket first: a second node for the same device must fail here, with a clear
	// message, before it touches the TUN.
	ln, err := control.Listen(cfg.Control)
	if err != nil {
		return err
	}
	defer ln.Close()

	creds, err := loadCredentials(cfg, time.Now())
	if err != nil {
		return err
	}
	n.id, n.certs = creds.id, creds.certs
	n.signer = n.id.Signer()
	n.self = n.signer.NodeID()
	n.scfg = session.Config{
		Identity:    n.id,
		Signer:      n.signer,
		PSK:         creds.psk,
		AESHardware: session.HasAESHardware(),
		InitCache:   session.NewInitCache(0),
	}
	n.cookies = session.NewCookieJar(creds.psk)
	n.hs.start()
	defer n.hs.close()
	// Argon2id used 64 MiB once; give it back to the system rather than carry it as resident memory.
	debug.FreeOSMemory()
	n.hello = hello{IPv4: cfg.IPv4, Hostname: cfg.Hostname, Cert: n.ownCert()}.marshal()
	n.db = mesh.NewDB(n.self)
	var warning error
	if n.claims, warning, err = mesh.LoadClaims(filepath.Join(cfg.StateDir, claimsFile)); err != nil {
		return err
	}
	if n.certs != nil {
		n.claims.SetHold(0) // the CA decides ownership; claims only settle duplicates present together
	}
	if warning != nil {
		n.log.Warn(warning.Error())
	}
	n.started = time.Now()
	n.annSeq = uint64(n.started.UnixNano())
	n.log = n.log.With("node", n.self.String())

	if n.fakeDev != nil {
		n.dev = n.fakeDev
		n.routes = newRouteSync(&fakeRoutes{}, n.log.Warn)
		defer n.dev.Close()
	} else {
		n.dev, err = tun.Create(cfg.Dev, cfg.MTU)
		if err != nil {
			return fmt.Errorf("create TUN %s: %w (weft needs root or CAP_NET_ADMIN and /dev/net/tun)", cfg.Dev, err)
		}
		n.routes = newRouteSync(netlinkRoutes{dev: cfg.Dev, src: cfg.IPv4.Addr()}, n.log.Warn)
		defer func() {
			n.routes.clear()
			n.dev.Close()
			_ = tun.Delete(cfg.Dev)
		}()
		if err := tun.Configure(cfg.Dev, cfg.IPv4, cfg.MTU); err != nil {
			return fmt.Errorf("configure %s: %w", cfg.Dev, err)
		}
		if g, err := lanfw.InstallGuard(cfg.Dev); err != nil {
			n.log.Warn("anti-spoofing rules not installed: packets with mesh source addresses that arrive on other "+
				"interfaces are not dropped", "err", err)
		} else {
			n.guard = g
			defer g.Close()
			// The virtual network from the start; recomputes add the routed prefixes.
			if err := g.SetSources([]netip.Prefix{cfg.IPv4.Masked()}); err != nil {
				n.log.Warn("anti-spoofing rules", "err", err)
			}
		}
		if len(cfg.Subnet) > 0 {
			fw, forwardOn, err := n.exposeSubnets()
			if err != nil {
				return err
			}
			defer fw.Close()
			if forwardOn {
				defer func() {
					if err := lanfw.RestoreForwarding(); err != nil {
						n.log.Warn("could not turn net.ipv4.ip_forward off again", "err", err)
					} else {
						n.log.Info("turned net.ipv4.ip_forward off again (weft had turned it on)")
					}
				}()
			}
		}
	}

	if cfg.TCPProxy == "kcp" || !cfg.NoProxyInput {
		n.proxy, err = n.startProxy()
		if err != nil {
			return fmt.Errorf("start the TCP proxy: %w", err)
		}
		defer n.proxy.Close()
	}

	n.plane, err = dataplane.New(dataplane.Config{
		Dev: n.dev, Local: n.local, Table: n.table.Load, Sealer: sealer{n}, Proxy: n.proxyOutbound,
		Demux: n.handlePacket, AfterReceive: n.afterReceive, Traffic: n.trafficOf, Drop: n.drops.inc,
		Spoofed: n.warnSpoofed,
	})
	if err != nil {
		return err
	}
	n.tr = underlay.New(n.plane.Receive, n.log)
	n.tr.SetCounter(n.drops.inc) // limits on unauthenticated TCP connections, counted with the drops
	defer n.tr.Close()
	for _, u := range cfg.Listen {
		bound, err := n.tr.Listen(u)
		if err != nil {
			return fmt.Errorf("%w: is another program using that port? choose another --listen", err)
		}
		n.listeners = append(n.listeners, bound.String())
		if bound.Scheme == "udp" {
			if a, err := netip.ParseAddr(bound.Host); err == nil {
				n.udpListen = append(n.udpListen, netip.AddrPortFrom(a.Unmap(), bound.Port))
			}
		}
	}

	if !cfg.NoPunch {
		n.punch = punch.New(punch.Config{})
	}
	n.metrics = prometheus.NewRegistry()
	n.metrics.MustRegister(&collector{n: n})
	n.reannounce()

	errc := make(chan error, 4)
	n.goFn(func() {
		if err := n.plane.Run(n.ctx); err != nil {
			errc <- err
		}
	})
	n.goFn(n.timerLoop)
	n.goFn(n.recomputeLoop)
	for _, p := range cfg.Peer {
		n.goFn(func() { n.dialLoop(p) })
	}
	srv := control.NewServer(backend{n}, n.metrics, n.log)
	if cfg.DebugPprof {
		srv.EnablePprof()
	}
	n.goFn(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			errc <- fmt.Errorf("control socket: %w", err)
		}
	})
	if cfg.MetricsListen != "" {
		if !loopbackOnly(cfg.MetricsListen) {
			n.log.Warn("--metrics-listen " + cfg.MetricsListen + " serves metrics beyond this machine (node IDs, peers, traffic): " +
				"bind it to 127.0.0.1 or firewall the port unless that is intended")
		}
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			cancel()
			n.wg.Wait()
			return fmt.Errorf("--metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		hs := &http.Server{Handler: promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		n.goFn(func() { _ = hs.Serve(mln) })
		n.goFn(func() { <-ctx.Done(); hs.Close() })
	}
	close(n.ready)
	n.log.Info("weft node up", "hostname", cfg.Hostname, "ipv4", cfg.IPv4, "dev", cfg.Dev,
		"listen", n.listeners, "peers", len(cfg.Peer), "version", n.version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	n.log.Info("weft node shutting down")
	n.tr.Close()
	n.dev.Close() // unblocks the plane
	n.wg.Wait()
	return runErr
}

func (n *Node) goFn(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// exposeSubnets prepares the kernel to forward mesh traffic into the --subnet LANs: IP forwarding on, and
// weft's own nftables table (masquerade unless --subnet-snat=false, MSS clamping to the TUN MTU). It warns
// about other tables' forward chains that would drop that traffic.
// forwardOn reports whether it turned IP forwarding on (the node turns it off again on exit).
func (n *Node) exposeSubnets() (fw *lanfw.Table, forwardOn bool, err error) {
	cfg := n.cfg
	changed, err := lanfw.CheckForwarding()
	if err != nil {
		return nil, false, fmt.Errorf("--subnet: %w", err)
	}
	if changed {
		n.log.Info("enabled net.ipv4.ip_forward to forward into the exposed subnets; it is turned off again on exit")
	}
	fw, err = lanfw.Install(lanfw.Options{Dev: cfg.Dev, Subnets: cfg.Subnet, SNAT: cfg.SubnetSNAT, MTU: cfg.MTU})
	if err != nil {
		if changed {
			_ = lanfw.RestoreForwarding()
		}
		return nil, false, fmt.Errorf("--subnet: %w", err)
	}
	ws, err := lanfw.ForwardWarnings(cfg.Dev, cfg.Subnet)
	if err != nil {
		n.log.Warn("could not inspect other nftables tables", "err", err)
	}
	for i, w := range ws {
		n.setWarning(fmt.Sprintf("forward-drop-%d", i), w)
	}
	n.log.Info("exposing subnets", "subnets", cfg.Subnet, "snat", cfg.SubnetSNAT, "nftables_table", fw.Name())
	return fw, changed, nil
}

// Ready is closed once the node is up: TUN configured, listeners bound, control socket served.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Listeners returns the URIs the node is bound to (valid once Ready is closed).
func (n *Node) Listeners() []string { return n.listeners }

// setWarning records (text != "") or clears a warning shown by `weft status`.
func (n *Node) setWarning(key, text string) {
	n.warnMu.Lock()
	defer n.warnMu.Unlock()
	old, had := n.warnings[key]
	if text == "" {
		delete(n.warnings, key)
		return
	}
	n.warnings[key] = text
	if !had || old != text {
		n.log.Warn(text)
	}
}

// isClosed reports whether err means the node is shutting down.
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}

// loopbackOnly reports whether a listen address host:port binds loopback only (an empty host or
// 0.0.0.0 binds every interface; a name that resolves is not checked further and counts as not).
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
