package dualwrite_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
)

// TestMetricsExported checks that calls show up in the OpenTelemetry
// instruments: latency per operation and side, shadow mismatches and the
// repair backlog gauge.
func TestMetricsExported(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b := setup(t, flags.StageShadow, func(c *dualwrite.Config) { c.MeterProvider = mp })
	ctx := userCtx("m")
	u, err := b.store.Users.Create(ctx, repo.NewUser{Email: "m@example.com", Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	if _, err := b.pair.New.Pool.Exec(context.Background(), "UPDATE users SET name = 'drift' WHERE id = $1", u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	if _, err := b.facade.Repairer().Backlog(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					op, _ := p.Attributes.Value(attribute.Key("op"))
					side, _ := p.Attributes.Value(attribute.Key("side"))
					seen[m.Name+" "+op.AsString()+" "+side.AsString()] = p.Count > 0
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					op, _ := p.Attributes.Value(attribute.Key("op"))
					seen[m.Name+" "+op.AsString()] = p.Value > 0
				}
			case metricdata.Gauge[int64]:
				seen[m.Name] = len(d.DataPoints) == 2
			}
		}
	}
	for _, want := range []string{
		"pgshift.dualwrite.duration users.create old",
		"pgshift.dualwrite.duration users.create new",
		"pgshift.dualwrite.duration users.get old",
		"pgshift.dualwrite.duration users.get new",
		"pgshift.dualwrite.shadow_mismatches users.get",
		"pgshift.repair.backlog",
	} {
		if !seen[want] {
			t.Errorf("no data for %q; got %v", want, seen)
		}
	}
}

// The facade adds its shadow reads and mismatches to pgshift.shadow_reads on
// new (in batches; Wait flushes them), where the cutover gate into live
// reads every process's.
func TestShadowReadsPersisted(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageShadow)
	ctx := userCtx("p")
	u, err := b.store.Users.Create(ctx, repo.NewUser{Email: "p@example.com", Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	for range 3 {
		if _, err := b.store.Users.Get(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	b.facade.Wait() // the three comparisons are done before the drift
	pgtest.Exec(t, b.pair.New.Pool, "UPDATE users SET name = 'drift' WHERE id = $1", u.ID)
	if _, err := b.store.Users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	var reads, mismatches int64
	if err := b.pair.New.Pool.QueryRow(context.Background(),
		"SELECT sum(reads), sum(mismatches) FROM pgshift.shadow_reads WHERE op = 'users.get'").Scan(&reads, &mismatches); err != nil {
		t.Fatal(err)
	}
	if reads != 4 || mismatches != 1 {
		t.Fatalf("shadow_reads on new: %d reads, %d mismatches; want 4 and 1", reads, mismatches)
	}
}

// Shadow reads are recorded per user as well, in
// pgshift.shadow_reads_by_user: the routing key and the attributes of
// flags.WithUser, so that the cutover gates count a cohort's own. A flush
// records at most pgshiftdb.MaxShadowUsersPerFlush users; the reads of the
// others are in pgshift.shadow_reads only.
func TestShadowReadsPersistedPerUser(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageShadow)
	pro := flags.WithUser(context.Background(), "u1", map[string]any{"country": "US", "plan": "pro"})
	u, err := b.store.Users.Create(pro, repo.NewUser{Email: "u1@example.com", Name: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	for range 3 {
		if _, err := b.store.Users.Get(pro, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.store.Users.Get(flags.WithUser(context.Background(), "", nil), u.ID); err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	rows, err := b.pair.New.Pool.Query(context.Background(),
		"SELECT routing_key, attributes::text, reads, mismatches FROM pgshift.shadow_reads_by_user ORDER BY routing_key")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var key, attrs string
		var reads, mismatches int64
		if err := rows.Scan(&key, &attrs, &reads, &mismatches); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%q %s %d %d", key, attrs, reads, mismatches))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{`"" {} 1 0`, `"u1" {"plan": "pro", "country": "US"} 3 0`}
	if !slices.Equal(got, want) {
		t.Fatalf("shadow_reads_by_user: %q, want %q", got, want)
	}

	// One more user than a flush records: every read is counted in
	// shadow_reads, the users up to the limit in shadow_reads_by_user.
	pgtest.Exec(t, b.pair.New.Pool, "TRUNCATE pgshift.shadow_reads, pgshift.shadow_reads_by_user")
	for i := range pgshiftdb.MaxShadowUsersPerFlush + 1 {
		b.facade.AddShadowReads(flags.WithUser(context.Background(), fmt.Sprint(i), nil), "users.get", 1, 0)
	}
	b.facade.Wait()
	var total, users, attributed int64
	if err := b.pair.New.Pool.QueryRow(context.Background(),
		"SELECT (SELECT sum(reads) FROM pgshift.shadow_reads), (SELECT count(*) FROM pgshift.shadow_reads_by_user), (SELECT sum(reads) FROM pgshift.shadow_reads_by_user)").
		Scan(&total, &users, &attributed); err != nil {
		t.Fatal(err)
	}
	if total != pgshiftdb.MaxShadowUsersPerFlush+1 || users != pgshiftdb.MaxShadowUsersPerFlush || attributed != pgshiftdb.MaxShadowUsersPerFlush {
		t.Fatalf("after %d users' reads: %d reads in all, %d users with %d reads recorded per user; want %d, %d, %d",
			pgshiftdb.MaxShadowUsersPerFlush+1, total, users, attributed, pgshiftdb.MaxShadowUsersPerFlush+1, pgshiftdb.MaxShadowUsersPerFlush, pgshiftdb.MaxShadowUsersPerFlush)
	}
}
