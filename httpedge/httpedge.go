// Package httpedge holds what every tenantry HTTP server does the same way at
// its edge: the timeouts and header limit of the server (Limits, NewServer),
// serving until a context ends and then draining (Serve), and refusing an
// unauthenticated request without reading its body (DropConnection). The
// gateway, the OMS and the control plane API use it, so that no listener is
// left with net/http's defaults (no read, write or idle timeout; 1 MB of
// headers), which let one client hold a connection forever by announcing a
// body it never sends (issue 10).
package httpedge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"tenantry/jsonapi"
)

// Limits bounds what one client connection may hold. Zero values mean the
// defaults below.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers; 0 means 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, from its
	// first byte; 0 means 30s. A request whose body has not arrived by then
	// fails to read and its connection is closed.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response; 0 means 60s. Servers whose requests wait on
	// long work (the control plane) set it higher.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request; 0 means 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; 0 means 64 KiB.
	// Larger headers are answered 431.
	MaxHeaderBytes int
}

// Defaults of Limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return l
}

// NewServer returns an *http.Server for h with l's limits. Its own errors
// (TLS handshakes, panics in handlers, bad requests) go to log at debug
// level; nil discards them.
func NewServer(h http.Handler, l Limits, log *slog.Logger) *http.Server {
	l = l.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(l.ReadHeaderTimeout, l.ReadTimeout),
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		// "OPTIONS *" goes to the handler (which answers in JSON) instead of
		// net/http's empty 200.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Serve serves srv on ln until ctx ends (through jsonapi.Listener, so that
// net/http's own answers, such as 431 for oversized headers, are JSON), then stops accepting connections
// and waits up to drain for in-flight requests (closing what is left after
// that). It returns nil after a clean drain, the drain's error otherwise,
// and the server's error if it stops serving on its own.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(jsonapi.Listener(ln)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// DropConnection makes the response w is about to write the last on its
// connection and stops reading the request: whatever body the client
// announced is never read, and the connection closes as soon as the
// response is written. Handlers call it before answering a request they
// refuse without looking at its body (no or a wrong credential), so that a
// client cannot hold the connection open by never sending the body it
// announced. Call it before WriteHeader.
func DropConnection(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	// net/http drains up to 256 KiB of an unread body after the handler
	// returns, even when the connection is closing; an expired read
	// deadline makes that drain fail at once.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}
