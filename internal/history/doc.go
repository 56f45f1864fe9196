// Package history is pgshift's randomized history checker: it generates
// concurrent histories of writes, stage changes and faults from a seed,
// runs them through two dualwrite facades against two real PostgreSQL
// servers, and judges the rows both sides hold once the traffic has stopped
// and the repair logs have drained. It is Jepsen's Elle and FoundationDB's
// simulation testing, scaled to a small machine: the writes pick their
// values so that every row's final value names the write it came from.
//
// # A history
//
// Each history runs on a fresh database per side (copied from a template
// that holds the schema, pgshift's tables and the capture triggers):
//
//	kv (k int PRIMARY KEY, v text NOT NULL, u text UNIQUE)
//	kc (id int PRIMARY KEY, k int REFERENCES kv ON DELETE CASCADE, v text)
//	ev (id uuid PRIMARY KEY, ...)   written by NewRows inserts (UUIDv7 keys)
//	sq (id bigint identity, ...)    OneStatement inserts, key from RETURNING, Touched after
//
// A few users (routing keys) own disjoint key ranges; several writer
// goroutines per history each run a list of writes for one user: inserts,
// updates, upserts, deletes (cascading to children), multi-row statements,
// two-row writes whose second row is locked while the first is held, swaps
// and reuses of the unique value u, parent and children together, NewRows
// and server-keyed inserts, some marked OneStatement. A history writes in
// Touch mode or in capture mode (Config.Capture, the rows recorded by the
// triggers). Even writers go through facade 0, odd ones through facade 1;
// a controller goroutine moves users among dualwrite, shadow, live and
// rampdown, forwards and backwards, facade 1 seeing each change a few
// milliseconds after facade 0, and runs Repairer.Drain now and then. Both
// facades run repair workers with a grace of 1 ms to 300 ms, and in half
// the histories a facade's repair passes and catch-ups take 1 or 3 entries
// at a time instead of 200 (a row's entries, and a user's, split across
// passes; a worker's batch growing over a log that fills it).
//
// Beside the writers, as an operator would run them:
//
//   - backfill (a quarter of the histories): new starts without the
//     seeded rows and every user in dualwrite; the controller's first step
//     copies them with backfill.Run (chunks of two rows, two workers) while
//     the writers go on, and no user changes stage before the copy is done
//     (what the gate into shadow asks);
//   - verify --repair (about a third): verify.Run with Repair among the
//     controller's steps, every difference it finds entered in the repair
//     log;
//   - a killed process (about a third): one writer's writes run in a child
//     process with a facade of its own (another instance of the
//     application, on the same proxies; ServeChild), which the controller
//     SIGKILLs at some step; what its facade held in memory is lost, and a
//     write the kill cut short is unknown (it may have committed).
//
// Faults, per write: the other side's write function fails before or after
// its statements; the authoritative side's does (a plain error, rolled
// back); the authoritative side holds its locks a while (so that writers of
// one row under different authorities time out on each other's locks when
// OtherTimeout is 200 ms); the caller's context is cancelled at a random
// instant, or just after a COMMIT went to the server (its answer held back
// until the cancellation has landed); a COMMIT's answer is lost (the
// facades' connections go through a proxy that sees COMMITs pass; the
// server acts on it, the client never hears back). A commit fault fires at
// a COMMIT of its own write's connection: every statement of a write
// carries the write's marker, from which the proxy knows whose connection
// it is. And per history, a few
// times: one side looks down for 50 to 300 ms (the proxy cuts its
// connections and refuses new ones).
//
// Every write's outcome is recorded with its real-time start and end:
// acknowledged (nil), failed (a plain error) or unknown
// (dualwrite.ErrCommitUnknown), with the rows its authoritative statements
// reported changed (RETURNING) and when.
//
// # The judge
//
// After the traffic stops, the facades are closed (their proxied
// connections with them: the faults are healed), entries still postponed
// are made due, and a Repairer drains both logs (Drain, up to five times).
// Then Judge checks:
//
//   - sides-equal: both sides hold the same rows, row for row;
//   - logs-drained: both repair logs are empty;
//   - one-drain-settles-all: the first Drain after the traffic settled
//     every entry (foreign-key order, unique values reused);
//   - value-from-a-write: every row holds, whole, a value some write wrote
//     to it;
//   - failed-write-invisible: no row holds the effect of a write reported
//     failed (nor is absent only because of one);
//   - acknowledged-write-not-replaced-by-older-state: if an acknowledged
//     write W changed a row (its authoritative statement said so) and held
//     the row's lock at an instant after every write that explains the
//     row's final state had returned, W was lost. W held the lock when
//     its statement's answer arrived, unless the facade sent its COMMIT in
//     the same round trip (a OneStatement write under old's authority, and
//     NewRows inserts): the server may have committed it, and a later
//     writer of the row committed too, before the answer was read, so
//     such a write counts from its start. An unknown write (its
//     caller cancelled, stopped waiting at its COMMIT, never heard the
//     answer, was killed, or its side was cut off) has not returned, for
//     this rule, until the server last answered on a connection of it
//     that its client left: the proxy keeps the server's side of such a
//     connection until the server ends it, since a backend runs what it
//     has read (waiting for locks, or for the processor) and may commit
//     after a later write of the row, over it, as with any client that
//     gives up on a write;
//   - no-deadlock-from-pgshift-locking: no caller got a deadlock from
//     the facade's own row locks;
//   - tools-succeed: backfill and verify --repair, on connections no fault
//     touches, returned no error.
//
// Real time stands in for lock order, soundly: a write that returned
// before another held the row's lock precedes it in any correct execution.
// The judge cannot order writes whose intervals overlap (it never flags a
// final state that one of them explains), cannot say whether an unknown
// write committed (such writes explain states but are never required), and
// does not see effects a statement did not report (an update that found no
// row, a cascade), nor intermediate states (no reads are checked). Failed
// writes that committed but were overwritten later are not detected.
//
// # Running it
//
// An ordinary go test runs TestJudge (the judge against hand-made runs),
// TestTemplates (the hand-written history of each case proven in issues 18
// and 24, each a subtest named after it) and six randomized histories
// (seeds 1 to 6, two at once). More on request:
//
//	PGSHIFT_HISTORY=1 go test ./internal/history                 # short mode: 80 histories (20 under -race)
//	go test ./internal/history -run 'TestHistories$' -seed 42    # replay one seed (up to 3 times until it fails) and shrink it
//	go test ./internal/history -run 'TestTemplates$' -template flip-lock-wait
//	PGSHIFT_HISTORY_DURATION=2h go test -v -timeout 0 ./internal/history -run 'TestHistories$'   # long mode
//
// Long mode logs its count every five minutes, and Ctrl-C (SIGINT, or
// SIGTERM to the test binary) ends it early: the histories running finish
// and the summary counts them.
//
// TestHistories logs how many histories ran, the seeds' range, the
// failures per rule, and what the tools did beside the writers (rows
// backfilled, differences verify entered, processes killed while they ran
// and their writes cut short; -v shows it when they all pass). A failing history's
// report names a file in the temporary directory with both facades' log of
// the failing run, at debug level, each line with its time since the
// traffic began (the times the report gives its writes).
//
// Environment: PGSHIFT_HISTORY_COUNT (histories in short mode),
// PGSHIFT_HISTORY_SEED (the first seed, 1), PGSHIFT_HISTORY_PARALLEL
// (histories at once, 6), PGSHIFT_HISTORY_SHRINK (replays a shrink may
// use), PGSHIFT_HISTORY_REPLAYS (-seed's tries), PGSHIFT_HISTORY_DISABLE
// (comma-separated fault classes, tools, modes or kinds to leave out, see
// Config.Disable: "lose-commit,cancel-commit,backfill,kill,swap-u,capture").
// The default is the full set.
//
// A seed always generates the same history, but the history runs
// concurrently against real servers: a replay can pass where a run failed,
// and a shrink keeps only what it saw fail. The templates (Templates) lay
// each case proven in issues 18 and 24 out with explicit delays, holds and
// lags, so that they fail on most runs while the case is open.
//
// On a 2-core machine a history takes one to five seconds (two CREATE
// DATABASEs and their drops are much of it); two or three at once run
// about 40 a minute (the servers' processes take most of the time).
package history
