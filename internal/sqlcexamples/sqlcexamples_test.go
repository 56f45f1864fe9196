package sqlcexamples_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/sqlcexamples/authors"
	"github.com/pgshift/pgshift/internal/sqlcexamples/batch"
	"github.com/pgshift/pgshift/internal/sqlcexamples/booktest"
)

// The facade's Tx and a read's Querier are every DBTX sqlc generates: batch's
// has SendBatch and CopyFrom, so :batchexec, :batchmany, :batchone and
// :copyfrom code compiles against them.
var (
	_ authors.DBTX  = (*dualwrite.Tx)(nil)
	_ booktest.DBTX = (*dualwrite.Tx)(nil)
	_ batch.DBTX    = (*dualwrite.Tx)(nil)
	_ batch.DBTX    = pgshift.Querier(nil)
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one run of an example's call sequence: a facade over a fresh pair of
// databases holding the example's schema, both sides reached through proxies
// so that the side the stage does not make authoritative can be stopped.
type env struct {
	t       *testing.T
	f       *dualwrite.Facade
	pair    *pgtest.Pair
	pools   [2]*pgxpool.Pool // old, new: the facade's, through the proxies
	other   *pgtest.Proxy
	capture bool
	want    map[string]bool // "table\x00keycolumn\x00key": the row must exist (or not) after the drain
	tables  []string
}

func newEnv(t *testing.T, stage flags.Stage, capture bool, schemaFile string, tables ...string) *env {
	t.Helper()
	schema, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	pair := pgtest.NewPair(t, pgtest.Domain)
	e := &env{t: t, pair: pair, capture: capture, want: map[string]bool{}, tables: tables}
	var proxies [2]*pgtest.Proxy
	for i, db := range []*pgtest.DB{pair.Old, pair.New} {
		pgtest.Exec(t, db.Pool, string(schema))
		if capture {
			if _, err := dualwrite.InstallCapture(context.Background(), db.Pool, "", tables); err != nil {
				t.Fatal(err)
			}
		}
		e.pools[i], proxies[i] = pgtest.ProxiedPool(t, db.URL, 4)
	}
	e.other = proxies[1]
	if stage.Plan().Authoritative == flags.SideNew {
		e.other = proxies[0]
	}
	cfg := dualwrite.Config{Old: e.pools[0], New: e.pools[1], Stages: flags.Static(stage), Capture: capture,
		OtherTimeout: time.Second,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	cfg.Repair.Interval = 50 * time.Millisecond
	cfg.Repair.MaxBackoff = 300 * time.Millisecond
	e.f, err = dualwrite.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.f.Close)
	return e
}

// touch is tx.Touch in touch mode; in capture mode the triggers find the rows.
func (e *env) touch(tx *dualwrite.Tx, table string, key ...any) {
	if !e.capture {
		tx.Touch(table, key...)
	}
}

// acked notes that an acknowledged write leaves the row of table whose
// column equals key present (or absent).
func (e *env) acked(table, column string, key any, present bool) {
	e.want[table+"\x00"+column+"\x00"+fmt.Sprint(key)] = present
}

// outage stops the side the stage does not make authoritative; heal starts
// it again.
func (e *env) outage() { e.f.Wait(); e.other.Down() }

func (e *env) heal() {
	e.f.Wait()
	e.other.Up()
	for _, p := range e.pools {
		p.Reset() // connections the outage cut are not reused
	}
}

// write runs fn as a write of the user "reader-1" and fails the test when
// the caller is refused: the other side's outage is never the caller's
// failure.
func write[T any](e *env, op dualwrite.Op, fn dualwrite.WriteFunc[T]) T {
	e.t.Helper()
	res, err := dualwrite.Write(flags.WithUser(context.Background(), "reader-1", nil), e.f, op, fn)
	if err != nil {
		e.t.Fatalf("%s: %v", op.Name, err)
	}
	return res
}

func read[T any](e *env, name string, fn dualwrite.ReadFunc[T]) T {
	e.t.Helper()
	res, err := dualwrite.Read(flags.WithUser(context.Background(), "reader-1", nil), e.f, dualwrite.Op{Name: name}, fn)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return res
}

// check drains the repair logs and requires every acknowledged row state on
// both sides, and both sides equal row for row.
func (e *env) check() {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		e.f.Wait()
		b, err := e.f.Repairer().Backlog(context.Background())
		if err == nil && b.Entries() == 0 {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("repair log not drained after 60s: backlog %+v, err %v", b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for k, present := range e.want {
		parts := strings.Split(k, "\x00")
		for i, db := range []*pgtest.DB{e.pair.Old, e.pair.New} {
			var n int
			err := db.Pool.QueryRow(context.Background(),
				"SELECT count(*) FROM "+parts[0]+" WHERE "+parts[1]+"::text = $1", parts[2]).Scan(&n)
			if err != nil {
				e.t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[present]; n != want {
				e.t.Errorf("%s: %d rows of %s where %s = %s after the drain, want %d (acknowledged)",
					[]string{"old", "new"}[i], n, parts[0], parts[1], parts[2], want)
			}
		}
	}
	for _, table := range e.tables {
		o, n := pgtest.Dump(e.t, e.pair.Old.Pool, table), pgtest.Dump(e.t, e.pair.New.Pool, table)
		if strings.Join(o, "\n") != strings.Join(n, "\n") {
			e.t.Errorf("%s differs after the drain:\nold: %v\nnew: %v", table, o, n)
		}
	}
}

// TestSqlcExamplesThroughFacade runs the call sequences of the authors,
// booktest and batch examples through the facade, in touch mode and in
// capture mode, in the stages that write both sides, with the side the
// stage does not make authoritative stopped mid-way: every write is
// acknowledged, reads answer as on one database, and once the side is back
// and the repair logs drain, both sides hold every acknowledged write and
// are equal.
func TestSqlcExamplesThroughFacade(t *testing.T) {
	t.Parallel()
	examples := []struct {
		name string
		run  func(*env)
	}{{"authors", runAuthors}, {"booktest", runBooktest}, {"batch", runBatch}}
	for _, ex := range examples {
		for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive} {
			for _, capture := range []bool{false, true} {
				mode := "touch"
				if capture {
					mode = "capture"
				}
				t.Run(ex.name+"/"+stage.String()+"/"+mode, func(t *testing.T) {
					t.Parallel()
					ex.run(newEnvFor(t, ex.name, stage, capture))
				})
			}
		}
	}
}

func newEnvFor(t *testing.T, name string, stage flags.Stage, capture bool) *env {
	tables := map[string][]string{"authors": {"authors"}, "booktest": {"authors", "books"}, "batch": {"authors", "books"}}[name]
	return newEnv(t, stage, capture, name+"/schema.sql", tables...)
}

// createAuthor is the insert whose key the database makes: the row is
// Touched from RETURNING, and the other side writes that key.
func createAuthor(e *env, name string, bio pgtype.Text) authors.Author {
	a := write(e, dualwrite.Op{Name: "authors.create", OneStatement: true},
		func(ctx context.Context, tx *dualwrite.Tx, prev *authors.Author) (authors.Author, error) {
			q := authors.New(tx)
			var a authors.Author
			var err error
			if prev != nil {
				a, err = q.CreateAuthorWithID(ctx, authors.CreateAuthorWithIDParams{ID: prev.ID, Name: name, Bio: bio})
			} else {
				a, err = q.CreateAuthor(ctx, authors.CreateAuthorParams{Name: name, Bio: bio})
			}
			if err != nil {
				return a, err
			}
			e.touch(tx, "authors", a.ID)
			return a, nil
		})
	e.acked("authors", "id", a.ID, true)
	return a
}

func runAuthors(e *env) {
	t := e.t
	bio := pgtype.Text{String: "Co-author of The C Programming Language", Valid: true}
	first := createAuthor(e, "Brian Kernighan", bio)
	got := read(e, "authors.get", func(ctx context.Context, q pgshift.Querier) (authors.Author, error) {
		return authors.New(q).GetAuthor(ctx, first.ID)
	})
	if got != first {
		t.Fatalf("GetAuthor: got %+v, want %+v", got, first)
	}

	e.outage()
	second := createAuthor(e, "Dennis Ritchie", pgtype.Text{String: "Created C", Valid: true})
	third := createAuthor(e, "Ken Thompson", pgtype.Text{})
	write(e, dualwrite.Op{Name: "authors.bio", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		e.touch(tx, "authors", third.ID)
		return struct{}{}, authors.New(tx).UpdateAuthorBio(ctx, authors.UpdateAuthorBioParams{ID: third.ID, Bio: pgtype.Text{String: "Created Unix", Valid: true}})
	})
	write(e, dualwrite.Op{Name: "authors.delete", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		e.touch(tx, "authors", first.ID)
		return struct{}{}, authors.New(tx).DeleteAuthor(ctx, first.ID)
	})
	e.acked("authors", "id", first.ID, false)
	list := read(e, "authors.list", func(ctx context.Context, q pgshift.Querier) ([]authors.Author, error) {
		return authors.New(q).ListAuthors(ctx)
	})
	if len(list) != 2 || list[0].ID != second.ID || list[1].ID != third.ID || list[1].Bio.String != "Created Unix" {
		t.Fatalf("ListAuthors during the outage: got %+v", list)
	}

	e.heal()
	createAuthor(e, "Rob Pike", pgtype.Text{})
	e.check()
}

var available = pgtype.Timestamptz{Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Valid: true}

func createBook(e *env, p booktest.CreateBookParams) booktest.Book {
	b := write(e, dualwrite.Op{Name: "books.create", OneStatement: true},
		func(ctx context.Context, tx *dualwrite.Tx, prev *booktest.Book) (booktest.Book, error) {
			q := booktest.New(tx)
			var b booktest.Book
			var err error
			if prev != nil {
				b, err = q.CreateBookWithID(ctx, booktest.CreateBookWithIDParams{BookID: prev.BookID, AuthorID: p.AuthorID,
					Isbn: p.Isbn, BookType: p.BookType, Title: p.Title, Year: p.Year, Available: p.Available, Tags: p.Tags})
			} else {
				b, err = q.CreateBook(ctx, p)
			}
			if err != nil {
				return b, err
			}
			e.touch(tx, "books", b.BookID)
			return b, nil
		})
	e.acked("books", "book_id", b.BookID, true)
	return b
}

func runBooktest(e *env) {
	t := e.t
	a := write(e, dualwrite.Op{Name: "booktest.author", OneStatement: true},
		func(ctx context.Context, tx *dualwrite.Tx, prev *booktest.Author) (booktest.Author, error) {
			q := booktest.New(tx)
			var a booktest.Author
			var err error
			if prev != nil {
				a, err = q.CreateAuthorWithID(ctx, booktest.CreateAuthorWithIDParams{AuthorID: prev.AuthorID, Name: "Unknown Master"})
			} else {
				a, err = q.CreateAuthor(ctx, "Unknown Master")
			}
			if err == nil {
				e.touch(tx, "authors", a.AuthorID)
			}
			return a, err
		})
	e.acked("authors", "author_id", a.AuthorID, true)
	b0 := createBook(e, booktest.CreateBookParams{AuthorID: a.AuthorID, Isbn: "1", BookType: booktest.BookTypeFICTION,
		Title: "my book title", Year: 2016, Available: available, Tags: []string{}})

	e.outage()
	b1 := createBook(e, booktest.CreateBookParams{AuthorID: a.AuthorID, Isbn: "2", BookType: booktest.BookTypeFICTION,
		Title: "the second book", Year: 2016, Available: available, Tags: []string{"cool", "unique"}})
	createBook(e, booktest.CreateBookParams{AuthorID: a.AuthorID, Isbn: "3", BookType: booktest.BookTypeFICTION,
		Title: "the third book", Year: 2001, Available: available, Tags: []string{"cool"}})
	b3 := createBook(e, booktest.CreateBookParams{AuthorID: a.AuthorID, Isbn: "4", BookType: booktest.BookTypeNONFICTION,
		Title: "4th place finisher", Year: 2011, Available: available, Tags: []string{"other"}})
	write(e, dualwrite.Op{Name: "books.update", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		e.touch(tx, "books", b3.BookID)
		return struct{}{}, booktest.New(tx).UpdateBook(ctx, booktest.UpdateBookParams{BookID: b3.BookID, Title: "changed second title", Tags: []string{"cool", "disastor"}})
	})
	write(e, dualwrite.Op{Name: "books.isbn", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		e.touch(tx, "books", b3.BookID)
		return struct{}{}, booktest.New(tx).UpdateBookISBN(ctx, booktest.UpdateBookISBNParams{BookID: b3.BookID, Title: "never ever gonna finish, a quatrain",
			Tags: []string{"something", "else"}, Isbn: "NEW ISBN"})
	})
	byYear := read(e, "books.titleyear", func(ctx context.Context, q pgshift.Querier) ([]booktest.Book, error) {
		return booktest.New(q).BooksByTitleYear(ctx, booktest.BooksByTitleYearParams{Title: "my book title", Year: 2016})
	})
	if len(byYear) != 1 || byYear[0].BookID != b0.BookID || !byYear[0].Available.Time.Equal(available.Time) {
		t.Fatalf("BooksByTitleYear: got %+v", byYear)
	}
	byTags := read(e, "books.tags", func(ctx context.Context, q pgshift.Querier) ([]booktest.BooksByTagsRow, error) {
		return booktest.New(q).BooksByTags(ctx, []string{"cool", "other", "someother"})
	})
	if len(byTags) != 2 || byTags[0].BookID != b1.BookID || byTags[0].Name.String != "Unknown Master" {
		t.Fatalf("BooksByTags: got %+v", byTags)
	}
	write(e, dualwrite.Op{Name: "books.delete", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		e.touch(tx, "books", b0.BookID)
		return struct{}{}, booktest.New(tx).DeleteBook(ctx, b0.BookID)
	})
	e.acked("books", "book_id", b0.BookID, false)

	e.heal()
	createBook(e, booktest.CreateBookParams{AuthorID: a.AuthorID, Isbn: "5", BookType: booktest.BookTypeFICTION,
		Title: "after the outage", Year: 2024, Available: available, Tags: []string{"late"}})
	e.check()
}

// createAuthors inserts authors in one :batchone batch; their keys come
// from RETURNING, so they are Touched after it.
func createAuthors(e *env, names ...string) []batch.Author {
	as := write(e, dualwrite.Op{Name: "batch.authors", OneStatement: true},
		func(ctx context.Context, tx *dualwrite.Tx, prev *[]batch.Author) ([]batch.Author, error) {
			q := batch.New(tx)
			out := make([]batch.Author, len(names))
			var errs []error
			collect := func(i int, a batch.Author, err error) {
				out[i] = a
				if err != nil {
					errs = append(errs, err)
					return
				}
				e.touch(tx, "authors", a.AuthorID)
			}
			if prev != nil {
				params := make([]batch.CreateAuthorsWithIDParams, len(names))
				for i, a := range *prev {
					params[i] = batch.CreateAuthorsWithIDParams(a)
				}
				res := q.CreateAuthorsWithID(ctx, params)
				res.QueryRow(collect)
				errs = append(errs, res.Close())
			} else {
				res := q.CreateAuthors(ctx, names)
				res.QueryRow(collect)
				errs = append(errs, res.Close()) // the COMMIT's answer, if it went with the batch
			}
			return out, errors.Join(errs...)
		})
	for _, a := range as {
		e.acked("authors", "author_id", a.AuthorID, true)
	}
	return as
}

func runBatch(e *env) {
	t := e.t
	as := createAuthors(e, "Hugo", "Beatrix")

	e.outage()
	books := make([]batch.CopyBooksParams, 4)
	for i := range books {
		books[i] = batch.CopyBooksParams{BookID: pgtype.UUID{Bytes: uuid.Must(uuid.NewV7()), Valid: true},
			AuthorID: as[i%2].AuthorID, Title: fmt.Sprintf("book %d", i), Year: int32(2000 + i%2), Tags: []string{"t"}}
	}
	write(e, dualwrite.Op{Name: "batch.copybooks", NewRows: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		for _, b := range books {
			e.touch(tx, "books", b.BookID)
		}
		n, err := batch.New(tx).CopyBooks(ctx, books)
		if err == nil && n != int64(len(books)) {
			err = fmt.Errorf("copied %d books, want %d", n, len(books))
		}
		return struct{}{}, err
	})
	for _, b := range books {
		e.acked("books", "book_id", uuid.UUID(b.BookID.Bytes), true)
	}
	write(e, dualwrite.Op{Name: "batch.titles", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		params := []batch.UpdateBookTitlesParams{{BookID: books[0].BookID, Title: "renamed 0"}, {BookID: books[1].BookID, Title: "renamed 1"}}
		for _, p := range params {
			e.touch(tx, "books", p.BookID)
		}
		res := batch.New(tx).UpdateBookTitles(ctx, params)
		var errs []error
		res.Exec(func(_ int, err error) { errs = append(errs, err) })
		return struct{}{}, errors.Join(append(errs, res.Close())...)
	})
	byYear := read(e, "batch.byyear", func(ctx context.Context, q pgshift.Querier) ([][]batch.Book, error) {
		res := batch.New(q).BooksByYear(ctx, []int32{2000, 2001})
		out := make([][]batch.Book, 2)
		var errs []error
		res.Query(func(i int, bs []batch.Book, err error) { out[i] = bs; errs = append(errs, err) })
		return out, errors.Join(append(errs, res.Close())...)
	})
	if len(byYear[0]) != 2 || len(byYear[1]) != 2 || byYear[0][0].Title != "renamed 0" || byYear[1][0].Title != "renamed 1" {
		t.Fatalf("BooksByYear during the outage: got %+v", byYear)
	}
	more := createAuthors(e, "Zoe")
	write(e, dualwrite.Op{Name: "batch.delete", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx, _ *struct{}) (struct{}, error) {
		e.touch(tx, "books", books[3].BookID)
		res := batch.New(tx).DeleteBooks(ctx, []pgtype.UUID{books[3].BookID})
		var errs []error
		res.Exec(func(_ int, err error) { errs = append(errs, err) })
		return struct{}{}, errors.Join(append(errs, res.Close())...)
	})
	e.acked("books", "book_id", uuid.UUID(books[3].BookID.Bytes), false)

	e.heal()
	got := read(e, "batch.author", func(ctx context.Context, q pgshift.Querier) (batch.Author, error) {
		return batch.New(q).GetAuthor(ctx, more[0].AuthorID)
	})
	if got != more[0] {
		t.Fatalf("GetAuthor: got %+v, want %+v", got, more[0])
	}
	createAuthors(e, "Ann", "Bo")
	e.check()
}
