package main

import (
	"context"
	crand "crypto/rand"
	"net/http/httptest"
	"os"
	"path/filepath"

	"tenantry/localpg"
	"tenantry/oms"
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

// benchOMS starts a temporary cluster with an OMS database and n in-process
// OMS instances on loopback (over a superuser pool sized for workers); it
// returns their URLs and the secret their tenant headers are signed with.
// stop shuts everything down.
func (a *app) benchOMSInstances(ctx context.Context, name string, workers, n int) (urls []string, secret []byte, stop func(), err error) {
	c, stopCluster, err := a.tempCluster(ctx, name)
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := benchOMSDatabase(ctx, c, workers)
	if err != nil {
		stopCluster()
		return nil, nil, nil, err
	}
	var servers []*httptest.Server
	stop = func() {
		for _, hs := range servers {
			hs.Close()
		}
		pool.Close()
		stopCluster()
	}
	secret = make([]byte, 32)
	_, _ = crand.Read(secret)
	for range n {
		srv, err := oms.NewServer(oms.Config{DB: oms.PoolDB{Pool: pool}, Secret: secret, Logger: a.log})
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		hs := httptest.NewServer(srv)
		servers = append(servers, hs)
		urls = append(urls, hs.URL)
	}
	return urls, secret, stop, nil
}
