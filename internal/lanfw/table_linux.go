package lanfw

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Chain names inside weft's table.
const (
	natChain     = "postrouting"
	forwardChain = "forward"
)

// Table is weft's installed nftables table. Close deletes it.
type Table struct {
	name string

	mu   sync.Mutex
	conn *nftables.Conn // lasting, bound to the namespace Install ran in; nil once closed
}

// Install creates weft's table TableName(opts.Dev) in the inet family (see
// the package comment for its rules), replacing a stale table of that name in
// the same atomic transaction, in the network namespace of the calling
// thread. It touches no other table. The returned Table keeps a netlink
// socket in that namespace until Close.
func Install(opts Options) (*Table, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	name := TableName(opts.Dev)
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("lanfw: install table inet %s: open netlink socket: %w%s", name, err, permissionHint(err))
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	// Adding then deleting removes a stale table whether or not one exists.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	if opts.SNAT {
		nat := conn.AddChain(&nftables.Chain{
			Name: natChain, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
		})
		for _, s := range opts.Subnets {
			conn.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: masqueradeRule(opts.Dev, s)})
		}
	}
	accept := nftables.ChainPolicyAccept
	fwd := conn.AddChain(&nftables.Chain{
		Name: forwardChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityMangle, Policy: &accept,
	})
	for _, s := range opts.Subnets {
		for _, rule := range [][]expr.Any{mssInRule(opts.Dev, s, opts.mss()), mssOutRule(opts.Dev, s, opts.mss())} {
			conn.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: rule})
		}
	}
	if err := conn.Flush(); err != nil {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("lanfw: install table inet %s: %w%s", name, err, permissionHint(err))
	}
	return &Table{name: name, conn: conn}, nil
}

// Name returns the table's name, "weft_<dev>" (family inet).
func (t *Table) Name() string { return t.name }

// Close deletes the table from the namespace it was installed in. It returns
// no error if the table is already gone; calling it again does nothing.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	conn := t.conn
	t.conn = nil
	return deleteTable(conn, t.name)
}

// deleteTable deletes the inet table name through conn and closes conn. A table someone else removed
// already is no error.
func deleteTable(conn *nftables.Conn, name string) error {
	nt := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	// Adding first makes the delete succeed when someone removed the table.
	conn.AddTable(nt)
	conn.DelTable(nt)
	err := conn.Flush()
	closeErr := conn.CloseLasting()
	if err != nil {
		return fmt.Errorf("lanfw: delete table inet %s: %w (remove it by hand with `nft delete table inet %s`)", name, err, name)
	}
	if closeErr != nil {
		return fmt.Errorf("lanfw: table inet %s deleted, but closing its netlink socket failed: %w", name, closeErr)
	}
	return nil
}

// permissionHint returns advice to append to err when it is a permission error.
func permissionHint(err error) string {
	if errors.Is(err, os.ErrPermission) {
		return " (changing nftables needs root or CAP_NET_ADMIN: run weft as root or grant it that capability)"
	}
	return ""
}
