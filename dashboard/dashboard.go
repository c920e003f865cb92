// Package dashboard is the operator dashboard: server-rendered pages of the
// registry (clusters, aliases, stacks, tenants, events) and of the workflows
// running on it (moves, rollouts, isolations), with live updates over
// server-sent events and the operator commands the CLI has (move promote,
// cutback, complete, cancel; rollout promote, abort, cutback, retire;
// isolation cutback, complete).
// The control plane serves it at /ui/ on its API listener (control.Plane);
// it logs in with the admin token and keeps a signed session cookie; every
// state change needs the session's CSRF token. Every asset is embedded: the
// pages work with no network.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"tenantry/move"
	"tenantry/registry"
	"tenantry/workflow"
)

// Prefix is the path the dashboard is served under.
const Prefix = "/ui/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Registry is what the dashboard reads of the registry (*registry.Store).
// Every method may be called concurrently.
type Registry interface {
	Snapshot(ctx context.Context) (*registry.Snapshot, error)
	Events(ctx context.Context, f registry.EventFilter) ([]registry.Event, error)
	Routers(ctx context.Context) ([]registry.RouterInstance, error)
	// TenantsTraffic is the gateways' request counts of tenants since an
	// hour's start.
	TenantsTraffic(ctx context.Context, tenants []string, since time.Time) (map[string]int64, error)
}

// Operations lists the workflows running on the platform
// (*workflow.Runner): moves now, rollouts and the like as they land.
type Operations interface {
	List(ctx context.Context, f workflow.Filter) ([]workflow.Workflow, error)
}

// Moves reads and commands moves (*move.Service).
type Moves interface {
	Get(ctx context.Context, id string, events bool) (*move.Info, error)
	List(ctx context.Context, tenant string) ([]*move.Info, error)
	Command(ctx context.Context, id, name string, wait bool) (*move.Info, error)
}

// Config configures a Dashboard. Zero values mean the documented defaults.
type Config struct {
	Registry   Registry   // required
	Operations Operations // nil: no operations listed
	Moves      Moves      // nil: no move views
	Rollouts   Rollouts   // nil: no rollout views
	Isolations Isolations // nil: no isolation views
	// ClusterProbe, when set, gives each cluster a page with its members'
	// health and replay lag.
	ClusterProbe ClusterProbe
	// Secret (the platform secret) and AdminToken key the session cookies;
	// AdminToken is what the login form takes. Required.
	Secret     []byte
	AdminToken string
	// SessionTTL bounds a session; default 12 h.
	SessionTTL time.Duration
	// StreamInterval is how often a live view is re-rendered and, when it
	// changed, sent; default 500 ms.
	StreamInterval time.Duration
	// ErrorText is how an error of an action is shown; default err.Error().
	// The control plane passes the API's text (message and stable code), so
	// the page shows what the CLI would.
	ErrorText func(error) string
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Dashboard serves the dashboard under Prefix.
type Dashboard struct {
	cfg      Config
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	log      *slog.Logger
	// closed ends the live streams (Close): http.Server.Shutdown does not
	// wait for them or end them.
	closed    chan struct{}
	closeOnce sync.Once
}

// Close ends every live stream; the dashboard answers nothing new after it
// (its server is shutting down).
func (d *Dashboard) Close() { d.closeOnce.Do(func() { close(d.closed) }) }

// New returns a dashboard; it parses its templates once.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Registry == nil || len(cfg.Secret) == 0 || cfg.AdminToken == "" {
		return nil, errors.New("dashboard: Registry, Secret and AdminToken are required")
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.StreamInterval == 0 {
		cfg.StreamInterval = 500 * time.Millisecond
	}
	if cfg.ErrorText == nil {
		cfg.ErrorText = func(err error) string { return err.Error() }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{cfg: cfg, sessions: newSessions(cfg.Secret, cfg.AdminToken, cfg.SessionTTL, cfg.Now),
		pages: map[string]*template.Template{}, mux: http.NewServeMux(), closed: make(chan struct{}), log: cfg.Logger.With("subsystem", "dashboard")}
	if err := d.parse(); err != nil {
		return nil, err
	}
	d.routes()
	return d, nil
}

func (d *Dashboard) parse() error {
	funcs := template.FuncMap{"ago": d.ago, "bytes": humanBytes, "pct": pct, "ms": func(f float64) string { return fmt.Sprintf("%.1f ms", f) },
		"until": d.until, "stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }}
	for _, page := range []string{"login", "overview", "tenants", "moves", "move", "rollouts", "rollout", "isolations", "isolation", "cluster", "confirm", "events"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return fmt.Errorf("dashboard: parse %s: %w", page, err)
		}
		d.pages[page] = t
	}
	return nil
}

func (d *Dashboard) routes() {
	static, _ := fs.Sub(staticFS, "static")
	d.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	d.mux.HandleFunc("GET /ui/login", d.loginForm)
	// The login form has no session to bind a CSRF token to: cross-origin
	// posts (a page elsewhere logging the browser in) are refused by origin.
	d.mux.Handle("POST /ui/login", http.NewCrossOriginProtection().Handler(http.HandlerFunc(d.login)))
	d.mux.Handle("POST /ui/logout", d.change(d.logout))
	d.handleLive("GET /ui/{$}", "GET /ui/overview/stream", liveView{page: "overview", nav: "overview", load: d.overviewData})
	d.mux.Handle("GET /ui/tenants", d.view(d.tenants))
	d.mux.Handle("GET /ui/events", d.view(d.events))
	if d.cfg.Moves != nil {
		d.mux.Handle("GET /ui/moves", d.view(d.moves))
		d.handleLive("GET /ui/moves/{id}", "GET /ui/moves/{id}/stream", liveView{page: "move", nav: "moves", load: d.moveView})
		d.handleCommands(d.moveCommands())
	}
	if d.cfg.Rollouts != nil {
		d.mux.Handle("GET /ui/rollouts", d.view(d.rollouts))
		d.handleLive("GET /ui/rollouts/{id}", "GET /ui/rollouts/{id}/stream", liveView{page: "rollout", nav: "rollouts", load: d.rolloutView})
		d.handleCommands(d.rolloutCommands())
	}
	if d.cfg.ClusterProbe != nil {
		d.handleLive("GET /ui/clusters/{name}", "GET /ui/clusters/{name}/stream",
			liveView{page: "cluster", nav: "overview", load: d.clusterView, interval: clusterInterval})
	}
	if d.cfg.Isolations != nil {
		d.mux.Handle("GET /ui/isolations", d.view(d.isolations))
		d.handleLive("GET /ui/isolations/{id}", "GET /ui/isolations/{id}/stream", liveView{page: "isolation", nav: "isolations", load: d.isolationView})
		d.handleCommands(d.isolationCommands())
	}
}

// ServeHTTP serves the dashboard, with headers that keep its pages out of
// frames, caches and other origins' scripts.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	d.mux.ServeHTTP(w, r)
}

// page is what every page template gets: the view's data and the session's
// CSRF token for its forms.
type page struct {
	Title string
	Nav   string
	CSRF  string
	Flash string
	Error string
	Data  any
}

// viewFunc renders a read-only view for a logged-in operator.
type viewFunc func(w http.ResponseWriter, r *http.Request, p *page) error

// view wraps a read-only view: no session sends the browser to the login
// form (or, for a stream, answers 401).
func (d *Dashboard) view(f viewFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := d.sessions.session(r)
		if err != nil {
			if r.Header.Get("Accept") == "text/event-stream" {
				http.Error(w, "not logged in", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		p := &page{CSRF: d.sessions.csrf(sess), Flash: r.URL.Query().Get("done")}
		if err := f(w, r, p); err != nil {
			d.fail(w, err)
		}
	})
}

// change wraps a state change: it needs a session and the session's CSRF
// token in the form, and a same-origin request (http.CrossOriginProtection,
// which reads Sec-Fetch-Site and Origin).
func (d *Dashboard) change(f viewFunc) http.Handler {
	cop := http.NewCrossOriginProtection()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := d.sessions.session(r)
		if err != nil {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if !d.sessions.checkCSRF(sess, r.PostFormValue(CSRFField)) {
			http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
			return
		}
		p := &page{CSRF: d.sessions.csrf(sess)}
		if err := f(w, r, p); err != nil {
			d.fail(w, err)
		}
	})
	return cop.Handler(h)
}

func (d *Dashboard) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, workflow.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, registry.ErrInvalid):
		status = http.StatusBadRequest
	default:
		d.log.Error("dashboard request", "err", err)
	}
	http.Error(w, err.Error(), status)
}

// render executes a page template into a buffer first, so that a template
// error is a 500, not half a page.
func (d *Dashboard) render(w http.ResponseWriter, status int, name string, p *page) error {
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// fragment renders one named template of a page (a live view's body).
func (d *Dashboard) fragment(page, name string, p *page) ([]byte, error) {
	var buf bytes.Buffer
	if err := d.pages[page].ExecuteTemplate(&buf, name, p); err != nil {
		return nil, fmt.Errorf("render %s/%s: %w", page, name, err)
	}
	return buf.Bytes(), nil
}

func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	if err := d.render(w, http.StatusOK, "login", &page{Title: "Log in"}); err != nil {
		d.fail(w, err)
	}
}

// login checks the admin token and sets the session cookie. A wrong token
// answers 401 with the form again.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	tok := r.PostFormValue("token")
	if !constantTimeEqual(tok, d.cfg.AdminToken) {
		if err := d.render(w, http.StatusUnauthorized, "login", &page{Title: "Log in", Error: "wrong admin token"}); err != nil {
			d.fail(w, err)
		}
		return
	}
	v, exp := d.sessions.issue()
	d.sessions.setCookie(w, r, v, exp)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, _ *page) error {
	d.sessions.setCookie(w, r, "", time.Time{})
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	return nil
}
