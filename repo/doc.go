// Package repo holds the repositories of pgshift's reference domain (users,
// posts owned by users, and events keyed by a bigint identity), written once
// on top of the dualwrite facade and the sqlc-generated queries in repo/db.
//
// It is the demo's domain, not something an application embeds: it is the
// reference to copy for an application's own repositories. Each method is
// one dualwrite.Write or dualwrite.Read around generated queries. A write function reports the rows
// it changes with Tx.Touch (before the statement, when the key is known, to
// save a round trip), passes timestamps and identifiers it chose itself so
// both databases store the same values, and, when it runs on the other side,
// reuses what the authoritative side assigned (Events.Create takes the id
// from the authoritative RETURNING).
//
// Wiring it into an application:
//
//	stages, err := flags.NewFileEvaluator(ctx, "flags.json")
//	// handle err; defer stages.Close()
//	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: stages})
//	// handle err; defer f.Close()
//	store := repo.New(f)
//
//	ctx = flags.WithUser(ctx, userID, map[string]any{"country": "IN", "plan": "pro"})
//	u, err := store.Users.Get(ctx, id)
package repo
