package flags_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/pgshift/pgshift/flags"
)

func TestWithUserSetsTransactionContext(t *testing.T) {
	t.Parallel()
	attrs := map[string]any{"country": "IN", "plan": "pro"}
	ctx := flags.WithUser(context.Background(), "123", attrs)
	attrs["plan"] = "free" // WithUser copied the map
	if got := flags.RoutingKey(ctx); got != "123" {
		t.Errorf("RoutingKey: %q, want 123", got)
	}
	tc := openfeature.TransactionContext(ctx)
	if tc.TargetingKey() != "123" || tc.Attribute("country") != "IN" || tc.Attribute("plan") != "pro" {
		t.Errorf("transaction context: key %q, attributes %v", tc.TargetingKey(), tc.Attributes())
	}
}

func TestRoutingKeyWithoutUser(t *testing.T) {
	t.Parallel()
	if got := flags.RoutingKey(context.Background()); got != "" {
		t.Errorf("RoutingKey of an empty context: %q", got)
	}
	ctx := openfeature.WithTransactionContext(context.Background(), openfeature.NewEvaluationContext("t-9", nil))
	if got := flags.RoutingKey(ctx); got != "t-9" {
		t.Errorf("RoutingKey of an OpenFeature transaction context: %q, want t-9", got)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	identify := func(r *http.Request) (string, map[string]any) {
		return r.Header.Get("X-User"), map[string]any{"country": r.Header.Get("X-Country")}
	}
	var gotKey string
	var gotCountry any
	h := flags.Middleware(identify)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		gotKey = flags.RoutingKey(r.Context())
		gotCountry = openfeature.TransactionContext(r.Context()).Attribute("country")
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-User", "456")
	req.Header.Set("X-Country", "US")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if gotKey != "456" || gotCountry != "US" {
		t.Errorf("handler saw routing key %q, country %v; want 456, US", gotKey, gotCountry)
	}
}
