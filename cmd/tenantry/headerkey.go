package main

import (
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"

	"tenantry/registry"
	"tenantry/tenantsig"
)

func init() { register(newHeaderKeyCmd) }

// newHeaderKeyCmd is `tenantry header-key [STACK]`: the keys that sign
// tenant headers, for deploying a gateway or a stack's instances by hand.
func newHeaderKeyCmd(a *app) *cobra.Command {
	var secretFile string
	cmd := &cobra.Command{
		Use:   "header-key [STACK]",
		Short: "Print the tenant-header root key (for a gateway) or a stack's key (for its instances), hex",
		Long: `Prints a key derived from the platform secret ($TENANTRY_SECRET, --secret-file, or the
local platform's data directory): without STACK the tenant-header root key, which a gateway
needs ($TENANTRY_HEADER_ROOT_KEY); with STACK that stack's key, which its instances need
($TENANTRY_HEADER_KEY) and which opens nothing on any other stack.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := a.platformSecretFrom(secretFile)
			if err != nil {
				return err
			}
			key := tenantsig.RootKey(secret)
			if len(args) == 1 {
				if err := registry.ValidateName("stack", args[0]); err != nil {
					return err
				}
				key = tenantsig.StackKey(key, args[0])
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"key": hex.EncodeToString(key)})
			}
			_, err = fmt.Fprintln(a.stdout, hex.EncodeToString(key))
			return err
		},
	}
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the platform secret (else $TENANTRY_SECRET, else the data directory's)")
	return cmd
}
