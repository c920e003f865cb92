package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tenantry/control"
	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

// TestClusterRegister runs `tenantry cluster register` against a control
// plane on loopback: each refusal exits 2 (bad input) or 1 (failed check)
// naming the problem and registers nothing; a fit cluster registers.
func TestClusterRegister(t *testing.T) {
	t.Setenv("TENANTRY_TOKEN", "adm_cli") // secrets never in flag values
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	store, err := registry.OpenStore(ctx, c.DSN(pgtest.MustDB(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	vault, err := registry.NewVault(store, []byte("cli-test-secret"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := control.NewService(control.Config{Store: store, Secret: []byte("cli-test-secret"), Credentials: vault})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.NewServer(svc, "adm_cli")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	replica := pgtest.MustNewClusterWith(t, "walreplica", map[string]string{"wal_level": "replica"})
	free, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	credFile := func(name string, cl *localpg.Cluster, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("# admin\nuser="+localpg.Superuser+"\npassword="+cl.Password+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, open := credFile("good", c, 0o600), credFile("open", c, 0o644)
	replicaCred := credFile("replica", replica, 0o600)
	addr := func(cl *localpg.Cluster) string { return fmt.Sprintf("%s:%d", cl.Host, cl.Port) }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"bad name", []string{"Bad_Name", "--member", "m-0=" + addr(c), "--credential-file", good}, nil, exitUsage, "must match"},
		{"bad member", []string{"ext", "--member", "m-0", "--credential-file", good}, nil, exitUsage, "NAME=HOST:PORT"},
		{"bad role", []string{"ext", "--member", "m-0=" + addr(c) + ",role=leader", "--credential-file", good}, nil, exitUsage, "role"},
		{"open credential file", []string{"ext", "--member", "m-0=" + addr(c), "--credential-file", open}, nil, exitUsage, "chmod 600"},
		{"no credential", []string{"ext", "--member", "m-0=" + addr(c)}, nil, exitUsage, "TENANTRY_CLUSTER_USER"},
		{"verify-full without CA", []string{"ext", "--member", "m-0=" + addr(c), "--credential-file", good, "--sslmode", "verify-full"}, nil, exitUsage, "CA file"},
		{"unreachable", []string{"ext", "--member", fmt.Sprintf("m-0=127.0.0.1:%d", free), "--credential-file", good}, nil, exitFailure, "unreachable"},
		{"wal_level replica", []string{"ext", "--member", "m-0=" + addr(replica), "--credential-file", replicaCred}, nil, exitFailure, "wal_level is replica"},
		{"wrong password from the environment", []string{"ext", "--member", "m-0=" + addr(c)},
			map[string]string{"TENANTRY_CLUSTER_USER": localpg.Superuser, "TENANTRY_CLUSTER_PASSWORD": "wrong"}, exitFailure, "password authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TENANTRY_CLUSTER_USER", "")
			t.Setenv("TENANTRY_CLUSTER_PASSWORD", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			args := append([]string{"--api", hs.URL, "--data-dir", dir, "cluster", "register"}, tc.args...)
			if code := MainContext(ctx, args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q", code, errb.String(), tc.code, tc.want)
			}
			if strings.Contains(errb.String(), c.Password) || strings.Contains(errb.String(), replica.Password) {
				t.Fatal("the error shows the password")
			}
		})
	}
	snap, err := store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clusters) != 0 {
		t.Fatalf("refused registrations left clusters: %v", snap.Clusters)
	}
	var out, errb bytes.Buffer
	args := []string{"--api", hs.URL, "cluster", "register", "ext", "--member", "ext-0=" + addr(c) + ",zone=z1",
		"--credential-file", good, "--sslmode", "disable"}
	if code := MainContext(ctx, args, &out, &errb); code != exitOK {
		t.Fatalf("register: exit %d: %s", code, errb.String())
	}
	cred, err := vault.ClusterCredential(ctx, "ext")
	if err != nil || cred != c.Credential() {
		t.Fatalf("stored credential %v, %v", cred, err)
	}
	if snap, err = store.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if m := snap.Clusters["ext"].Members; len(m) != 1 || m[0].Role != registry.RolePrimary || m[0].Zone != "z1" {
		t.Fatalf("members %+v", m)
	}
}
