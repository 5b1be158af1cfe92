package queue_test

import (
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// TestFinishPlansDoNotDependOnStatistics: writing 1,000 results, and
// extending their leases, on a queue analysed while it was empty meets the
// input arrays with the table in a join whose cost grows with the rows
// written. Planned from those statistics as plain statements, the table
// looked like one row and the input was read once per row updated (a
// nested loop with "Rows Removed by Join Filter: 999000", 150–230 ms
// instead of 8).
func TestFinishPlansDoNotDependOnStatistics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.db.ExecContext(b.ctx, `VACUUM ANALYZE `+b.table); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	addMany(t, b, n, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("k%d", i)} })
	var claimed []queue.ClaimedTask
	for len(claimed) < n {
		c := b.claimLease(t, n-len(claimed), time.Minute, "job")
		if len(c) == 0 {
			t.Fatalf("claimed %d of %d, then nothing", len(claimed), n)
		}
		claimed = append(claimed, c...)
	}
	ids, tokens, states, messages, delays := make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]float64, n)
	for i, c := range claimed {
		ids[i], tokens[i], states[i] = c.Lease.TaskID, c.Lease.Token, string(queue.TaskDone)
	}
	fn := func(name string) string {
		return pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table()+"_"+name)
	}
	removed := regexp.MustCompile(`Rows Removed by Join Filter: (\d+)`)
	for _, c := range []struct {
		what string
		call func(tx *sql.Tx) error
	}{
		{"finish", func(tx *sql.Tx) error {
			var lost int
			err := tx.QueryRowContext(b.ctx, `SELECT count(*) FROM `+fn("finish")+`($1, $2, $3, $4, $5)`,
				pq.Array(ids), pq.Array(tokens), pq.Array(states), pq.Array(messages), pq.Array(delays)).Scan(&lost)
			if err == nil && lost != 0 {
				err = fmt.Errorf("%d of %d results not written", lost, n)
			}
			return err
		}},
		{"extend", func(tx *sql.Tx) error {
			var lost int
			err := tx.QueryRowContext(b.ctx, `SELECT count(*) FROM `+fn("extend_leases")+`($1, $2, 60)`,
				pq.Array(ids), pq.Array(tokens)).Scan(&lost)
			if err == nil && lost != 0 {
				err = fmt.Errorf("%d of %d leases not extended", lost, n)
			}
			return err
		}},
	} {
		plans := nestedPlans(t, b, c.call)
		all := strings.Join(plans, "\n")
		if !strings.Contains(all, "Update on "+b.driver.Table()) {
			t.Fatalf("%s: no plan of its update was captured:\n%s", c.what, all)
		}
		for _, m := range removed.FindAllStringSubmatch(all, -1) {
			if m[1] != "0" {
				t.Errorf("%s of %d: a join reads its input again per row (%s):\n%s", c.what, n, m[0], all)
			}
		}
		shapes := strings.Join(planShapes(plans), "\n")
		for _, bad := range []string{"Seq Scan", "Bitmap"} {
			if strings.Contains(shapes, bad) {
				t.Errorf("%s of %d has a %s node:\n%s", c.what, n, bad, all)
			}
		}
		// The update takes its rows in id order (migration 024): a merge
		// join reads the table through its primary key, for the ids given
		// only.
		if c.what == "finish" && (!strings.Contains(shapes, "Merge Join") || strings.Contains(shapes, "Hash Join") ||
			!strings.Contains(all, "Index Cond: (id = ANY")) {
			t.Errorf("finish of %d does not meet its rows in a merge join over its ids:\n%s", n, all)
		}
	}
}
