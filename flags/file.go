package flags

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	schema "github.com/open-feature/flagd-schemas/json"
	"github.com/open-feature/flagd/core/pkg/evaluator"
	"github.com/open-feature/flagd/core/pkg/logger"
	"github.com/open-feature/flagd/core/pkg/store"
	"github.com/open-feature/flagd/core/pkg/sync"
	"github.com/open-feature/flagd/core/pkg/utils"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// reloadDelay is how long the file watcher waits after the last change
// event before it reads the file, so that an editor's several writes are
// read once, whole.
const reloadDelay = 50 * time.Millisecond

// MaxFileSize is the largest flag file NewFileEvaluator reads, 4 MiB: a
// cohort rollout takes a few kilobytes, and parsing a file of tens of
// megabytes took gigabytes of memory. A larger file is refused like a
// broken one.
const MaxFileSize = 4 << 20

// NewFileEvaluator returns a ready Evaluator over flagd's in-process
// provider reading the flagd flag file at path (JSON, or YAML by its
// extension). The file is checked before the provider starts: a file that
// cannot be read, is not JSON, does not follow the flagd schema, that
// flagd rejects, or whose stage flag can give a value that names no stage
// (a non-boolean in the boolean scheme, a variant its rules name but do not
// define) is an error naming the file, the flag and the variant.
//
// The file is watched (its directory, so editors that replace the file and
// Kubernetes ConfigMap symlink swaps are seen) and re-read 50 ms after it
// changes: after events on its own name, or on the entries of the directory
// its symlinks lead through (a ConfigMap's ..data link and the directory
// it points to), never on other files there, such as a log. A version that
// is broken, empty, missing, larger than MaxFileSize, or whose stage flag
// can give a value the scheme cannot map, is logged and not given to flagd,
// which keeps evaluating the last good one. A good version replaces the
// flags and drops the cached decisions.
//
// Close stops the watcher and the provider.
func NewFileEvaluator(ctx context.Context, path string, opts ...Option) (*Evaluator, error) {
	cfg := newConfig(opts)
	chk, err := newChecker(cfg.scheme())
	if err != nil {
		return nil, err
	}
	data, err := readFlagFile(path)
	if err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	good, err := chk.check(path, data)
	if err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	hl := newHealth(path, good)
	p := newFileProvider(&fileWatch{path: path, log: cfg.log, chk: chk, good: good, health: hl})
	p.stages, p.scheme = new(atomic.Uint32), cfg.scheme()
	p.stages.Store(stageMask(good, p.scheme))
	opts = append(opts[:len(opts):len(opts)], func(c *config) { c.fileStages, c.health = p.stages, hl })
	ev, err := NewProviderEvaluator(ctx, p, opts...)
	if err != nil {
		return nil, err
	}
	if err := ev.observeHealth(path, hl); err != nil {
		return nil, errors.Join(err, ev.Close())
	}
	return ev, nil
}

// checker decides whether a flag file may reach flagd: stricter than flagd
// itself, which applies a file that breaks its own schema with a warning,
// and stricter than the Evaluator, which maps a value that names no stage
// to a fallback per request: such a file is refused as a whole.
type checker struct {
	flagd  *jsonschema.Schema
	scheme scheme

	mu      gosync.Mutex
	scratch *evaluator.JSON // a flagd evaluator nobody reads, to try files on
}

func newChecker(sc scheme) (*checker, error) {
	c := jsonschema.NewCompiler()
	for url, doc := range map[string]string{
		"https://flagd.dev/schema/v0/flagd.json":     schema.FlagdSchema,
		"https://flagd.dev/schema/v0/flags.json":     schema.FlagSchema,
		"https://flagd.dev/schema/v0/targeting.json": schema.TargetingSchema,
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
		if err != nil {
			return nil, fmt.Errorf("flags: flagd schema %s: %w", url, err)
		}
		if err := c.AddResource(url, v); err != nil {
			return nil, fmt.Errorf("flags: flagd schema %s: %w", url, err)
		}
	}
	compiled, err := c.Compile("https://flagd.dev/schema/v0/flagd.json")
	if err != nil {
		return nil, fmt.Errorf("flags: flagd schema: %w", err)
	}
	quiet := logger.NewLogger(nil, false)
	scratch, err := store.NewStore(quiet, nil)
	if err != nil {
		return nil, fmt.Errorf("flags: flagd store: %w", err)
	}
	return &checker{flagd: compiled, scheme: sc, scratch: evaluator.NewJSON(quiet, scratch)}, nil
}

// check returns the file's flag configuration as JSON, or why it is not one.
// The error names the file.
func (c *checker) check(path string, data []byte) (string, error) {
	if len(data) > MaxFileSize {
		return "", tooLarge(path)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return "", fmt.Errorf("flag file %s is empty", path)
	}
	js, err := utils.ConvertToJSON(data, filepath.Ext(path), "")
	if err != nil {
		return "", fmt.Errorf("flag file %s: %w", path, err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(js))
	if err != nil {
		return "", fmt.Errorf("flag file %s is not valid JSON: %w", path, err)
	}
	if err := c.flagd.Validate(inst); err != nil {
		return "", fmt.Errorf("flag file %s does not follow the flagd schema (https://flagd.dev/reference/flag-definitions/): %w", path, err)
	}
	if err := checkStages(js, c.scheme); err != nil {
		return "", fmt.Errorf("flag file %s: %w: fix the file; until then the last good version stays in use", path, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.scratch.SetState(sync.DataSync{FlagData: js, Source: path}); err != nil {
		return "", fmt.Errorf("flag file %s: flagd rejects it: %w", path, err)
	}
	return js, nil
}

// readFlagFile reads the flag file at path, refusing one larger than
// MaxFileSize without reading it all.
func readFlagFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("flag file: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("flag file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(path)
	}
	return data, nil
}

func tooLarge(path string) error {
	return fmt.Errorf("flag file %s is larger than %d bytes (flags.MaxFileSize): a flag file takes a few kilobytes; check that the path names the flag file", path, MaxFileSize)
}

// fileWatch follows the flag file for NewFileEvaluator and hands over
// only checked versions: flagd's own file sync hands flagd whatever the file
// holds (an empty or deleted file becomes "no flags") and misses files
// replaced by rename.
type fileWatch struct {
	path    string
	log     *slog.Logger
	chk     *checker
	good    string // the last good configuration, as JSON
	health  *health
	watcher *fsnotify.Watcher
	// names are the entries of the file's directory whose events may
	// change what the path reads (see relevantNames).
	names map[string]bool
	// unusable identifies the last unusable version logged (its content
	// and why), so that one version is logged once.
	unusable [sha256.Size]byte
	// emptyOnce is set when the last read found the file empty: most
	// likely a write caught between its truncate and its data, so the file
	// is read once more before it is judged (see reload).
	emptyOnce bool
}

// relevantNames returns the entries of path's directory that reading path
// goes through: its own name and, where it is a symlink, the entries its
// target leads through, link after link (a Kubernetes ConfigMap mounts
// flags.json -> ..data/flags.json and ..data -> ..2024_01_01_00_00_00.1,
// and updates by swapping ..data). Symlinks out of the directory are not
// followed: their targets are not watched.
func relevantNames(path string) map[string]bool {
	dir := filepath.Dir(path)
	names := map[string]bool{}
	next := filepath.Base(path)
	for range 40 { // as the kernel, give up on long or looping chains
		first, rest, _ := strings.Cut(next, string(filepath.Separator))
		if first == "" || first == "." || first == ".." || names[first] {
			break
		}
		names[first] = true
		target, err := os.Readlink(filepath.Join(dir, first))
		if err != nil {
			break // not a symlink, or gone
		}
		if filepath.IsAbs(target) {
			rel, err := filepath.Rel(dir, target)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				break
			}
			target = rel
		}
		next = filepath.Clean(filepath.Join(target, rest))
	}
	return names
}

// concerns says whether event ev is about an entry reading the file goes
// through.
func (w *fileWatch) concerns(ev fsnotify.Event) bool {
	return filepath.Dir(ev.Name) == filepath.Dir(w.path) && w.names[filepath.Base(ev.Name)]
}

// start watches the file's directory, so that renames onto the file and
// symlink swaps are seen.
func (w *fileWatch) start() error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("flags: watching %s: %w", w.path, err)
	}
	if err := fw.Add(filepath.Dir(w.path)); err != nil {
		return errors.Join(fmt.Errorf("flags: watching %s: %w", w.path, err), fw.Close())
	}
	w.watcher = fw
	w.names = relevantNames(w.path)
	return nil
}

// run calls apply with each changed, good version of the file until ctx is
// done, then closes the watcher.
func (w *fileWatch) run(ctx context.Context, apply func(js string)) {
	defer func() {
		if err := w.watcher.Close(); err != nil {
			w.log.Warn("flags: closing the flag file watcher", slog.String("file", w.path), slog.Any("error", err))
		}
	}()
	reload := time.NewTimer(time.Hour)
	reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.watcher.Events:
			if !ok {
				w.log.Error("flags: the flag file watcher stopped; keeping the last good flag configuration", slog.String("file", w.path))
				return
			}
			// Only the file's own name and the entries its symlinks lead
			// through: other files in the directory (a log the
			// application writes beside it) are none of ours.
			if w.concerns(ev) {
				reload.Reset(reloadDelay)
			}
		case err, ok := <-w.watcher.Errors:
			if !ok {
				w.log.Error("flags: the flag file watcher stopped; keeping the last good flag configuration", slog.String("file", w.path))
				return
			}
			w.log.Warn("flags: watching the flag file", slog.String("file", w.path), slog.Any("error", err))
		case <-reload.C:
			js, ok, again := w.reload()
			if ok {
				apply(js)
			}
			if again {
				reload.Reset(reloadDelay)
			}
		}
	}
}

// reload reads the file and returns it when it changed and is good. It
// logs each change of the file's state once: broken (again for another
// error), usable again, reloaded; a version already found unusable is not
// looked at again, however many events it gets. A file found empty is read
// again (again true) before it is judged: a write that truncates the file
// and then writes it can be read in between, and that empty moment is not a
// state of the file to report.
func (w *fileWatch) reload() (js string, ok, again bool) {
	// A symlink swap may have changed the entries the path goes through.
	w.names = relevantNames(w.path)
	data, err := readFlagFile(w.path)
	if err == nil && len(data) == 0 && !w.emptyOnce {
		w.emptyOnce = true
		return "", false, true
	}
	w.emptyOnce = false
	if err == nil {
		js, err = w.chk.check(w.path, data)
	}
	if err != nil {
		sum := sha256.Sum256(append(append(data, 0), err.Error()...))
		if sum == w.unusable {
			return "", false, false
		}
		w.unusable = sum
		if w.health == nil || w.health.broken(err) {
			w.log.Error("flags: flag file changed and is not usable; keeping the last good flag configuration",
				slog.String("file", w.path), slog.Any("error", err))
		}
		return "", false, false
	}
	w.unusable = [sha256.Size]byte{}
	changed := js != w.good
	if w.health != nil && w.health.good(js, changed) && !changed {
		w.log.Info("flags: flag file usable again, as the version in use", slog.String("file", w.path))
	}
	if !changed {
		return "", false, false
	}
	w.good = js
	w.log.Info("flags: flag file reloaded", slog.String("file", w.path))
	return js, true, false
}
