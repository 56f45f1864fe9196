package schemadiff_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/schemadiff"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// setup applies common DDL to a fresh database on each side, then oldOnly to
// old and newOnly to new.
func setup(t *testing.T, common, oldOnly, newOnly string) *pgtest.Pair {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	ctx := context.Background()
	for _, step := range []struct {
		db  *pgtest.DB
		ddl string
	}{{p.Old, common}, {p.New, common}, {p.Old, oldOnly}, {p.New, newOnly}} {
		if step.ddl == "" {
			continue
		}
		if _, err := step.db.Pool.Exec(ctx, step.ddl); err != nil {
			t.Fatalf("apply DDL to %s: %v\n%s", step.db.Name, err, step.ddl)
		}
	}
	return p
}

func diff(t *testing.T, p *pgtest.Pair, schema string, opts schemadiff.Options) *schemadiff.Report {
	t.Helper()
	r, err := schemadiff.Diff(context.Background(), p.Old.Pool, p.New.Pool, schema, opts)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return r
}

func TestDiffFindsEachKindOfDrift(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind                     schemadiff.Kind
		common, oldDDL, newDDL   string
		object, wantOld, wantNew string
	}{
		{
			kind:   schemadiff.MissingTable,
			oldDDL: `CREATE TABLE gone (id int PRIMARY KEY, c text UNIQUE); CREATE INDEX gone_c_idx ON gone (c, id)`,
			object: "public.gone", wantOld: "(id integer, c text)",
		},
		{
			kind:   schemadiff.ExtraTable,
			newDDL: `CREATE TABLE added (id bigint PRIMARY KEY)`,
			object: "public.added", wantNew: "(id bigint)",
		},
		{
			kind:   schemadiff.MissingColumn,
			common: `CREATE TABLE t (id int PRIMARY KEY)`, oldDDL: `ALTER TABLE t ADD c text NOT NULL DEFAULT ''`,
			object: "public.t.c", wantOld: "text",
		},
		{
			kind:   schemadiff.ExtraColumn,
			common: `CREATE TABLE t (id int PRIMARY KEY)`, newDDL: `ALTER TABLE t ADD c jsonb`,
			object: "public.t.c", wantNew: "jsonb",
		},
		{
			kind:   schemadiff.ColumnType,
			oldDDL: `CREATE TABLE t (id int, c varchar(10))`, newDDL: `CREATE TABLE t (id int, c varchar(20))`,
			object: "public.t.c", wantOld: "character varying(10)", wantNew: "character varying(20)",
		},
		{
			kind:   schemadiff.Nullability,
			oldDDL: `CREATE TABLE t (id int, c text NOT NULL)`, newDDL: `CREATE TABLE t (id int, c text)`,
			object: "public.t.c", wantOld: "NOT NULL", wantNew: "NULL",
		},
		{
			kind:   schemadiff.Default,
			oldDDL: `CREATE TABLE t (id int, c text DEFAULT 'a')`, newDDL: `CREATE TABLE t (id int, c text)`,
			object: "public.t.c", wantOld: "'a'::text", wantNew: "(none)",
		},
		{
			kind:   schemadiff.PrimaryKey,
			oldDDL: `CREATE TABLE t (a int, b int NOT NULL, PRIMARY KEY (a))`, newDDL: `CREATE TABLE t (a int, b int NOT NULL, PRIMARY KEY (a, b))`,
			object: "public.t.t_pkey", wantOld: "PRIMARY KEY (a)", wantNew: "PRIMARY KEY (a, b)",
		},
		{
			kind:   schemadiff.UniqueConstraint,
			common: `CREATE TABLE t (id int PRIMARY KEY, c text)`, oldDDL: `ALTER TABLE t ADD CONSTRAINT t_c_key UNIQUE (c)`,
			object: "public.t.t_c_key", wantOld: "UNIQUE (c)",
		},
		{
			kind:   schemadiff.ForeignKey,
			common: `CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, pid int)`,
			oldDDL: `ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE`,
			newDDL: `ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) REFERENCES parent (id)`,
			object: "public.child.child_pid_fkey",
			// search_path is pg_catalog alone while reading, so the
			// referenced table is qualified.
			wantOld: "FOREIGN KEY (pid) REFERENCES public.parent(id) ON DELETE CASCADE",
			wantNew: "FOREIGN KEY (pid) REFERENCES public.parent(id)",
		},
		{
			kind:   schemadiff.CheckConstraint,
			oldDDL: `CREATE TABLE t (n int CONSTRAINT t_n_check CHECK (n > 0))`, newDDL: `CREATE TABLE t (n int CONSTRAINT t_n_check CHECK (n >= 0))`,
			object: "public.t.t_n_check", wantOld: "CHECK (n > 0)", wantNew: "CHECK (n >= 0)",
		},
		{
			kind:   schemadiff.ExclusionConstraint,
			common: `CREATE TABLE booking (id int PRIMARY KEY, during tsrange)`,
			newDDL: `ALTER TABLE booking ADD CONSTRAINT booking_during_excl EXCLUDE USING gist (during WITH &&)`,
			object: "public.booking.booking_during_excl", wantNew: "EXCLUDE USING gist (during WITH &&)",
		},
		{
			kind:   schemadiff.Index,
			common: `CREATE TABLE t (id int PRIMARY KEY, c text)`,
			oldDDL: `CREATE INDEX t_c_idx ON t (c)`, newDDL: `CREATE INDEX t_c_idx ON t (c, id)`,
			object:  "public.t_c_idx",
			wantOld: "CREATE INDEX ON public.t USING btree (c)", wantNew: "CREATE INDEX ON public.t USING btree (c, id)",
		},
		{
			kind:   schemadiff.Sequence,
			oldDDL: `CREATE SEQUENCE counter`, newDDL: `CREATE SEQUENCE counter AS integer INCREMENT BY 5 CYCLE`,
			object:  "public.counter",
			wantOld: "AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 NO CYCLE",
			wantNew: "AS integer INCREMENT BY 5 MINVALUE 1 MAXVALUE 2147483647 CYCLE",
		},
		{
			kind:   schemadiff.Enum,
			oldDDL: `CREATE TYPE mood AS ENUM ('sad', 'ok')`, newDDL: `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
			object: "public.mood", wantOld: "'sad', 'ok'", wantNew: "'sad', 'ok', 'happy'",
		},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			r := diff(t, setup(t, tc.common, tc.oldDDL, tc.newDDL), "public", schemadiff.Options{})
			if len(r.Differences) != 1 {
				t.Fatalf("got %d differences, want exactly one %s:\n%s", len(r.Differences), tc.kind, render(t, r))
			}
			d := r.Differences[0]
			if d.Kind != tc.kind || d.Object != tc.object || d.Old != tc.wantOld || d.New != tc.wantNew {
				t.Fatalf("got %+v\nwant kind %s object %s old %q new %q", d, tc.kind, tc.object, tc.wantOld, tc.wantNew)
			}
			if r.Equal() || !strings.Contains(d.Message, tc.object) {
				t.Fatalf("Equal() = %v, message %q does not name %s", r.Equal(), d.Message, tc.object)
			}
		})
	}
}

func TestIdenticalReferenceDomainIsEqual(t *testing.T) {
	t.Parallel()
	// Domain also creates pgshift's own schema, which must stay out.
	p := pgtest.NewPair(t, pgtest.Domain)
	r := diff(t, p, "public", schemadiff.Options{})
	if !r.Equal() {
		t.Fatalf("identical reference domain differs:\n%s", render(t, r))
	}
	if _, err := schemadiff.Diff(context.Background(), p.Old.Pool, p.New.Pool, "pgshift", schemadiff.Options{}); !errors.Is(err, schemadiff.ErrOwnSchema) {
		t.Fatalf("Diff of schema pgshift: err %v, want ErrOwnSchema", err)
	}
}

// quotedSchema has mixed-case and space-containing names in a non-public
// schema, with every kind of object Diff compares.
const quotedSchema = `
CREATE SCHEMA "Shop Data";
CREATE TYPE "Shop Data"."Order State" AS ENUM ('New', 'Paid');
CREATE SEQUENCE "Shop Data"."Ticket No";
CREATE TABLE "Shop Data"."Customer" ("Customer ID" uuid PRIMARY KEY, "E-Mail" text NOT NULL UNIQUE);
CREATE TABLE "Shop Data"."Order Items" (
    "Item ID"  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "Customer" uuid NOT NULL REFERENCES "Shop Data"."Customer" ("Customer ID"),
    "State"    "Shop Data"."Order State" NOT NULL DEFAULT 'New',
    "Qty"      numeric(10,2) CHECK ("Qty" > 0),
    "Ticket"   bigint DEFAULT nextval('"Shop Data"."Ticket No"')
);
CREATE INDEX "Items By Customer" ON "Shop Data"."Order Items" ("Customer", "Item ID");
`

func TestIdenticalQuotedNamesInOtherSchemaAreEqual(t *testing.T) {
	t.Parallel()
	r := diff(t, setup(t, quotedSchema, "", ""), "Shop Data", schemadiff.Options{})
	if !r.Equal() {
		t.Fatalf("identical schema differs:\n%s", render(t, r))
	}
	if r.Schema != "Shop Data" {
		t.Fatalf("report schema %q", r.Schema)
	}
}

func TestQuotedNamesAreQuotedInObjects(t *testing.T) {
	t.Parallel()
	p := setup(t, quotedSchema, "", `ALTER TABLE "Shop Data"."Order Items" ALTER "Qty" TYPE numeric(12,2)`)
	r := diff(t, p, "Shop Data", schemadiff.Options{})
	want := `"Shop Data"."Order Items"."Qty"`
	if len(r.Differences) != 1 || r.Differences[0].Kind != schemadiff.ColumnType || r.Differences[0].Object != want {
		t.Fatalf("want one column_type difference of %s, got:\n%s", want, render(t, r))
	}
}

func TestSameConstraintAndIndexUnderOtherNamesAreEqual(t *testing.T) {
	t.Parallel()
	p := setup(t, `CREATE TABLE t (id int, c text, n int)`,
		`ALTER TABLE t ADD CONSTRAINT a_pk PRIMARY KEY (id), ADD CONSTRAINT a_u UNIQUE (c), ADD CONSTRAINT a_ck CHECK (n > 0); CREATE INDEX a_idx ON t (n)`,
		`ALTER TABLE t ADD CONSTRAINT b_pk PRIMARY KEY (id), ADD CONSTRAINT b_u UNIQUE (c), ADD CONSTRAINT b_ck CHECK (n > 0); CREATE INDEX b_idx ON t (n)`)
	if r := diff(t, p, "public", schemadiff.Options{}); !r.Equal() {
		t.Fatalf("renamed but identical constraints differ:\n%s", render(t, r))
	}
}

func TestTablesOptionLimitsTheComparison(t *testing.T) {
	t.Parallel()
	p := setup(t, `CREATE TABLE a (id int); CREATE TABLE b (id int)`,
		`ALTER TABLE b ADD c int`, `CREATE TABLE other (id int)`)
	if r := diff(t, p, "public", schemadiff.Options{Tables: []string{"a"}}); !r.Equal() {
		t.Fatalf("only table a compared, yet differences:\n%s", render(t, r))
	}
	if r := diff(t, p, "public", schemadiff.Options{}); len(r.Differences) != 2 {
		t.Fatalf("whole schema: want 2 differences, got:\n%s", render(t, r))
	}
}

func TestReportRendersForPeopleAndJSON(t *testing.T) {
	t.Parallel()
	r := diff(t, setup(t, "", `CREATE TABLE gone (id int)`, ""), "public", schemadiff.Options{})
	text := render(t, r)
	if !strings.Contains(text, "1 difference") || !strings.Contains(text, "table public.gone exists on old but not on new") {
		t.Fatalf("rendering lacks the count or the message:\n%s", text)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Schema      string
		Differences []map[string]string
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Schema != "public" || len(back.Differences) != 1 || back.Differences[0]["kind"] != "missing_table" || back.Differences[0]["object"] != "public.gone" {
		t.Fatalf("JSON %s", b)
	}
	var eq bytes.Buffer
	if err := (&schemadiff.Report{Schema: "public"}).Write(&eq); err != nil || eq.String() != "schema public: old and new are equal\n" {
		t.Fatalf("equal report renders %q (err %v)", eq.String(), err)
	}
}

func render(t *testing.T, r *schemadiff.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Columns whose values the database makes (defaults that are not immutable,
// identity and serial columns) and triggers that may set columns are
// warned about per table: they differ between the sides unless the write
// function passes the value. Constant defaults are not, and warnings leave
// the report equal.
func TestWarnsAboutValuesTheDatabaseMakes(t *testing.T) {
	t.Parallel()
	p := setup(t, `CREATE TABLE made (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		at timestamptz DEFAULT now(), ct timestamp DEFAULT CURRENT_TIMESTAMP, u uuid DEFAULT gen_random_uuid(),
		n serial, r float8 DEFAULT random() * 2,
		c text DEFAULT 'x', two int DEFAULT 1 + 1, up text DEFAULT upper('x'),
		g int GENERATED ALWAYS AS (two * 2) STORED);
		CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.at := now(); RETURN NEW; END$$;
		CREATE TRIGGER stamp BEFORE UPDATE ON made FOR EACH ROW EXECUTE FUNCTION stamp();
		CREATE TRIGGER after_only AFTER INSERT ON made FOR EACH ROW EXECUTE FUNCTION stamp();`, "", "")
	r := diff(t, p, "public", schemadiff.Options{})
	var got []string
	for _, w := range r.Warnings {
		got = append(got, w.Object)
	}
	want := []string{"public.made.at", "public.made.ct", "public.made.id", "public.made.n", "public.made.r", "public.made.stamp", "public.made.u"}
	if !r.Equal() || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("warnings on %v (equal %v), want %v:\n%s", got, r.Equal(), want, render(t, r))
	}
	if out := render(t, r); !strings.Contains(out, "warning: column public.made.at defaults to now(), which makes a different value on each side") {
		t.Fatalf("report does not say what to do about now():\n%s", out)
	}
}
