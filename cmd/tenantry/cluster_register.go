package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"tenantry/control"
	"tenantry/dbconn"
	"tenantry/registry"
)

// clusterRegisterCmd registers a PostgreSQL cluster tenantry did not create.
type clusterRegisterCmd struct {
	a           *app
	members     []string
	credFile    string
	sslMode     string
	sslRootCert string
}

func newClusterRegisterCmd(a *app) *cobra.Command {
	c := &clusterRegisterCmd{a: a}
	cmd := &cobra.Command{
		Use:   "register NAME --member NAME=HOST:PORT[,role=primary|standby][,zone=Z] ... [--credential-file FILE]",
		Short: "Register an existing cluster (checked: reachable, PostgreSQL 15+, wal_level=logical, slots, senders)",
		Long: "Register an existing PostgreSQL cluster by its members' addresses. The first member is the primary\n" +
			"unless roles are given. tenantry connects as a superuser read from --credential-file (lines\n" +
			"user=NAME and password=SECRET; the file must not be readable by others) or from\n" +
			"$TENANTRY_CLUSTER_USER and $TENANTRY_CLUSTER_PASSWORD; never from a flag. Every member is checked\n" +
			"first; on any problem nothing is registered and each problem is named.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return c.Run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&c.members, "member", nil, "member NAME=HOST:PORT[,role=primary|standby][,zone=Z] (repeat for each)")
	f.StringVar(&c.credFile, "credential-file", "", "file with user=NAME and password=SECRET lines (mode 0600)")
	f.StringVar(&c.sslMode, "sslmode", "", "sslmode of every connection to the members: disable, allow, prefer (default), require, verify-ca, verify-full")
	f.StringVar(&c.sslRootCert, "sslrootcert", "", "CA file for verify-ca/verify-full (the same path on the control plane and on the members)")
	return cmd
}

// Run parses the members and credential, then asks the control plane.
func (c *clusterRegisterCmd) Run(ctx context.Context, name string) error {
	if err := registry.ValidateName("cluster", name); err != nil {
		return err
	}
	if len(c.members) == 0 {
		return usageErr("at least one --member NAME=HOST:PORT is required")
	}
	req := control.RegisterClusterRequest{Name: name, TLS: dbconn.TLS{Mode: c.sslMode, RootCert: c.sslRootCert}}
	if err := req.TLS.Validate(); err != nil {
		return usageErr("%v", err)
	}
	roles := false
	for _, s := range c.members {
		m, err := registry.ParseMemberSpec(s)
		if err != nil {
			return err
		}
		roles = roles || m.Role != ""
		req.Members = append(req.Members, m)
	}
	for i := range req.Members {
		if req.Members[i].Role == "" {
			req.Members[i].Role = registry.RoleStandby
			if i == 0 && !roles {
				req.Members[i].Role = registry.RolePrimary
			}
		}
	}
	cred, err := c.credential()
	if err != nil {
		return err
	}
	req.Credential = cred
	cl, err := c.a.client()
	if err != nil {
		return err
	}
	got, err := cl.RegisterCluster(ctx, req)
	if err != nil {
		return err
	}
	if c.a.output == "json" {
		return c.a.printJSON(got)
	}
	for _, m := range got.Members {
		fmt.Fprintf(c.a.stdout, "cluster %s member %s %s at %s:%d\n", got.Name, m.Name, m.Role, m.Host, m.Port)
	}
	return nil
}

// credential reads the admin credential from --credential-file, else from
// the environment.
func (c *clusterRegisterCmd) credential() (dbconn.Credential, error) {
	if c.credFile != "" {
		cred, err := dbconn.ReadCredentialFile(c.credFile)
		if err != nil {
			return cred, usageErr("%v", err)
		}
		return cred, nil
	}
	cred := dbconn.Credential{User: os.Getenv("TENANTRY_CLUSTER_USER"), Password: os.Getenv("TENANTRY_CLUSTER_PASSWORD")}
	if cred.User == "" {
		return cred, usageErr("no credential: pass --credential-file or set $TENANTRY_CLUSTER_USER and $TENANTRY_CLUSTER_PASSWORD")
	}
	return cred, nil
}
