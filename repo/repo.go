package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/queries"
	"github.com/pgshift/pgshift/repo/db"
)

// ErrNotFound is returned when the row asked for does not exist on the side
// that answers.
var ErrNotFound = errors.New("repo: not found")

// Store bundles the repositories of the reference domain. It is safe for
// concurrent use.
type Store struct {
	Users  *Users
	Posts  *Posts
	Events *Events
}

// New returns the repositories, running on facade f.
func New(f *dualwrite.Facade) *Store {
	b := base{f: f, q: db.New(), now: now}
	return &Store{Users: &Users{b}, Posts: &Posts{b}, Events: &Events{b}}
}

// base is what every repository holds.
type base struct {
	f   *dualwrite.Facade
	q   *db.Queries
	now func() time.Time
}

// now is the timestamp written to both sides: taken once by the application,
// at the microsecond precision PostgreSQL stores, so both sides hold the same
// value.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// ApplySchema creates the reference domain's tables (queries.Schema) and
// pgshift's own tables on one database. Run it on both.
func ApplySchema(ctx context.Context, db pgshift.Querier) error {
	if _, err := db.Exec(ctx, queries.Schema); err != nil {
		return fmt.Errorf("repo: apply schema: %w", err)
	}
	return dualwrite.Install(ctx, db)
}

// notFound maps pgx.ErrNoRows to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// deleted checks a delete's row count: on the authoritative side no row means
// ErrNotFound; on the other side a count different from the authoritative
// one means that side did not hold the row, which the repair worker settles.
func deleted(n int64, prev *int64) (int64, error) {
	switch {
	case prev == nil && n == 0:
		return 0, ErrNotFound
	case prev != nil && n != *prev:
		return n, dualwrite.ErrDiverged
	}
	return n, nil
}
