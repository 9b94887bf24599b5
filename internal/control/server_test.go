package control

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeBackend answers with fixed values.
type fakeBackend struct {
	status Status
	peers  []Peer
	routes []Route
	flows  []ProxyFlow
}

func (b fakeBackend) Status() Status  { return b.status }
func (b fakeBackend) Peers() []Peer   { return b.peers }
func (b fakeBackend) Routes() []Route { return b.routes }
func (b fakeBackend) Proxy() []ProxyFlow {
	return b.flows
}

var _ Backend = fakeBackend{}

// startServer serves b on a fresh socket and returns its path; the server stops when the test ends and
// the test fails if Serve returned an error.
func startServer(t *testing.T, b Backend, g prometheus.Gatherer) (string, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "c.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(b, g, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	})
	return path, srv
}

func TestClientServer(t *testing.T) {
	b := fakeBackend{status: sampleStatus(), peers: samplePeers(), routes: sampleRoutes(), flows: sampleProxy()}
	path, _ := startServer(t, b, nil)
	c := NewClient(path)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, b.status) {
		t.Errorf("Status = %+v, want %+v", st, b.status)
	}
	ps, err := c.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ps, b.peers) {
		t.Errorf("Peers = %+v, want %+v", ps, b.peers)
	}
	rs, err := c.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs, b.routes) {
		t.Errorf("Routes = %+v, want %+v", rs, b.routes)
	}
	fs, err := c.Proxy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fs, b.flows) {
		t.Errorf("Proxy = %+v, want %+v", fs, b.flows)
	}
}

// get makes a raw request on the socket and returns status, content type and body.
func get(t *testing.T, path, method, url string) (int, string, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequest(method, "http://weft"+url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestServerEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	drops := prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_test_drops_total", Help: "test"})
	reg.MustRegister(drops)
	drops.Add(3)
	withMetrics, _ := startServer(t, fakeBackend{}, reg) // nil slices in the backend
	noMetrics, srv := startServer(t, fakeBackend{}, nil)
	srv.EnablePprof() // withMetrics has pprof off
	srv.Handle("GET /v1/extension", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "extension")
	}))

	tests := []struct {
		name       string
		socket     string
		method     string
		url        string
		wantCode   int
		wantType   string
		wantInBody string
	}{
		{"status", withMetrics, "GET", "/v1/status", 200, "application/json", `"warnings":[]`},
		{"nil peers are []", withMetrics, "GET", "/v1/peers", 200, "application/json", "[]\n"},
		{"nil routes are []", withMetrics, "GET", "/v1/routes", 200, "application/json", "[]\n"},
		{"metrics", withMetrics, "GET", "/metrics", 200, "text/plain", "weft_test_drops_total 3"},
		{"no gatherer", noMetrics, "GET", "/metrics", 404, "", ""},
		{"pprof goroutines", noMetrics, "GET", "/debug/pprof/goroutine?debug=1", 200, "text/plain", "goroutine profile: total"},
		{"pprof off by default", withMetrics, "GET", "/debug/pprof/goroutine?debug=1", 404, "", ""},
		{"pprof cmdline off by default", withMetrics, "GET", "/debug/pprof/cmdline", 404, "", ""},
		{"nil proxy flows are []", withMetrics, "GET", "/v1/proxy", 200, "application/json", "[]\n"},
		{"status has proxy", withMetrics, "GET", "/v1/status", 200, "application/json", `"proxy":{"mode":`},
		{"extension", noMetrics, "GET", "/v1/extension", 200, "", "extension"},
		{"wrong method", noMetrics, "POST", "/v1/status", 405, "", ""},
		{"unknown path", noMetrics, "GET", "/v1/nope", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ctype, body := get(t, tt.socket, tt.method, tt.url)
			if code != tt.wantCode {
				t.Fatalf("%s %s = %d, want %d (body %q)", tt.method, tt.url, code, tt.wantCode, body)
			}
			if !strings.HasPrefix(ctype, tt.wantType) {
				t.Errorf("Content-Type = %q, want %q", ctype, tt.wantType)
			}
			if !strings.Contains(body, tt.wantInBody) {
				t.Errorf("body %q lacks %q", body, tt.wantInBody)
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // leaves a socket file nobody listens on

	tests := []struct {
		name   string
		socket string
	}{
		{"missing socket", filepath.Join(dir, "missing.sock")},
		{"refused", stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.socket).Status(context.Background())
			want := "no weft node answers on " + tt.socket + ": is `weft up` running? (use --control to choose another socket)"
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v, want %q", err, want)
			}
			if !errors.Is(err, ErrNoNode) {
				t.Errorf("error does not match ErrNoNode")
			}
		})
	}

	t.Run("http error", func(t *testing.T) {
		path, _ := startServer(t, fakeBackend{}, nil)
		err := NewClient(path).Get(context.Background(), "/v1/nope", new(any))
		if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), path) {
			t.Errorf("error = %v, want one naming the 404 and the socket", err)
		}
	})
}

func TestListen(t *testing.T) {
	t.Run("mode 0600 and parent 0755", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "new", "c.sock")
		ln, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode = %v, want socket with 0600", fi.Mode())
		}
		di, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o755 {
			t.Errorf("parent dir mode = %v, want 0755", di.Mode().Perm())
		}
	})

	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.sock")
		old, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		old.(*net.UnixListener).SetUnlinkOnClose(false)
		old.Close()
		ln, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial the new socket: %v", err)
		}
		c.Close()
	})

	t.Run("live socket kept", func(t *testing.T) {
		path, _ := startServer(t, fakeBackend{}, nil)
		_, err := Listen(path)
		want := "another weft node is running on " + path + ": stop it or choose another --control"
		if err == nil || err.Error() != want {
			t.Fatalf("second Listen error = %v, want %q", err, want)
		}
		if _, err := NewClient(path).Status(context.Background()); err != nil {
			t.Errorf("first server no longer answers after a failed second Listen: %v", err)
		}
	})

	t.Run("regular file kept", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.sock")
		if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen on a regular file: error = %v, want one saying it is not a socket", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
			t.Errorf("regular file was changed: %q, %v", b, err)
		}
	})
}

func TestServeStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(fakeBackend{}, nil, nil).Serve(ctx, ln) }()
	if _, err := NewClient(path).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after Serve returned: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after Serve returned:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
