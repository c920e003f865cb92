package dashboard

import (
	"cmp"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"tenantry/isolate"
	"tenantry/move"
	"tenantry/registry"
	"tenantry/rollout"
	"tenantry/workflow"
)

// tenantsPerPage is the tenants view's page size: the view stays as fast
// with thousands of tenants as with ten.
const tenantsPerPage = 50

// overviewData is the overview: the platform at one registry version.
type overviewData struct {
	Version    int64
	Clusters   []*registry.Cluster
	Aliases    []aliasRow
	Stacks     []*registry.Stack
	Default    *registry.Route
	Routers    []registry.RouterInstance
	Tenants    int
	Operations []operation
	Probes     bool // clusters have pages with their members' health
}

type aliasRow struct {
	*registry.Alias
	Tenants int
}

// operation is a workflow in progress, linked to its view when the
// dashboard has one for its kind.
type operation struct {
	workflow.Workflow
	URL string
}

// operationURL is the view of a workflow; a workflow kind with a view of
// its own adds its case here.
func (d *Dashboard) operationURL(w workflow.Workflow) string {
	switch {
	case w.Kind == move.Kind && d.cfg.Moves != nil:
		return Prefix + "moves/" + url.PathEscape(w.ID)
	case w.Kind == rollout.Kind && d.cfg.Rollouts != nil:
		return Prefix + "rollouts/" + url.PathEscape(w.ID)
	case w.Kind == isolate.Kind && d.cfg.Isolations != nil:
		return Prefix + "isolations/" + url.PathEscape(w.ID)
	}
	return ""
}

func (d *Dashboard) overviewData(r *http.Request) (any, string, error) {
	ctx := r.Context()
	snap, err := d.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return nil, "", err
	}
	o := &overviewData{Probes: d.cfg.ClusterProbe != nil, Version: snap.Version, Tenants: len(snap.Tenants), Default: snap.Routes[registry.DefaultRoute]}
	o.Clusters = sortedValues(snap.Clusters, func(c *registry.Cluster) string { return c.Name })
	counts := map[string]int{}
	for _, t := range snap.Tenants {
		counts[t.Alias]++
	}
	for _, a := range sortedValues(snap.Aliases, func(a *registry.Alias) string { return a.Name }) {
		o.Aliases = append(o.Aliases, aliasRow{Alias: a, Tenants: counts[a.Name]})
	}
	o.Stacks = sortedValues(snap.Stacks, func(s *registry.Stack) string { return s.Name })
	if o.Routers, err = d.cfg.Registry.Routers(ctx); err != nil {
		return nil, "", err
	}
	if d.cfg.Operations != nil {
		ws, err := d.cfg.Operations.List(ctx, workflow.Filter{Status: workflow.StatusRunning})
		if err != nil {
			return nil, "", err
		}
		for _, w := range ws {
			o.Operations = append(o.Operations, operation{Workflow: w, URL: d.operationURL(w)})
		}
	}
	return o, "Overview", nil
}

// tenantRow is one tenant with its placement and route.
type tenantRow struct {
	*registry.Tenant
	Cluster string
	// Requests the gateways served the tenant this hour and the last.
	Requests int64
	Route    []registry.Backend
	Own      bool // the tenant has a route of its own
}

type tenantsData struct {
	Query, Alias string
	Aliases      []string
	Rows         []tenantRow
	Matched      int
	Page, Pages  int
	PrevURL      string
	NextURL      string
	Since        time.Time // of the request counts
}

// tenants lists tenants whose id contains the query (and on the alias
// chosen), one page at a time, sorted by id.
func (d *Dashboard) tenants(w http.ResponseWriter, r *http.Request, p *page) error {
	snap, err := d.cfg.Registry.Snapshot(r.Context())
	if err != nil {
		return err
	}
	q := r.URL.Query()
	td := &tenantsData{Query: strings.TrimSpace(q.Get("q")), Alias: q.Get("alias")}
	td.Page, _ = strconv.Atoi(q.Get("page"))
	td.Page = max(td.Page, 1)
	for name := range snap.Aliases {
		td.Aliases = append(td.Aliases, name)
	}
	slices.Sort(td.Aliases)
	var ids []string
	for id, t := range snap.Tenants {
		if strings.Contains(id, td.Query) && (td.Alias == "" || t.Alias == td.Alias) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	td.Matched = len(ids)
	td.Pages = max(1, (len(ids)+tenantsPerPage-1)/tenantsPerPage)
	td.Page = min(td.Page, td.Pages)
	for _, id := range ids[(td.Page-1)*tenantsPerPage : min(len(ids), td.Page*tenantsPerPage)] {
		t := snap.Tenants[id]
		row := tenantRow{Tenant: t}
		if a, ok := snap.Aliases[t.Alias]; ok {
			row.Cluster = a.Cluster
		}
		if rt, ok := snap.Routes[id]; ok {
			row.Route, row.Own = rt.Backends, true
		} else if rt, ok := snap.Routes[registry.DefaultRoute]; ok {
			row.Route = rt.Backends
		}
		td.Rows = append(td.Rows, row)
	}
	since := d.cfg.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	page := make([]string, len(td.Rows))
	for i, row := range td.Rows {
		page[i] = row.ID
	}
	traffic, err := d.cfg.Registry.TenantsTraffic(r.Context(), page, since)
	if err != nil {
		return err
	}
	for i := range td.Rows {
		td.Rows[i].Requests = traffic[td.Rows[i].ID]
	}
	td.Since = since
	pageURL := func(n int) string {
		v := url.Values{"q": {td.Query}, "alias": {td.Alias}, "page": {strconv.Itoa(n)}}
		return Prefix + "tenants?" + v.Encode()
	}
	if td.Page > 1 {
		td.PrevURL = pageURL(td.Page - 1)
	}
	if td.Page < td.Pages {
		td.NextURL = pageURL(td.Page + 1)
	}
	p.Title, p.Nav, p.Data = "Tenants", "tenants", td
	return d.render(w, http.StatusOK, "tenants", p)
}

type eventsData struct {
	Subject, Kind string
	Events        []registry.Event
	Limit         int
}

// events shows the newest registry events, filtered by subject and kind.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request, p *page) error {
	q := r.URL.Query()
	ed := &eventsData{Subject: strings.TrimSpace(q.Get("subject")), Kind: strings.TrimSpace(q.Get("kind")), Limit: 200}
	evs, err := d.cfg.Registry.Events(r.Context(), registry.EventFilter{Subject: ed.Subject, Kind: ed.Kind, Limit: ed.Limit, Newest: true})
	if err != nil {
		return err
	}
	ed.Events = evs
	p.Title, p.Nav, p.Data = "Events", "events", ed
	return d.render(w, http.StatusOK, "events", p)
}

func sortedValues[V any](m map[string]V, key func(V) string) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b V) int { return cmp.Compare(key(a), key(b)) })
	return out
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (d *Dashboard) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return d.cfg.Now().Sub(t).Round(time.Second).String() + " ago"
}

// until is the time left until t in whole minutes ("71h59m"), or "less than
// a minute": coarse, so that a live view that shows it changes once a
// minute, not on every render.
func (d *Dashboard) until(t time.Time) string {
	left := t.Sub(d.cfg.Now()).Truncate(time.Minute)
	if left <= 0 {
		return "less than a minute"
	}
	return strings.TrimSuffix(left.String(), "0s")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pct is part of total in percent, 0..100.
func pct(part, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return min(100, part*100/total)
}
