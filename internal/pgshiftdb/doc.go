// Package pgshiftdb is pgshift's own schema ("pgshift") on each database: the
// repair log the dualwrite facade writes and drains, and the backfill's
// progress. Every statement pgshift runs on these tables is in
// queries/pgshift/*.sql and compiled by sqlc into this package; this file
// and export.go are the only hand-written ones.
package pgshiftdb

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/queries"
)

// Schema is the schema of pgshift's own tables. The operator tools never
// list, copy or compare it.
const Schema = "pgshift"

// installLock serialises Install among sessions until the end of its
// transaction (the statements of one simple query run in one transaction).
const installLock = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pgshift install', 0));\n"

// Install creates pgshift's schema and tables on the database q is
// connected to (queries.PgshiftSchema). It is idempotent, and safe to run
// from several processes at once: the statements run in one transaction
// behind an advisory lock (CREATE ... IF NOT EXISTS alone races: two
// sessions both find the schema missing and one fails on the catalog's
// unique index).
func Install(ctx context.Context, q pgshift.Querier) error {
	if _, err := q.Exec(ctx, installLock+queries.PgshiftSchema); err != nil {
		return fmt.Errorf("install schema %s: %w", Schema, err)
	}
	return nil
}
