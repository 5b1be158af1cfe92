package queue_test

import (
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// claimPlans runs one claim of limit tasks, walking from the start of the
// queue, with auto_explain sending the plan of every statement inside the
// claim function to the client, and returns those plans. The claim is
// rolled back.
func claimPlans(t *testing.T, b *testBundle, limit int) []string {
	t.Helper()
	return claimPlansFrom(t, b, limit, nil)
}

// claimPlansFrom is claimPlans with the walk starting at from (a
// time.Time, or nil for the start of the queue). The plans carry the rows
// and buffers each node used.
func claimPlansFrom(t *testing.T, b *testBundle, limit int, from any) []string {
	t.Helper()
	fn := pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table()+"_claim")
	var n int
	plans := nestedPlans(t, b, func(tx *sql.Tx) error {
		return tx.QueryRowContext(b.ctx, `SELECT count(*) FROM `+fn+`($1, $2, interval '1 minute', $3)`,
			pq.Array([]string{"job"}), limit, from).Scan(&n)
	})
	if n != limit {
		t.Fatalf("claimed %d, want %d", n, limit)
	}
	return plans
}

// nestedPlans runs run in a transaction that is rolled back, with
// auto_explain sending the plan of every statement inside functions to the
// client, and returns those plans.
func nestedPlans(t *testing.T, b *testBundle, run func(*sql.Tx) error) []string {
	t.Helper()
	db, takePlans := planDB(t, b)
	tx, err := db.BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, s := range []string{
		`LOAD 'auto_explain'`,
		`SET LOCAL auto_explain.log_min_duration = 0`,
		`SET LOCAL auto_explain.log_nested_statements = on`,
		`SET LOCAL auto_explain.log_analyze = on`,
		`SET LOCAL auto_explain.log_buffers = on`,
		`SET LOCAL auto_explain.log_timing = off`,
		`SET LOCAL auto_explain.log_level = notice`,
		`SET LOCAL client_min_messages = notice`,
	} {
		if _, err := tx.ExecContext(b.ctx, s); err != nil {
			t.Skipf("auto_explain is not available here (%v)", err)
		}
	}
	if err := run(tx); err != nil {
		t.Fatal(err)
	}
	return takePlans()
}

// Adding tasks to a queue analysed while idle reads the superseded rows by
// id and the key's pending task through key_pending_idx, for one task, for
// many, and for many with distinct keys (add_distinct): never a scan of
// the table.
func TestAddPlansDoNotDependOnStatistics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.db.ExecContext(b.ctx, `VACUUM ANALYZE `+b.table); err != nil {
		t.Fatal(err)
	}
	addMany(t, b, 500, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("k%d", i%50)} })
	add := pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table()+"_add")
	addDistinct := pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table()+"_add_distinct")
	for _, c := range []struct {
		fn   string
		keys []string
	}{{add, []string{"k1"}}, {add, []string{"k1", "k2", "k1", "new"}}, {addDistinct, []string{"k1", "k2", "new"}}} {
		fn, keys, n := c.fn, c.keys, len(c.keys)
		plans := nestedPlans(t, b, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(b.ctx, `SELECT `+fn+`($1, $2, $3, $4, $5, $6, '')`,
				pq.Array(make([]string, n)), pq.Array(keys), pq.Array(repeat("{}", n)), pq.Array(make([]string, n)),
				pq.Array(make([]float64, n)), pq.Array(repeat(int64(3), n)))
			return err
		})
		all := strings.Join(planShapes(plans), "\n")
		for _, bad := range []string{"Seq Scan", "Bitmap"} {
			if strings.Contains(all, bad) {
				t.Errorf("adding %v has a %s node:\n%s", keys, bad, strings.Join(plans, "\n"))
			}
		}
		if !strings.Contains(all, b.driver.Table()+"_key_pending_idx") {
			t.Errorf("adding %v does not look up the key's pending task through key_pending_idx:\n%s", keys, all)
		}
	}
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// planDB opens a connection pool on b's database that collects the plans
// auto_explain sends as notices (once it is loaded and set to notice);
// takePlans returns those collected since the last call. It is closed when
// the test ends.
func planDB(t *testing.T, b *testBundle) (db *sql.DB, takePlans func() []string) {
	t.Helper()
	var mu sync.Mutex
	var plans []string
	base, err := pq.NewConnector(b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	db = sql.OpenDB(pq.ConnectorWithNoticeHandler(base, func(n *pq.Error) {
		if strings.Contains(n.Message, "Query Text:") {
			mu.Lock()
			plans = append(plans, n.Message)
			mu.Unlock()
		}
	}))
	t.Cleanup(func() { db.Close() })
	return db, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := plans
		plans = nil
		return out
	}
}

func TestClaimPlansDoNotDependOnStatistics(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// A queue that has worked and is idle, analysed in that state.
	specs := make([]queue.TaskSpec, 300)
	for i := range specs {
		specs[i] = queue.TaskSpec{Name: "job", Key: fmt.Sprintf("old%d", i)}
	}
	if _, err := b.tm.AddMany(b.ctx, specs); err != nil {
		t.Fatal(err)
	}
	for _, c := range b.claim(t, 300) {
		b.finish(t, c, queue.TaskDone, 0)
	}
	if _, err := b.db.ExecContext(b.ctx, `VACUUM ANALYZE `+b.table); err != nil {
		t.Fatal(err)
	}
	// Then a burst: tasks in flight, and many more pending.
	for i := range specs {
		specs[i] = queue.TaskSpec{Name: "job", Key: fmt.Sprintf("k%d", i)}
	}
	for range 10 {
		if _, err := b.tm.AddMany(b.ctx, specs); err != nil {
			t.Fatal(err)
		}
	}
	b.claimLease(t, 200, time.Minute)

	idle := planShapes(claimPlans(t, b, 50))
	if _, err := b.db.ExecContext(b.ctx, `ANALYZE `+b.table); err != nil {
		t.Fatal(err)
	}
	fresh := planShapes(claimPlans(t, b, 50))

	if len(idle) != 5 {
		t.Fatalf("got %d statement plans from the claim, want 5:\n%s", len(idle), strings.Join(idle, "\n\n"))
	}
	for i := range idle {
		if idle[i] != fresh[i] {
			t.Errorf("statement %d is planned differently once statistics are fresh:\nafter idle:\n%s\nfresh:\n%s", i+1, idle[i], fresh[i])
		}
		for _, bad := range []string{"Seq Scan", "Bitmap", "Hash", "Merge Join", "Materialize"} {
			if strings.Contains(idle[i], bad) {
				t.Errorf("statement %d has a %s node (a scan or join whose cost grows with the queue):\n%s", i+1, bad, idle[i])
			}
		}
	}
	table := b.driver.Table()
	if !strings.Contains(idle[0], "Index Scan using "+table+"_pending_idx") {
		t.Errorf("the first due task should be found through pending_idx:\n%s", idle[0])
	}
	if !strings.Contains(idle[2], "Index Scan using "+table+"_pending_idx") ||
		!strings.Contains(idle[2], "Index Only Scan using "+table+"_key_running_idx") {
		t.Errorf("the queue-order scan should walk pending_idx and probe in-flight keys per row:\n%s", idle[2])
	}
}

// planShapes keeps the plan nodes of each plan, without costs or values.
func planShapes(plans []string) []string {
	var out []string
	for _, p := range plans {
		var nodes []string
		for _, line := range strings.Split(p, "\n") {
			if i := strings.Index(line, "  (cost="); i >= 0 {
				nodes = append(nodes, line[:i])
			}
		}
		out = append(out, strings.Join(nodes, "\n"))
	}
	return out
}
