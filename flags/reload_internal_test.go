package flags

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadReadsAnEmptyFileAgainBeforeJudging reads a flag file caught
// between a write's truncate and its data (empty): reload asks to be run
// again and says nothing; the file then holds broken JSON, which is
// reported once; a file that stays empty is reported on the second read.
func TestReloadReadsAnEmptyFileAgainBeforeJudging(t *testing.T) {
	chk, err := newChecker(newConfig(nil).scheme())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flags.json")
	var logs bytes.Buffer
	w := &fileWatch{path: path, log: slog.New(slog.NewTextHandler(&logs, nil)), chk: chk}
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	if _, ok, again := w.reload(); ok || !again || logs.Len() != 0 {
		t.Fatalf("first read of an empty file: ok %t again %t, logged %q; want a second read and no line", ok, again, logs.String())
	}
	write(`{"flags": {`)
	if _, ok, again := w.reload(); ok || again || strings.Count(logs.String(), "not usable") != 1 || strings.Contains(logs.String(), "is empty") {
		t.Fatalf("the written file after the empty moment: ok %t again %t, logged %q; want one line about the broken JSON", ok, again, logs.String())
	}
	logs.Reset()
	write("")
	w.reload()
	if _, _, again := w.reload(); again || !strings.Contains(logs.String(), "is empty") {
		t.Fatalf("a file that stays empty: again %t, logged %q; want it reported on the second read", again, logs.String())
	}
}
