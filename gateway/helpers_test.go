package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tenantry/registry"
	"tenantry/tenantsig"
)

// testRoot is the gateway's tenant-header root key.
var testRoot = tenantsig.RootKey([]byte("platform-secret"))

// Keys of the test tenants.
const (
	keyAcme   = "tk_acme_secret"
	keyGlobex = "tk_globex_secret"
)

// fakeSource is a SnapshotSource whose snapshots the test publishes.
type fakeSource struct {
	mu   sync.Mutex
	cur  *registry.Snapshot
	subs map[int]chan *registry.Snapshot
	next int
}

func (f *fakeSource) Current() *registry.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

func (f *fakeSource) Subscribe() (<-chan *registry.Snapshot, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[int]chan *registry.Snapshot{}
	}
	id := f.next
	f.next++
	ch := make(chan *registry.Snapshot, 1)
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, id)
	}
}

func (f *fakeSource) publish(s *registry.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur = s
	for _, ch := range f.subs {
		select {
		case <-ch: // drop the stale one; the latest wins
		default:
		}
		ch <- s
	}
}

func hashKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}

// snapshot builds a registry snapshot with tenants acme and globex, the
// given stacks (name -> instance URLs, all healthy and ready) and routes.
func snapshot(version int64, stacks map[string][]string, routes ...registry.Route) *registry.Snapshot {
	s := &registry.Snapshot{
		Version: version,
		Stacks:  map[string]*registry.Stack{},
		Routes:  map[string]*registry.Route{},
		KeysByHash: map[string]*registry.APIKey{
			hashKey(keyAcme):   {ID: "k1", Tenant: "acme"},
			hashKey(keyGlobex): {ID: "k2", Tenant: "globex"},
		},
	}
	for name, urls := range stacks {
		st := &registry.Stack{Name: name, Version: "v1", Status: registry.StackReady}
		for _, u := range urls {
			st.Instances = append(st.Instances, registry.Instance{URL: u, Healthy: true})
		}
		s.Stacks[name] = st
	}
	for i := range routes {
		s.Routes[routes[i].Tenant] = &routes[i]
	}
	return s
}

func route(tenant string, kv ...any) registry.Route {
	r := registry.Route{Tenant: tenant}
	for i := 0; i < len(kv); i += 2 {
		r.Backends = append(r.Backends, registry.Backend{Stack: kv[i].(string), Weight: kv[i+1].(int)})
	}
	return r
}

// echo is what a test backend answers.
type echo struct {
	Stack   string `json:"stack"`
	Tenant  string `json:"tenant"`
	Auth    string `json:"auth"`
	Body    string `json:"body"`
	ReqID   string `json:"req_id"`
	Path    string `json:"path"`
	Slow    bool   `json:"slow"`
	Tenants int    `json:"tenant_header_values"`
}

// backend is a test instance of a stack. It verifies the signed tenant
// header like a real service and echoes what it saw.
type backend struct {
	stack    string // echoed, and the stack whose key it verifies with unless inStack is set
	inStack  string // the stack this instance belongs to, when it is not named after it
	srv      *httptest.Server
	received sync.Map // X-Req-Id -> true
	inflight atomic.Int64
	release  chan struct{} // /slow waits for it
	once     sync.Once
}

func newBackend(t *testing.T, stack string) *backend {
	t.Helper()
	b := &backend{stack: stack, release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	t.Cleanup(b.unblock)
	return b
}

func (b *backend) unblock() { b.once.Do(func() { close(b.release) }) }

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	if id := r.Header.Get("X-Req-Id"); id != "" {
		b.received.Store(id, true)
	}
	stack := b.stack
	if b.inStack != "" {
		stack = b.inStack
	}
	tenant, err := tenantsig.Verify(r, tenantsig.StackKey(testRoot, stack), stack, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	e := echo{Stack: b.stack, Tenant: tenant, Auth: r.Header.Get("Authorization"), Body: string(body),
		ReqID: r.Header.Get("X-Req-Id"), Path: r.URL.Path, Tenants: len(r.Header.Values(tenantsig.HeaderTenant))}
	if r.URL.Path == "/slow" {
		<-b.release
		e.Slow = true
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(e)
}

// newGateway starts a gateway on loopback in front of src.
func newGateway(t *testing.T, src SnapshotSource, mod func(*Config)) (*Gateway, *httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{Source: src, HeaderKey: testRoot, Registerer: reg}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	g.Start()
	t.Cleanup(g.Stop)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv, reg
}

// client sends requests through the gateway.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, base string) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: base, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// do sends a request and returns the status, the decoded echo (when 200) and
// the raw body.
func (c *client) do(method, path, key string, body io.Reader, hdr map[string]string) (int, echo, string, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return 0, echo{}, "", err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, echo{}, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, echo{}, "", err
	}
	var e echo
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &e); err != nil {
			return resp.StatusCode, e, string(raw), err
		}
	}
	return resp.StatusCode, e, string(raw), nil
}

func (c *client) mustDo(method, path, key string, body io.Reader, hdr map[string]string) (int, echo, string) {
	c.t.Helper()
	code, e, raw, err := c.do(method, path, key, body, hdr)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, e, raw
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
