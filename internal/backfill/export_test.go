package backfill

import "github.com/pgshift/pgshift/internal/rowsync"

// WithAfterCopy returns opts with a hook that runs inside each chunk's
// transaction on new, after its rows arrived and before it commits.
func WithAfterCopy(opts Options, f func(*rowsync.Table)) Options {
	opts.afterCopy = f
	return opts
}
