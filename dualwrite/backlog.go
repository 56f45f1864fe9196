package dualwrite

import (
	"context"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// Backlog is the state of both databases' repair logs: Old and New, each a
// SideBacklog; Side(s) picks one, Entries sums them.
type Backlog = pgshiftdb.Backlog

// SideBacklog is the state of one side's repair log: whether pgshift's
// schema is installed there, the entries waiting to be copied from it to
// the other side, and the age of the oldest.
type SideBacklog = pgshiftdb.SideBacklog

// ReadBacklog reads the repair log of the database q is connected to. A
// database without pgshift's schema is no error: it reports Installed false.
func ReadBacklog(ctx context.Context, q pgshift.Querier) (SideBacklog, error) {
	return pgshiftdb.ReadBacklog(ctx, q)
}

// ownSQL runs the statements of pgshift's own schema.
var ownSQL = pgshiftdb.New()
