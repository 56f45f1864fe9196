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
	"github.com/go-logr/logr"
	schema "github.com/open-feature/flagd-schemas/json"
	"github.com/open-feature/flagd/core/pkg/evaluator"
	"github.com/open-feature/flagd/core/pkg/logger"
	"github.com/open-feature/flagd/core/pkg/store"
	"github.com/open-feature/flagd/core/pkg/sync"
	"github.com/open-feature/flagd/core/pkg/utils"
	flagd "github.com/open-feature/go-sdk-contrib/providers/flagd/pkg"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// reloadDelay is how long the file watcher waits after the last change
// event before it reads the file, so that an editor's several writes are
// read once, whole.
const reloadDelay = 50 * time.Millisecond

// NewFileEvaluator returns a ready Evaluator over flagd's in-process
// provider reading the flagd flag file at path (JSON, or YAML by its
// extension). The file is checked before the provider starts: a file that
// cannot be read, is not JSON, does not follow the flagd schema or that
// flagd rejects is an error naming the file and the problem.
//
// The file is watched (its directory, so editors that replace the file and
// Kubernetes ConfigMap symlink swaps are seen) and re-read 50 ms after it
// changes. A version that is broken, empty or missing is logged and not
// given to flagd, which keeps evaluating the last good one. A good version
// replaces the flags and drops the cached decisions.
//
// Close stops the watcher and the provider.
func NewFileEvaluator(ctx context.Context, path string, opts ...Option) (*Evaluator, error) {
	cfg := newConfig(opts)
	chk, err := newChecker()
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
	fs := &fileSync{path: path, log: cfg.log, chk: chk, good: good}
	provider, err := flagd.NewProvider(
		flagd.WithInProcessResolver(),
		flagd.WithCustomSyncProviderAndUri(fs, "file:"+path),
		flagd.WithLogger(logr.FromSlogHandler(cfg.log.Handler())),
		flagd.WithDeadline(int((5 * time.Second).Milliseconds())),
	)
	if err != nil {
		return nil, fmt.Errorf("flags: flagd provider for %s: %w", path, err)
	}
	return NewProviderEvaluator(ctx, provider, opts...)
}

// checker decides whether a flag file may reach flagd: stricter than flagd
// itself, which applies a file that breaks its own schema with a warning.
type checker struct {
	flagd *jsonschema.Schema

	mu      gosync.Mutex
	scratch *evaluator.JSON // a flagd evaluator nobody reads, to try files on
}

func newChecker() (*checker, error) {
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
	return &checker{flagd: compiled, scratch: evaluator.NewJSON(quiet, scratch)}, nil
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.scratch.SetState(sync.DataSync{FlagData: js, Source: path}); err != nil {
		return "", fmt.Errorf("flag file %s: flagd rejects it: %w", path, err)
	}
	return js, nil
}

// fileSync is the flagd sync source of NewFileEvaluator: flagd's own file
// sync hands flagd whatever the file holds (an empty or deleted file
// becomes "no flags") and misses files replaced by rename; this one hands
// over only checked versions.
type fileSync struct {
	path  string
	log   *slog.Logger
	chk   *checker
	ready atomic.Bool

	mu      gosync.Mutex
	good    string // the last good configuration, as JSON
	watcher *fsnotify.Watcher
}

var _ sync.ISync = (*fileSync)(nil)

func (s *fileSync) Init(context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("flags: watching %s: %w", s.path, err)
	}
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return errors.Join(fmt.Errorf("flags: watching %s: %w", s.path, err), w.Close())
	}
	s.mu.Lock()
	s.watcher = w
	s.mu.Unlock()
	return nil
}

func (s *fileSync) Sync(ctx context.Context, out chan<- sync.DataSync) error {
	s.mu.Lock()
	w := s.watcher
	s.mu.Unlock()
	defer func() {
		if err := w.Close(); err != nil {
			s.log.Warn("flags: closing the flag file watcher", slog.String("file", s.path), slog.Any("error", err))
		}
	}()
	if err := s.ReSync(ctx, out); err != nil {
		return err
	}
	s.ready.Store(true)
	defer s.ready.Store(false)

	reload := time.NewTimer(time.Hour)
	reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("flags: watcher of %s closed", s.path)
			}
			// Any change in the directory may be ours (a rename onto the
			// file, a symlink swap); reading an unchanged file is cheap.
			reload.Reset(reloadDelay)
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("flags: watcher of %s closed", s.path)
			}
			s.log.Warn("flags: watching the flag file", slog.String("file", s.path), slog.Any("error", err))
		case <-reload.C:
			s.reload(ctx, out)
		}
	}
}

// reload reads the file and hands a changed, good version to flagd.
func (s *fileSync) reload(ctx context.Context, out chan<- sync.DataSync) {
	data, err := os.ReadFile(s.path)
	var js string
	if err == nil {
		js, err = s.chk.check(s.path, data)
	}
	if err != nil {
		s.log.Error("flags: flag file changed and is not usable; keeping the last good flag configuration",
			slog.String("file", s.path), slog.Any("error", err))
		return
	}
	s.mu.Lock()
	changed := js != s.good
	s.good = js
	s.mu.Unlock()
	if !changed {
		return
	}
	s.log.Info("flags: flag file reloaded", slog.String("file", s.path))
	s.send(ctx, out, js)
}

func (s *fileSync) ReSync(ctx context.Context, out chan<- sync.DataSync) error {
	s.mu.Lock()
	js := s.good
	s.mu.Unlock()
	s.send(ctx, out, js)
	return nil
}

func (s *fileSync) send(ctx context.Context, out chan<- sync.DataSync, js string) {
	select {
	case out <- sync.DataSync{FlagData: js, Source: s.path}:
	case <-ctx.Done():
	}
}

func (s *fileSync) IsReady() bool { return s.ready.Load() }
