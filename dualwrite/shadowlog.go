package dualwrite

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// shadowFlushInterval is how often the facade adds its shadow-read counts
// to pgshift.shadow_reads on new.
const shadowFlushInterval = 10 * time.Second

// shadowUserRetention is how long pgshift.shadow_reads_by_user keeps a
// minute's counts: far longer than any gate's window.
const shadowUserRetention = 24 * time.Hour

// shadowLog counts shadow reads and mismatches per operation, and per user
// (routing key and attributes), until they are written to
// pgshift.shadow_reads and pgshift.shadow_reads_by_user on new, where the
// cutover gate into live (pgshift preflight, pgshift move) reads them: the
// facade's metrics live in one process, the gate needs every process's, and
// it counts the reads of the cohort it moves, not everyone's.
type shadowLog struct {
	mu     sync.Mutex
	counts map[string]*shadowCount
	users  map[shadowUser]*shadowCount
}

type shadowCount struct{ reads, mismatches int64 }

// shadowUser is a user as pgshift.shadow_reads_by_user records it: the
// routing key and the attributes as a JSON object.
type shadowUser struct{ key, attrs string }

func newShadowLog() *shadowLog {
	return &shadowLog{counts: map[string]*shadowCount{}, users: map[shadowUser]*shadowCount{}}
}

// userOf is the user of ctx, as recorded.
func userOf(ctx context.Context) shadowUser {
	attrs := flags.Attributes(ctx)
	if attrs == nil {
		attrs = map[string]any{}
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		// An attribute JSON cannot hold: the user is recorded without
		// attributes, which a rule on them then does not match.
		b = []byte("{}")
	}
	return shadowUser{key: flags.RoutingKey(ctx), attrs: string(b)}
}

func (l *shadowLog) add(op string, u shadowUser, reads, mismatches int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts[op]
	if c == nil {
		c = &shadowCount{}
		l.counts[op] = c
	}
	c.reads += reads
	c.mismatches += mismatches
	uc := l.users[u]
	if uc == nil {
		if len(l.users) >= pgshiftdb.MaxShadowUsersPerFlush {
			return
		}
		uc = &shadowCount{}
		l.users[u] = uc
	}
	uc.reads += reads
	uc.mismatches += mismatches
}

// flush writes the counts to new; counts it could not write stay for the
// next flush.
func (l *shadowLog) flush(ctx context.Context, f *Facade) {
	l.mu.Lock()
	counts, users := l.counts, l.users
	l.counts, l.users = map[string]*shadowCount{}, map[shadowUser]*shadowCount{}
	l.mu.Unlock()
	for op, c := range counts {
		err := ownSQL.RecordShadowReads(ctx, f.pool(flags.SideNew), pgshiftdb.RecordShadowReadsParams{
			Op: op, Reads: c.reads, Mismatches: c.mismatches,
		})
		if err != nil {
			f.log.Debug("recording shadow reads on new failed; kept for the next try", "op", op, "err", err)
			l.mu.Lock()
			if k := l.counts[op]; k != nil {
				c.reads, c.mismatches = c.reads+k.reads, c.mismatches+k.mismatches
			}
			l.counts[op] = c
			l.mu.Unlock()
		}
	}
	if len(users) == 0 {
		return
	}
	var p pgshiftdb.RecordUserShadowReadsParams
	for u, c := range users {
		p.RoutingKeys = append(p.RoutingKeys, u.key)
		p.Attributes = append(p.Attributes, u.attrs)
		p.Reads = append(p.Reads, c.reads)
		p.Mismatches = append(p.Mismatches, c.mismatches)
	}
	if err := ownSQL.RecordUserShadowReads(ctx, f.pool(flags.SideNew), p); err != nil {
		f.log.Debug("recording shadow reads per user on new failed; kept for the next try", "users", len(users), "err", err)
		l.mu.Lock()
		for u, c := range users {
			if k := l.users[u]; k != nil {
				k.reads, k.mismatches = k.reads+c.reads, k.mismatches+c.mismatches
			} else if len(l.users) < pgshiftdb.MaxShadowUsersPerFlush {
				l.users[u] = c
			}
		}
		l.mu.Unlock()
	}
}

// shadowFlushTimeout bounds one flush: a batch of up to
// MaxShadowUsersPerFlush users may take longer than one write's
// Config.OtherTimeout, and nobody waits on it but Wait and Close.
func (f *Facade) shadowFlushTimeout() time.Duration {
	return max(f.cfg.OtherTimeout, shadowFlushInterval)
}

// forget deletes the per-user counts older than shadowUserRetention.
func (l *shadowLog) forget(ctx context.Context, f *Facade) {
	if _, err := ownSQL.ForgetUserShadowReads(ctx, f.pool(flags.SideNew), time.Now().Add(-shadowUserRetention)); err != nil {
		f.log.Debug("deleting old shadow reads per user on new failed", "err", err)
	}
}

// run flushes every shadowFlushInterval until ctx is done, then once more;
// once an hour it deletes the old per-user counts.
func (l *shadowLog) run(ctx context.Context, f *Facade) {
	tick := time.NewTicker(shadowFlushInterval)
	defer tick.Stop()
	lastForget := time.Time{}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shadowFlushTimeout())
			l.flush(fctx, f)
			cancel()
			return
		case <-tick.C:
			fctx, cancel := context.WithTimeout(ctx, f.shadowFlushTimeout())
			l.flush(fctx, f)
			if time.Since(lastForget) > time.Hour {
				l.forget(fctx, f)
				lastForget = time.Now()
			}
			cancel()
		}
	}
}
