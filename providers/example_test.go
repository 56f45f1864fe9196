package providers_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	gofeatureflaginprocess "github.com/open-feature/go-sdk-contrib/providers/go-feature-flag-in-process/pkg"
	"github.com/open-feature/go-sdk-contrib/providers/ofrep"
	ffclient "github.com/thomaspoignant/go-feature-flag"
	"github.com/thomaspoignant/go-feature-flag/retriever/fileretriever"

	"github.com/pgshift/pgshift/flags"
)

// printStages prints the stage of a user of each cohort: a tester, the pro
// plan in India, one of the 10% and one of the rest.
func printStages(ev *flags.Evaluator) {
	for _, u := range []struct {
		key   string
		attrs map[string]any
	}{
		{"123", nil},
		{"789", map[string]any{"country": "IN", "plan": "pro"}},
		{"9", map[string]any{"country": "FR", "plan": "free"}},
		{"4", map[string]any{"country": "FR", "plan": "free"}},
	} {
		fmt.Println(u.key, ev.Stage(flags.WithUser(context.Background(), u.key, u.attrs)))
	}
}

// go-feature-flag evaluated in the application's process, from a flag file
// it reads again every 10 seconds. The provider reports no configuration
// changes, so decisions are cached for at most 5 seconds: a change reaches
// them within 15.
func Example_goFeatureFlagInProcess() {
	ctx := context.Background()
	provider, err := gofeatureflaginprocess.NewProviderWithContext(ctx, gofeatureflaginprocess.ProviderOptions{
		GOFeatureFlagConfig: &ffclient.Config{
			PollingInterval: 10 * time.Second,
			Retriever:       &fileretriever.Retriever{Path: "testdata/cohorts.goff.yaml"},
			LeveledLogger:   slog.Default(),
			// Log flag changes, not every flag at start-up.
			DisableNotifierOnInit: true,
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ev, err := flags.NewProviderEvaluator(ctx, provider, flags.WithCacheTTL(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ev.Close() }()
	printStages(ev)
	// Output:
	// 123 live
	// 789 shadow
	// 9 dualwrite
	// 4 off
}

// A fleet of application servers reads one flag server: here
// go-feature-flag's relay proxy, which serves the same flag file over
// OFREP. Each decision the cache does not hold is an HTTP request, bounded
// by the provider's timeout; decisions are cached for at most 5 seconds
// plus the relay proxy's polling interval.
func Example_ofrep() {
	ctx := context.Background()
	endpoint := sharedRelay.URL() // for example http://flags.internal:1031
	provider := ofrep.NewProvider(endpoint, ofrep.WithTimeout(500*time.Millisecond))
	ev, err := flags.NewProviderEvaluator(ctx, provider, flags.WithCacheTTL(5*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ev.Close() }()
	printStages(ev)
	// Output:
	// 123 live
	// 789 shadow
	// 9 dualwrite
	// 4 off
}
