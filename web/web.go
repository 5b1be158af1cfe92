// Package web is esync's dashboard: an http.Handler that shows the queue,
// its streams, schedules, CDC controllers and processes, and retries and
// cancels tasks. Mount it under a prefix of your own server:
//
//	http.Handle("/esync/", web.Handler(driver))
//
// or serve it alone with Serve (the `esync ui` command does). Pages are
// rendered on the server from embedded templates; a few lines of
// JavaScript refresh them when asked. Actions are POST requests carrying a
// CSRF token; WithReadOnly refuses them all, WithBasicAuth asks for a
// password, and every action is logged.
package web

import (
	"crypto/rand"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/esync/queue"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Option configures the dashboard.
type Option func(*config)

type config struct {
	readOnly   bool
	user, pass string
	auth       bool
	prefix     string
	prefixSet  bool
	logger     *slog.Logger
	csrfKey    []byte
	caps       capabilities
	onListen   func(addr string)
	refresh    time.Duration
}

// WithReadOnly shows everything and changes nothing: the action buttons are
// gone and every POST is refused.
func WithReadOnly() Option { return func(c *config) { c.readOnly = true } }

// WithBasicAuth asks every request for this user name and password (HTTP
// basic authentication, compared in constant time). Serve it over TLS, or
// on loopback only: basic auth sends the password with every request.
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.user, c.pass, c.auth = user, password, true }
}

// WithPrefix says where the handler is mounted ("/esync"), for its links.
// Without it the prefix is the pattern the request matched on an
// http.ServeMux ("/esync/"), else the root.
func WithPrefix(prefix string) Option {
	return func(c *config) { c.prefix, c.prefixSet = strings.TrimRight(prefix, "/"), true }
}

// WithLogger logs actions (and failed reads) to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithCSRFKey signs CSRF tokens with key instead of a random key made at
// start: give every replica behind one load balancer the same key (32
// random bytes or more) so that a form from one is accepted by another.
func WithCSRFKey(key []byte) Option { return func(c *config) { c.csrfKey = key } }

// WithRefreshInterval sets how often a page with live refresh switched on
// reloads itself (default 5 seconds).
func WithRefreshInterval(d time.Duration) Option { return func(c *config) { c.refresh = d } }

// OnListening is called by Serve with the address it listens on, once it
// does (useful with port 0). The handler alone ignores it.
func OnListening(f func(addr string)) Option { return func(c *config) { c.onListen = f } }

// dashboard is the handler.
type dashboard struct {
	cfg    config
	driver *queue.PostgresDriver
	pages  map[string]*pageTemplate
	mux    *http.ServeMux
	static http.Handler

	finished finishedMinutes
}

// Handler returns the dashboard for the queue of driver. The driver is used,
// not owned: closing it is the caller's business. Options are checked
// here; a bad one panics, as http.Handle does with a bad pattern.
func Handler(driver *queue.PostgresDriver, opts ...Option) http.Handler {
	h, err := newDashboard(driver, opts)
	if err != nil {
		panic(err)
	}
	return h
}

func newDashboard(driver *queue.PostgresDriver, opts []Option) (*dashboard, error) {
	if driver == nil {
		return nil, fmt.Errorf("web: nil driver")
	}
	cfg := config{logger: slog.Default(), refresh: 5 * time.Second}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.auth && (cfg.user == "" || cfg.pass == "") {
		return nil, fmt.Errorf("web: basic auth needs a user name and a password")
	}
	if cfg.auth && strings.Contains(cfg.user, ":") {
		return nil, fmt.Errorf("web: a basic auth user name cannot contain ':'")
	}
	if cfg.csrfKey == nil {
		cfg.csrfKey = make([]byte, 32)
		rand.Read(cfg.csrfKey)
	} else if len(cfg.csrfKey) < 16 {
		return nil, fmt.Errorf("web: CSRF key is %d bytes, want 16 or more", len(cfg.csrfKey))
	}
	if cfg.refresh < 100*time.Millisecond {
		return nil, fmt.Errorf("web: refresh interval %s is shorter than 100ms", cfg.refresh)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	cfg.caps = cfg.caps.fill(driver)
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "static")
	d := &dashboard{cfg: cfg, driver: driver, pages: pages, static: http.FileServerFS(static)}
	d.mux = d.routes()
	return d, nil
}

func (d *dashboard) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", d.overview)
	m.HandleFunc("GET /tasks", d.tasks)
	m.HandleFunc("GET /tasks/bulk", d.bulkPreview)
	m.HandleFunc("POST /tasks/bulk", d.action(d.bulkApply))
	m.HandleFunc("GET /tasks/{id}", d.taskDetail)
	m.HandleFunc("POST /tasks/{id}/retry", d.action(d.retryTask))
	m.HandleFunc("POST /tasks/{id}/cancel", d.action(d.cancelTask))
	m.HandleFunc("GET /streams", d.streams)
	m.HandleFunc("POST /streams/{name}/pause", d.action(d.pauseStream))
	m.HandleFunc("POST /streams/{name}/resume", d.action(d.resumeStream))
	m.HandleFunc("GET /schedules", d.schedules)
	m.HandleFunc("GET /cdc", d.cdc)
	m.HandleFunc("GET /processes", d.processes)
	m.Handle("GET /static/", http.StripPrefix("/static", d.static))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	return m
}

// ServeHTTP checks credentials, finds the prefix and routes the request.
func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.cfg.auth && !d.authorized(r) {
		if _, _, given := r.BasicAuth(); given {
			// Not the user name: a password typed into the wrong field
			// would land in the log.
			d.cfg.logger.Warn("esync dashboard: wrong credentials", "remote", r.RemoteAddr, "path", r.URL.Path)
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="esync", charset="UTF-8"`)
		http.Error(w, "esync dashboard: authentication required", http.StatusUnauthorized)
		return
	}
	prefix, rest := d.mount(r)
	r2 := r.Clone(withPrefix(r.Context(), prefix))
	r2.URL.Path = rest
	r2.URL.RawPath = ""
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	d.mux.ServeHTTP(w, r2)
}

// mount returns where the handler is mounted (without a trailing slash)
// and the request's path below it. The prefix is WithPrefix's, else the
// pattern the request matched on an http.ServeMux ("/esync/"), else the
// root. A path that http.StripPrefix already shortened is taken as it is.
func (d *dashboard) mount(r *http.Request) (prefix, rest string) {
	prefix = d.cfg.prefix
	if !d.cfg.prefixSet {
		prefix = patternPrefix(r.Pattern)
	}
	rest = r.URL.Path
	if strings.HasPrefix(rest, prefix+"/") || rest == prefix {
		rest = strings.TrimPrefix(rest, prefix)
	} else if !d.cfg.prefixSet && !strings.HasPrefix(r.RequestURI, prefix+"/") {
		prefix = "" // the pattern is not this request's (a router of another kind)
	}
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	return prefix, rest
}

// patternPrefix is the path of a ServeMux pattern ending in a slash
// ("GET example.com/esync/" gives "/esync"), or "".
func patternPrefix(p string) string {
	if i := strings.IndexByte(p, ' '); i >= 0 {
		p = p[i+1:]
	}
	if i := strings.IndexByte(p, '/'); i > 0 {
		p = p[i:]
	}
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || strings.Contains(p, "{") {
		return ""
	}
	return strings.TrimRight(p, "/")
}
