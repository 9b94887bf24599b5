package mesh

// Claims: who owns a virtual IP, as this node first saw it. When two nodes announce the same virtual
// IP, the one this node saw claim it first keeps it; a later claimant gets no route (and every node
// warns). The record lives in the state directory, so a restart does not hand an address to whoever
// announces it first afterwards, and it outlives its owner's absence by ClaimHold. Unlike the lowest
// node ID (which anyone can grind in milliseconds), a first claim cannot be won after the fact.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weft-vpn/weft/internal/session"
)

// ClaimHold is how long a claim outlives the last time its owner announced the address; after it,
// another node may take the address.
const ClaimHold = 7 * 24 * time.Hour

// claimRefresh is how far the last-seen time must move before the file is rewritten.
const claimRefresh = time.Hour

// Claim is the first claim of one virtual IP seen by this node.
type Claim struct {
	Node  session.NodeID `json:"node"`
	First time.Time      `json:"first_seen"`
	Last  time.Time      `json:"last_seen"`
}

// Claims is the set of first claims, backed by a JSON file. It is safe for concurrent use.
type Claims struct {
	path string
	hold time.Duration // ClaimHold unless SetHold changed it

	mu sync.Mutex
	m  map[netip.Addr]Claim
}

// LoadClaims reads the claims file at path; a missing file is an empty set. An empty path keeps the
// claims in memory only. A corrupt file (say, cut short by a power loss) is moved aside to path +
// ".corrupt" and the claims start empty: then warning says so, and the node should log it.
func LoadClaims(path string) (c *Claims, warning, err error) {
	c = &Claims{path: path, hold: ClaimHold, m: map[netip.Addr]Claim{}}
	if path == "" {
		return c, nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read address claims: %w", err)
	}
	if jerr := json.Unmarshal(b, &c.m); jerr != nil {
		c.m = map[netip.Addr]Claim{}
		if err := os.Rename(path, path+".corrupt"); err != nil {
			return nil, nil, fmt.Errorf("address claims file %s is corrupt (%v) and cannot be moved aside: %w", path, jerr, err)
		}
		return c, fmt.Errorf("address claims file %s was corrupt (%v); moved it to %s and started over: each virtual IP goes to the node seen claiming it first from now on", path, jerr, path+".corrupt"), nil
	}
	return c, nil, nil
}

// SetHold changes how long a claim outlives its holder's last announcement (ClaimHold by default). In
// certificate mode the CA decides who owns an address and claims only settle duplicates among nodes
// present at the same time: a hold of 0 releases an address as soon as its holder is gone, so a node
// with a reissued certificate is not held off by its old self.
func (c *Claims) SetHold(d time.Duration) {
	c.mu.Lock()
	c.hold = d
	c.mu.Unlock()
}

// Observe records the virtual IPs of anns at time now: a first claim for an address nobody holds (or
// whose holder has been absent past ClaimHold), a fresher last-seen time for a holder that announces it
// again. A node present in anns holds only the address it announces now (a node that changed its
// address releases the old one, so nobody can squat a range by cycling through it), and claims absent
// past ClaimHold are forgotten. Among new claimants of one address in the same call, the lowest node ID
// is recorded. It reports whether the file needs writing.
func (c *Claims) Observe(anns []Announce, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	current := make(map[session.NodeID]netip.Addr, len(anns))
	for _, a := range anns {
		current[a.Origin] = a.IPv4.Addr()
	}
	// First pass: holders that still announce their address refresh it; claims whose holder announces
	// another address now, or that have expired, go.
	for ip, cl := range c.m {
		cur, present := current[cl.Node]
		switch {
		case present && cur == ip:
			if now.Sub(cl.Last) >= claimRefresh {
				cl.Last = now
				c.m[ip] = cl
				changed = true
			}
		case present, now.Sub(cl.Last) >= c.hold:
			delete(c.m, ip)
			changed = true
		}
	}
	// Second pass: addresses nobody holds go to their claimant (the lowest node ID among several new).
	fresh := map[netip.Addr]session.NodeID{}
	for _, a := range anns {
		ip := a.IPv4.Addr()
		if _, held := c.m[ip]; held {
			continue
		}
		if id, ok := fresh[ip]; !ok || a.Origin < id {
			fresh[ip] = a.Origin
		}
	}
	for ip, id := range fresh {
		c.m[ip] = Claim{Node: id, First: now, Last: now}
		changed = true
	}
	return changed
}

// Held returns the addresses held and their holders.
func (c *Claims) Held() map[netip.Addr]session.NodeID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Addr]session.NodeID, len(c.m))
	for ip, cl := range c.m {
		out[ip] = cl.Node
	}
	return out
}

// Owner returns the node holding ip's claim, if any (held past ClaimHold or not).
func (c *Claims) Owner(ip netip.Addr) (session.NodeID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.m[ip]
	return cl.Node, ok
}

// Save writes the claims file atomically (a no-op without a path).
func (c *Claims) Save() error {
	if c.path == "" {
		return nil
	}
	c.mu.Lock()
	b, err := json.MarshalIndent(c.m, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".claims-*")
	if err != nil {
		return fmt.Errorf("write address claims: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write address claims: %w", err)
	}
	if err := tmp.Sync(); err != nil { // the rename must not reach the disk before the data
		tmp.Close()
		return fmt.Errorf("write address claims: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write address claims: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		return fmt.Errorf("write address claims: %w", err)
	}
	return nil
}
