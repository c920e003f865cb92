package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"tenantry/localproc"
)

// GatewayOptions configures StartGateway.
type GatewayOptions struct {
	// Dir holds the gateway's files: gateway.log (0600), gateway.addr and
	// gateway.record (what a restarted owner adopts). Required.
	Dir string
	// Binary is the tenantry executable; empty means this process's.
	Binary string
	// Env configures the gateway (TENANTRY_CONTROL_DSN, TENANTRY_SECRET,
	// ...): secrets travel only here, never as arguments.
	Env []string
	// Listen is the gateway's address. Empty keeps the port this Dir's
	// gateway had before when it is free, else any free loopback port; and
	// a running gateway is adopted whatever address it listens on. A set
	// value is used as given, and a running gateway listening elsewhere is
	// replaced.
	Listen string
	// AdminListen is the address of the gateway's admin listener
	// (/metrics, /healthz). Empty keeps the port it had before when free,
	// else a free loopback port picked now (so that AdminURL can say it);
	// a running gateway is adopted whatever admin address it has.
	AdminListen string
	// Exited is called when the gateway exits without Stop (it is not
	// restarted; the caller decides).
	Exited func(err error)
	// StartTimeout bounds the wait for a new gateway's health; 0 means
	// 30 s. StopTimeout is Stop's SIGTERM-to-SIGKILL wait; 0 means 35 s
	// (the gateway drains for up to 30 s).
	StartTimeout time.Duration
	StopTimeout  time.Duration
	Logger       *slog.Logger
}

// Gateway is the gateway process of a local platform: `tenantry gateway
// --listen ADDR --admin-listen ADDR --addr-file DIR/gateway.addr`, run through localproc so
// that it is not the owner's process. A kill -9 of the owner (`tenantry
// up`) leaves it serving from its last registry snapshot; the restarted
// owner's StartGateway adopts it. A clean shutdown must call Stop.
type Gateway struct {
	proc *localproc.Process
}

// URL is the gateway's base URL.
func (g *Gateway) URL() string { return g.proc.URL() }

// AdminURL is the base URL of the gateway's admin listener (/metrics).
func (g *Gateway) AdminURL() string {
	return "http://" + argValue(g.proc.Record().Argv, "--admin-listen")
}

// PID is the gateway's process id.
func (g *Gateway) PID() int { return g.proc.PID() }

// Adopted says whether StartGateway found the gateway already running.
func (g *Gateway) Adopted() bool { return g.proc.Adopted() }

// Stop stops the gateway (SIGTERM: it drains; SIGKILL after
// GatewayOptions.StopTimeout or when ctx ends). Its record stays in Dir,
// so that the next StartGateway knows the port to ask for again.
func (g *Gateway) Stop(ctx context.Context) error { return g.proc.Stop(ctx) }

// StartGateway runs the local platform's gateway: it adopts the gateway
// recorded in opts.Dir when that exact process still runs, with the same
// binary and environment, and answers its health check (see
// localproc.Adopt); otherwise it stops whatever is left of it and starts a
// new one, which it waits for until it answers. The returned gateway is the
// caller's to Stop.
func StartGateway(ctx context.Context, opts GatewayOptions) (*Gateway, error) {
	if opts.Dir == "" {
		return nil, errors.New("start gateway: Dir is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("start gateway: find tenantry binary: %w", err)
		}
		opts.Binary = exe
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	recPath := filepath.Join(opts.Dir, "gateway.record")
	rec, err := localproc.LoadRecord(recPath)
	switch {
	case err == nil:
		listen, admin := opts.Listen, opts.AdminListen
		if listen == "" {
			listen = argValue(rec.Argv, "--listen")
		}
		if admin == "" {
			admin = argValue(rec.Argv, "--admin-listen")
		}
		p, err := localproc.Adopt(ctx, rec, gatewaySpec(opts, listen, admin))
		if err == nil {
			log.Info("gateway adopted", "pid", p.PID(), "url", p.URL())
			return &Gateway{proc: p}, nil
		}
		log.Info("gateway not adopted; starting a new one", "err", err)
	case !errors.Is(err, os.ErrNotExist):
		log.Warn("unreadable gateway record; starting a new gateway", "err", err)
	}
	// Ask for the ports of the previous gateway first; if another program
	// takes one between the check and the gateway's bind, any port beats
	// none.
	prev := []string{rec.URL, "http://" + argValue(rec.Argv, "--admin-listen")}
	var errs []error
	for range 2 {
		listen, admin := opts.Listen, opts.AdminListen
		if listen == "" {
			listen = reuseAddr(prev[0])
		}
		if admin == "" {
			if admin = reuseAddr(prev[1]); admin == anyLoopbackPort {
				if admin, err = freeLoopbackAddr(); err != nil {
					return nil, fmt.Errorf("start gateway: %w", err)
				}
			}
		}
		g, err := startGateway(ctx, opts, recPath, listen, admin)
		if err == nil {
			return g, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (opts.Listen != "" && opts.AdminListen != "") {
			break
		}
		log.Warn("gateway did not start; trying other ports", "listen", listen, "admin_listen", admin, "err", err)
		prev = []string{"", ""}
	}
	return nil, errors.Join(errs...)
}

const anyLoopbackPort = "127.0.0.1:0"

// startGateway starts a new gateway listening on listen, records it and
// waits until it answers; on failure it stops it.
func startGateway(ctx context.Context, opts GatewayOptions, recPath, listen, admin string) (*Gateway, error) {
	p, err := localproc.Start(gatewaySpec(opts, listen, admin))
	if err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err = p.Ready(rctx); err == nil {
		err = localproc.SaveRecord(recPath, p.Record())
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start gateway: %w", err), p.Stop(context.WithoutCancel(ctx)))
	}
	return &Gateway{proc: p}, nil
}

func gatewaySpec(opts GatewayOptions, listen, admin string) localproc.Spec {
	stop := opts.StopTimeout
	if stop <= 0 {
		stop = 35 * time.Second
	}
	spec := localproc.Spec{
		Name:   "gateway",
		Binary: opts.Binary,
		Args: []string{"gateway", "--listen", listen, "--admin-listen", admin,
			"--addr-file", filepath.Join(opts.Dir, "gateway.addr")},
		Env:         opts.Env,
		LogFile:     filepath.Join(opts.Dir, "gateway.log"),
		AddrFile:    filepath.Join(opts.Dir, "gateway.addr"),
		StopTimeout: stop,
	}
	if opts.Exited != nil {
		spec.Exited = func(_ *localproc.Process, err error) { opts.Exited(err) }
	}
	return spec
}

// freeLoopbackAddr returns a loopback address with a port that is free now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", anyLoopbackPort)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// argValue returns the argument after flag in argv; "" if there is none.
func argValue(argv []string, flag string) string {
	i := slices.Index(argv, flag)
	if i < 0 || i+1 >= len(argv) {
		return ""
	}
	return argv[i+1]
}
