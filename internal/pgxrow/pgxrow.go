// Package pgxrow builds a pgx.Row from pgx.Rows, for Queriers that wrap
// Query and answer QueryRow with it, as pgx's own connections do.
package pgxrow

import "github.com/jackc/pgx/v5"

// From returns the Row of QueryRow: err when the query failed, else the
// first of rows (pgx.ErrNoRows when there is none). Scan closes rows.
func From(rows pgx.Rows, err error) pgx.Row {
	if err != nil {
		return errRow{err}
	}
	return row{rows}
}

type row struct{ rows pgx.Rows }

func (r row) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
