// Package rowsync is pgshift's one row-copying engine: it knows a table from
// the catalog, copies rows by primary key from one database to another, walks
// a table in primary-key order in chunks and hashes chunks on the server. The
// dualwrite repair worker, backfill and verify are all built on it.
//
// # Guarantees
//
//   - Values round-trip exactly. Every value travels in PostgreSQL's text form
//     (col::text on the source, $n::text cast back to the column's type on the
//     destination), which the server's own type I/O defines, so numeric, text,
//     bytea, jsonb, timestamptz, arrays, uuid, enums, domains and NULLs arrive
//     as they left. Enum and domain type OIDs may differ between the servers;
//     types are named, never numbered.
//   - No value is ever formatted into SQL text: values are parameters (text
//     arrays, unnested on the server); identifiers are quoted with
//     pgx.Identifier.Sanitize; type names come from the catalog's format_type.
//   - CopyKeys converges the destination to the source for the keys it is
//     given: a key the source lacks is deleted on the destination, then a
//     key the source holds is inserted or updated there (every non-key
//     column). Running it again changes nothing: it copies current state,
//     it does not replay commands.
//   - Apply (on rows read once with ReadKeys) is the repair path's copy:
//     deletes before upserts, children before parents for deletes and
//     parents before children for upserts (ForeignKeyLevels), a failing
//     row isolated in a savepoint while the others are written, and rows
//     swapping a unique value replaced together.
//   - Chunks are ranges of primary keys (keyset pagination, never OFFSET).
//     A chunk's hash is computed by the server from its rows, so both
//     servers hash the same chunk at once and only differing chunks are
//     read row by row.
//
// # Chunk hashes and their collisions
//
// A chunk's hash is the row count and the sum (in 128 bits, so exact) of a
// 64-bit hash of each of its rows: hashtextextended(row text, 0), or, with
// Table.TypedHash, hash_record_extended of the row's values, hashed by
// their types' own hash functions where those are exact and the same on
// every server (Column.Hashable) and as text elsewhere. Rendering a row as
// text is most of what hashing it costs; typed hashes cost about 40% of
// text hashes on the benchmark table. A sum does not depend on the order rows come in, so the server
// hashes a chunk in one pass over it without sorting or concatenating its
// rows (the earlier md5 of the rows joined in key order had to do both).
// The price is strength: two chunks with the same row count but different
// rows hash alike when the 64-bit hashes of the differing rows happen to
// add up to the same sum; for data not made to collide that is about one
// chance in 2^64 per differing chunk. hashtextextended is not a
// cryptographic hash (neither is md5 any more), so a writer who crafts rows
// to collide could hide a difference from verify; per-row drill-down
// (RowHashes) still uses md5 of each row.
//
// # Requirements
//
// A table must have a primary key, or a unique index on NOT NULL columns
// that keys it instead (a table with neither gives a *NoPrimaryKeyError). Generated columns are left out: each side computes
// its own. Both sides must name the same types, and the text form of values
// must not depend on session settings that differ between the two
// connections: the engine sets SessionParams (UTC time zone, ISO dates,
// full float precision, hex bytea) in the transaction of every statement it
// runs, so any pool will do, behind PgBouncer too. Ranges of keys are
// compared by the key columns' collations where both servers' collations
// are shown to sort alike (same provider, locale and library version: see
// AlignKeyOrder); otherwise in byte order (Table.KeyOrderC), which lines
// ranges up on both sides whatever their collations, at the cost of the
// key index.
//
// The engine runs in sessions it does not own (the application's pools, in
// the facade's repair worker), whose search_path may hold a schema other
// roles can create objects in. So its statements name pg_catalog's
// functions and operators wherever the argument types leave room for
// another one to win (OPERATOR(pg_catalog.=) on key columns, whose types may
// have no exact operator; pg_catalog.unnest, which is polymorphic).
//
// # Example
//
//	t, err := rowsync.LoadTable(ctx, oldPool, "public", "users")
//	if err != nil { ... }
//	keys := [][]string{rowsync.KeyText(userID)}
//	upserted, deleted, err := rowsync.CopyKeys(ctx, oldPool, newPool, t, keys)
package rowsync
