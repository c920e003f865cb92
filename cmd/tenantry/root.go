package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"tenantry/registry"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// errUsage marks an error as bad usage (exit code 2).
var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// app carries what every subcommand shares: output streams, the output
// format, the logger, and how to reach the control plane.
type app struct {
	stdout, stderr io.Writer
	output         string // "text" or "json"
	logFormat      string
	logLevel       string
	dataDir        string
	apiAddr        string
	tokenFile      string
	log            *slog.Logger
}

// commands registers subcommand constructors; each subcommand's file adds
// itself in init so that files do not contend over one list.
var commands []func(*app) *cobra.Command

func register(f func(*app) *cobra.Command) { commands = append(commands, f) }

// Main runs the CLI with args and returns the process exit code. End-to-end
// tests call it directly.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return MainContext(ctx, args, stdout, stderr)
}

// MainContext is Main with a caller-owned context.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "tenantry",
		Short:         "Multi-tenant SaaS platform kit for PostgreSQL",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return usageErr("--output must be text or json, not %q", a.output)
			}
			var err error
			a.log, err = newLogger(stderr, a.logFormat, a.logLevel)
			return err
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&a.dataDir, "data-dir", envOr("TENANTRY_DATA_DIR", ".tenantry"), "local platform data directory ($TENANTRY_DATA_DIR)")
	pf.StringVar(&a.apiAddr, "api", os.Getenv("TENANTRY_API"), "control plane URL ($TENANTRY_API; default: read from the data directory)")
	pf.StringVar(&a.tokenFile, "token-file", "", "file holding the control plane admin token (else $TENANTRY_TOKEN, else read from the data directory)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", errUsage, err) })
	for _, f := range commands {
		root.AddCommand(f(a))
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	if errors.Is(err, errUsage) || isCobraUsage(err) || errors.Is(err, registry.ErrInvalid) {
		code = exitUsage
	}
	if a.output == "json" {
		_ = json.NewEncoder(stderr).Encode(map[string]any{"error": err.Error(), "code": errorCode(err)})
	} else {
		fmt.Fprintln(stderr, "error:", err)
	}
	return code
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format must be text or json, not %q", format)
}

// printJSON writes v as one JSON object on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
