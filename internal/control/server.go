package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout is how long Serve waits for requests in flight (e.g. a CPU profile) after its context is
// cancelled before closing their connections.
const shutdownTimeout = 3 * time.Second

// Backend is what a running node implements to answer the control API. Its methods are called from
// request goroutines, concurrently, and must return values the server may keep (copies).
type Backend interface {
	// Status returns the node's own state.
	Status() Status
	// Peers returns every other node of the network, in any order; nil means none.
	Peers() []Peer
	// Routes returns every remote prefix, in any order; nil means none.
	Routes() []Route
	// Proxy returns every TCP flow the node carries over the KCP proxy, on either side, in any order; nil
	// means none.
	Proxy() []ProxyFlow
}

// Server serves the control API: GET /v1/status, /v1/peers, /v1/routes and /v1/proxy as JSON, /metrics and
// /debug/pprof/. Create it with NewServer.
type Server struct {
	backend Backend
	log     *slog.Logger
	mux     *http.ServeMux
}

// NewServer returns a server answering from b. A nil gatherer leaves /metrics unanswered (404); a nil log
// discards log records.
func NewServer(b Backend, gatherer prometheus.Gatherer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{backend: b, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, r, b.Status())
	})
	s.mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, r, nonNil(b.Peers()))
	})
	s.mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, r, nonNil(b.Routes()))
	})
	s.mux.HandleFunc("GET /v1/proxy", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, r, nonNil(b.Proxy()))
	})
	if gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}))
	}
	return s
}

// EnablePprof serves net/http/pprof under /debug/pprof/ (weft up --debug-pprof). It is off by default:
// profiles cost CPU, and /debug/pprof/cmdline shows the command line, a --network-secret included.
func (s *Server) EnablePprof() {
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Handle registers h for pattern (http.ServeMux syntax, e.g. "GET /v1/debug/flows"). It is the extension point
// for endpoints owned by other packages. It panics, as http.ServeMux does, when pattern conflicts with a
// registered one: that is a programming error, not bad input.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// ServeHTTP answers one request; it lets tests and other transports use the server without a socket.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// Serve answers requests on ln until ctx is cancelled, then shuts down gracefully and returns nil. It
// returns an error when serving fails otherwise. Either way it closes ln and removes the socket file.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	defer removeSocket(socketFile(ln), s.log)

	stopped := make(chan struct{})
	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			s.log.Warn("control API: requests still running at shutdown, closing them", "err", err)
			_ = hs.Close()
		}
	}()

	s.log.Info("control API listening", "socket", ln.Addr().String())
	err := hs.Serve(ln)
	close(stopped)
	<-shutdownDone
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	_ = ln.Close()
	return fmt.Errorf("serve control API on %s: %w", ln.Addr(), err)
}

// writeJSON encodes v as the response body.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("control API: encode response", "path", r.URL.Path, "err", err)
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	body = append(body, '\n')
	if _, err := w.Write(body); err != nil {
		s.log.Debug("control API: write response", "path", r.URL.Path, "err", err)
	}
}

// boundSocket is the file of a listening unix socket.
type boundSocket struct {
	path string
	info fs.FileInfo
}

// socketFile returns the file ln is bound to, or nil when ln is not bound to a file (TCP, abstract socket).
func socketFile(ln net.Listener) *boundSocket {
	ua, ok := ln.Addr().(*net.UnixAddr)
	if !ok || ua.Name == "" || ua.Name[0] == '@' {
		return nil
	}
	fi, err := os.Lstat(ua.Name)
	if err != nil {
		return nil
	}
	return &boundSocket{path: ua.Name, info: fi}
}

// removeSocket removes the socket file, unless it is gone or is no longer ours (another node replaced it).
func removeSocket(sock *boundSocket, log *slog.Logger) {
	if sock == nil {
		return
	}
	fi, err := os.Lstat(sock.path)
	if err != nil || !os.SameFile(fi, sock.info) {
		return
	}
	if err := os.Remove(sock.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("control API: remove socket file", "socket", sock.path, "err", err)
	}
}

// nonNil returns s, or an empty slice when s is nil, so that it encodes as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
