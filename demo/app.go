package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/open-feature/go-sdk-contrib/providers/ofrep"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/redact"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/repo"
)

// appConfig is what an app is built from.
type appConfig struct {
	// Old and New are the two databases, with the schema applied.
	Old, New *pgxpool.Pool
	// FlagsPath is the flagd file deciding each user's stage, unless
	// FlagsOFREP is set.
	FlagsPath string
	// FlagsOFREP is the OFREP endpoint of a flag server (go-feature-flag's
	// relay proxy, ...) deciding each user's stage instead of a file.
	FlagsOFREP string
	// Accounts are the simulated accounts the data was seeded with.
	Accounts []account
	// Token guards the admin endpoints; a random one when empty.
	Token string
	// RepairInterval is the repair worker's idle interval (dualwrite's
	// default when zero).
	RepairInterval time.Duration
	// Strict runs the facade in strict mode: a repository method that
	// changes a row it does not Touch fails (it needs the capture triggers,
	// which prepare installs).
	Strict bool
	// Limits are the gates' limits (cutover's defaults for the zero value).
	Limits cutover.Limits
	Logger *slog.Logger
}

// app is the demo application: the flags, the facade, the repositories over
// it, what it has served, and its HTTP handler.
type app struct {
	old, new *pgxpool.Pool
	// flagsPath is where the flags come from: the flag file, or "OFREP "
	// and the flag server's endpoint.
	flagsPath string
	accounts  []account
	byKey     map[string]account
	token     string
	log       *slog.Logger

	stages   *flags.Evaluator
	facade   *dualwrite.Facade
	store    *repo.Store
	activity *activity
	verifies *verifyLog
	gates    gateCache
	limits   cutover.Limits

	meters   *sdkmetric.MeterProvider
	registry *prometheus.Registry
	started  time.Time
}

// OFREP decisions are cached for ofrepTTL (the flag server reports no
// changes), and an evaluation the cache does not hold waits at most
// ofrepTimeout for the server.
const (
	ofrepTTL     = time.Second
	ofrepTimeout = 500 * time.Millisecond
)

// newStages returns the evaluator deciding each user's stage, from the
// OFREP endpoint when cfg names one, else from the flag file, and says
// where its flags come from (for the dashboard).
func newStages(ctx context.Context, cfg appConfig, opts ...flags.Option) (*flags.Evaluator, string, error) {
	if cfg.FlagsOFREP == "" {
		ev, err := flags.NewFileEvaluator(ctx, cfg.FlagsPath, opts...)
		return ev, cfg.FlagsPath, err
	}
	provider := ofrep.NewProvider(cfg.FlagsOFREP, ofrep.WithTimeout(ofrepTimeout))
	ev, err := flags.NewProviderEvaluator(ctx, provider, append(opts, flags.WithCacheTTL(ofrepTTL))...)
	return ev, "OFREP " + cfg.FlagsOFREP, err
}

// newApp wires flags, facade and repositories over the two pools.
func newApp(ctx context.Context, cfg appConfig) (*app, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &app{
		old: cfg.Old, new: cfg.New,
		accounts: cfg.Accounts,
		byKey:    make(map[string]account, len(cfg.Accounts)),
		token:    cfg.Token,
		log:      cfg.Logger,
		limits:   cfg.Limits,
		verifies: &verifyLog{},
		started:  time.Now(),
	}
	for _, acc := range cfg.Accounts {
		a.byKey[acc.Key] = acc
	}
	if a.token == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		a.token = hex.EncodeToString(b)
	}

	// The OpenTelemetry instruments of flags, dualwrite and the demo itself,
	// exported for Prometheus on a registry of this app's own (tests run
	// several apps in one process).
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector())
	exporter, err := otelprom.New(otelprom.WithRegisterer(a.registry))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	a.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	if a.activity, err = newActivity(a.meters); err != nil {
		return nil, err
	}

	a.stages, a.flagsPath, err = newStages(ctx, cfg, flags.WithLogger(a.log), flags.WithMeterProvider(a.meters))
	if err != nil {
		_ = a.meters.Shutdown(ctx)
		return nil, err
	}
	a.facade, err = dualwrite.New(ctx, dualwrite.Config{
		Old: a.old, New: a.new,
		Stages:        a.stages,
		Logger:        a.log,
		MeterProvider: a.meters,
		Repair:        dualwrite.RepairConfig{Interval: cfg.RepairInterval},
		Strict:        cfg.Strict,
	})
	if err != nil {
		_ = a.stages.Close()
		_ = a.meters.Shutdown(ctx)
		return nil, err
	}
	a.store = repo.New(a.facade)
	return a, nil
}

// close stops the facade (waiting for its work in flight), the flags and
// the meters. It does not close the pools.
func (a *app) close() {
	a.facade.Close()
	if err := a.stages.Close(); err != nil {
		a.log.Warn("closing the flags", "err", err)
	}
	_ = a.meters.Shutdown(context.Background())
}

// handler is the whole HTTP surface: the API, the dashboard, the admin
// endpoints, /metrics and /healthz.
func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	a.routeAPI(mux)
	a.routeDashboard(mux)
	a.routeGates(mux)
	a.routeAdmin(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", a.healthz)
	for _, path := range []string{"/api/dashboard", "/api/gates", "/healthz", "/metrics"} {
		allowOnly(mux, path, "GET")
	}
	return secureHeaders(mux)
}

// secureHeaders sets, on every response, the headers that keep the
// dashboard from being framed by another site (clickjacking), from loading
// anything but its own scripts and styles, and responses from being
// sniffed as another type than they say.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
			"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// newServer serves h with timeouts on every part of a request, so that a
// client sending its headers or body a byte at a time cannot hold a
// connection open.
func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}

// warnIfExposed warns, on w, when addr is not a loopback address: the
// demo's API is unauthenticated and writes to both databases.
func warnIfExposed(w io.Writer, addr net.Addr) {
	tcp, ok := addr.(*net.TCPAddr)
	if ok && tcp.IP.IsLoopback() {
		return
	}
	fmt.Fprintf(w, "pgshift demo: WARNING: serving on %s, beyond this machine: its API has no authentication, and anyone who reaches it can read and change both databases. Bind to 127.0.0.1 (PGSHIFT_ADDR) unless that is what you want.\n", addr)
}

// healthz answers 200 when both databases answer a ping within a second,
// 503 naming the side that does not. It shows the flag file's state too
// (the version in use; when the file is not usable, why and since when): a
// broken file is not an outage, as the last good version stays in use.
func (a *app) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	status := map[string]any{"old": "ok", "new": "ok"}
	code := http.StatusOK
	for side, pool := range map[string]*pgxpool.Pool{"old": a.old, "new": a.new} {
		if err := pool.Ping(ctx); err != nil {
			status[side] = "unreachable"
			code = http.StatusServiceUnavailable
		}
	}
	if h, ok := a.stages.FileHealth(); ok {
		status["flags"] = h
	}
	writeJSON(w, code, status)
}

// openPool connects to one side with rowsync's session parameters (so
// backfill and verify see the same text form of every value on both sides)
// and room for the walkthrough's simulated users.
func openPool(ctx context.Context, side, url string) (*pgxpool.Pool, error) {
	pool, err := rowsync.Connect(ctx, url, 24)
	if err != nil {
		return nil, fmt.Errorf("connect to the %s database: %w", side, err)
	}
	return pool, nil
}

// where describes a connection string without its password: host, port and
// database. A host with '@' in it holds the tail of a password with an
// unencoded '@' (the driver ends the user part at the first one), and is
// not shown.
func where(url string) string {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "(unparsable connection string)"
	}
	c := cfg.ConnConfig
	host := c.Host
	if strings.Contains(host, "@") {
		host = redact.Mask
	}
	return fmt.Sprintf("%s:%d/%s", host, c.Port, c.Database)
}

// errStopped is returned by long runs interrupted by Ctrl-C.
var errStopped = errors.New("stopped")
