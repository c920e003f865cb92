package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"tenantry/httpedge"
)

// adminListenUsage is the help text of --admin-listen.
const adminListenUsage = "address of the admin listener (/metrics, /healthz); keep it off the public network"

// serveWithAdmin runs serve (the public listener) and an admin listener on
// adminAddr serving admin, until ctx ends or either stops on its own; then
// both drain (up to drain) and the first error is returned.
func serveWithAdmin(ctx context.Context, serve func(context.Context) error, adminAddr string, admin http.Handler, drain time.Duration, log *slog.Logger) error {
	ln, err := net.Listen("tcp", adminAddr)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	log.Info("admin listener", "url", "http://"+ln.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		defer cancel()
		errc <- serve(ctx)
	}()
	go func() {
		defer cancel()
		if err := httpedge.Serve(ctx, httpedge.NewServer(admin, httpedge.Limits{}, log), ln, drain); err != nil {
			errc <- fmt.Errorf("admin listener: %w", err)
			return
		}
		errc <- nil
	}()
	return errors.Join(<-errc, <-errc)
}
