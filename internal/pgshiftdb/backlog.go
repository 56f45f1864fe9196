package pgshiftdb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
)

// Backlog is the state of both databases' repair logs.
type Backlog struct {
	Old, New SideBacklog
}

// Side returns one side's repair log.
func (b Backlog) Side(s flags.Side) SideBacklog {
	if s == flags.SideNew {
		return b.New
	}
	return b.Old
}

// Entries is the number of entries waiting on both sides.
func (b Backlog) Entries() int64 { return b.Old.Entries + b.New.Entries }

// SideBacklog is the state of one side's repair log.
type SideBacklog struct {
	// Installed is false when the side has no pgshift schema (see Install);
	// such a side has never taken a logged write and has nothing to repair.
	Installed bool
	// Entries waiting to be copied from this side to the other.
	Entries int64
	// OldestAge is the age of the oldest entry (0 when there is none).
	OldestAge time.Duration
}

// String renders a backlog as "3 entries, oldest 1m30s", "0 entries" or
// "not installed".
func (b SideBacklog) String() string {
	switch {
	case !b.Installed:
		return "not installed"
	case b.Entries == 0:
		return "0 entries"
	}
	return fmt.Sprintf("%d entries, oldest %s", b.Entries, b.OldestAge.Round(time.Second))
}

// MarshalJSON writes {"installed", "entries", "oldest_age_seconds"}.
func (b SideBacklog) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Installed        bool    `json:"installed"`
		Entries          int64   `json:"entries"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	}{b.Installed, b.Entries, b.OldestAge.Seconds()})
}

// MarshalJSON writes {"old": ..., "new": ...}.
func (b Backlog) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Old SideBacklog `json:"old"`
		New SideBacklog `json:"new"`
	}{b.Old, b.New})
}

// ReadBacklog reads the repair log of the database q is connected to. A
// database without pgshift's schema is no error: it reports Installed false.
func ReadBacklog(ctx context.Context, q pgshift.Querier) (SideBacklog, error) {
	var b SideBacklog
	var err error
	own := New()
	if b.Installed, err = own.Installed(ctx, q); err != nil || !b.Installed {
		return b, err
	}
	row, err := own.RepairBacklog(ctx, q)
	if err != nil {
		return b, fmt.Errorf("repair backlog: %w", err)
	}
	b.Entries = row.Entries
	b.OldestAge = time.Duration(row.OldestAgeSeconds * float64(time.Second))
	return b, nil
}
