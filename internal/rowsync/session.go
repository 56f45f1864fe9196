package rowsync

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgxrow"
)

// sessionSQL sets SessionParams for the current transaction only
// (set_config's is_local), each value a parameter; sessionArgs are the
// values, in the same order.
var sessionSQL, sessionArgs = func() (string, []any) {
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range SessionParams {
			if !yield(k) {
				return
			}
		}
	})
	sets := make([]string, len(names))
	args := make([]any, len(names))
	for i, n := range names {
		sets[i] = fmt.Sprintf("set_config('%s', $%d, true)", n, i+1)
		args[i] = SessionParams[n]
	}
	return "SELECT " + strings.Join(sets, ", "), args
}()

// SetSession applies SessionParams to the rest of the transaction q is in
// (SET LOCAL): for work that runs in a transaction of its own, such as a
// COPY.
func SetSession(ctx context.Context, q pgshift.Querier) error {
	if _, err := q.Exec(ctx, sessionSQL, sessionArgs...); err != nil {
		return fmt.Errorf("set session parameters: %w", err)
	}
	return nil
}

// InSession returns a Querier that runs every statement with SessionParams
// in force: the statement goes in one batch behind a set_config(..., true)
// of each parameter, so both run in one transaction (the batch's implicit
// one, or q's) and one round trip. This is what makes the text form of
// values the same on both sides behind a pooler in transaction mode
// (PgBouncer), where parameters set per connection do not reach the server
// connection a statement runs on and startup parameters are refused. The
// row engine's functions apply it themselves. A batch gets the set_config
// as its first statement; CopyFrom runs as it is (pgx copies in COPY's
// binary format, which no parameter changes).
func InSession(q pgshift.Querier) pgshift.Querier {
	if s, ok := q.(session); ok {
		return s
	}
	return session{q}
}

type session struct{ q pgshift.Querier }

func (s session) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	var b pgx.Batch
	b.Queue(sessionSQL, sessionArgs...)
	b.Queue(sql, args...)
	br := s.q.SendBatch(ctx, &b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("set session parameters: %w", err)
	}
	return br, nil
}

func (s session) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := s.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (s session) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br, err := s.send(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &sessionRows{Rows: rows, br: br}, nil
}

func (s session) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return pgxrow.From(s.Query(ctx, sql, args...))
}

// SendBatch sends b behind the set_config of SessionParams; the results
// start at b's first statement (a failed set_config is the error of each).
func (s session) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	var sb pgx.Batch
	sb.Queue(sessionSQL, sessionArgs...)
	sb.QueuedQueries = append(sb.QueuedQueries, b.QueuedQueries...)
	br := s.q.SendBatch(ctx, &sb)
	_, _ = br.Exec() // an error sticks to the results: each read returns it
	return br
}

func (s session) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return s.q.CopyFrom(ctx, table, columns, src)
}

// sessionRows are a statement's rows; closing them ends the batch, which
// gives a pool's connection back.
type sessionRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *sessionRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *sessionRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *sessionRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}
