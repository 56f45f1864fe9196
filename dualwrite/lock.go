package dualwrite

import (
	"hash/fnv"
	"slices"

	"github.com/pgshift/pgshift/flags"
)

// lockSide is the canonical side: every dual write takes the advisory lock
// of each row it changes on new, before either side's statement changes the
// row, and holds it until both sides have run; the repair worker takes it on
// new before it copies the row. One side for every stage means writes of a
// row made under different stages (during an authority flip) wait for each
// other there, briefly, instead of on each other's row locks across the two
// servers. New rather than old: in the stages where old is authoritative
// (dualwrite, shadow) the lock is then on the other side, which lets the
// caller have its answer as soon as old commits (see writeLockedFollows).
const lockSide = flags.SideNew

// lockID is the advisory-lock key of a row: 64 bits of FNV-1a over its
// schema, table and key text. Two rows that share a key only ever wait for
// each other needlessly.
func lockID(r touchedRow) int64 {
	h := fnv.New64a()
	for _, part := range [][]string{{r.schema, r.table}, r.key} {
		for _, s := range part {
			_, _ = h.Write([]byte(s))
			_, _ = h.Write([]byte{0})
		}
	}
	return int64(h.Sum64())
}

// lockIDs are the lock keys of rows, sorted and without duplicates, so that
// two writes of the same rows take their locks in the same order.
func lockIDs(rows []touchedRow) []int64 {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = lockID(r)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
