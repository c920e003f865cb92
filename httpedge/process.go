package httpedge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// AdminListenUsage is the help text of the --admin-listen flag of every
// service with an admin listener.
const AdminListenUsage = "address of the admin listener (/metrics, /healthz); keep it off the public network"

// Listeners says where a service process (the gateway, an OMS instance)
// listens. Zero values mean the documented defaults.
type Listeners struct {
	// Public is the API's address; default 127.0.0.1:0 (any free port).
	Public string
	// Admin is the address of /metrics and /healthz; default 127.0.0.1:0.
	Admin string
	// AddrFile, when set, receives the public URL once it listens
	// (WriteAddrFile).
	AddrFile string
}

// Serve runs a service process until ctx ends: the admin listener on
// l.Admin serving admin, then the public listener on l.Public (announced in
// l.AddrFile) served by serve. When ctx ends, or either stops on its own,
// both drain (up to drain) and the first error is returned.
func (l Listeners) Serve(ctx context.Context, serve func(context.Context, net.Listener) error, admin http.Handler, drain time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	adminLn, err := net.Listen("tcp", orAny(l.Admin))
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	log.Info("admin listener", "url", "http://"+adminLn.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		defer cancel()
		if err := Serve(ctx, NewServer(admin, Limits{}, log), adminLn, drain); err != nil {
			errc <- fmt.Errorf("admin listener: %w", err)
			return
		}
		errc <- nil
	}()
	go func() {
		defer cancel()
		ln, err := net.Listen("tcp", orAny(l.Public))
		if err != nil {
			errc <- fmt.Errorf("listen: %w", err)
			return
		}
		url := "http://" + ln.Addr().String()
		if l.AddrFile != "" {
			if err := WriteAddrFile(l.AddrFile, url); err != nil {
				ln.Close()
				errc <- err
				return
			}
		}
		log.Info("listening", "url", url)
		if err := serve(ctx, ln); err != nil {
			errc <- fmt.Errorf("serve: %w", err)
			return
		}
		errc <- nil
	}()
	return errors.Join(<-errc, <-errc)
}

func orAny(addr string) string {
	if addr == "" {
		return "127.0.0.1:0"
	}
	return addr
}

// WriteAddrFile writes url and a newline to path through a temporary file
// in the same directory and a rename, so that a process polling for the
// file (the stack provider waiting for an instance, a test waiting for a
// server) never reads it half written.
func WriteAddrFile(path, url string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(url + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	return nil
}
