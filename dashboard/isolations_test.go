package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tenantry/dashboard"
	"tenantry/isolate"
	"tenantry/registry"
	"tenantry/workflow"
)

// fakeIsolations is an isolation service with one isolation, recording the
// commands it is sent; refuse, when set, refuses them.
type fakeIsolations struct {
	in     *isolate.Info
	sent   []string
	refuse error
}

func (f *fakeIsolations) Get(_ context.Context, id string) (*isolate.Info, error) {
	if id != f.in.ID {
		return nil, fmt.Errorf("isolation %s: %w", id, workflow.ErrNotFound)
	}
	return f.in, nil
}

func (f *fakeIsolations) List(context.Context, string) ([]*isolate.Info, error) {
	return []*isolate.Info{f.in}, nil
}

func (f *fakeIsolations) Command(_ context.Context, tenant, name string) (*isolate.Info, error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.sent = append(f.sent, tenant+":"+name)
	return f.in, nil
}

// TestDashboard_Isolation: an isolation's page shows its phases, its move
// and cutover, the hypercare time left; complete, confirmed, is sent for
// the isolation's tenant; a refusal is shown with the configured text.
func TestDashboard_Isolation(t *testing.T) {
	_, s := mustPlatform(t, 1)
	now := time.Now()
	fake := &fakeIsolations{in: &isolate.Info{ID: "wf_iso1", Tenant: "t0000", Status: string(workflow.StatusRunning),
		Step: isolate.PhaseHypercare, Data: isolate.Data{SourceAlias: "pool-1", SourceStack: "shared", MoveID: "wf_mv1",
			RolloutID: "wf_ro1", PauseMS: 142.5, Streaming: 1, HypercareEnds: now.Add(72 * time.Hour),
			WaitingFor: "the end of hypercare or complete",
			Phases: []isolate.PhaseRecord{
				{Name: isolate.PhasePreflight, State: isolate.StateDone, StartedAt: now, Seconds: 0.1, Detail: "gate: sandbox"},
				{Name: isolate.PhaseHypercare, State: isolate.StateWaiting, StartedAt: now},
			}}}}
	d, err := dashboard.New(dashboard.Config{Registry: s, Isolations: fake, Secret: []byte("0123456789abcdef0123456789abcdef"),
		AdminToken: adminToken, ErrorText: func(err error) string { return err.Error() + " (wrong_state)" }})
	must(t, err)
	iso := httptestServer(t, d)
	c := browser(t)
	login(t, c, iso, adminToken)

	status, body := get(t, c, iso+"/ui/isolations/wf_iso1")
	for _, want := range []string{`<b id="phase">hypercare</b>`, `href="/ui/moves/wf_mv1"`, `href="/ui/rollouts/wf_ro1"`,
		"142.5 ms", "gate: sandbox", "71h59m left", `id="cmd-complete"`, `id="cmd-cutback"`, `data-stream="/ui/isolations/wf_iso1/stream"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("isolation page (%d) lacks %q:\n%s", status, want, body)
		}
	}
	if status, _ := get(t, c, iso+"/ui/isolations/wf_nope"); status != http.StatusNotFound {
		t.Fatalf("unknown isolation = %d, want 404", status)
	}

	_, confirm := get(t, c, iso+"/ui/isolations/wf_iso1/complete")
	m := csrfRe.FindStringSubmatch(confirm)
	if m == nil || !strings.Contains(confirm, "purge the pooled copy") {
		t.Fatalf("confirmation page:\n%s", confirm)
	}
	send := func() *http.Response {
		resp, err := c.PostForm(iso+"/ui/isolations/wf_iso1/complete", url.Values{"csrf": {m[1]}})
		must(t, err)
		resp.Body.Close()
		return resp
	}
	if r := send(); r.StatusCode != http.StatusSeeOther || !strings.HasSuffix(r.Header.Get("Location"), "?done=complete") || len(fake.sent) != 1 || fake.sent[0] != "t0000:complete" {
		t.Fatalf("complete: %d %s, sent %v", r.StatusCode, r.Header.Get("Location"), fake.sent)
	}
	fake.refuse = fmt.Errorf("%w: complete: the isolation is at promote", isolate.ErrWrongState)
	r := send()
	_, page := get(t, c, iso+r.Header.Get("Location"))
	if want := `<p class="error" id="error">isolation is not in a state for this command: complete: the isolation is at promote (wrong_state)</p>`; !strings.Contains(page, want) {
		t.Fatalf("refused complete: page lacks %s:\n%s", want, page)
	}

	fake.in.Status, fake.in.Data.Outcome = string(workflow.StatusSucceeded), "completed"
	if _, body := get(t, c, iso+"/ui/isolations/wf_iso1"); strings.Contains(body, "cmd-") || strings.Contains(body, `id="hypercare"`) {
		t.Fatalf("an ended isolation offers commands or hypercare:\n%s", body)
	}
}

// TestDashboard_Cluster: a cluster's page shows each member's probe: a
// standby's replication state and replay lag, an unreachable member's
// error; an invalid cluster name is a 400.
func TestDashboard_Cluster(t *testing.T) {
	_, s := mustPlatform(t, 0)
	lag, secs, rec := int64(3<<20), 0.25, true
	probe := func(_ context.Context, name string) ([]dashboard.MemberHealth, error) {
		return []dashboard.MemberHealth{
			{Member: registry.Member{Name: "m1", Host: "127.0.0.1", Port: 5432, Role: registry.RolePrimary}, Reachable: true},
			{Member: registry.Member{Name: "m2", Host: "127.0.0.1", Port: 5433, Zone: "z2", Role: registry.RoleStandby}, Reachable: true,
				InRecovery: &rec, Replication: "streaming", LagBytes: &lag, LagSeconds: &secs},
			{Member: registry.Member{Name: "m3", Host: "127.0.0.1", Port: 5434, Role: registry.RoleStandby}, Error: "connection refused"},
		}, nil
	}
	d, err := dashboard.New(dashboard.Config{Registry: s, ClusterProbe: probe, Secret: []byte("0123456789abcdef0123456789abcdef"), AdminToken: adminToken})
	must(t, err)
	srv := httptestServer(t, d)
	c := browser(t)
	login(t, c, srv, adminToken)
	_, body := get(t, c, srv+"/ui/clusters/c1")
	for _, want := range []string{"<td>streaming</td>", `<td class="lag">3.0 MiB, 0.25 s</td>`, "connection refused", `<a href="/ui/clusters/c1">`} {
		if want == `<a href="/ui/clusters/c1">` {
			_, body = get(t, c, srv+"/ui/")
		}
		if !strings.Contains(body, want) {
			t.Fatalf("page lacks %q:\n%s", want, body)
		}
	}
	if status, _ := get(t, c, srv+"/ui/clusters/Bad%20Name"); status != http.StatusBadRequest {
		t.Fatalf("invalid cluster name = %d, want 400", status)
	}
}
