package main

import (
	"context"
	"errors"
	"os"

	"tenantry/backup"
	"tenantry/platform"
	"tenantry/registry"
)

// controlDSN is $TENANTRY_CONTROL_DSN, or the local platform's control
// database from the data directory.
func (a *app) controlDSN() (string, error) {
	if dsn := os.Getenv("TENANTRY_CONTROL_DSN"); dsn != "" {
		return dsn, nil
	}
	st, err := platform.ReadState(a.dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return "", usageErr("no registry: set $TENANTRY_CONTROL_DSN, pass DSNs explicitly, or run `tenantry up` in data dir %s", a.dataDir)
	}
	if err != nil {
		return "", err
	}
	return st.ControlDSN, nil
}

// openRegistry opens the registry and the vault of clusters' admin
// credentials (the tools connect to tenant databases as them). Close the
// store when done.
func (a *app) openRegistry(ctx context.Context) (*registry.Store, *registry.Vault, error) {
	dsn, err := a.controlDSN()
	if err != nil {
		return nil, nil, err
	}
	secret, err := a.platformSecret()
	if err != nil {
		return nil, nil, err
	}
	s, err := registry.OpenStore(ctx, dsn, a.log)
	if err != nil {
		return nil, nil, err
	}
	v, err := registry.NewVault(s, secret)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, v, nil
}

// adminDSN resolves an endpoint through the registry to a connection string
// as its cluster's admin credential.
func (a *app) adminDSN(ctx context.Context, resolve func(*registry.Snapshot) (registry.Endpoint, error)) (string, error) {
	s, v, err := a.openRegistry(ctx)
	if err != nil {
		return "", err
	}
	defer s.Close()
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return "", err
	}
	ep, err := resolve(snap)
	if err != nil {
		return "", err
	}
	cred, err := v.ClusterCredential(ctx, ep.Cluster)
	if err != nil {
		return "", err
	}
	return ep.Config(cred).String(), nil
}

// aliasDSN resolves an alias through the registry.
func (a *app) aliasDSN(ctx context.Context, alias string) (string, error) {
	if err := registry.ValidateName("alias", alias); err != nil {
		return "", err
	}
	return a.adminDSN(ctx, func(snap *registry.Snapshot) (registry.Endpoint, error) { return snap.AliasEndpoint(alias) })
}

// tenantDSN resolves the database a tenant is served from now.
func (a *app) tenantDSN(ctx context.Context, tenant string) (string, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return "", err
	}
	return a.adminDSN(ctx, func(snap *registry.Snapshot) (registry.Endpoint, error) {
		_, ep, err := snap.Resolve(tenant)
		return ep, err
	})
}

// platformSecret is $TENANTRY_SECRET, else the local platform's secret from
// the data directory.
func (a *app) platformSecret() ([]byte, error) { return a.platformSecretFrom("") }

// platformSecretFrom is the platform secret: from file (a --secret-file) or
// $TENANTRY_SECRET when either is given, else the local platform's from the
// data directory.
func (a *app) platformSecretFrom(file string) ([]byte, error) {
	if file != "" || os.Getenv("TENANTRY_SECRET") != "" {
		s, err := secretFrom(file, "TENANTRY_SECRET", "--secret-file")
		return []byte(s), err
	}
	st, err := platform.ReadState(a.dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usageErr("no platform secret: set $TENANTRY_SECRET or --secret-file, or run `tenantry up` in data dir %s", a.dataDir)
	}
	if err != nil {
		return nil, err
	}
	return []byte(st.Secret), nil
}

// backupKey is the MAC key of backups (backup.Key of the platform secret).
func (a *app) backupKey(secretFile string) ([]byte, error) {
	secret, err := a.platformSecretFrom(secretFile)
	if err != nil {
		return nil, err
	}
	return backup.Key(secret), nil
}
