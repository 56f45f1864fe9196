package rowsync_test

import (
	"context"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

func TestForeignKeyLevelsPutParentsFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.New.Pool, `CREATE TABLE tree (id int PRIMARY KEY, parent int REFERENCES tree (id));
		CREATE TABLE a (id int PRIMARY KEY, b int); CREATE TABLE b (id int PRIMARY KEY, a int REFERENCES a (id));
		ALTER TABLE a ADD FOREIGN KEY (b) REFERENCES b (id)`)
	var tables []*rowsync.Table
	for _, name := range []string{"events", "posts", "tree", "users", "a", "b"} {
		tb, err := rowsync.LoadTable(ctx, p.New.Pool, "public", name)
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tb)
	}
	levels, err := rowsync.ForeignKeyLevels(ctx, p.New.Pool, tables)
	if err != nil {
		t.Fatal(err)
	}
	level := map[string]int{}
	for i, l := range levels {
		for _, tb := range l {
			level[tb.Name] = i
		}
	}
	if len(level) != len(tables) {
		t.Fatalf("levels %v lose tables", level)
	}
	if level["users"] >= level["posts"] || level["users"] >= level["events"] {
		t.Fatalf("users must come before posts and events: %v", level)
	}
	if level["tree"] != 0 {
		t.Fatalf("a self-reference must not delay a table: %v", level)
	}
	if level["a"] != len(levels)-1 || level["b"] != len(levels)-1 {
		t.Fatalf("a reference cycle goes last, together: %v", level)
	}
}
