package dualwrite_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// A write function's Tx is a Querier, and so the DBTX of any sqlc package,
// batches and copies included (internal/sqlcexamples asserts the generated
// interfaces themselves).
var _ pgshift.Querier = (*dualwrite.Tx)(nil)

const copySchema = `
CREATE TABLE cu (id uuid PRIMARY KEY, v text NOT NULL);
CREATE TABLE cs (id bigserial PRIMARY KEY, v text NOT NULL);
`

func copySetup(t *testing.T, stage flags.Stage) *bundle {
	t.Helper()
	b := setup(t, stage)
	for _, db := range []*pgtest.DB{b.pair.Old, b.pair.New} {
		pgtest.Exec(t, db.Pool, copySchema)
	}
	return b
}

// TestCopyFromRefusesServerMadeKeys: a copy that leaves the key to the
// database (a bigserial here) would make other keys on the other side, and
// COPY returns none to Touch: it is refused in every stage, before anything
// is written, so a write that works in off does not lose rows in dualwrite.
func TestCopyFromRefusesServerMadeKeys(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageOff, flags.StageDualWrite, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := copySetup(t, stage)
			for _, op := range []dualwrite.Op{{Name: "cs.copy"}, {Name: "cs.copyone", OneStatement: true}, {Name: "cs.copynew", NewRows: true}} {
				err := dualwrite.Exec(userCtx("copy"), b.facade, op, func(ctx context.Context, tx *dualwrite.Tx) error {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{"cs"}, []string{"v"}, pgx.CopyFromRows([][]any{{"a"}, {"b"}}))
					return err
				})
				if !errors.Is(err, dualwrite.ErrCopyServerKeys) {
					t.Fatalf("%s: CopyFrom without the key column: got %v, want ErrCopyServerKeys", op.Name, err)
				}
			}
			b.facade.Wait()
			for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
				if n := count(t, b.pool(side), "cs", "true"); n != 0 {
					t.Fatalf("%s has %d rows of the refused copies", side, n)
				}
			}
		})
	}
}

// TestCopyFromSharedSourceConverges: a write function that closes over one
// CopyFromSource hands the other side a source the authoritative side has
// read to its end. The other side must not commit that as a copy of nothing
// (its rows' records would be deleted and new would lack the rows for
// good): it fails, and repair copies the rows.
func TestCopyFromSharedSourceConverges(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := copySetup(t, stage)
			a, c := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
			src := pgx.CopyFromRows([][]any{{a, "a"}, {c, "c"}})
			err := dualwrite.Exec(userCtx("copy"), b.facade, dualwrite.Op{Name: "cu.copy"}, func(ctx context.Context, tx *dualwrite.Tx) error {
				tx.Touch("cu", a)
				tx.Touch("cu", c)
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"cu"}, []string{"id", "v"}, src)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			waitDrained(t, b.facade, 30*time.Second)
			for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
				if n := count(t, b.pool(side), "cu", "id = $1 OR id = $2", a, c); n != 2 {
					t.Fatalf("%s has %d of the 2 copied rows after the drain", side, n)
				}
			}
		})
	}
}

// TestReadCopyFromRefused: CopyFrom on a read's Querier would write the one
// side the read runs on.
func TestReadCopyFromRefused(t *testing.T) {
	t.Parallel()
	b := copySetup(t, flags.StageShadow)
	_, err := dualwrite.Read(userCtx("copy"), b.facade, dualwrite.Op{Name: "cu.readcopy"}, func(ctx context.Context, q pgshift.Querier) (int64, error) {
		return q.CopyFrom(ctx, pgx.Identifier{"cu"}, []string{"id", "v"}, pgx.CopyFromRows([][]any{{uuid.Must(uuid.NewV7()), "x"}}))
	})
	if !errors.Is(err, dualwrite.ErrCopyInRead) {
		t.Fatalf("CopyFrom in a read: got %v, want ErrCopyInRead", err)
	}
	b.facade.Wait()
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if n := count(t, b.pool(side), "cu", "true"); n != 0 {
			t.Fatalf("%s has %d rows a read copied", side, n)
		}
	}
}

// TestBatchCallbacksAndInlineCommit: a OneStatement batch whose results are
// only closed, as pgx allows, runs its queued callbacks and its COMMIT (sent
// after the batch's last statement) on both sides; a batch of reads
// answers in order; reading past a batch's end is an error, not the
// COMMIT's result.
func TestBatchCallbacksAndInlineCommit(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageOff, flags.StageDualWrite, flags.StageLive, flags.StageComplete} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := copySetup(t, stage)
			ids := []uuid.UUID{uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())}
			var tags []string
			err := dualwrite.Exec(userCtx("batch"), b.facade, dualwrite.Op{Name: "cu.batch", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
				batch := &pgx.Batch{}
				for _, id := range ids {
					tx.Touch("cu", id)
					batch.Queue("INSERT INTO cu VALUES ($1, 'v')", id).Exec(func(ct pgconn.CommandTag) error {
						if tx.Authoritative() {
							tags = append(tags, ct.String())
						}
						return nil
					})
				}
				return tx.SendBatch(ctx, batch).Close()
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(tags) != 3 || tags[0] != "INSERT 0 1" {
				t.Fatalf("callbacks saw %v, want three INSERT 0 1", tags)
			}
			b.facade.Wait()
			plan := stage.Plan()
			for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
				want := 0
				if side == plan.Authoritative || plan.WriteOther {
					want = 3
				}
				if n := count(t, b.pool(side), "cu", "true"); n != want {
					t.Fatalf("%s has %d rows, want %d", side, n, want)
				}
			}

			got, err := dualwrite.Read(userCtx("batch"), b.facade, dualwrite.Op{Name: "cu.batchread"}, func(ctx context.Context, q pgshift.Querier) ([]string, error) {
				batch := &pgx.Batch{}
				batch.Queue("SELECT count(*)::text FROM cu")
				batch.Queue("SELECT v FROM cu WHERE id = $1", ids[1])
				br := q.SendBatch(ctx, batch)
				defer func() { _ = br.Close() }()
				var out []string
				for range 2 {
					var s string
					if err := br.QueryRow().Scan(&s); err != nil {
						return nil, err
					}
					out = append(out, s)
				}
				return out, br.Close()
			})
			if err != nil || len(got) != 2 || got[0] != "3" || got[1] != "v" {
				t.Fatalf("batch read: got %v, %v; want [3 v]", got, err)
			}

			err = dualwrite.Exec(userCtx("batch"), b.facade, dualwrite.Op{Name: "cu.batchpast", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
				tx.Touch("cu", ids[0])
				batch := &pgx.Batch{}
				batch.Queue("UPDATE cu SET v = 'w' WHERE id = $1", ids[0])
				br := tx.SendBatch(ctx, batch)
				if _, err := br.Exec(); err != nil {
					return err
				}
				if _, err := br.Exec(); err == nil {
					return errors.New("a second result of a one-statement batch")
				}
				return br.Close()
			})
			if err != nil {
				t.Fatalf("reading past the batch's end: %v", err)
			}
			b.facade.Wait()
			if n := count(t, b.pool(plan.Authoritative), "cu", "id = $1 AND v = 'w'", ids[0]); n != 1 {
				t.Fatal("the update of the batch read past its end did not commit")
			}
		})
	}
}

// TestUnclosedBatchCommitIsRead: a OneStatement write whose COMMIT went
// with its batch, and whose function returns without closing the results,
// still gets that COMMIT's answer: here a deferred foreign key refuses it,
// and the write must fail rather than be acknowledged.
func TestUnclosedBatchCommitIsRead(t *testing.T) {
	t.Parallel()
	b := copySetup(t, flags.StageDualWrite)
	for _, db := range []*pgtest.DB{b.pair.Old, b.pair.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE dchild (id uuid PRIMARY KEY,
			parent_id uuid NOT NULL REFERENCES cu (id) DEFERRABLE INITIALLY DEFERRED)`)
	}
	id := uuid.Must(uuid.NewV7())
	err := dualwrite.Exec(userCtx("batch"), b.facade, dualwrite.Op{Name: "dchild.create", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
		tx.Touch("dchild", id)
		batch := &pgx.Batch{}
		batch.Queue("INSERT INTO dchild VALUES ($1, $2)", id, uuid.Must(uuid.NewV7())) // no such parent
		br := tx.SendBatch(ctx, batch)
		_, err := br.Exec()
		return err // the results are left open
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		t.Fatalf("a COMMIT the deferred foreign key refuses: got %v, want the foreign key violation", err)
	}
	b.facade.Wait()
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if n := count(t, b.pool(side), "dchild", "true"); n != 0 {
			t.Fatalf("%s has the refused row", side)
		}
	}
}
