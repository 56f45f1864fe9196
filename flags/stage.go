package flags

import (
	"errors"
	"fmt"
	"strings"
)

// Stage is where one user (or tenant) is in the migration from the old
// database to the new one. The zero value is StageOff.
type Stage uint8

// The stages, in the order a migration moves through them. Moving back one
// step is always safe; that is the rollback.
const (
	// StageOff: only old is written and read.
	StageOff Stage = iota
	// StageDualWrite: old is written first and answers; new is written after it.
	StageDualWrite
	// StageShadow: as StageDualWrite, and reads are also served by new and compared.
	StageShadow
	// StageLive: new is written first and answers; old is written after it and
	// its reads are compared.
	StageLive
	// StageRampdown: as StageLive, without comparing reads.
	StageRampdown
	// StageComplete: only new is written and read.
	StageComplete
)

// AllStages returns every stage in migration order, in a new slice.
func AllStages() []Stage {
	return []Stage{StageOff, StageDualWrite, StageShadow, StageLive, StageRampdown, StageComplete}
}

var stageNames = [...]string{"off", "dualwrite", "shadow", "live", "rampdown", "complete"}

// String returns the stage's name as it is written in flag values.
func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}

// Valid reports whether s is one of the six stages.
func (s Stage) Valid() bool { return int(s) < len(stageNames) }

// MarshalText implements encoding.TextMarshaler.
func (s Stage) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("flags: invalid stage %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseStage.
func (s *Stage) UnmarshalText(b []byte) error {
	v, err := ParseStage(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ErrUnknownStage is returned (wrapped) by ParseStage for a value that names
// no stage.
var ErrUnknownStage = errors.New("unknown migration stage")

// separators are dropped from stage names; built once, as a Replacer is
// costly to build (it was a sixth of an uncached evaluation).
var separators = strings.NewReplacer("-", "", "_", "")

// ParseStage parses a stage name. Case and surrounding spaces are ignored,
// and "dual-write" / "dual_write" are accepted for "dualwrite"; anything else
// is an error that lists the valid names.
func ParseStage(v string) (Stage, error) {
	norm := separators.Replace(strings.ToLower(strings.TrimSpace(v)))
	for i, name := range stageNames {
		if norm == name {
			return Stage(i), nil
		}
	}
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return StageOff, fmt.Errorf("%w %q: use one of %s", ErrUnknownStage, v, strings.Join(stageNames[:], ", "))
}

// Side names one of the two databases.
type Side uint8

const (
	// SideOld is the database being migrated away from.
	SideOld Side = iota
	// SideNew is the database being migrated to.
	SideNew
)

// String returns "old" or "new".
func (s Side) String() string {
	if s == SideNew {
		return "new"
	}
	return "old"
}

// Other returns the other side.
func (s Side) Other() Side { return 1 - s }

// Plan is what a stage means for one request: the stage table of the design,
// as data. dualwrite follows it; nothing else restates it.
type Plan struct {
	// Authoritative is written first and answers reads; its failure is the
	// caller's failure.
	Authoritative Side
	// WriteOther says the other side is written as well (after, or alongside,
	// the authoritative side), with the repair log covering its failures.
	WriteOther bool
	// CompareReads says the other side is read as well and compared with
	// the authoritative answer, off the caller's path.
	CompareReads bool
}

var plans = [...]Plan{
	StageOff:       {Authoritative: SideOld},
	StageDualWrite: {Authoritative: SideOld, WriteOther: true},
	StageShadow:    {Authoritative: SideOld, WriteOther: true, CompareReads: true},
	StageLive:      {Authoritative: SideNew, WriteOther: true, CompareReads: true},
	StageRampdown:  {Authoritative: SideNew, WriteOther: true},
	StageComplete:  {Authoritative: SideNew},
}

// Plan returns the stage's write and read plan. An invalid stage has StageOff's
// plan.
func (s Stage) Plan() Plan {
	if !s.Valid() {
		return plans[StageOff]
	}
	return plans[s]
}
