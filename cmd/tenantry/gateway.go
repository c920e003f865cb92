package main

import (
	"os"

	"github.com/spf13/cobra"

	"tenantry/gateway"
	"tenantry/httpedge"
	"tenantry/tenantsig"
)

func init() { register(newGatewayCmd) }

func newGatewayCmd(a *app) *cobra.Command {
	var cfg gateway.RunConfig
	var keyFile, secretFile string
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the gateway: authenticate API keys, route tenants to stacks, proxy to instances",
		Long: `Runs the HTTP gateway. It follows the registry in the control database (routes,
stacks, API keys) and swaps its routing table on every change. SIGTERM or Ctrl-C stops
accepting connections and drains in-flight requests (up to 30s).

It signs tenant headers with the tenant-header root key ($TENANTRY_HEADER_ROOT_KEY or
--header-key-file, hex; ` + "`tenantry header-key`" + ` prints it), or derives that key from the
platform secret ($TENANTRY_SECRET or --secret-file) when no root key is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.ControlDSN == "" {
				return usageErr("--control-dsn (or $TENANTRY_CONTROL_DSN) is required")
			}
			root, err := headerRootKey(keyFile, secretFile)
			if err != nil {
				return err
			}
			cfg.HeaderKey, cfg.Logger = root, a.log.With("component", "gateway")
			return gateway.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listeners.Public, "listen", "127.0.0.1:8080", "address to listen on (port 0: any free port)")
	f.StringVar(&cfg.Listeners.Admin, "admin-listen", "127.0.0.1:8081", httpedge.AdminListenUsage)
	f.StringVar(&cfg.ControlDSN, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&keyFile, "header-key-file", "", "file holding the tenant-header root key, hex (else $TENANTRY_HEADER_ROOT_KEY)")
	f.StringVar(&secretFile, "secret-file", "", "file holding the platform secret, used only when no root key is given (else $TENANTRY_SECRET)")
	f.StringVar(&cfg.Listeners.AddrFile, "addr-file", "", "write the gateway's URL to this file once it listens")
	return cmd
}

// headerRootKey is the tenant-header root key: given, or derived from the
// platform secret.
func headerRootKey(keyFile, secretFile string) ([]byte, error) {
	if keyFile != "" || os.Getenv("TENANTRY_HEADER_ROOT_KEY") != "" {
		return hexSecretFrom(keyFile, "TENANTRY_HEADER_ROOT_KEY", "--header-key-file")
	}
	secret, err := secretFrom(secretFile, "TENANTRY_SECRET", "--secret-file")
	if err != nil {
		return nil, usageErr("a tenant-header key is required: $TENANTRY_HEADER_ROOT_KEY or --header-key-file, or the platform secret ($TENANTRY_SECRET or --secret-file)")
	}
	return tenantsig.RootKey([]byte(secret)), nil
}
