package platform

import (
	"errors"
	"testing"
	"time"

	"tenantry/control"
	"tenantry/dbconn"
	"tenantry/pgtest"
	"tenantry/registry"
)

// TestFollow_ExternalPrimary registers a cluster tenantry does not run, has
// "its HA manager" fail it over (stop the primary, promote the standby) and
// sees the registry follow: never promoting anything itself.
func TestFollow_ExternalPrimary(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	p := pgtest.MustNewCluster(t, "ext-follow")
	s := pgtest.MustStandby(t, p)
	_, err := plat.Service.RegisterCluster(ctx, control.RegisterClusterRequest{Name: "ext-1",
		Members: []registry.Member{
			{Name: "ext-1-a", Host: p.Host, Port: p.Port, Zone: "z1", Role: registry.RolePrimary},
			{Name: "ext-1-b", Host: s.Host, Port: s.Port, Zone: "z2", Role: registry.RoleStandby},
		},
		TLS:        dbconn.TLS{Mode: dbconn.SSLDisable},
		Credential: dbconn.Credential{User: "postgres", Password: p.Password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plat.Store.DeleteCluster(ctx, "ext-1") })
	if _, err := apiClient().SetSync(ctx, "ext-1", true); !errors.Is(err, control.ErrNotSupported) {
		t.Fatalf("set-sync of an externally managed cluster: %v, want ErrNotSupported", err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	err = poll(ctx, "registry follows ext-1-b", func() (bool, error) {
		snap, err := plat.Store.Snapshot(ctx)
		if err != nil {
			return false, err
		}
		c := snap.Clusters["ext-1"]
		pm, _ := c.Primary()
		a, _ := c.Member("ext-1-a")
		return pm.Name == "ext-1-b" && a.Role == registry.RoleStandby, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("registry followed the external primary %.2f s after its promotion", time.Since(promoted).Seconds())
	evs, err := apiClient().Events(ctx, "ext-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[len(evs)-1].Kind != registry.EventFollowed {
		t.Errorf("events of ext-1: %+v, want %s last", evs, registry.EventFollowed)
	}
}
