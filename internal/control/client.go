package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// ErrNoNode is matched (errors.Is) by the error a Client returns when no node listens on its socket.
var ErrNoNode = errors.New("no weft node answers")

// maxErrorBody caps how much of an error response the client quotes.
const maxErrorBody = 512

// Client is a typed client of the control API on a unix socket. It is safe for concurrent use.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the node serving on socketPath. It connects on each request.
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableKeepAlives: true, // CLI commands make one request; nothing to reuse, nothing left running
	}
	return &Client{socket: socketPath, http: &http.Client{Transport: tr}}
}

// Status returns the node's status (GET /v1/status).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.Get(ctx, "/v1/status", &s)
	return s, err
}

// Peers returns the node's peers (GET /v1/peers).
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var ps []Peer
	err := c.Get(ctx, "/v1/peers", &ps)
	return ps, err
}

// Routes returns the node's routes (GET /v1/routes).
func (c *Client) Routes(ctx context.Context) ([]Route, error) {
	var rs []Route
	err := c.Get(ctx, "/v1/routes", &rs)
	return rs, err
}

// Proxy returns the TCP flows the node carries over the KCP proxy (GET /v1/proxy).
func (c *Client) Proxy(ctx context.Context) ([]ProxyFlow, error) {
	var fs []ProxyFlow
	err := c.Get(ctx, "/v1/proxy", &fs)
	return fs, err
}

// Get requests path (e.g. "/v1/status") and decodes the JSON answer into v. Errors name the socket and the
// cause; when no node listens on the socket the error matches ErrNoNode.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("control API path %q must start with /", path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://weft"+path, nil)
	if err != nil {
		return fmt.Errorf("build request for %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.connectError(path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return fmt.Errorf("GET %s on %s: %s: %s", path, c.socket, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode answer to GET %s on %s: %w", path, c.socket, err)
	}
	return nil
}

// connectError turns a failed request into an error that tells the user what to do.
func (c *Client) connectError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return &noNodeError{socket: c.socket, err: err}
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("no permission to use the control socket %s (mode 0600): run the command as the user running `weft up`, usually root: %w", c.socket, err)
	default:
		return fmt.Errorf("GET %s on %s: %w", path, c.socket, err)
	}
}

// noNodeError is the error for a socket nobody listens on.
type noNodeError struct {
	socket string
	err    error
}

func (e *noNodeError) Error() string {
	return fmt.Sprintf("no weft node answers on %s: is `weft up` running? (use --control to choose another socket)", e.socket)
}

func (e *noNodeError) Unwrap() error { return e.err }

func (e *noNodeError) Is(target error) bool { return target == ErrNoNode }
