// Package dualwrite is the facade an application's repositories run their
// queries through while its data moves from one PostgreSQL database ("old")
// to another ("new").
//
// Per call the facade asks a [flags.Source] which migration stage the user in
// the context is in and follows that stage's [flags.Plan]: which side is
// authoritative (written first, answers reads, its failure is the caller's
// failure), whether the other side is written too, and whether reads are
// also served by the other side and compared.
//
// # Writes and the guarantee
//
// A write that returns success to the caller is committed on the
// authoritative side and will reach the other side, directly or by repair:
//
//  1. The write function runs in a transaction on the authoritative side.
//     The rows it reports with [Tx.Touch] are recorded, in that same
//     transaction, in the repair log (pgshift.repair_log), and each row's
//     advisory lock is taken. If anything fails the caller gets the error and
//     the other side is not touched.
//  2. The same write function then runs on the other side, in a transaction,
//     bounded by Config.OtherTimeout, with the authoritative result at hand
//     (so identifiers assigned by the authoritative side's RETURNING can be
//     reused).
//  3. The authoritative transaction commits, then the other side's (never
//     before: a write the authoritative side lost must not survive on the
//     other). The caller gets its answer once the other side has committed
//     too, so that its next write, which may depend on this one (a post for
//     the user just created), finds it there. Confirmed log entries are
//     deleted in batches, off the caller's path. If the other side failed, timed
//     out or its commit did not succeed, the entries stay and the repair
//     worker copies the current authoritative row over (or deletes it).
//
// The other side's statements run while the authoritative row locks and the
// row's advisory lock are held, so two writes of the same row reach the other
// side in the order they committed on the authoritative side, and a repair
// never interleaves with a write of the same row. (Running the two sides in
// parallel instead would let the other side order concurrent writes of one
// row differently, or deadlock across the two servers.)
//
// Repair copies current state rather than replaying commands, so it is
// idempotent and blind to ordering. Workers in many processes share the logs
// through FOR UPDATE SKIP LOCKED.
//
// # Reads
//
// Reads are served by the authoritative side. In shadow and live the other
// side is read too, concurrently and without its latency or errors reaching
// the caller, and compared (deep equality by default, or a [Comparator]).
// Mismatches are counted per operation and logged with the operation and the
// routing key, never with row contents.
//
// # Rows several cohorts write
//
// The facade's guarantee rests on each row having one authority at a time,
// which holds when rows belong to one routing key (a user or tenant owns
// them). A table that users of different cohorts write at once has no single
// authority per row; move it under one global stage by marking its operations
// [Op].Global: they are decided by Config.GlobalStages (by default the stage
// of the empty evaluation context, the flag's default rules).
//
// A user's stage is decided per call, so a flag change that moves the
// authority (shadow to live, or back) can find writes of the old stage still
// in flight. They stay consistent: each write takes its row locks on the
// other side while it still holds them on its authoritative side, and keeps
// each until that side commits, so two writes of one row serialise on
// whichever side they meet first; when they meet crosswise, one waits out
// Config.OtherTimeout and leaves its row to the repair log.
//
// Moving a user backwards from dualwrite to off, or from rampdown to complete
// and back, stops writing one side for them; run `pgshift verify --repair`
// before moving them forward again.
package dualwrite
