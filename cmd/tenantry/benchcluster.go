package main

import (
	"context"
	"os"
	"path/filepath"

	"tenantry/localpg"
)

// tempCluster starts a throwaway local PostgreSQL cluster for a benchmark
// in a new temporary directory; stop destroys it and removes the directory.
func (a *app) tempCluster(ctx context.Context, name string) (c *localpg.Cluster, stop func(), err error) {
	dir, err := os.MkdirTemp("", "tenantry-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	// The postgres user (when running as root) must reach the cluster
	// directory inside it.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	a.log.Info("starting temporary cluster", "dir", dir)
	c, err = localpg.Create(ctx, localpg.Config{Dir: filepath.Join(dir, "pg"), Name: name})
	if err == nil {
		err = c.Start(ctx)
	}
	stop = func() {
		if c != nil {
			_ = c.Destroy(context.WithoutCancel(ctx))
		}
		os.RemoveAll(dir)
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	return c, stop, nil
}
