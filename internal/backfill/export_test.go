package backfill

import "github.com/pgshift/pgshift/internal/rowsync"

// SetAfterCopy installs a hook that runs inside each chunk's transaction on
// new, after its rows arrived and before it commits; nil removes it.
func SetAfterCopy(f func(*rowsync.Table)) { afterCopy = f }
