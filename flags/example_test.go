package flags_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/pgshift/pgshift/flags"
)

// The embed-in-an-app path: one flag file, one evaluator, a middleware that
// puts the user in the request context, and a stage per request.
func Example() {
	ev, err := flags.NewFileEvaluator(context.Background(), "testdata/cohorts.flagd.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ev.Close() }()

	identify := func(r *http.Request) (string, map[string]any) {
		return r.Header.Get("X-User-Id"), map[string]any{"country": r.Header.Get("X-Country"), "plan": r.Header.Get("X-Plan")}
	}
	app := flags.Middleware(identify)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("user %s: %v\n", flags.RoutingKey(r.Context()), ev.Stage(r.Context()))
	}))

	for _, u := range [][3]string{{"123", "DE", "free"}, {"789", "IN", "pro"}, {"2", "FR", "free"}, {"4", "FR", "free"}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-User-Id", u[0])
		r.Header.Set("X-Country", u[1])
		r.Header.Set("X-Plan", u[2])
		app.ServeHTTP(httptest.NewRecorder(), r)
	}
	// Output:
	// user 123: live
	// user 789: shadow
	// user 2: dualwrite
	// user 4: off
}

func ExampleEvaluator_Decide() {
	ev, err := flags.NewFileEvaluator(context.Background(), "testdata/cohorts.flagd.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ev.Close() }()
	d := ev.Decide(flags.WithUser(context.Background(), "456", nil))
	fmt.Println(d.Stage, d.Reason, d.Variant)
	// Output: live TARGETING_MATCH live
}

func ExampleWithBooleanFlags() {
	ev, err := flags.NewFileEvaluator(context.Background(), "testdata/cohorts.flagd.json",
		flags.WithBooleanFlags("write-to-new-db", "read-from-new-db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ev.Close() }()
	for _, id := range []string{"123", "2", "4"} {
		fmt.Println(id, ev.Stage(flags.WithUser(context.Background(), id, nil)))
	}
	// Output:
	// 123 live
	// 2 dualwrite
	// 4 off
}

// A table that several cohorts write has no per-user authority; pin it to
// one global stage.
func ExampleStatic() {
	shared := flags.Static(flags.StageDualWrite)
	fmt.Println(shared.Stage(flags.WithUser(context.Background(), "123", nil)))
	// Output: dualwrite
}
