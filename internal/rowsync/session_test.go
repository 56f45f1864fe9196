package rowsync_test

import (
	"context"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// Behind PgBouncer in transaction pooling, with new's server sessions set to
// print every value differently (another time zone, DMY dates, ISO 8601
// intervals, escaped bytea, short floats), the row engine still sees the
// same text on both sides: rowsync.Connect gets through PgBouncer (it sends
// no startup parameters) and every statement carries SessionParams.
func TestSessionParamsPerStatementBehindPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, tbl := setup(t)
	pgtest.Exec(t, p.New.Pool, shapesRows)
	pgtest.Exec(t, p.New.Pool, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Kolkata');
		EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'SQL, DMY');
		EXECUTE format('ALTER DATABASE %I SET intervalstyle = %L', current_database(), 'iso_8601');
		EXECUTE format('ALTER DATABASE %I SET bytea_output = %L', current_database(), 'escape');
		EXECUTE format('ALTER DATABASE %I SET extra_float_digits = %L', current_database(), '0'); END $$`)
	bp := p.Bounced(t)
	var sides [2]rowsync.Summary
	for i, url := range []string{bp.Old.URL, bp.New.URL} {
		pool, err := rowsync.Connect(ctx, url, 4)
		if err != nil {
			t.Fatalf("rowsync.Connect through PgBouncer: %v", err)
		}
		defer pool.Close()
		// Several chunks, each statement on whichever server connection
		// PgBouncer picks.
		for range 3 {
			_, s, err := rowsync.NextChunk(ctx, pool, tbl, nil, 100, true)
			if err != nil {
				t.Fatal(err)
			}
			if sides[i] != (rowsync.Summary{}) && s != sides[i] {
				t.Fatalf("the same chunk hashed %v, then %v", sides[i], s)
			}
			sides[i] = s
		}
		if i == 1 {
			// Without SessionParams new prints its own way: the settings
			// above are in force, so the comparison above meant something.
			var at string
			if err := pool.QueryRow(ctx, `SELECT at::text FROM `+tbl.Ident()+` WHERE "line No" = 1 AND "Tenant" = 'acme'`).Scan(&at); err != nil {
				t.Fatal(err)
			}
			if at != "29/02/2024 23:59:59.123456 IST" {
				t.Fatalf("new's own text of a timestamptz: %q; the database settings did not take", at)
			}
		}
	}
	if sides[0] != sides[1] || sides[0].Rows != 4 {
		t.Fatalf("old %v, new %v; want the same 4 rows and hash", sides[0], sides[1])
	}
}
