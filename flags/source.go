package flags

import "context"

// Source gives the migration stage for the user in ctx. The dualwrite facade
// consumes it per request, so implementations must be safe for concurrent
// use and fast: *Evaluator answers from its cache in well under a
// microsecond.
type Source interface {
	Stage(ctx context.Context) Stage
}

// Versioned is implemented by a Source that can tell when its answers may
// have changed: Version returns a different number after any change that
// may move a user to another stage (a flag file reloaded, a rule edited).
// The dualwrite facade uses it to notice a stage change of a user it has not
// served meanwhile (another process served the user under the other stage),
// and checks the user's pending writes before it serves the user again.
type Versioned interface {
	Version() uint64
}

// Static returns a Source that answers s for every user. Use it for tables
// that several cohorts write at once, which have no single authoritative
// side per user and so move under one global stage, and for tests.
func Static(s Stage) Source { return static(s) }

type static Stage

func (s static) Stage(context.Context) Stage { return Stage(s) }
