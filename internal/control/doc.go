// Package control is the local API of a running weft node.
//
// A node serves it over HTTP on a unix socket (mode 0600, default path chosen by the CLI's --control flag):
//
//	GET /v1/status   Status as JSON
//	GET /v1/peers    []Peer as JSON
//	GET /v1/routes   []Route as JSON
//	GET /v1/proxy    []ProxyFlow as JSON
//	GET /metrics     Prometheus metrics (404 when the node has no gatherer)
//	GET /debug/pprof/...  net/http/pprof, only with weft up --debug-pprof
//
// The JSON types in types.go are a public interface: their field names are fixed, every field is
// documented in FieldDocs (checked against the structs by tests), and golden files in testdata/ pin the
// encoding. Client is the typed client the CLI uses; WriteStatus, WritePeers, WriteRoutes and WriteProxy
// print the aligned tables of `weft status`, `weft peers`, `weft routes` and `weft proxy`, and WriteJSON
// their --json form.
package control
