// Package pgshift moves a live application from one PostgreSQL database
// ("old") to another ("new") with no downtime and no lost writes.
//
// The application keeps calling its repositories. Underneath, a facade asks
// feature flags which migration stage the current user is in, writes both
// databases or one, serves reads from the authoritative one and compares the
// other. Cohorts of users move over one at a time (testers, a country, a plan,
// a percentage, everyone); flipping a flag back is the rollback. A durable
// repair log makes every acknowledged write reach both databases, even when
// one of them is down or the process dies. Operator tools copy the existing
// rows, prove both sides hold the same data and repair what differs.
//
// # Packages
//
//   - [github.com/pgshift/pgshift/flags] decides the stage of the user in a
//     context from OpenFeature flags (flagd's file format built in; any
//     OpenFeature provider plugs in), with a decision cache and safe fallbacks.
//   - [github.com/pgshift/pgshift/dualwrite] is the facade: per call it
//     follows the stage's plan, writes with the repair-log guarantee, compares
//     shadow reads, and runs the repair worker ([dualwrite.Repairer]).
//   - [github.com/pgshift/pgshift/repo] is a reference set of repositories
//     (users, posts, events) written once on top of dualwrite and sqlc.
//   - cmd/pgshift is the operator's CLI: install, schema-diff, backfill,
//     verify [--repair], repair, sync-sequences, status.
//   - demo is a runnable application that shows a cohort rollout end to end.
//
// # The stages
//
//	stage      writes go to   authoritative  reads served by  also read and compared
//	off        old            old            old              -
//	dualwrite  old, then new  old            old              -
//	shadow     old, then new  old            old              new
//	live       new, then old  new            new              old
//	rampdown   new, then old  new            new              -
//	complete   new            new            new              -
//
// # Embedding
//
//	stages, err := flags.NewFileEvaluator(ctx, "flags.json")
//	...
//	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: stages})
//	...
//	user, err := dualwrite.Write(flags.WithUser(ctx, "123", nil), f, dualwrite.Op{Name: "users.rename"},
//		func(ctx context.Context, tx *dualwrite.Tx, _ *db.User) (db.User, error) {
//			tx.Touch("users", id)
//			return queries.RenameUser(ctx, tx, db.RenameUserParams{ID: id, Name: name})
//		})
//
// The README walks through the whole migration; each package's documentation
// states its guarantees.
package pgshift
