package flags

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
// changes. A version that is broken, empty or missing, or whose stage flag
// can give a value the scheme cannot map, is logged and not given to flagd, which keeps evaluating the last good one. A good version
// replaces the flags and drops the cached decisions.
//
// Close stops the watcher and the provider.
func NewFileEvaluator(ctx context.Context, path string, opts ...Option) (*Evaluator, error) {
	cfg := newConfig(opts)
	chk, err := newChecker(cfg.scheme())
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("flags: flag file: %w", err)
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
		case _, ok := <-w.watcher.Events:
			if !ok {
				w.log.Error("flags: the flag file watcher stopped; keeping the last good flag configuration", slog.String("file", w.path))
				return
			}
			// Any change in the directory may be ours (a rename onto the
			// file, a symlink swap); reading an unchanged file is cheap.
			reload.Reset(reloadDelay)
		case err, ok := <-w.watcher.Errors:
			if !ok {
				w.log.Error("flags: the flag file watcher stopped; keeping the last good flag configuration", slog.String("file", w.path))
				return
			}
			w.log.Warn("flags: watching the flag file", slog.String("file", w.path), slog.Any("error", err))
		case <-reload.C:
			if js, ok := w.reload(); ok {
				apply(js)
			}
		}
	}
}

// reload reads the file and returns it when it changed and is good. It
// logs each change of the file's state once: broken (again for another
// error), usable again, reloaded; reading a file that stays broken logs
// nothing more.
func (w *fileWatch) reload() (string, bool) {
	data, err := os.ReadFile(w.path)
	var js string
	if err == nil {
		js, err = w.chk.check(w.path, data)
	}
	if err != nil {
		if w.health == nil || w.health.broken(err) {
			w.log.Error("flags: flag file changed and is not usable; keeping the last good flag configuration",
				slog.String("file", w.path), slog.Any("error", err))
		}
		return "", false
	}
	changed := js != w.good
	if w.health != nil && w.health.good(js, changed) && !changed {
		w.log.Info("flags: flag file usable again, as the version in use", slog.String("file", w.path))
	}
	if !changed {
		return "", false
	}
	w.good = js
	w.log.Info("flags: flag file reloaded", slog.String("file", w.path))
	return js, true
}
