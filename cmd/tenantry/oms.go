package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"tenantry/httpedge"
	"tenantry/oms/instance"
	"tenantry/provision"
	"tenantry/registry"
)

func init() { register(newOMSCmd) }

func newOMSCmd(a *app) *cobra.Command {
	var cfg instance.Config
	var secretFile, keyFile, name string
	cmd := &cobra.Command{
		Use:   "oms",
		Short: "Serve the reference order-management service (OMS) API",
		Long: `Serves the OMS API as one instance of stack --stack. Secrets come from the environment
or files, never from flag values: the stack's tenant-header key ($TENANTRY_HEADER_KEY or
--header-key-file, hex; ` + "`tenantry header-key STACK`" + ` prints it) and what opens tenant
databases: $TENANTRY_TENANT_PASSWORDS (JSON {"tenant": "password"}: a dedicated stack's only
tenants), else the tenant-password key ($TENANTRY_TENANT_KEY, hex), else the platform secret
($TENANTRY_SECRET or --secret-file), from which that key is derived.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.ControlDSN == "" {
				return usageErr("--control-dsn (or TENANTRY_CONTROL_DSN) is required")
			}
			if err := registry.ValidateName("stack", cfg.Stack); err != nil {
				return usageErr("--stack: %v", err)
			}
			if err := tenantSecrets(&cfg, secretFile); err != nil {
				return err
			}
			var err error
			if cfg.HeaderKey, err = hexSecretFrom(keyFile, "TENANTRY_HEADER_KEY", "--header-key-file"); err != nil {
				return err
			}
			cfg.Logger = a.log.With("service", "oms", "name", name, "stack", cfg.Stack)
			return instance.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listeners.Public, "listen", "127.0.0.1:0", "address to listen on")
	f.StringVar(&cfg.Listeners.Admin, "admin-listen", "127.0.0.1:0", httpedge.AdminListenUsage)
	f.StringVar(&cfg.Listeners.AddrFile, "addr-file", "", "write the http://host:port URL here once listening")
	f.StringVar(&cfg.ControlDSN, "control-dsn", os.Getenv("TENANTRY_CONTROL_DSN"), "control database DSN ($TENANTRY_CONTROL_DSN)")
	f.StringVar(&secretFile, "secret-file", "", "file holding the platform secret (else $TENANTRY_SECRET)")
	f.StringVar(&keyFile, "header-key-file", "", "file holding this stack's tenant-header key, hex (else $TENANTRY_HEADER_KEY)")
	f.StringVar(&name, "name", "", "instance name (a label in logs)")
	f.StringVar(&cfg.Stack, "stack", "", "the stack this instance belongs to: only tenant headers signed for it are accepted (required)")
	return cmd
}

// tenantSecrets sets what opens tenant databases: $TENANTRY_TENANT_PASSWORDS,
// else $TENANTRY_TENANT_KEY, else the key derived from the platform secret.
func tenantSecrets(cfg *instance.Config, secretFile string) error {
	if js := os.Getenv("TENANTRY_TENANT_PASSWORDS"); js != "" {
		if err := json.Unmarshal([]byte(js), &cfg.TenantPasswords); err != nil || cfg.TenantPasswords == nil {
			return usageErr("$TENANTRY_TENANT_PASSWORDS: want a JSON object of tenant passwords")
		}
		return nil
	}
	if os.Getenv("TENANTRY_TENANT_KEY") != "" {
		var err error
		cfg.TenantKey, err = hexSecretFrom("", "TENANTRY_TENANT_KEY", "$TENANTRY_TENANT_KEY")
		return err
	}
	secret, err := secretFrom(secretFile, "TENANTRY_SECRET", "--secret-file")
	if err != nil {
		return usageErr("tenant credentials: $TENANTRY_TENANT_PASSWORDS, $TENANTRY_TENANT_KEY, $TENANTRY_SECRET or --secret-file is required")
	}
	cfg.TenantKey = provision.TenantKey([]byte(secret))
	return nil
}
