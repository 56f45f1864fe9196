package cutover

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// RecordMove writes the applied edit into pgshift.moves on new: the cohort,
// its stages, and the stages the file could give a user before and after,
// so that the gates know every period in which some cohort wrote one side
// only, rollbacks and hand edits between moves included (a move out of off
// records that the file could give off before it).
func RecordMove(ctx context.Context, newPool *pgxpool.Pool, e *Edit, forced bool) error {
	before, err := flags.FlagStages(e.File.Path, e.before, e.File.flag())
	if err != nil {
		return fmt.Errorf("cutover: record the move: %w", err)
	}
	after, err := flags.FlagStages(e.File.Path, e.after, e.File.flag())
	if err != nil {
		return fmt.Errorf("cutover: record the move: %w", err)
	}
	err = pgshiftdb.New().RecordMove(ctx, newPool, pgshiftdb.RecordMoveParams{
		FlagFile:     e.File.Path,
		Cohort:       e.Cohort.String(),
		FromStage:    e.From.String(),
		ToStage:      e.To.String(),
		Forced:       forced,
		Undo:         e.Undo,
		StagesBefore: stageNames(before),
		StagesAfter:  stageNames(after),
	})
	if err != nil {
		return fmt.Errorf("cutover: record the move in pgshift.moves on new: %w", err)
	}
	return nil
}

func stageNames(ss []flags.Stage) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

// FileStages returns the stages the flag file can give a user now, for
// Target.Stages.
func (ff FlagFile) FileStages() ([]flags.Stage, error) {
	data, err := readFile(ff.Path)
	if err != nil {
		return nil, err
	}
	return flags.FlagStages(ff.Path, data, ff.flag())
}
