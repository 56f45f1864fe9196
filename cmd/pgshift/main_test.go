package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestMain(m *testing.M) {
	runAsCLIChild()
	pgtest.Main(m)
}

// shapes are tables of every shape the tools must handle, and one without a
// primary key.
const shapes = `CREATE SCHEMA "Big Co";
CREATE TYPE "Big Co".tier AS ENUM ('free', 'pro');
CREATE TABLE "Big Co"."Accounts" ("Region" text, "id" bigint, tier "Big Co".tier, tiers "Big Co".tier[], balance numeric(18,4),
	avatar bytea, prefs jsonb, seen timestamptz, tags text[], ext uuid, PRIMARY KEY ("Region", "id"));
CREATE TABLE "Big Co".events (id uuid PRIMARY KEY, body text);
CREATE TABLE "Big Co".audit (msg text);`

func setup(t *testing.T) *pgtest.Pair {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, shapes)
	}
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO "Big Co"."Accounts" SELECT 'eu ' || i % 3, i, 'pro', '{free,pro}', i * 10.0001, '\x00',
		jsonb_build_object('k', i), '2024-01-01'::timestamptz + i * interval '1 day', ARRAY['a', NULL], gen_random_uuid()
		FROM generate_series(1, 80) AS i;
		INSERT INTO "Big Co"."Accounts" ("Region", id) VALUES ('nulls', 1);
		INSERT INTO "Big Co".events SELECT gen_random_uuid(), 'e' || i FROM generate_series(1, 30) AS i;
		INSERT INTO "Big Co".audit VALUES ('x')`)
	return p
}

// allowNonDurable waives the durable-commits gate in the tests' preflight and
// move: the test servers run with fsync and synchronous_commit off (see
// pglaunch). TestPreflightWantsDurableCommits checks the gate itself.
const allowNonDurable = "--allow-non-durable"

// pgshift runs the command in-process and returns its exit code and output.
func pgshift(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

type summary struct {
	OK     bool `json:"ok"`
	Equal  bool `json:"equal"`
	Tables []struct {
		Table          string
		Error          string
		Rows, Inserted int64
		Missing        int `json:"missing_on_new"`
		Extra          int `json:"extra_on_new"`
		Different      int
		Logged         int `json:"repair_logged"`
		Examples       struct {
			Missing   [][]string `json:"missing_on_new"`
			Extra     [][]string `json:"extra_on_new"`
			Different [][]string `json:"different"`
		}
	}
}

func parseSummary(t *testing.T, stdout string) summary {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	return s
}

func TestBackfillVerifyDriftRepairAcrossShapes(t *testing.T) {
	t.Parallel()
	p := setup(t)
	conn := []string{"--old", p.Old.URL, "--new", p.New.URL, "--schema", "Big Co"}

	code, out, errOut := pgshift(t, append([]string{"backfill", "--json", "--chunk-size", "7", "--workers", "2"}, conn...)...)
	s := parseSummary(t, out)
	if code != exitError || !strings.Contains(errOut, `"Big Co"."audit" has no primary key`) || len(s.Tables) != 3 {
		t.Fatalf("backfill: code %d, stderr %q, %+v; want exit 2 naming audit, the other tables copied", code, errOut, s)
	}
	for _, tb := range s.Tables[1:] {
		if tb.Error != "" || tb.Rows == 0 || tb.Rows != tb.Inserted {
			t.Errorf("backfill of %s: %+v, want every row inserted", tb.Table, tb)
		}
	}

	tables := append(conn, "--table", "Accounts", "--table", "events", "--chunk-size", "9", "--recheck", "1ms")
	if code, out, errOut := pgshift(t, append([]string{"verify", "--json"}, tables...)...); code != exitOK || !parseSummary(t, out).Equal {
		t.Fatalf("verify after backfill: code %d, %s %s; want equal", code, out, errOut)
	}

	pgtest.Exec(t, p.New.Pool, `DELETE FROM "Big Co"."Accounts" WHERE id = 4;
		UPDATE "Big Co"."Accounts" SET tiers = '{free}' WHERE id = 10;
		UPDATE "Big Co"."Accounts" SET prefs = '{}' WHERE "Region" = 'nulls';
		INSERT INTO "Big Co"."Accounts" ("Region", id) VALUES ('zz', 1), ('zz', 2)`)
	code, out, _ = pgshift(t, append([]string{"verify", "--json"}, tables...)...)
	s = parseSummary(t, out)
	acc := s.Tables[0]
	got := fmt.Sprint(code, acc.Missing, acc.Extra, acc.Different, acc.Examples.Missing, acc.Examples.Extra, acc.Examples.Different)
	if want := "1 1 2 2 [[eu 1 4]] [[zz 1] [zz 2]] [[eu 1 10] [nulls 1]]"; got != want {
		t.Fatalf("verify after drift: %s, want %s", got, want)
	}
	code, out, _ = pgshift(t, append([]string{"verify"}, tables...)...)
	if code != exitDifferences || !strings.Contains(out, "missing on new 1, extra on new 2, different 2") {
		t.Errorf("verify text: code %d, %q", code, out)
	}

	if code, _, errOut := pgshift(t, "install", "--old", p.Old.URL, "--new", p.New.URL); code != exitOK {
		t.Fatalf("install: %d %s", code, errOut)
	}
	code, out, _ = pgshift(t, append([]string{"verify", "--repair", "--json"}, tables...)...)
	if acc := parseSummary(t, out).Tables[0]; code != exitOK || acc.Logged != 5 || acc.Missing+acc.Extra+acc.Different != 0 {
		t.Errorf("verify --repair: code %d, %+v; want 5 differences logged, repaired, and equal when checked again", code, acc)
	}
	if code, out, _ := pgshift(t, append([]string{"verify"}, tables...)...); code != exitOK || strings.Count(out, "equal") != 2 {
		t.Fatalf("verify after repair: code %d, %q; want both equal", code, out)
	}
}

func TestBackfillShowsProgressWithRateAndETA(t *testing.T) {
	t.Parallel()
	p := setup(t)
	for _, terminal := range []bool{true, false} {
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }, terminal: terminal}
		code := runWith(context.Background(), []string{"backfill", "--restart", "--old", p.Old.URL, "--new", p.New.URL, "--schema", "Big Co", "--table", "events"}, e)
		bar := strings.Contains(errOut.String(), "\r[")
		if code != exitOK || !strings.Contains(errOut.String(), "rows/s") || !strings.Contains(errOut.String(), "ETA") || bar != terminal {
			t.Errorf("terminal %v: code %d, stderr %q; want rows/s and ETA, a bar only on a terminal", terminal, code, errOut.String())
		}
	}
}

// verify shows its progress as backfill does: rows/s and ETA on stderr, a
// bar on a terminal, and with --json one JSON object per line with the
// rows compared per table.
func TestVerifyShowsProgress(t *testing.T) {
	t.Parallel()
	p := setup(t)
	args := []string{"--old", p.Old.URL, "--new", p.New.URL, "--schema", "Big Co", "--table", "events"}
	if code, out, errOut := pgshift(t, append([]string{"backfill"}, args...)...); code != exitOK {
		t.Fatalf("backfill: code %d\n%s%s", code, out, errOut)
	}
	for _, terminal := range []bool{true, false} {
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }, terminal: terminal}
		code := runWith(context.Background(), append([]string{"verify", "--chunks", "--chunk-size", "7"}, args...), e)
		bar := strings.Contains(errOut.String(), "\r[")
		if code != exitOK || !strings.Contains(errOut.String(), "30/30 rows") || !strings.Contains(errOut.String(), "ETA") || bar != terminal {
			t.Errorf("terminal %v: code %d, stderr %q; want 30/30 rows and an ETA, a bar only on a terminal", terminal, code, errOut.String())
		}
	}
	code, out, errOut := pgshift(t, append([]string{"verify", "--json"}, args...)...)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	var last progressJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || code != exitOK {
		t.Fatalf("verify --json: code %d, last stderr line %q (%v)\n%s", code, lines[len(lines)-1], err, out)
	}
	if tp := last.Tables["Big Co.events"]; last.Rows != 30 || tp.Rows != 30 || last.Fraction != 1 {
		t.Fatalf("verify --json progress = %+v, want 30 rows of events compared, fraction 1", last)
	}
}

func TestPasswordNeverInOutput(t *testing.T) {
	t.Parallel()
	const secret = "Sup3rSecretPw"
	p := setup(t)
	old := p.Old.Server.Launched
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cases := map[string][]string{
		"no such database": {"--old", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/no_such_db?sslmode=disable", secret, old.Port())},
		"closed port":      {"--old", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/x?sslmode=disable&connect_timeout=2", secret, closedPort)},
		"keyword form":     {"--old", fmt.Sprintf("host=127.0.0.1 port=%d user=nobody password=%s dbname=x sslmode=disable", old.Port(), secret)},
		"bad url":          {"--old", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:notaport/x", secret)},
		"new side":         {"--old", p.Old.URL, "--new", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/no_such_db", secret, old.Port())},
		// pgx ends the user part at the first '@', so the password's tail
		// becomes part of the host it fails to look up.
		"unencoded @": {"--old", fmt.Sprintf("postgres://postgres:%s@%s@127.0.0.1:%d/x?connect_timeout=2", secret[:6], secret[6:], old.Port())},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if len(args) == 2 {
				args = append(args, "--new", p.New.URL)
			}
			for _, cmd := range []string{"verify", "backfill"} {
				code, out, errOut := pgshift(t, append([]string{cmd, "--json"}, args...)...)
				if code != exitError || !strings.Contains(errOut, "pgshift "+cmd+": ") {
					t.Errorf("%s: code %d, stderr %q; want exit 2 with an error", cmd, code, errOut)
				}
				if strings.Contains(out+errOut, secret) || strings.Contains(out+errOut, secret[:6]) || strings.Contains(out+errOut, secret[6:]) {
					t.Errorf("%s: password in output: %q %q", cmd, out, errOut)
				}
			}
		})
	}
}

func TestHelpListsCommandsAndExamples(t *testing.T) {
	t.Parallel()
	code, out, _ := pgshift(t, "help")
	if code != exitOK || !strings.Contains(out, "backfill") || !strings.Contains(out, "verify") {
		t.Errorf("help: code %d, %q", code, out)
	}
	code, _, errOut := pgshift(t, "verify", "-h")
	if code != exitOK || !strings.Contains(errOut, "Examples:") || !strings.Contains(errOut, "--repair") || !strings.Contains(errOut, "PGSHIFT_OLD_URL") {
		t.Errorf("verify -h: code %d, %q", code, errOut)
	}
	if code, _, errOut := pgshift(t, "frobnicate"); code != exitError || !strings.Contains(errOut, "pgshift help") {
		t.Errorf("unknown command: code %d, %q", code, errOut)
	}
	if code, _, errOut := pgshift(t, "verify", "--old", ""); code != exitError || !strings.Contains(errOut, "PGSHIFT_OLD_URL") {
		t.Errorf("no connection string: code %d, %q", code, errOut)
	}
}

// cliChildEnv, set to a JSON array of arguments, makes the test binary run
// pgshift with them instead of the tests: a real pgshift process that a
// test can start several times and kill.
const cliChildEnv = "PGSHIFT_CLI_CHILD_ARGS"

// runAsCLIChild runs pgshift when the test binary was started as a child.
func runAsCLIChild() {
	raw := os.Getenv(cliChildEnv)
	if raw == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "bad", cliChildEnv, err)
		os.Exit(exitError)
	}
	os.Exit(runWith(context.Background(), args, &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
}

// startCLI starts pgshift with args as a process of its own.
func startCLI(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), cliChildEnv+"="+string(raw))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}
