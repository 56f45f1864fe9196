package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/rowsync"
)

// ErrCopyServerKeys is returned (wrapped) by Tx.CopyFrom into a table whose
// key columns are not all among the columns copied: the database would make
// the keys (a serial or identity column, a default), the other side would
// make other ones, and COPY returns none the write function could Touch or
// write on the other side. Copy the key columns too (keys the application
// makes, such as UUIDv7s), or insert such rows with INSERT ... RETURNING
// (a batch of them, for many rows), which follows the rule for keys the
// database makes.
var ErrCopyServerKeys = errors.New("dualwrite: CopyFrom leaves the table's key to the database")

// errCopySourceShared is the other side's error when the write function
// handed it the CopyFromSource the authoritative side had already read.
var errCopySourceShared = errors.New("dualwrite: the write function passed the same pgx.CopyFromSource to CopyFrom on both sides, " +
	"and a source is read once: make the source inside the write function (pgx.CopyFromRows(rows) there, as sqlc's code does)")

// CopyFrom copies the rows of src into table with COPY, in the write's
// transaction (sqlc's :copyfrom code runs on it). To the facade it is one
// statement of the write function's, replayed on the other side when the
// write function runs there, and it is held to the guarantee like any
// other:
//
//   - the key columns must be among columns ([ErrCopyServerKeys] otherwise,
//     in every stage): the keys are the application's, known before the
//     copy, so the write function Touches every row it copies (before the
//     copy, or with Op.NewRows for rows whose keys were made for the call,
//     which need no locks); capture mode (Config.Capture) records them
//     itself;
//   - the write function must make src inside itself, as sqlc's generated
//     code does: a source is read once, so the other side's run gets a
//     fresh one over the same rows;
//   - on the other side, a copy that wrote a different number of rows than
//     the authoritative side's returns ErrDiverged, and the rows are left to
//     the repair worker.
//
// COPY cannot share a round trip with other statements: BEGIN and the
// facade's statements for the rows Touched so far go first, and the COMMIT
// after it, also for Op.OneStatement.
func (tx *Tx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := tx.w.f.checkCopyKeys(ctx, tx.pool, table, columns); err != nil {
		return 0, err
	}
	if err := tx.w.claimSource(tx, src); err != nil {
		return 0, err
	}
	direct, err := tx.beforeStatement(ctx)
	if err != nil {
		return 0, err
	}
	if direct == nil && (!tx.begun || len(tx.prefix) > 0) {
		if err := tx.flush(ctx); err != nil {
			return 0, err
		}
	}
	runner := statementRunner(tx.conn)
	if tx.autocommit {
		runner = tx.pool
	}
	n, err := runner.CopyFrom(ctx, table, columns, src)
	if err != nil {
		return n, tx.outcome(err)
	}
	return n, tx.w.compareCopy(tx, table, n)
}

// checkCopyKeys refuses a copy into table that leaves a key column out of
// columns (ErrCopyServerKeys). The table's key comes from the catalog of q's
// database, once per facade: a one-part name is in Config.Schema, as for
// Touch.
func (f *Facade) checkCopyKeys(ctx context.Context, q *pgxpool.Pool, table pgx.Identifier, columns []string) error {
	var schema, name string
	switch len(table) {
	case 1:
		schema, name = f.cfg.Schema, table[0]
	case 2:
		schema, name = table[0], table[1]
	default:
		return fmt.Errorf("dualwrite: CopyFrom into %s: name the table as {table} or {schema, table}", table.Sanitize())
	}
	ident := pgx.Identifier{schema, name}.Sanitize()
	key, ok := f.copyKeys.Load(ident)
	if !ok {
		t, err := rowsync.LoadTable(ctx, q, schema, name)
		if err != nil {
			return fmt.Errorf("dualwrite: CopyFrom into %s: %w", ident, err)
		}
		names := make([]string, len(t.Key))
		for i, c := range t.Key {
			names[i] = c.Name
		}
		key, _ = f.copyKeys.LoadOrStore(ident, names)
	}
	var missing []string
	for _, k := range key.([]string) {
		if !slices.Contains(columns, k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: CopyFrom into %s does not copy key column %s: copy application-made keys, or insert with INSERT ... RETURNING",
			ErrCopyServerKeys, ident, strings.Join(missing, ", "))
	}
	return nil
}

// claimSource refuses a CopyFromSource another Tx of the write has read
// (errCopySourceShared). Sources of types that cannot be compared are not
// checked.
func (w *write) claimSource(tx *Tx, src pgx.CopyFromSource) error {
	if src == nil || !reflect.TypeOf(src).Comparable() {
		return nil
	}
	w.copyMu.Lock()
	defer w.copyMu.Unlock()
	for _, s := range w.copySources {
		if s.src == src && s.tx != tx {
			return errCopySourceShared
		}
	}
	w.copySources = append(w.copySources, copySource{tx: tx, src: src})
	return nil
}

type copySource struct {
	tx  *Tx
	src pgx.CopyFromSource
}

// compareCopy records how many rows the authoritative side's copies wrote,
// and holds the other side's copies to the same counts (ErrDiverged) when it
// runs after the authoritative side (not with Op.NewRows, where both run at
// once).
func (w *write) compareCopy(tx *Tx, table pgx.Identifier, n int64) error {
	if w.op.NewRows {
		return nil
	}
	w.copyMu.Lock()
	defer w.copyMu.Unlock()
	i := tx.copies
	tx.copies++
	if tx.authoritative {
		w.copyCounts = append(w.copyCounts, n)
		return nil
	}
	if i < len(w.copyCounts) && w.copyCounts[i] != n {
		return fmt.Errorf("%w: CopyFrom into %s wrote %d rows on %s, %d on the authoritative side",
			ErrDiverged, table.Sanitize(), n, tx.side, w.copyCounts[i])
	}
	return nil
}
