package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"tenantry/gateway"
	"tenantry/registry"
)

func init() { register(newGatewayCmd) }

// gatewayCmd is `tenantry gateway`: the HTTP entry point, following the
// registry through a Watcher.
type gatewayCmd struct {
	a        *app
	listen   string
	admin    string
	dsn      string
	secret   string
	addrFile string
}

func newGatewayCmd(a *app) *cobra.Command {
	c := &gatewayCmd{a: a}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the gateway: authenticate API keys, route tenants to stacks, proxy to instances",
		Long: `Runs the HTTP gateway. It follows the registry in the control database (routes,
stacks, API keys) and swaps its routing table on every change. SIGTERM or Ctrl-C stops
accepting connections and drains in-flight requests (up to 30s).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to listen on (port 0: any free port)")
	f.StringVar(&c.admin, "admin-listen", "127.0.0.1:8081", adminListenUsage)
	f.StringVar(&c.dsn, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&c.secret, "secret", os.Getenv("TENANTRY_SECRET"), "platform secret that signs the tenant header ($TENANTRY_SECRET)")
	f.StringVar(&c.addrFile, "addr-file", "", "write the gateway's URL to this file once it listens")
	return cmd
}

// Run serves until ctx ends, then drains.
func (c *gatewayCmd) Run(ctx context.Context) error {
	if c.dsn == "" {
		return usageErr("--control-dsn (or $TENANTRY_CONTROL_DSN) is required")
	}
	if c.secret == "" {
		return usageErr("--secret (or $TENANTRY_SECRET) is required")
	}
	log := c.a.log.With("component", "gateway")
	w := registry.NewWatcher(c.dsn, registry.WatcherOptions{Logger: log})
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer w.Stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g, err := gateway.New(gateway.Config{Source: w, Secret: []byte(c.secret), Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	g.Start()
	defer g.Stop()
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if c.addrFile != "" {
		if err := writeAddrFile(c.addrFile, url); err != nil {
			ln.Close()
			return err
		}
	}
	log.Info("gateway listening", "url", url, "registry_version", w.Current().Version)
	serve := func(ctx context.Context) error { return g.Serve(ctx, ln) }
	if err := serveWithAdmin(ctx, serve, c.admin, g.AdminHandler(), 30*time.Second, log); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("gateway drained")
	return nil
}

// writeAddrFile writes url and a newline to path through a rename, so a
// reader polling for the file never sees it half written.
func writeAddrFile(path, url string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(url+"\n"), 0o644); err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write addr file: %w", err)
	}
	return nil
}
