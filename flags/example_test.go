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

	// The user and their attributes come from authenticated state (here
	// sessions the server holds, by token), never from values the client
	// chooses: they pick the database that serves the request.
	type session struct{ user, country, plan string }
	sessions := map[string]session{
		"tok-a": {"123", "DE", "free"}, "tok-b": {"789", "IN", "pro"}, "tok-c": {"2", "FR", "free"}, "tok-d": {"4", "FR", "free"},
	}
	identify := func(r *http.Request) (string, map[string]any) {
		s, ok := sessions[r.Header.Get("Authorization")]
		if !ok {
			return "", nil // not signed in: the flag's default rules
		}
		return s.user, map[string]any{"country": s.country, "plan": s.plan}
	}
	app := flags.Middleware(identify)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("user %s: %v\n", flags.RoutingKey(r.Context()), ev.Stage(r.Context()))
	}))

	for _, token := range []string{"tok-a", "tok-b", "tok-c", "tok-d"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", token)
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
