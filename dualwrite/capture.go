package dualwrite

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// The triggers pgshift puts on application tables.
const (
	captureTrigger  = "pgshift_capture"
	truncateTrigger = "pgshift_no_truncate"
)

// InstallCapture installs pgshift's schema (see Install) and its capture
// triggers on tables of schema ("public" when empty; every table with a
// primary key when none are named) on the database q is connected to, and
// returns the tables it covered. It is idempotent; run it on both sides.
//
// A captured table gets an AFTER INSERT OR UPDATE OR DELETE row trigger that,
// in a transaction the facade marked (Config.Capture or Config.Strict),
// records the key of every row a statement changes: rows changed through
// ON DELETE CASCADE, other triggers and UPDATE ... FROM included, and both
// keys of an update that changes the key. Outside such transactions it
// records nothing. The table also gets a TRUNCATE trigger that refuses
// TRUNCATE (which fires no row triggers, and would empty one side only)
// unless the transaction set pgshift.allow_truncate to on, and so does each
// of its partitions (PostgreSQL clones row triggers to partitions, not
// TRUNCATE triggers). A partition attached later has none until
// InstallCapture runs again; the cutover gates refuse to move while one
// lacks it (PartitionsWithoutTruncateTrigger).
func InstallCapture(ctx context.Context, q pgshift.Querier, schema string, tables []string) ([]string, error) {
	if schema == "" {
		schema = SchemaDefault
	}
	if err := validSchema(schema); err != nil {
		return nil, fmt.Errorf("dualwrite: install capture: %w", err)
	}
	if err := Install(ctx, q); err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		var err error
		if tables, err = rowsync.ListTables(ctx, q, schema); err != nil {
			return nil, fmt.Errorf("dualwrite: install capture: %w", err)
		}
	}
	var covered []string
	for _, name := range tables {
		t, err := rowsync.LoadTable(ctx, q, schema, name)
		if err != nil {
			return covered, fmt.Errorf("dualwrite: install capture: %w", err)
		}
		if _, err := q.Exec(ctx, captureDDL(t)); err != nil {
			return covered, fmt.Errorf("dualwrite: install capture on %s: %w", t, err)
		}
		if err := refuseTruncateOfPartitions(ctx, q, t); err != nil {
			return covered, err
		}
		covered = append(covered, t.String())
	}
	return covered, nil
}

// captureFunction is the name of t's capture trigger function: one per
// table, since it names the table's key columns.
func captureFunction(t *rowsync.Table) string {
	sum := md5.Sum([]byte(t.Schema + "." + t.Name))
	return pgx.Identifier{pgshiftdb.Schema, "capture_" + hex.EncodeToString(sum[:])}.Sanitize()
}

// captureDDL creates (or replaces) t's capture trigger function and both
// triggers. The function prints keys with the session parameters rowsync
// prints them with (UTC, ISO dates, full float precision, hex bytea), set
// for the function alone, so they match what the facade and the repair
// worker name the rows by.
//
// It runs in every captured write, as the writing role, which may be a
// superuser; so its search_path is pinned to pg_catalog, pg_temp, and its
// operators and functions are those of pg_catalog by name as well. A
// search path with a schema other roles may create objects in (public,
// before PostgreSQL 15) would otherwise let any role plant, for example, an
// exact =(text[], text[]) that wins over pg_catalog's =(anyarray, anyarray)
// and runs with the writer's privileges. (The old and new keys are compared
// with = rather than IS DISTINCT FROM, which cannot name its operator: a
// key's columns are NOT NULL, so both say the same.)
func captureDDL(t *rowsync.Table) string {
	keys := func(record string) string {
		parts := make([]string, len(t.Key))
		for i, k := range t.Key {
			parts[i] = record + "." + pgx.Identifier{k.Name}.Sanitize() + "::text"
		}
		return "ARRAY[" + strings.Join(parts, ", ") + "]"
	}
	// The table is named in the function rather than by TG_TABLE_NAME,
	// which names the partition a row of a partitioned table is in.
	record := func(rec string) string {
		return fmt.Sprintf("PERFORM pg_catalog.set_config('pgshift.captured', coalesce(pg_catalog.current_setting('pgshift.captured', true), '') OPERATOR(pg_catalog.||) pg_catalog.json_build_array(%s, %s, %s)::text OPERATOR(pg_catalog.||) pg_catalog.chr(10), true);",
			quoteLiteral(t.Schema), quoteLiteral(t.Name), keys(rec))
	}
	settings := []string{"SET search_path = pg_catalog, pg_temp"}
	for _, name := range []string{"timezone", "datestyle", "intervalstyle", "extra_float_digits", "bytea_output"} {
		settings = append(settings, fmt.Sprintf("SET %s = %s", name, quoteLiteral(rowsync.SessionParams[name])))
	}
	fn := captureFunction(t)
	ident := t.Ident()
	return fmt.Sprintf(`CREATE OR REPLACE FUNCTION %[1]s() RETURNS trigger LANGUAGE plpgsql %[2]s AS $pgshift$
BEGIN
    IF coalesce(pg_catalog.current_setting('pgshift.capture', true), '') OPERATOR(pg_catalog.=) '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' OR (TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND NOT %[3]s OPERATOR(pg_catalog.=) %[4]s) THEN
        %[5]s
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        %[6]s
    END IF;
    RETURN NULL;
END
$pgshift$;
COMMENT ON FUNCTION %[1]s() IS %[7]s;
DROP TRIGGER IF EXISTS %[8]s ON %[9]s;
CREATE TRIGGER %[8]s AFTER INSERT OR UPDATE OR DELETE ON %[9]s FOR EACH ROW EXECUTE FUNCTION %[1]s();
DROP TRIGGER IF EXISTS %[10]s ON %[9]s;
CREATE TRIGGER %[10]s BEFORE TRUNCATE ON %[9]s FOR EACH STATEMENT EXECUTE FUNCTION pgshift.refuse_truncate();`,
		fn, strings.Join(settings, " "), keys("OLD"), keys("NEW"), record("OLD"), record("NEW"),
		quoteLiteral("pgshift capture trigger of "+ident), pgx.Identifier{captureTrigger}.Sanitize(), ident,
		pgx.Identifier{truncateTrigger}.Sanitize())
}

// refuseTruncateOfPartitions puts the TRUNCATE trigger on every partition of
// t, at every level.
func refuseTruncateOfPartitions(ctx context.Context, q pgshift.Querier, t *rowsync.Table) error {
	parts, err := ownSQL.Partitions(ctx, q, t.Ident())
	if err != nil {
		return fmt.Errorf("dualwrite: install capture on %s: list partitions: %w", t, err)
	}
	for _, p := range parts {
		if _, err := q.Exec(ctx, refuseTruncateDDL(pgx.Identifier{p.TableSchema, p.TableName}.Sanitize())); err != nil {
			return fmt.Errorf("dualwrite: install capture on partition %s of %s: %w", pgx.Identifier{p.TableSchema, p.TableName}.Sanitize(), t, err)
		}
	}
	return nil
}

// refuseTruncateDDL (re)creates the TRUNCATE trigger on the table ident.
func refuseTruncateDDL(ident string) string {
	tr := pgx.Identifier{truncateTrigger}.Sanitize()
	return fmt.Sprintf(`DROP TRIGGER IF EXISTS %[1]s ON %[2]s;
CREATE TRIGGER %[1]s BEFORE TRUNCATE ON %[2]s FOR EACH STATEMENT EXECUTE FUNCTION pgshift.refuse_truncate();`, tr, ident)
}

// quoteLiteral quotes s as an SQL string literal, for DDL, which takes no
// parameters.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Uninstall removes everything pgshift put in the database q is connected
// to: the capture triggers and their functions on every table, and the
// schema pgshift (the repair log and the backfill's progress with it). It
// is idempotent. Run it once the migration is complete (or abandoned): the
// repair log's entries go with it.
func Uninstall(ctx context.Context, q pgshift.Querier) error {
	triggers, err := ownSQL.CaptureTriggers(ctx, q)
	if err != nil {
		return fmt.Errorf("dualwrite: uninstall: list triggers: %w", err)
	}
	for _, tr := range triggers {
		sql := fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pgx.Identifier{tr.TriggerName}.Sanitize(),
			pgx.Identifier{tr.TableSchema, tr.TableName}.Sanitize())
		if _, err := q.Exec(ctx, sql); err != nil {
			return fmt.Errorf("dualwrite: uninstall: %w", err)
		}
	}
	if _, err := q.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{pgshiftdb.Schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("dualwrite: uninstall: %w", err)
	}
	return nil
}

// capturedRows parses what take_captured returned.
func capturedRows(text string) ([]touchedRow, error) {
	var rows []touchedRow
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var parts []json.RawMessage
		var r touchedRow
		if err := json.Unmarshal([]byte(line), &parts); err != nil || len(parts) != 3 {
			return nil, fmt.Errorf("captured row %q: not [schema, table, key]", line)
		}
		if err := json.Unmarshal(parts[0], &r.schema); err != nil {
			return nil, fmt.Errorf("captured row %q: %w", line, err)
		}
		if err := json.Unmarshal(parts[1], &r.table); err != nil {
			return nil, fmt.Errorf("captured row %q: %w", line, err)
		}
		if err := json.Unmarshal(parts[2], &r.key); err != nil {
			return nil, fmt.Errorf("captured row %q: %w", line, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}
