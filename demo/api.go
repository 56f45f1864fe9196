package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/repo"
)

// Response headers naming what pgshift did for a request.
const (
	headerStage  = "Pgshift-Stage"     // the caller's migration stage
	headerServed = "Pgshift-Served-By" // "old" or "new": the side that answered
	headerOp     = "Pgshift-Op"        // the repository operation, when one ran
)

// Request headers standing in for authentication: who is asking (the
// routing key the flags see) and the attributes flag rules target.
const (
	headerUser    = "X-User-ID"
	headerCountry = "X-Country"
	headerPlan    = "X-Plan"
)

// apiFunc handles one API request and returns the status and the JSON body,
// or an error that becomes {"error": "..."}.
type apiFunc func(r *http.Request) (int, any, error)

// apiError is an error the caller caused, with its HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func (a *app) routeAPI(mux *http.ServeMux) {
	routes := map[string]apiFunc{
		"GET /api/me":                 a.getMe,
		"GET /api/users":              a.listUsers,
		"POST /api/users":             a.createUser,
		"GET /api/users/{id}":         byID(a.getUser),
		"PATCH /api/users/{id}":       byID(a.updateUser),
		"DELETE /api/users/{id}":      byID(a.deleteUser),
		"GET /api/users/{id}/posts":   byID(a.listPosts),
		"POST /api/users/{id}/posts":  byID(a.createPost),
		"GET /api/posts/{id}":         byID(a.getPost),
		"PATCH /api/posts/{id}":       byID(a.updatePost),
		"DELETE /api/posts/{id}":      byID(a.deletePost),
		"GET /api/users/{id}/events":  byID(a.listEvents),
		"POST /api/users/{id}/events": byID(a.createEvent),
		"GET /api/":                   a.notFound,
		"POST /api/":                  a.notFound,
		"PATCH /api/":                 a.notFound,
		"PUT /api/":                   a.notFound,
		"DELETE /api/":                a.notFound,
	}
	for pattern, fn := range routes {
		mux.Handle(pattern, a.api(fn))
	}
}

// identify reads the caller from the request headers: a stand-in for real
// authentication. Attributes not sent are taken from the seeded account
// with that key, so `X-User-ID: 123` alone is enough.
func (a *app) identify(r *http.Request) (key string, attrs map[string]any) {
	key = strings.TrimSpace(r.Header.Get(headerUser))
	attrs = map[string]any{}
	if acc, ok := a.byKey[key]; ok {
		attrs = acc.attrs()
	}
	if c := strings.TrimSpace(r.Header.Get(headerCountry)); c != "" {
		attrs["country"] = strings.ToUpper(c)
	}
	if p := strings.TrimSpace(r.Header.Get(headerPlan)); p != "" {
		attrs["plan"] = strings.ToLower(p)
	}
	return key, attrs
}

// api puts the caller in the request's context, runs fn, names the stage
// and the side that answered in the response headers, and records the
// request for the dashboard and /metrics.
func (a *app) api(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		key, attrs := a.identify(r)
		ctx := flags.WithUser(r.Context(), key, attrs)
		ctx, out := dualwrite.WithOutcome(ctx)
		r = r.WithContext(ctx)

		status, body, err := fn(r)
		stage, side := out.Stage, out.Served
		if out.Op == "" {
			// No repository call answered (a bad request, or a failed
			// write): the stage the caller is in, and the side that would
			// have answered.
			stage = a.stages.Stage(ctx)
			side = stage.Plan().Authoritative
		}
		if err != nil {
			status, body = a.errorBody(r, out.Op, stage, err)
		}
		h := w.Header()
		h.Set(headerStage, stage.String())
		h.Set(headerServed, side.String())
		if out.Op != "" {
			h.Set(headerOp, out.Op)
		}
		writeJSON(w, status, body)

		country, _ := attrs["country"].(string)
		plan, _ := attrs["plan"].(string)
		a.activity.record(ctx, request{
			At: start, Who: key, Country: country, Plan: plan,
			Method: r.Method, Path: r.URL.Path, Op: out.Op,
			Stage: stage.String(), Side: side.String(), Status: status,
			Millis: float64(time.Since(start).Microseconds()) / 1000,
		}, stage, side)
	})
}

// errorBody maps an error to a status and a message that names the problem
// without internals; unexpected errors are logged and reported as such.
func (a *app) errorBody(r *http.Request, op string, stage flags.Stage, err error) (int, any) {
	var ae *apiError
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &ae):
		return ae.status, errorJSON{ae.msg}
	case errors.Is(err, repo.ErrNotFound):
		return http.StatusNotFound, errorJSON{"not found"}
	case errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UniqueViolation:
		return http.StatusConflict, errorJSON{"already exists (" + pgErr.ConstraintName + ")"}
	case errors.As(err, &pgErr) && pgErr.Code == pgerrcode.ForeignKeyViolation:
		return http.StatusUnprocessableEntity, errorJSON{"refers to a row that does not exist (" + pgErr.ConstraintName + ")"}
	case errors.Is(err, context.Canceled):
		return 499, errorJSON{"request cancelled"}
	}
	a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "op", op, "stage", stage, "err", err)
	return http.StatusInternalServerError, errorJSON{"internal error: the demo's log has the cause"}
}

type errorJSON struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// decode reads a JSON request body of at most 1 MiB into v. The body must
// say it is JSON (Content-Type: application/json): a browser sends a
// cross-site form (text/plain, form encoded) without asking first, and
// would otherwise write through the API of whoever has it open.
func decode(r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &apiError{http.StatusUnsupportedMediaType, fmt.Sprintf("request body: Content-Type is %q; send application/json", r.Header.Get("Content-Type"))}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

func pathID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, badRequest("id %q is not a UUID", r.PathValue("id"))
	}
	return id, nil
}

// page reads ?after= (parsed by parse) and ?limit= (1..100, default 20).
func page[K any](r *http.Request, parse func(string) (K, error)) (after K, limit int32, err error) {
	limit = 20
	if s := r.URL.Query().Get("after"); s != "" {
		if after, err = parse(s); err != nil {
			return after, 0, badRequest("after %q: %v", s, err)
		}
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return after, 0, badRequest("limit %q: want 1 to 100", s)
		}
		limit = int32(n)
	}
	return after, limit, nil
}

func parseInt64(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// listJSON is a page of results; Next is the ?after= of the next page.
type listJSON[T any] struct {
	Items []T  `json:"items"`
	Next  *any `json:"next,omitempty"`
}

func list[T any](items []T, limit int32, last func(T) any) listJSON[T] {
	out := listJSON[T]{Items: items}
	if out.Items == nil {
		out.Items = []T{}
	}
	if len(items) == int(limit) {
		next := last(items[len(items)-1])
		out.Next = &next
	}
	return out
}

func (a *app) notFound(r *http.Request) (int, any, error) {
	return 0, nil, &apiError{http.StatusNotFound, "no such endpoint: " + r.Method + " " + r.URL.Path}
}

func (a *app) getMe(r *http.Request) (int, any, error) {
	key := flags.RoutingKey(r.Context())
	if key == "" {
		return 0, nil, badRequest("send the %s header (try 123 or 456, the testers)", headerUser)
	}
	u, err := a.store.Users.Get(r.Context(), userIDOf(key))
	return http.StatusOK, u, err
}
