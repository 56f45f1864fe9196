package rowsync

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift"
)

// ForeignKeyLevels orders tables so that a table comes after every table it
// references with a foreign key, as the catalog q reads them (read the side
// being written: its constraints are the ones rows must satisfy). Tables of
// one level reference none of each other and can be copied at once; level
// i+1 must wait for level i. A table's references to itself are ignored
// (copy it in key order and its parents usually come first; verify --repair
// settles the rest). Tables in a reference cycle go to the last level
// together.
func ForeignKeyLevels(ctx context.Context, q pgshift.Querier, tables []*Table) ([][]*Table, error) {
	rows, err := q.Query(ctx, `
		SELECT cn.nspname, cl.relname, pn.nspname, pl.relname
		FROM pg_catalog.pg_constraint c
		JOIN pg_catalog.pg_class cl ON cl.oid = c.conrelid
		JOIN pg_catalog.pg_namespace cn ON cn.oid = cl.relnamespace
		JOIN pg_catalog.pg_class pl ON pl.oid = c.confrelid
		JOIN pg_catalog.pg_namespace pn ON pn.oid = pl.relnamespace
		WHERE c.contype = 'f' AND c.conrelid <> c.confrelid`)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	defer rows.Close()
	key := func(schema, name string) string { return schema + "\x00" + name }
	index := map[string]int{}
	for i, t := range tables {
		index[key(t.Schema, t.Name)] = i
	}
	parents := make([]map[int]bool, len(tables))
	for rows.Next() {
		var cs, cn, ps, pn string
		if err := rows.Scan(&cs, &cn, &ps, &pn); err != nil {
			return nil, fmt.Errorf("read foreign keys: %w", err)
		}
		child, okc := index[key(cs, cn)]
		parent, okp := index[key(ps, pn)]
		if !okc || !okp {
			continue // a table not being copied: nothing to wait for
		}
		if parents[child] == nil {
			parents[child] = map[int]bool{}
		}
		parents[child][parent] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	placed := make([]bool, len(tables))
	var levels [][]*Table
	for left := len(tables); left > 0; {
		var level []int
		for i := range tables {
			if placed[i] {
				continue
			}
			ready := true
			for p := range parents[i] {
				if !placed[p] {
					ready = false
					break
				}
			}
			if ready {
				level = append(level, i)
			}
		}
		if len(level) == 0 { // a cycle: the rest together
			for i := range tables {
				if !placed[i] {
					level = append(level, i)
				}
			}
		}
		var lt []*Table
		for _, i := range level {
			placed[i] = true
			lt = append(lt, tables[i])
		}
		left -= len(level)
		levels = append(levels, lt)
	}
	return levels, nil
}
