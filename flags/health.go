package flags

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// FileHealth is the state of the flag file an Evaluator from
// NewFileEvaluator follows: the version in use, and whether the file as it
// is now is usable (when not, the version in use is the last good one).
type FileHealth struct {
	File string `json:"file"`
	// Usable says the file as last read is the version in use.
	Usable bool `json:"usable"`
	// Version is a short hash of the configuration in use, and LoadedAt
	// when it was loaded.
	Version  string    `json:"version"`
	LoadedAt time.Time `json:"loaded_at"`
	// LastError is why the file as last read is not usable ("" when it is),
	// and Since when it has been so.
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"`
}

// health is a FileHealth shared by the watcher, which writes it, and the
// Evaluator, which reads it.
type health struct {
	mu sync.Mutex
	h  FileHealth
}

func newHealth(file, js string) *health {
	return &health{h: FileHealth{File: file, Usable: true, Version: version(js), LoadedAt: time.Now()}}
}

func version(js string) string {
	sum := sha256.Sum256([]byte(js))
	return hex.EncodeToString(sum[:6])
}

func (h *health) get() FileHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h
}

// broken records that the file is not usable; it returns whether that is a
// change (another error than the one recorded, or the first).
func (h *health) broken(err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.h.Usable && h.h.LastError == err.Error() {
		return false
	}
	if h.h.Usable {
		h.h.Since = time.Now()
	}
	h.h.Usable, h.h.LastError = false, err.Error()
	return true
}

// good records that the file is usable, loaded as js when changed is set;
// it returns whether the file was not usable before.
func (h *health) good(js string, changed bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := h.h.Usable
	h.h.Usable, h.h.LastError, h.h.Since = true, "", time.Time{}
	if changed {
		h.h.Version, h.h.LoadedAt = version(js), time.Now()
	}
	return !was
}

// FileHealth returns the state of the flag file the Evaluator follows, and
// false for an Evaluator that reads no file (NewEvaluator,
// NewProviderEvaluator).
func (e *Evaluator) FileHealth() (FileHealth, bool) {
	if e.cfg.health == nil {
		return FileHealth{}, false
	}
	return e.cfg.health.get(), true
}

// observeHealth registers the gauges of the flag file's state:
// pgshift.flags.file_usable, 1 while the file as last read is the version in
// use, 0 while it is not usable; and pgshift.flags.file_version, 1 for the
// version in use (attribute version), as Prometheus's info metrics do. Why
// the file is not usable is free text: it is in FileHealth and the log.
func (e *Evaluator) observeHealth(path string, h *health) error {
	m := e.cfg.meter.Meter("github.com/pgshift/pgshift/flags")
	usable, err := m.Int64ObservableGauge("pgshift.flags.file_usable",
		metric.WithDescription("1 while the flag file as last read is the version in use, 0 while it is not usable (the last good version stays in use)."),
	)
	if err != nil {
		return fmt.Errorf("flags: file health gauge: %w", err)
	}
	version, err := m.Int64ObservableGauge("pgshift.flags.file_version",
		metric.WithDescription("1 for the version of the flag file in use (attribute version, a short hash of its configuration)."),
	)
	if err != nil {
		return fmt.Errorf("flags: file version gauge: %w", err)
	}
	file := attribute.String("file", path)
	attrs := metric.WithAttributes(file)
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		fh := h.get()
		v := int64(0)
		if fh.Usable {
			v = 1
		}
		o.ObserveInt64(usable, v, attrs)
		o.ObserveInt64(version, 1, metric.WithAttributes(file, attribute.String("version", fh.Version)))
		return nil
	}, usable, version)
	if err != nil {
		return fmt.Errorf("flags: file health gauges: %w", err)
	}
	e.shutdown = append(e.shutdown, func(context.Context) error { return reg.Unregister() })
	return nil
}
