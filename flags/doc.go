// Package flags decides, per request, which migration stage the user in the
// context is in, from OpenFeature feature flags.
//
// The application puts the user in the context (WithUser, or Middleware for
// net/http); the routing key (user or tenant id) becomes the OpenFeature
// targeting key, attributes such as country and plan sit beside it. A Source
// turns the context into a Stage; the dualwrite facade asks one on every
// query. An *Evaluator is the Source backed by flags; Static pins tables that
// several cohorts write to one global stage.
//
// # Embedding
//
//	ev, err := flags.NewFileEvaluator(ctx, "flags.json") // a flagd flag file, evaluated in process
//	if err != nil {
//		return err // names the file and what is wrong with it
//	}
//	defer ev.Close()
//	handler = flags.Middleware(func(r *http.Request) (string, map[string]any) {
//		s := session(r) // what your authentication established, never a client's header
//		return s.UserID, map[string]any{"country": s.Country, "plan": s.Plan}
//	})(handler)
//	// per query, inside the handler:
//	stage := ev.Stage(r.Context())
//
// The routing key and the attributes pick the database that serves the
// request: take them from authenticated state (the session, a verified
// token), never from what the client sends (a header, a query parameter),
// or any client picks its cohort, and with it which database answers and
// which one its writes reach first.
//
// NewProviderEvaluator takes any other OpenFeature provider (a flagd daemon,
// go-feature-flag, DevCycle, LaunchDarkly, ...) and NewEvaluator an
// OpenFeature client, so a fleet of servers can share one control plane.
// Each evaluator built from a provider or a file has an OpenFeature API of
// its own: several live in one process without touching the global one.
//
// The module github.com/pgshift/pgshift/providers holds the cohorts of
// this package's tests to the same decisions through go-feature-flag in
// process and through go-feature-flag's relay proxy, a flag server many
// application servers share, read with the OFREP provider (OpenFeature's
// remote evaluation protocol over HTTP). It is a module of its own so that
// an application on flagd files downloads none of their dependencies.
// Neither provider reports configuration changes: give them WithCacheTTL
// (see the decision cache below).
//
//	provider := ofrep.NewProvider("http://flags.internal:1031", ofrep.WithTimeout(time.Second))
//	ev, err := flags.NewProviderEvaluator(ctx, provider, flags.WithCacheTTL(5*time.Second))
//
// # Flag schemes
//
// One string flag, DefaultStageFlag ("pgshift-stage") unless WithStageFlag
// names another, whose value is a stage name; or, with WithBooleanFlags, the
// DevCycle pair "write-to-new-db" / "read-from-new-db" (false/false StageOff,
// true/false StageDualWrite, true/true StageLive). false/true would read from a
// database that writes do not reach; it is a fallback, logged and counted,
// unless WithReadWithoutWrite names the stage it means. Who gets which value
// (user ids, attributes, percentages) is the provider's business; in a flagd
// file that is JsonLogic targeting and the fractional operator.
//
// # Decision cache
//
// One evaluation through OpenFeature and flagd costs tens of microseconds
// and a couple of hundred allocations, too much for every query, so
// decisions are cached per user: routing key and all attributes. A cached
// decision costs well under a microsecond and no allocation when the user
// came from WithUser (one set straight into OpenFeature's transaction
// context costs a few allocations to key). The cache holds at most
// DefaultCacheSize (10,000) users unless WithCacheSize says otherwise,
// evicting an arbitrary entry when full; each entry holds the encoded
// routing key and attributes and a Decision. Every entry turns stale at
// once when the provider reports a configuration change or becomes ready;
// a decision evaluated while the configuration changed is not cached. A
// provider that reports no changes (a remote flag server over OFREP,
// go-feature-flag in process) needs WithCacheTTL(d): a decision is then
// served from the cache for at most d after it was evaluated, so a change
// reaches decisions within d plus the provider's own refresh; checking the
// age costs a clock read per hit (tens of nanoseconds). Without a TTL such
// a provider's decisions last until evicted. WithoutCache evaluates every
// call.
//
// # When the provider cannot decide
//
// Provider not ready or failing (an error, or a value with the reason
// ERROR), flag missing, disabled or of the wrong type, a value that names no
// stage: the answer is the last good decision for that user (kept even when
// stale), else the default stage. WithDefaultStage sets it; unset, it is
// AutomaticDefault of the stages the flags give others (the flag file's
// last good version with NewFileEvaluator, the stages decided so far with
// any other provider): StageDualWrite while some users' stages write new
// and some write old, StageComplete when every one writes new only,
// StageOff before anyone writes new. A user nobody could decide for thus
// never writes one side only while the others write both.
// Providers that need a targeting key (go-feature-flag, DevCycle,
// LaunchDarkly) fail for a request without a routing key, which therefore
// gets the default stage. With WithCacheTTL a failure is remembered for the
// TTL: the user's answer comes from the last good decision without asking
// the provider again, so a remote flag server that is down costs one failed
// request per user and TTL. Every such answer adds one to the
// OpenTelemetry counter pgshift.flags.fallbacks (attributes cause and flag;
// WithMeterProvider), and each cause is logged once per flag with log/slog
// (WithLogger), never once per request. Decide reports where an answer came
// from (Origin) and why (Cause).
//
// # The flag file
//
// NewFileEvaluator checks the file before flagd starts: unreadable, empty,
// not JSON (or YAML, by extension), not following the flagd schema,
// rejected by flagd, or with a stage flag that can give a value the scheme
// cannot map (a variant holding a string that names no stage, a
// non-boolean in the boolean scheme, a rule naming a variant the flag does
// not have) is an error naming the file, the flag and the variant. Such a
// value would send every user it reaches to a fallback stage, so the file
// is refused as a whole (CheckFile is the same check, for tools that write
// flag files). The file's directory is
// watched; a change is read 50 ms after the last event and reaches
// decisions within about that (tens of milliseconds measured). A version
// that breaks later (truncated, empty, deleted, schema errors, a stage typo)
// is never given to flagd, which keeps evaluating the last good one; each
// change of the file's state is logged once (broken, broken otherwise,
// usable again), not once per reading. FileHealth reports the file, the
// version in use and, while the file is not usable, why and since when;
// the gauge pgshift.flags.file_usable is 1 while it is usable, 0 while not,
// and pgshift.flags.file_version is 1 for the version in use (attribute
// version, FileHealth's Version). The
// file is evaluated by flagd's own rules engine (flagd core, the evaluator
// flagd's daemon and in-process provider run, so a file decides the same
// everywhere) inside a small OpenFeature provider of pgshift's, which feeds
// it checked versions only and logs, flagd core's lines included, through
// the slog logger (WithLogger). pgshift does not use flagd's in-process
// provider (go-sdk-contrib/providers/flagd v0.6.0) for files: it writes its
// start and stop lines to stderr through a zap logger it builds itself, with
// no option to replace it.
package flags
