package main

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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"tenantry/httpedge"
	"tenantry/oms"
	"tenantry/provision"
	"tenantry/registry"
	"tenantry/route"
)

func init() { register(newOMSCmd) }

// omsShutdownTimeout bounds how long in-flight requests may take to drain
// after SIGTERM.
const omsShutdownTimeout = 30 * time.Second

// omsCmd serves the reference order-management service.
type omsCmd struct {
	a          *app
	listen     string
	adminAddr  string
	addrFile   string
	controlDSN string
	secret     string
	name       string
	stack      string
}

func newOMSCmd(a *app) *cobra.Command {
	c := &omsCmd{a: a}
	cmd := &cobra.Command{
		Use:   "oms",
		Short: "Serve the reference order-management service (OMS) API",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&c.listen, "listen", "127.0.0.1:0", "address to listen on")
	f.StringVar(&c.adminAddr, "admin-listen", "127.0.0.1:0", adminListenUsage)
	f.StringVar(&c.addrFile, "addr-file", "", "write the http://host:port URL here once listening")
	f.StringVar(&c.controlDSN, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&c.secret, "secret", os.Getenv("TENANTRY_SECRET"), "platform secret: verifies tenant headers, derives tenant DB passwords ($TENANTRY_SECRET)")
	f.StringVar(&c.name, "name", "", "instance name (a label in logs)")
	f.StringVar(&c.stack, "stack", "", "stack name (a label in logs)")
	return cmd
}

// Run serves until ctx ends, then drains in-flight requests.
func (c *omsCmd) Run(ctx context.Context) error {
	if c.controlDSN == "" {
		return usageErr("--control-dsn (or TENANTRY_CONTROL_DSN) is required")
	}
	if c.secret == "" {
		return usageErr("--secret (or TENANTRY_SECRET) is required")
	}
	log := c.a.log.With("service", "oms", "name", c.name, "stack", c.stack)
	secret := []byte(c.secret)

	store, err := registry.OpenStore(ctx, c.controlDSN, log)
	if err != nil {
		return fmt.Errorf("open registry: %w", err)
	}
	defer store.Close()
	watcher := registry.NewWatcher(c.controlDSN, registry.WatcherOptions{Logger: log})
	if err := watcher.Start(ctx); err != nil {
		return err
	}
	defer watcher.Stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	router, err := route.New(route.Config{
		Source:   watcher,
		Registry: store,
		Credentials: func(t string) (string, string) {
			return provision.RoleName(t), provision.Password(secret, t)
		},
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	if err := router.Start(ctx); err != nil {
		return err
	}
	defer router.Stop()

	srv, err := oms.NewServer(oms.Config{
		DB:         router,
		Secret:     secret,
		Logger:     log,
		Registerer: reg,
		// A paused tenant is back within seconds; a fenced one is unavailable
		// until an operator acts: both are 503, not a server fault.
		Retryable: func(err error) bool {
			return errors.Is(err, route.ErrTenantPaused) || errors.Is(err, route.ErrTenantFenced)
		},
		NotFound: func(err error) bool { return errors.Is(err, route.ErrTenantNotFound) },
	})
	if err != nil {
		return err
	}
	return serveWithAdmin(ctx, func(ctx context.Context) error { return c.serve(ctx, srv, log) },
		c.adminAddr, srv.AdminHandler(), omsShutdownTimeout, log)
}

func (c *omsCmd) serve(ctx context.Context, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if c.addrFile != "" {
		if err := writeFileAtomic(c.addrFile, []byte(url+"\n")); err != nil {
			ln.Close()
			return fmt.Errorf("write addr file: %w", err)
		}
	}
	log.Info("oms listening", "url", url)
	if err := httpedge.Serve(ctx, httpedge.NewServer(h, httpedge.Limits{}, log), ln, omsShutdownTimeout); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("oms drained")
	return nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader never sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
