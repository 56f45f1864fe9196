package flags_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// TestWatcherIgnoresOtherFilesAndLogsOncePerContent: the application logs
// to a file beside the flag file, and the flag file is broken. The watcher
// logs the broken version once: not again for each line the log gets (each
// of which the old watcher answered with another ERROR line, feeding
// itself), nor when the same broken content is written again; then a good
// version is taken.
func TestWatcherIgnoresOtherFilesAndLogsOncePerContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "flags.json")
	writeFile(t, path, staticFlag("dualwrite"))
	logFile, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	logs := &syncBuffer{}
	ev, err := flags.NewFileEvaluator(t.Context(), path, flags.WithoutCache(),
		flags.WithLogger(slog.New(slog.NewTextHandler(io.MultiWriter(logs, logFile), nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })

	const broken = `{"flags": {`
	writeFile(t, path, broken)
	waitFor(t, "the broken file to be logged", func() bool { return logs.count("not usable") > 0 })
	for i := range 10 {
		if _, err := logFile.WriteString("application log line\n"); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			writeFile(t, path, broken) // the same content again
		}
		time.Sleep(20 * time.Millisecond)
	}
	writeFile(t, path, staticFlag("shadow"))
	waitFor(t, "the good file to be taken", func() bool { return ev.Stage(user("1", nil)) == flags.StageShadow })
	if n := logs.count("not usable"); n != 1 {
		t.Fatalf("%d log lines about the one broken version, want 1:\n%s", n, logs.String())
	}
}

// TestWatcherFollowsConfigMapSwap: a Kubernetes ConfigMap mounts the file
// as flags.json -> ..data/flags.json, ..data -> a timestamped directory,
// and updates it by pointing ..data at a new directory. The watcher takes
// the new version.
func TestWatcherFollowsConfigMapSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name, stage string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "flags.json"), staticFlag(stage))
	}
	version("..2024_01_01", "dualwrite")
	for link, target := range map[string]string{"..data": "..2024_01_01", "flags.json": "..data/flags.json"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := flags.NewFileEvaluator(t.Context(), filepath.Join(dir, "flags.json"), flags.WithoutCache())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	if got := ev.Stage(user("1", nil)); got != flags.StageDualWrite {
		t.Fatalf("stage %v, want dualwrite", got)
	}
	version("..2024_01_02", "live")
	if err := os.Symlink("..2024_01_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swapped version to be taken", func() bool { return ev.Stage(user("1", nil)) == flags.StageLive })
}

// TestOversizedFlagFileRefused: a flag file over flags.MaxFileSize is
// refused at start with an error naming it, and, written later, is logged
// as unusable while the last good configuration stays.
func TestOversizedFlagFileRefused(t *testing.T) {
	t.Parallel()
	huge := staticFlag("live") + strings.Repeat(" ", flags.MaxFileSize)
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, huge)
	if _, err := flags.NewFileEvaluator(t.Context(), path); err == nil || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "larger than") {
		t.Fatalf("start on an oversized file: err %v, want one naming the file and the limit", err)
	}

	b := setupContent(t, staticFlag("dualwrite"), flags.WithoutCache())
	writeFile(t, b.path, huge)
	waitFor(t, "the oversized file to be refused", func() bool { return b.logs.count("not usable", "larger than") > 0 })
	if got := b.ev.Stage(user("1", nil)); got != flags.StageDualWrite {
		t.Fatalf("stage %v after an oversized file, want dualwrite from the last good one", got)
	}
}
