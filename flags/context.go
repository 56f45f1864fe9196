package flags

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/open-feature/go-sdk/openfeature"
)

// user is the subject of a decision as WithUser stored it: the OpenFeature
// evaluation context and, computed once, the key its decision is cached
// under.
type user struct {
	ec       openfeature.EvaluationContext
	cacheKey string
}

type userKey struct{}

// noUser is the subject of a request without a routing key: the flag's
// default rules decide, and the decision is cached under the empty key.
var noUser = &user{}

// WithUser returns a copy of ctx that carries the user (or tenant) whose
// rows the request touches: routingKey becomes the OpenFeature targeting
// key, attrs (country, plan, ...) the attributes beside it. It sets
// OpenFeature's transaction context, so any OpenFeature client in the
// application sees the same user.
//
// attrs is copied; changing the map afterwards has no effect. The
// evaluator's decision cache is keyed by the routing key and all attributes,
// so keep attributes to what flag rules target: a request id among them
// would make every decision a cache miss.
func WithUser(ctx context.Context, routingKey string, attrs map[string]any) context.Context {
	u := newUser(routingKey, attrs)
	ctx = openfeature.WithTransactionContext(ctx, u.ec)
	return context.WithValue(ctx, userKey{}, u)
}

func newUser(routingKey string, attrs map[string]any) *user {
	return &user{
		ec:       openfeature.NewEvaluationContext(routingKey, attrs),
		cacheKey: cacheKey(routingKey, attrs),
	}
}

// userFrom returns the user WithUser put in ctx. Without one it falls back to
// OpenFeature's transaction context (set by other middleware), which costs a
// few allocations per call; without either it is the user with no routing
// key.
func userFrom(ctx context.Context) *user {
	if u, ok := ctx.Value(userKey{}).(*user); ok {
		return u
	}
	tc := openfeature.TransactionContext(ctx)
	attrs := tc.Attributes()
	if tc.TargetingKey() == "" && len(attrs) == 0 {
		return noUser
	}
	return newUser(tc.TargetingKey(), attrs)
}

// RoutingKey returns the routing key of the user in ctx (see WithUser), or ""
// when there is none.
func RoutingKey(ctx context.Context) string {
	if u, ok := ctx.Value(userKey{}).(*user); ok {
		return u.ec.TargetingKey()
	}
	return openfeature.TransactionContext(ctx).TargetingKey()
}

// Attributes returns the attributes of the user in ctx (see WithUser), a
// copy, or nil when there are none.
func Attributes(ctx context.Context) map[string]any {
	var attrs map[string]any
	if u, ok := ctx.Value(userKey{}).(*user); ok {
		attrs = u.ec.Attributes()
	} else {
		attrs = openfeature.TransactionContext(ctx).Attributes()
	}
	if len(attrs) == 0 {
		return nil
	}
	return attrs
}

// Middleware returns net/http middleware that puts the user of each request
// in its context with WithUser. identify reads the routing key and the
// attributes from the request's authenticated state (its session, a
// verified token), never from values the client chooses, such as headers:
// they pick the database that serves the request. An empty key leaves the
// request to the flag's default rules.
func Middleware(identify func(*http.Request) (routingKey string, attrs map[string]any)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, attrs := identify(r)
			next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), key, attrs)))
		})
	}
}

// cacheKey encodes a routing key and attributes unambiguously and
// independently of map order: every field is length-prefixed, attributes
// are sorted by name, and each value carries its type.
func cacheKey(routingKey string, attrs map[string]any) string {
	if routingKey == "" && len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	slices.Sort(names)
	b := appendField(nil, routingKey)
	for _, name := range names {
		b = appendField(b, name)
		b = appendField(b, fmt.Sprintf("%T=%v", attrs[name], attrs[name]))
	}
	return string(b)
}

func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}
