// Package pgshiftdb is pgshift's own schema ("pgshift") on each database: the
// repair log the dualwrite facade writes and drains, and the backfill's
// progress. Every statement pgshift runs on these tables is in
// queries/pgshift/*.sql and compiled by sqlc into this package; this file,
// export.go and backlog.go (the repair logs' backlog, which the facade,
// `pgshift status` and the cutover gates read) are the only hand-written
// ones.
package pgshiftdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
//
// It refuses (a *ForeignObjectsError) when schema pgshift, or anything in
// it, is owned by a role that is neither the installing role, nor one it
// is a member of, nor the database's owner, nor a superuser, or when
// pgshift's tables have triggers:
// CREATE ... IF NOT EXISTS would adopt them, and pgshift's writes would run
// another role's code with the writer's privileges. It looks before it
// creates anything and again after, so a schema another role created in
// between is refused too.
func Install(ctx context.Context, q pgshift.Querier) error {
	if err := CheckOwnership(ctx, q); err != nil {
		return fmt.Errorf("install schema %s: %w", Schema, err)
	}
	if _, err := q.Exec(ctx, installLock+queries.PgshiftSchema); err != nil {
		return fmt.Errorf("install schema %s: %w", Schema, err)
	}
	if err := CheckOwnership(ctx, q); err != nil {
		return fmt.Errorf("install schema %s: %w", Schema, err)
	}
	return nil
}

// ErrForeignObjects is what a *ForeignObjectsError matches with errors.Is.
var ErrForeignObjects = errors.New("schema pgshift holds objects another role owns")

// ForeignObjectsError lists the objects of schema pgshift that pgshift must
// not use (see Install).
type ForeignObjectsError struct {
	Objects []ForeignObjectsRow
}

func (e *ForeignObjectsError) Error() string {
	var parts []string
	for _, o := range e.Objects {
		if o.Kind == "trigger" {
			parts = append(parts, fmt.Sprintf("trigger %s (its function owned by role %s)", o.Name, o.Owner))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s owned by role %s", o.Kind, o.Name, o.Owner))
	}
	return fmt.Sprintf("%s, which pgshift will not use: %s. "+
		"They are owned by a role that is neither this role, nor one it is a member of, nor the database's owner, nor a superuser (pgshift's tables have no triggers of their own); "+
		"pgshift's writes would run their code with the privileges of whoever writes. "+
		"Find out who created them; drop them (DROP SCHEMA %s CASCADE, as their owner or a superuser) and install again",
		ErrForeignObjects, strings.Join(parts, "; "), Schema)
}

// Is makes errors.Is(err, ErrForeignObjects) hold.
func (e *ForeignObjectsError) Is(target error) bool { return target == ErrForeignObjects }

// CheckOwnership fails with a *ForeignObjectsError when schema pgshift, or
// an object in it, belongs to a role the current role does not trust (see
// Install). A database without the schema passes.
func CheckOwnership(ctx context.Context, q pgshift.Querier) error {
	objects, err := New().ForeignObjects(ctx, q)
	if err != nil {
		return fmt.Errorf("check the owners of schema %s: %w", Schema, err)
	}
	if len(objects) > 0 {
		return &ForeignObjectsError{Objects: objects}
	}
	return nil
}
