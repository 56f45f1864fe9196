package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
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
	headerServed = "Pgshift-Served-By" // "old" or "new": the side that answered a request that succeeded
	headerOp     = "Pgshift-Op"        // the endpoint's repository operation, also when it failed
)

// maxBody is the largest request body the API reads; a larger one is
// answered 413.
const maxBody = 1 << 20

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

// apiError is an error the caller caused, with its HTTP status; allow is
// the Allow header of a 405.
type apiError struct {
	status int
	msg    string
	allow  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// route is one endpoint of the API: its method and path, the repository
// operation it performs (the Pgshift-Op of its responses), its handler.
type route struct {
	method, path, op string
	fn               apiFunc
}

func (a *app) routeAPI(mux *http.ServeMux) {
	routes := []route{
		{"GET", "/api/me", "users.get", a.getMe},
		{"GET", "/api/users", "users.list", a.listUsers},
		{"POST", "/api/users", "users.create", a.createUser},
		{"GET", "/api/users/{id}", "users.get", byID(a.getUser)},
		{"PATCH", "/api/users/{id}", "users.update", byID(a.updateUser)},
		{"DELETE", "/api/users/{id}", "users.delete", byID(a.deleteUser)},
		{"GET", "/api/users/{id}/posts", "posts.list_by_user", byID(a.listPosts)},
		{"POST", "/api/users/{id}/posts", "posts.create", byID(a.createPost)},
		{"GET", "/api/posts/{id}", "posts.get", byID(a.getPost)},
		{"PATCH", "/api/posts/{id}", "posts.update", byID(a.updatePost)},
		{"DELETE", "/api/posts/{id}", "posts.delete", byID(a.deletePost)},
		{"GET", "/api/users/{id}/events", "events.list_by_user", byID(a.listEvents)},
		{"POST", "/api/users/{id}/events", "events.create", byID(a.createEvent)},
	}
	allowed := map[string][]string{}
	var paths []string
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, a.api(rt.op, rt.fn))
		if allowed[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// Another method on a path the API has is a 405 naming the allowed
	// ones, in JSON like every other error; a path it does not have, 404.
	for _, path := range paths {
		for _, m := range otherMethods(allowed[path]) {
			mux.Handle(m+" "+path, a.api("", methodNotAllowed(allowed[path])))
		}
	}
	for _, m := range apiMethods {
		mux.Handle(m+" /api/", a.api("", a.notFound))
	}
}

// apiMethods are the methods the API answers (HEAD comes with GET).
var apiMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

// otherMethods are the apiMethods not in allowed.
func otherMethods(allowed []string) []string {
	var out []string
	for _, m := range apiMethods {
		if !slices.Contains(allowed, m) {
			out = append(out, m)
		}
	}
	return out
}

// methodNotAllowed answers 405 with the Allow header of allowed.
func methodNotAllowed(allowed []string) apiFunc {
	return func(r *http.Request) (int, any, error) {
		return 0, nil, notAllowed(r, allowed)
	}
}

// notAllowed is the 405 of request r on a path that takes the methods
// allowed (and HEAD with GET).
func notAllowed(r *http.Request, allowed []string) *apiError {
	allow := slices.Clone(allowed)
	if slices.Contains(allow, "GET") {
		allow = append(allow, "HEAD")
	}
	slices.Sort(allow)
	list := strings.Join(allow, ", ")
	return &apiError{status: http.StatusMethodNotAllowed, allow: list,
		msg: fmt.Sprintf("%s %s: method not allowed; allowed: %s", r.Method, r.URL.Path, list)}
}

// allowOnly answers the methods other than allowed on path (an endpoint
// outside the API's routes) with a JSON 405.
func allowOnly(mux *http.ServeMux, path string, allowed ...string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae := notAllowed(r, allowed)
		w.Header().Set("Allow", ae.allow)
		writeJSON(w, ae.status, errorJSON{ae.msg})
	})
	for _, m := range otherMethods(allowed) {
		mux.Handle(m+" "+path, h)
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

// api puts the caller in the request's context, runs fn, names the stage,
// the operation op and, when the request succeeded, the side that answered
// in the response headers, and records the request for the dashboard and
// /metrics.
func (a *app) api(endpointOp string, fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		op := endpointOp
		key, attrs := a.identify(r)
		ctx := flags.WithUser(r.Context(), key, attrs)
		ctx, out := dualwrite.WithOutcome(ctx)
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)

		status, body, err := fn(r)
		stage, side := out.Stage, out.Served
		if out.Op == "" {
			// No repository call answered (a bad request, or a failed
			// write): the stage the caller is in, and for the counts the
			// side that would have answered.
			stage = a.stages.Stage(ctx)
			side = stage.Plan().Authoritative
		}
		// Served names the side whose answer the response carries: none
		// in an error response.
		served := ""
		if err == nil && out.Op != "" {
			op, served = out.Op, out.Served.String()
		}
		h := w.Header()
		if err != nil {
			status, body = a.errorBody(r, op, stage, err)
			var ae *apiError
			if errors.As(err, &ae) && ae.allow != "" {
				h.Set("Allow", ae.allow)
			}
		}
		h.Set(headerStage, stage.String())
		if served != "" {
			h.Set(headerServed, served)
		}
		if op != "" {
			h.Set(headerOp, op)
		}
		writeJSON(w, status, body)

		country, _ := attrs["country"].(string)
		plan, _ := attrs["plan"].(string)
		a.activity.record(ctx, request{
			At: start, Who: key, Country: country, Plan: plan,
			Method: r.Method, Path: r.URL.Path, Op: op,
			Stage: stage.String(), Side: served, Status: status,
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

// decode reads a JSON request body into v: one JSON value and nothing
// after it, of at most maxBody bytes (api limits the body). The body must
// say it is JSON (Content-Type: application/json): a browser sends a
// cross-site form (text/plain, form encoded) without asking first, and
// would otherwise write through the API of whoever has it open.
func decode(r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &apiError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("request body: Content-Type is %q; send application/json", r.Header.Get("Content-Type"))}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, next := dec.Token(); !errors.Is(next, io.EOF) {
			err = next
			if err == nil {
				err = errors.New("data after the JSON value: send one JSON object")
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body over %d bytes (1 MiB)", tooBig.Limit)}
	case err != nil:
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
	return 0, nil, &apiError{status: http.StatusNotFound, msg: "no such endpoint: " + r.Method + " " + r.URL.Path}
}

func (a *app) getMe(r *http.Request) (int, any, error) {
	key := flags.RoutingKey(r.Context())
	if key == "" {
		return 0, nil, badRequest("send the %s header (try 123 or 456, the testers)", headerUser)
	}
	u, err := a.store.Users.Get(r.Context(), userIDOf(key))
	return http.StatusOK, u, err
}
