package platform

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/dbconn"
	"tenantry/registry"
)

// TestCreateCluster_NothingHalfMade: `cluster create` checks the cluster's
// name, every member name it derives and the number of standbys before it
// makes anything, and removes a cluster it made but could not record; a
// retry starts from nothing (issue 16, item 4).
func TestCreateCluster_NothingHalfMade(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	c := &control.Client{BaseURL: plat.APIURL, Token: plat.Local.State.AdminToken}
	long := strings.Repeat("c", 62) // a valid cluster name whose member names are too long
	tests := []struct {
		name string
		req  control.CreateClusterRequest
	}{
		{"62-character name", control.CreateClusterRequest{Name: long, Standbys: 1}},
		{"62-character name, no standby", control.CreateClusterRequest{Name: long}},
		{"61-character name, ten standbys", control.CreateClusterRequest{Name: long[:61], Standbys: 10}},
		{"too many standbys", control.CreateClusterRequest{Name: "many-standbys", Standbys: control.MaxStandbys + 1}},
		{"negative standbys", control.CreateClusterRequest{Name: "negative-standbys", Standbys: -1}},
		{"invalid name", control.CreateClusterRequest{Name: "Bad_Name", Standbys: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateCluster(ctx, tc.req)
			var apiErr *control.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Code != "invalid_request" {
				t.Fatalf("err = %v, want 400 invalid_request", err)
			}
			wantNoCluster(t, tc.req.Name)
		})
	}

	// A failure after the cluster was made (here: recording it) removes it
	// again, however often it is retried; the next success makes exactly
	// the members asked for.
	const name = "undone"
	creds := &failingCredentials{Credentials: plat.Vault, fail: 2}
	svc, err := control.NewService(control.Config{Store: plat.Store, Credentials: creds, Secret: []byte(plat.Local.State.Secret), Provisioner: plat.Local})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := svc.CreateCluster(ctx, control.CreateClusterRequest{Name: name, Standbys: 1}); !errors.Is(err, errInjected) {
			t.Fatalf("attempt %d: err = %v, want the injected failure", attempt, err)
		}
		wantNoCluster(t, name)
	}
	cl, err := svc.CreateCluster(ctx, control.CreateClusterRequest{Name: name, Standbys: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plat.Local.RemoveCluster(context.Background(), name) })
	if len(cl.Members) != 2 || len(plat.Local.Cluster(name)) != 2 || len(plat.Local.State.Clusters[name]) != 2 {
		t.Errorf("after two failed attempts: %d members recorded, %d running, %d in the state; want 2 each",
			len(cl.Members), len(plat.Local.Cluster(name)), len(plat.Local.State.Clusters[name]))
	}
}

// wantNoCluster fails if anything of local cluster name exists: a member
// directory, an entry in platform.json (in memory or on disk), a running
// member, or a registry entry.
func wantNoCluster(t *testing.T, name string) {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(plat.Local.Dir, "clusters", name+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) > 0 {
		t.Errorf("member directories left behind: %v", dirs)
	}
	if n := len(plat.Local.Cluster(name)); n > 0 {
		t.Errorf("%d members of %s still running", n, name)
	}
	st, err := ReadState(plat.Local.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Clusters[name]; ok {
		t.Errorf("%s still records cluster %s: %v", StateFile, name, st.Clusters[name])
	}
	snap, err := plat.Store.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Clusters[name]; ok {
		t.Errorf("the registry records cluster %s", name)
	}
}

var errInjected = errors.New("injected: recording the cluster failed")

// failingCredentials is the platform's registry of cluster credentials
// whose first fail CreateCluster calls fail, as a lost control database
// would.
type failingCredentials struct {
	control.Credentials
	fail int
}

func (s *failingCredentials) CreateCluster(ctx context.Context, c registry.Cluster, cred dbconn.Credential) error {
	if s.fail > 0 {
		s.fail--
		return errInjected
	}
	return s.Credentials.CreateCluster(ctx, c, cred)
}
