package platform

import (
	"net"
	"net/url"
)

// reuseAddr returns the host:port of a URL a service of this data directory
// listened on before, when that port is free now, so that addresses printed
// by an earlier run keep working; otherwise 127.0.0.1:0 (any free port).
func reuseAddr(prevURL string) string {
	const anyPort = "127.0.0.1:0"
	u, err := url.Parse(prevURL)
	if prevURL == "" || err != nil || u.Port() == "" {
		return anyPort
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return anyPort
	}
	ln.Close()
	return u.Host
}
