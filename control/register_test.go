package control_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"tenantry/control"
	"tenantry/dbconn"
	"tenantry/localpg"
	"tenantry/pgtest"
	"tenantry/registry"
)

// TestService_RegisterCluster: a cluster is registered only when every
// member passes the checks; each refusal names the problem and changes
// nothing.
func TestService_RegisterCluster(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	c := pgtest.MustCluster(t)
	replica := pgtest.MustNewClusterWith(t, "walreplica", map[string]string{"wal_level": "replica", "max_wal_senders": "4"})
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	member := func(name string, cl *localpg.Cluster, role registry.Role) registry.Member {
		return registry.Member{Name: name, Host: cl.Host, Port: cl.Port, Role: role, Zone: "z1"}
	}
	plain := dbconn.TLS{Mode: dbconn.SSLDisable}
	before := a.version(t)
	for _, tc := range []struct {
		name    string
		req     control.RegisterClusterRequest
		want    error
		problem string
	}{
		{"bad name", control.RegisterClusterRequest{Name: "Bad Name", Members: []registry.Member{member("m-0", c, registry.RolePrimary)},
			TLS: plain, Credential: c.Credential()}, registry.ErrInvalid, "cluster name"},
		{"no primary", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{member("m-0", c, registry.RoleStandby)},
			TLS: plain, Credential: c.Credential()}, registry.ErrInvalid, "primary"},
		{"bad sslmode", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{member("m-0", c, registry.RolePrimary)},
			TLS: dbconn.TLS{Mode: "verify-full"}, Credential: c.Credential()}, registry.ErrInvalid, "CA file"},
		{"unreachable", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{
			{Name: "m-0", Host: "127.0.0.1", Port: port, Role: registry.RolePrimary}},
			TLS: plain, Credential: c.Credential()}, control.ErrClusterCheck, "unreachable"},
		{"wrong password", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{member("m-0", c, registry.RolePrimary)},
			TLS: plain, Credential: dbconn.Credential{User: localpg.Superuser, Password: "wrong"}}, control.ErrClusterCheck, "password authentication failed"},
		{"wal_level replica", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{member("m-0", replica, registry.RolePrimary)},
			TLS: plain, Credential: replica.Credential()}, control.ErrClusterCheck, "wal_level is replica"},
		{"few senders", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{member("m-0", replica, registry.RolePrimary)},
			TLS: plain, Credential: replica.Credential()}, control.ErrClusterCheck, "max_wal_senders is 4"},
		{"primary registered as standby", control.RegisterClusterRequest{Name: "ext", Members: []registry.Member{
			member("m-0", c, registry.RolePrimary), member("m-1", replica, registry.RoleStandby)},
			TLS: plain, Credential: c.Credential()}, control.ErrClusterCheck, "not in recovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.client.RegisterCluster(ctx, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.want, tc.problem)
			}
		})
	}
	a.wantUnchanged(t, before)
	snap, err := a.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Clusters["ext"]; ok {
		t.Fatal("a refused cluster was registered")
	}

	// A fit cluster registers with its TLS settings and its credential,
	// which the control plane then uses (an alias on it works).
	got, err := a.client.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "ext",
		Members: []registry.Member{member("ext-0", c, registry.RolePrimary)}, TLS: plain, Credential: c.Credential()})
	if err != nil {
		t.Fatal(err)
	}
	if got.TLS.Mode != dbconn.SSLDisable || len(got.Members) != 1 {
		t.Fatalf("registered %+v", got)
	}
	if _, err := a.client.CreateAlias(ctx, registry.Alias{Name: "ext-db", Cluster: "ext", Database: pgtest.DBName(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "ext",
		Members: []registry.Member{member("ext-0", c, registry.RolePrimary)}, TLS: plain, Credential: c.Credential()}); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("second registration: %v, want ErrExists", err)
	}
	var ae *control.APIError
	if _, err := a.client.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "ext2",
		Members: []registry.Member{member("m-0", replica, registry.RolePrimary)}, TLS: plain, Credential: replica.Credential()}); !errors.As(err, &ae) ||
		ae.Status != http.StatusUnprocessableEntity && ae.Status != 0 || ae.Details["problems"] == nil {
		t.Fatalf("refusal: %#v, want the problems in the details", err)
	}
}

// TestService_RegisterClusterTLS: a cluster registered with sslmode
// verify-full and its CA is checked, prepared and used over verified TLS; a
// wrong CA, or a server without TLS under require, is refused by name.
func TestService_RegisterClusterTLS(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	tc, caFile := pgtest.MustTLSCluster(t, "tls")
	plain := pgtest.MustCluster(t)
	_, otherCA := pgtest.MustTLSCluster(t, "tls-other")
	members := func(c *localpg.Cluster) []registry.Member {
		return []registry.Member{{Name: "m-0", Host: c.Host, Port: c.Port, Role: registry.RolePrimary}}
	}
	for _, bad := range []struct {
		name string
		c    *localpg.Cluster
		tls  dbconn.TLS
		want string
	}{
		{"another CA", tc, dbconn.TLS{Mode: dbconn.SSLVerifyFull, RootCert: otherCA}, "certificate"},
		{"no TLS on the server", plain, dbconn.TLS{Mode: dbconn.SSLRequire}, "unreachable"},
	} {
		_, err := a.client.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "tls-bad", Members: members(bad.c),
			TLS: bad.tls, Credential: bad.c.Credential()})
		if !errors.Is(err, control.ErrClusterCheck) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want a check failure naming %q", bad.name, err, bad.want)
		}
	}
	verify := dbconn.TLS{Mode: dbconn.SSLVerifyFull, RootCert: caFile}
	if _, err := a.client.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "tls", Members: members(tc),
		TLS: verify, Credential: tc.Credential()}); err != nil {
		t.Fatal(err)
	}
	db := pgtest.DBName(t)
	if _, err := a.client.CreateAlias(ctx, registry.Alias{Name: "tls-db", Cluster: "tls", Database: db}); err != nil {
		t.Fatal(err)
	}
	// What every connection to the cluster is built from: the registry's
	// endpoint with the cluster's TLS settings.
	snap, err := a.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := snap.AliasEndpoint("tls-db")
	if err != nil {
		t.Fatal(err)
	}
	if ep.TLS != verify {
		t.Fatalf("endpoint TLS %+v, want %+v", ep.TLS, verify)
	}
	conn, err := ep.Config(tc.Credential()).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ssl bool
	var version string
	if err := conn.QueryRow(ctx, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version); err != nil || !ssl {
		t.Fatalf("connection over TLS: %v %s, %v", ssl, version, err)
	}
	// The alias's database was made and prepared over that connection.
	var tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables == 0 {
		t.Fatalf("prepared tables %d, %v", tables, err)
	}
}
