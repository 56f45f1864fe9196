// Package dualwrite is the facade an application's repositories run their
// queries through while its data moves from one PostgreSQL database ("old")
// to another ("new").
//
// Per call the facade asks a [flags.Source] which migration stage the user in
// the context is in and follows that stage's [flags.Plan]: which side is
// authoritative (its answer is the caller's answer, its failure is the
// caller's failure), whether the other side is written too, and whether
// reads are also served by the other side and compared.
//
// # Writes and the guarantee
//
// A write that returns success to the caller is committed on the
// authoritative side and will reach the other side, directly or by repair.
// After traffic stops and the repair logs drain, both sides hold the same
// rows. This holds when the other side is down, slow or rejects the write,
// when the process dies at any instant, when a COMMIT's answer is lost, and
// when many writers in many processes write the same rows, across an
// authority flip too.
//
// Write functions name the rows they change with [Tx.Touch]. Every row has
// an advisory lock on new, the canonical side: every dual write takes the
// locks of its rows there before either side's statement changes them, and
// holds them until both sides have run; the repair worker takes them there
// before it copies a row. So two writes of one row reach both sides in the
// same order, a repair never interleaves with a write of its row, and
// writers of one row under different stages (some processes already see a
// flip, others not yet) wait for each other on new, briefly, rather than on
// each other's row locks across the two servers.
//
// A row is named by its table's key: the primary key, or a unique index on
// NOT NULL columns. A table with neither cannot be written to both sides
// with this guarantee, so in the stages that write both a write that
// Touches a row of one fails with [ErrKeylessTable] before any of it is
// sent (the facade learns which tables have a key when it starts, and looks
// up a table it did not know when it is first Touched). Key such a table,
// or keep the application from writing it during the migration and let the
// operator tools copy it whole (pgshift backfill --copy-whole).
//
// The repair log (pgshift.repair_log, on each side) records what may differ,
// in the same transaction as the write it describes. An authoritative record
// on side X says "X has a write the other side may lack: copy the row from
// X". A pull record says "this side has committed a write its authoritative
// side may not have: copy the row into this side". The repair worker
// ([Repairer]) copies current rows rather than replaying commands, so a
// repair is idempotent and blind to ordering. Within a pass it writes
// deletes before upserts, children before parents for deletes and parents
// before children for upserts, and rows swapping a unique value together; a
// row the other side refuses is postponed alone. It is the one repair path:
// `pgshift repair`, `pgshift verify --repair` (which enters the rows it
// finds different in the log) and the facade's worker all go through it.
//
// When old is authoritative (dualwrite, shadow) a write is:
//
//  1. new: BEGIN and the rows' locks (one round trip, bounded by
//     Config.OtherTimeout: new is the other side here);
//  2. old: BEGIN, the authoritative records, the write function's
//     statements, COMMIT (one round trip for a OneStatement write). The
//     caller has its answer.
//  3. new: the write function's statements, COMMIT, off the caller's path,
//     under the locks new still holds; once it commits, old's records are
//     deleted (in batches). If it fails they stay for the repair worker.
//
// New never commits what old did not, so it needs no pull records; but the
// caller has its answer before new has its copy: a read of new right after
// the write can miss it for a moment (shadow reads recheck a difference
// before they count it; Facade.Wait waits).
//
// When new is authoritative (live, rampdown) a write is:
//
//  1. new: BEGIN, the locks, the write function's statements (one round
//     trip), held open; the locks of rows whose keys came from the
//     statements (RETURNING) in one more round trip, so that a repair pass
//     claiming old's pull record waits for new's COMMIT instead of copying
//     new's not-yet-committed "no such row" over old's copy;
//  2. old: BEGIN, pull records, the statements, COMMIT (one round trip),
//     bounded by Config.OtherTimeout;
//  3. new: COMMIT, with authoritative records only if old failed. The
//     caller has its answer; old's pull records are deleted (in batches).
//
// Old commits before new here, so that the caller's next write, which may
// depend on this one, finds it on both sides; its pull records make a lost
// or failed COMMIT on new converge (old is copied back to what new holds).
//
// Writes of rows whose keys were made for the call ([Op].NewRows: inserts of
// application-made UUIDv7s) run on both sides at once, each with its records
// (authoritative on one, pull on the other); new's transaction takes the
// rows' locks with its statement. When new is authoritative old's COMMIT
// waits for new's, so a repair pass never finds old's row and pull record
// before new holds the row (it would copy new's "no such row" over it);
// when old is, new's COMMIT waits for old's and goes off the caller's path
// (a follow), so new never shows, nor has repaired from old, a row old may
// still roll back. When the authoritative side fails, the
// caller gets the error and the other side may hold the row, with the pull
// record that has the repair worker remove it once the authoritative side is
// back; reads, answered by the authoritative side, never return it.
//
// # The order of a row's writes
//
// Each dual write draws, on new, a number from the sequence
// pgshift.row_order once it holds its rows' locks, and its records carry it
// (k_order). Two writes of one row hold its lock one after the other, so the
// later one always has the greater number, whichever side it wrote first,
// whichever stage it ran under and whatever the servers' clocks say. When a
// row's entries disagree on the direction of the copy (writes of it failed
// on both sides, around a flip), the repair worker follows the row's latest
// entry on either side: an authoritative entry copies from its side, a pull
// entry from the other side. Entries without a number (new did not answer;
// verify --repair's) come before every other.
//
// In dualwrite and shadow the locks are taken on new, the other side, before
// old's statements: when another write (made under live or rampdown, or the
// repair worker) holds a row longer than three quarters of OtherTimeout,
// new says so (lock_timeout) and the write fails with [ErrRowBusy], nothing
// written, rather than going on without the lock (repair would then order it
// behind the write that held it). When new does not answer at all, the
// write goes on without it. A dual write that PostgreSQL aborts for a
// deadlock, or that meets ErrRowBusy, before any of its COMMITs was sent is
// run again, up to three times: in capture mode the rows' locks are taken
// after the statements that changed them, which can meet an application's
// row locks in the other order.
//
// # A stage change over a backlog
//
// When a routing key's authority moves to the other side (a cohort moves to
// live, or is rolled back), some of its acknowledged writes may not be there
// yet: copies in flight, or entries in the repair log. Before a side serves
// a routing key as its authority for the first time in this Facade, and
// again after the key's authority changed or the stage source's version
// changed ([flags.Versioned]: another process may have served the key under
// the other stage meanwhile), the facade catches the key up: it waits for
// the key's writes this Facade has in flight under the previous authority
// (served before the change, they commit after it) and for their copies in
// flight, and repairs the key's entries on both sides, under the rows'
// locks. Calls of that key wait for it, others do not; for a key without
// entries it costs one small query per side and one short transaction on
// new, once per change.
// So reads and writes under the new authority see every acknowledged write
// of the key, foreign-key parents included. The new authority is asked even
// while its breaker is open (the key's calls go to it anyway). When the
// previous one does not answer (or its breaker is open), the key is not
// served: its log may hold acknowledged writes the new authority lacks, and
// a write on the state without them would be repaired away (an update of a
// row the new authority does not have yet copies "absent" back). The key's
// calls get [ErrNotCaughtUp], nothing read or written, and new keeps the
// key's authority recorded as moving, so other processes' writes of it are
// refused too, until a catch-up reaches the previous side. When new is the
// side that does not answer, old cannot read new's record or log, so old
// keeps a mark per key, written under the key's authority on new: new may
// serve the key (written before it does), or old caught the key up from
// new's log. With new out of reach old serves the keys new has not served
// since (on old's fence, see below) and refuses the others with
// ErrNotCaughtUp, so a cohort that never went live keeps writing through
// new's outage, and a rolled-back one waits for new. A key new has never
// recorded is no exception while old is still written (live, rampdown):
// its writes under old that went on without new left their entries on old
// alone, so its first move to new waits for old too. A key's first move is
// served without the previous side only into complete (old is no longer
// written, and the gate into complete wants both logs empty) and to old
// (no write under new's authority can have happened: each needs new's
// record). An entry that could not be applied yet leaves the key served
// and the catch-up not done: the key's next call tries it again. Calls
// without a routing key and [Op].Global ones are not caught up.
//
// Processes see a stage change at different moments, so for a while one
// may write a key under old's authority while another writes it under
// new's: two writes of different rows with one unique value would then both
// be acknowledged. New therefore records each key's authority
// (pgshift.key_authority) and fences it. Every dual write of a routing key
// takes a shared lock on the key's authority on new in its first round trip
// there, with its rows' locks, and is refused (nothing committed) unless new
// records its stage's authoritative side for the key; the catch-up moves the
// record: it takes the lock alone, which waits for the key's writes in
// flight in every process, records the new side as moving (refusing every
// write of the key), repairs the key's entries and records the side as
// settled. A refused write catches its key up and runs again, so while two
// processes disagree each write moves the key to its own view (correct, and
// slower: each move waits for the other's writes); after three refusals the
// caller gets [ErrRowBusy]. Where new is out of a write's reach (its breaker
// is open, it does not answer the fence within OtherTimeout, or the
// transaction that held the fence there broke) a write under old's
// authority still has old's fence, as every write under old's authority
// does (pgshift.fence_old, with its first statement on old, or a NewRows
// write's with its COMMIT): a shared lock on the key's mark on old, and a
// check that the mark does not say new may serve the key. A catch-up that
// moves a key to new writes that mark first, under the key's lock on old
// taken alone, so it waits for such writes in flight (and then repairs
// their entries) and refuses later ones. New's fence alone would not do:
// a write's transaction on new ends when its caller stops waiting, or
// breaks, while old may still run a COMMIT it was sent. So no write is
// acknowledged under old while another process serves the key from new,
// and none commits on old after a catch-up to new read old's log. A mark
// left saying new by a move back to old that could not reach old is
// mended by the first write it refuses (under the key's authority on new
// taken alone, when new records old settled).
// [Op].OneStatement puts COMMIT in the same round trip as the statement
// wherever that is safe, and makes off and complete a single autocommit
// statement, as on pgx directly.
//
// What the caller may assume from a write's error:
//
//   - nil: committed on the authoritative side; it reaches the other side,
//     directly or by repair.
//   - [ErrCommitUnknown]: a COMMIT was sent and its answer never arrived;
//     the write may or may not have committed, and both sides converge
//     either way. Once a batch carrying a COMMIT is sent, every error read
//     from it (a log record's result, a cancelled context, a connection cut,
//     "conn closed") is ErrCommitUnknown unless the server answered it with
//     an error. The server may still be running the transaction when the
//     call returns (waiting for a lock, or for the CPU), as with any
//     PostgreSQL client that stops waiting for a COMMIT: it may commit after
//     a later write of the same row, over it. Read the row before retrying a
//     write that is not idempotent.
//   - [ErrRowBusy]: nothing was written on either side; retry.
//   - [ErrNotCaughtUp]: nothing was written; the user's authority moved while
//     the previous authoritative side does not answer; retry once it does.
//   - [ErrTouchAfterCommit]: the write committed; fix the write function.
//   - [ErrKeylessTable]: nothing was written on either side; the write
//     Touched a row of a table without a key (see above).
//   - any other error: the write did not commit on the authoritative side.
//     A copy the other side may have committed is undone by the repair
//     worker; once the logs drain no side shows it.
//
// # Keys the database makes
//
// An insert whose key comes from the authoritative side (an identity or
// serial column, a default, RETURNING) Touches its row after the statement,
// from the returned key, and on the other side writes that key explicitly
// (prev holds the authoritative result). Its repair-log record must commit
// with the row, so with [Op].OneStatement the facade sends the COMMIT with
// the statement only when the write Touched rows before it; a write that
// Touches none before its statement keeps its COMMIT until the function
// returns (one more round trip), and so does the other side's copy of it, so
// that a function which finds the other side made a different key can
// return ErrDiverged before that side commits anything. Touching rows both
// before and after such a statement returns [ErrTouchAfterCommit]. See
// ExampleWrite_returning.
//
// In dualwrite and shadow the other side's copies of one routing key's
// writes apply in the order the writes were acknowledged (a child after its
// parent), off the caller's path; writes without a routing key are not
// ordered against each other.
//
// Connections are taken canonical side (new) first, everywhere, so two calls
// never wait for each other's pools in opposite orders.
//
// # sqlc, batches and copies
//
// [Tx] (a write's side) and the [pgshift.Querier] a read function gets are
// the DBTX interface sqlc generates for pgx/v5, batches and COPY included:
// make the generated Queries inside each function (New(tx) in a write, New(q)
// in a read). A write function is the transaction (sqlc's WithTx does not
// apply), and it runs again for the other side, in dualwrite and shadow after
// Write has returned, so it must not close over what the caller closes or
// reuses. database/sql code is not supported. [Tx.SendBatch] sends a batch
// as the write's statements, in one round trip with the facade's own, and
// counts as the one statement of an [Op].OneStatement write.
// [Tx.CopyFrom] copies in the write's transaction, only rows whose keys are
// among the columns copied ([ErrCopyServerKeys]: COPY returns no keys to
// Touch); a read's CopyFrom is [ErrCopyInRead]. The README's "Using sqlc"
// section shows the wiring.
//
// # Reads
//
// Reads are served by the authoritative side. In shadow and live the other
// side is read too, concurrently and without its latency or errors reaching
// the caller, and compared (deep equality by default, or a [Comparator]).
// Mismatches are counted per operation and logged with the operation and the
// routing key, never with row contents. Every 10 seconds (and on Wait) the
// counts go to pgshift.shadow_reads on new, per operation, and to
// pgshift.shadow_reads_by_user, per user (the routing key and the
// attributes of flags.WithUser; at most 10,000 users per flush, kept a day),
// where the cutover gates into live count the reads of the cohort they move.
//
// A read in shadow and live is compared only when it is sampled
// (Config.ShadowSample), a shadow slot is free (Config.ShadowConcurrency)
// and the other side's breaker is closed; otherwise the comparison is
// dropped (Stats.ShadowDropped), never queued, so a slow other side fills
// neither the caller's time nor the pool its writes need. A difference that
// persists through the rechecks, on a routing key whose rows still have
// repair-log entries on either side (a backlog draining after an outage), is
// expected: it counts as pending repair (Stats.ShadowPending), not as a
// mismatch, so it does not hold the cutover gate into live.
//
// # When a side misbehaves
//
// Each side has a circuit breaker (github.com/sony/gobreaker). The outcome
// of every use of the other side counts: Config.BreakerFailures failures in
// a row that say the side itself is in trouble (connection refused or
// reset, server shutting down or out of connections), or a single timeout
// (Config.OtherTimeout passed) after which a ping of the side on a
// connection of its own gets no answer either, open it. (A timeout alone
// proves nothing: a healthy side keeps a write waiting for a hot row's lock,
// a busy pool keeps it waiting for a connection.) While it is open:
//
//   - writes skip that side when it is the other side: the authoritative
//     side commits alone with the write's repair-log records, so the
//     guarantee holds and the repair worker brings the side the write once
//     it is back; no connection is attempted and no lock or connection of
//     the authoritative side waits on it;
//   - shadow reads of it are dropped;
//   - every Config.BreakerCooldown one probe (a ping bounded by
//     OtherTimeout) tries the side; the first that gets an answer closes the
//     breaker. So a down side sees one connection attempt per cooldown, not
//     one per write, and a hung one holds at most the calls in flight when
//     it hung, each for OtherTimeout.
//
// The state is in Stats (OldBreaker, NewBreaker, and the calls skipped), in
// the metric pgshift.dualwrite.breaker_state, and, for operators, in
// pgshift.facades: every 10 s each facade records its breakers there on each
// side it can reach (and deletes its row when it closes), and `pgshift
// status` lists the facades seen in the last minute. The authoritative side has
// a breaker too but is never skipped: its failure is the caller's failure,
// bounded by the caller's context. Each repair pass is bounded by
// RepairConfig.PassTimeout, so a hung side is logged within that bound.
//
// The guarantee needs durable commits: a side running with fsync or
// synchronous_commit off can lose, in a crash, commits the facade already
// settled (their log records deleted), and nothing then repairs them.
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
// Moving a user backwards from dualwrite to off, or from rampdown to complete
// and back, stops writing one side for them; run `pgshift verify --repair`
// before moving them forward again.
//
// # Poolers
//
// The facade keeps no session state: its locks are transaction-level, its
// settings (none) and its statements live within the transaction that uses
// them. Behind PgBouncer in transaction pooling mode (and in session mode)
// it works as on a direct connection; statement pooling mode, which forbids
// transactions, is not supported. PgBouncer 1.18 does not carry
// protocol-level prepared statements in transaction mode, so pgx must not
// prepare named statements: set the pools' exec mode to
// pgx.QueryExecModeCacheDescribe (or QueryExecModeExec), in code or with
// default_query_exec_mode=cache_describe in the connection string. pgx's
// default, QueryExecModeCacheStatement, fails there with "prepared
// statement ... already exists" and "... does not exist".
//
// # Databases other roles can write
//
// The facade runs pgshift's statements in the application's sessions, with
// their search_path, and its capture triggers run in the application's
// writes with its privileges. So every function pgshift creates pins
// search_path to pg_catalog, pg_temp, pgshift's statements name
// pg_catalog's operators and functions where argument types leave room for
// one another role planted in a schema such as public, and New refuses a
// schema pgshift (or objects in it) that a role it does not trust created
// (see Install). The README's Security section lists the privileges the
// application's role needs.
package dualwrite
