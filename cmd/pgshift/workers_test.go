package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// Three pgshift backfill processes share one table through the chunk
// leases on new; one is SIGKILLed while it holds a chunk. The other two
// take its chunk over once the lease expires and finish: every chunk done,
// every row counted once, and verify finds both sides equal.
func TestBackfillProcessesShareATableAndSurviveAKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE big (id bigint PRIMARY KEY, body text NOT NULL)`)
	}
	const rows = 300_000
	pgtest.Exec(t, p.Old.Pool, fmt.Sprintf(`INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, %d) AS i`, rows))
	args := []string{"backfill", "--old", p.Old.URL, "--new", p.New.URL, "--table", "big", "--chunk-size", "10000", "--workers", "1", "--lease", "2s"}
	var procs []*childProc
	for range 3 {
		cmd, out := startCLI(t, args...)
		procs = append(procs, &childProc{cmd: cmd, out: out})
	}
	victim := procs[0]
	holds := func() int {
		var n int
		pattern := fmt.Sprintf("%%:%d:%%", victim.cmd.Process.Pid)
		if err := p.New.Pool.QueryRow(ctx, `SELECT count(*) FROM pgshift.backfill_chunks
			WHERE leased_by LIKE $1 AND done_at IS NULL AND lease_until > now()`, pattern).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	done := func() (n int) {
		_ = p.New.Pool.QueryRow(ctx, `SELECT count(*) FROM pgshift.backfill_chunks WHERE done_at IS NOT NULL`).Scan(&n)
		return n
	}
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL, "--table", "big"}
	// Kill the victim while it holds a chunk, after the run is under way;
	// status, from outside, shows the running backfill first.
	killed := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if done() >= 3 && holds() > 0 {
			code, out, errOut := pgshift(t, append([]string{"status", "--json"}, urls...)...)
			var st struct {
				Backfills []struct {
					Table   string
					Done    int64 `json:"chunks_done"`
					Chunks  int64
					Workers int64
				}
			}
			if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || len(st.Backfills) != 1 {
				t.Fatalf("status during the backfill: code %d, %v\n%s%s", code, err, out, errOut)
			}
			if b := st.Backfills[0]; b.Table != "public.big" || b.Workers < 1 || b.Done >= b.Chunks {
				t.Fatalf("status during the backfill: %+v; want big, under way, with its workers", b)
			}
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	if !killed {
		t.Fatal("the victim never held a chunk after 3 chunks were done")
	}
	_ = victim.cmd.Wait()
	orphaned := holds()
	for i, pr := range procs[1:] {
		if err := pr.cmd.Wait(); err != nil {
			t.Fatalf("backfill process %d: %v\n%s", i+2, err, pr.out)
		}
	}
	if orphaned == 0 {
		t.Fatal("the victim held no chunk once it was dead: it was not killed mid-chunk")
	}
	var chunks, finished, counted int64
	if err := p.New.Pool.QueryRow(ctx, `SELECT count(*), count(done_at), sum(rows_copied) FROM pgshift.backfill_chunks`).Scan(&chunks, &finished, &counted); err != nil {
		t.Fatal(err)
	}
	if finished != chunks || counted != rows {
		t.Fatalf("%d of %d chunks done, %d rows counted; want all done and %d rows, each once", finished, chunks, counted, rows)
	}
	var workers int
	if err := p.New.Pool.QueryRow(ctx, `SELECT count(DISTINCT split_part(leased_by, ':', 2)) FROM pgshift.backfill_chunks`).Scan(&workers); err != nil || workers < 2 {
		t.Fatalf("chunks were last leased by %d processes (err %v); want the work shared", workers, err)
	}
	code, out, errOut := pgshift(t, append([]string{"verify"}, urls...)...)
	if code != exitOK || !strings.Contains(out, "equal") {
		t.Fatalf("verify after the shared backfill: code %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := pgshift(t, append([]string{"status"}, urls...)...); code != exitOK || !strings.Contains(out, "(finished)") {
		t.Fatalf("status after the backfill: code %d\n%s", code, out)
	}
}

type childProc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}
