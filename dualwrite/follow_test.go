package dualwrite_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestFollowsKeepParentBeforeChild (issue 26 case 4): in dualwrite and
// shadow new gets its copy of a write after the caller has its answer, off
// the caller's path. A routing key's parent and then its child (a foreign
// key) must reach new in that order even when new is slow to apply the
// parent (a trigger there sleeps): the child's copy never fails the foreign
// key on new, nothing is left in a repair log (the repair worker is off, so
// nothing would hide a miss), and shadow reads of the child count no
// mismatch.
func TestFollowsKeepParentBeforeChild(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageShadow} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t, stage, func(c *dualwrite.Config) {
				c.RepairDisabled = true
				c.OtherTimeout = 5 * time.Second
			})
			for _, db := range []*pgtest.DB{b.pair.Old, b.pair.New} {
				pgtest.Exec(t, db.Pool, `CREATE TABLE fparent (id uuid PRIMARY KEY, name text NOT NULL);
					CREATE TABLE fchild (id uuid PRIMARY KEY, parent_id uuid NOT NULL REFERENCES fparent (id), v text NOT NULL)`)
			}
			pgtest.Exec(t, b.pair.New.Pool, `CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
				CREATE TRIGGER slow BEFORE INSERT ON fparent FOR EACH ROW EXECUTE FUNCTION slow()`)
			ctx := userCtx("family")
			const families = 4
			children := make([]uuid.UUID, families)
			for i := range families {
				parent, child := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
				children[i] = child
				err := dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "fparent.create", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
					tx.Touch("fparent", parent)
					_, err := tx.Exec(ctx, "INSERT INTO fparent VALUES ($1, 'p')", parent)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				err = dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "fchild.create", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
					tx.Touch("fchild", child)
					_, err := tx.Exec(ctx, "INSERT INTO fchild VALUES ($1, $2, 'c')", child, parent)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				v, err := dualwrite.Read(ctx, b.facade, dualwrite.Op{Name: "fchild.get"}, func(ctx context.Context, q pgshift.Querier) (string, error) {
					var v string
					err := q.QueryRow(ctx, "SELECT v FROM fchild WHERE id = $1", child).Scan(&v)
					return v, err
				})
				if err != nil || v != "c" {
					t.Fatalf("read of the child: %q, %v", v, err)
				}
			}
			b.facade.Wait()
			s := b.facade.Stats()
			if s.OtherMissed != 0 {
				t.Fatalf("new missed %d copies (a child before its parent fails the foreign key there)", s.OtherMissed)
			}
			if s.ShadowMismatches != 0 {
				t.Fatalf("shadow reads counted %d mismatches", s.ShadowMismatches)
			}
			if n := count(t, b.pair.Old.Pool, "pgshift.repair_log", "true"); n != 0 {
				t.Fatalf("old's repair log holds %d entries after every copy reached new", n)
			}
			if n := count(t, b.pair.New.Pool, "fchild", "id = ANY($1)", children); n != families {
				t.Fatalf("new has %d of the %d children", n, families)
			}
		})
	}
}
