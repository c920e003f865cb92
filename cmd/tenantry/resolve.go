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

// snapshot reads the registry once.
func (a *app) snapshot(ctx context.Context) (*registry.Snapshot, error) {
	dsn, err := a.controlDSN()
	if err != nil {
		return nil, err
	}
	s, err := registry.OpenStore(ctx, dsn, a.log)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Snapshot(ctx)
}

// aliasDSN resolves an alias through the registry.
func (a *app) aliasDSN(ctx context.Context, alias string) (string, error) {
	if err := registry.ValidateName("alias", alias); err != nil {
		return "", err
	}
	snap, err := a.snapshot(ctx)
	if err != nil {
		return "", err
	}
	ep, err := snap.AliasEndpoint(alias)
	if err != nil {
		return "", err
	}
	return ep.SuperuserDSN(), nil
}

// tenantDSN resolves the database a tenant is served from now.
func (a *app) tenantDSN(ctx context.Context, tenant string) (string, error) {
	if err := registry.ValidateTenantID(tenant); err != nil {
		return "", err
	}
	snap, err := a.snapshot(ctx)
	if err != nil {
		return "", err
	}
	_, ep, err := snap.Resolve(tenant)
	if err != nil {
		return "", err
	}
	return ep.SuperuserDSN(), nil
}

// platformSecret is $TENANTRY_SECRET, or the local platform's secret from
// the data directory.
func (a *app) platformSecret() ([]byte, error) {
	if s := os.Getenv("TENANTRY_SECRET"); s != "" {
		return []byte(s), nil
	}
	st, err := platform.ReadState(a.dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usageErr("no platform secret: set $TENANTRY_SECRET, or run `tenantry up` in data dir %s", a.dataDir)
	}
	if err != nil {
		return nil, err
	}
	return []byte(st.Secret), nil
}

// backupKey is the MAC key of backups (backup.Key of the platform secret).
func (a *app) backupKey() ([]byte, error) {
	secret, err := a.platformSecret()
	if err != nil {
		return nil, err
	}
	return backup.Key(secret), nil
}
