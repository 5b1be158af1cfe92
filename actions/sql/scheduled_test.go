package sqlaction_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	sqlaction "github.com/esync/queue/actions/sql"
	"github.com/esync/queue/queuetest"
	"github.com/lib/pq"
)

// The scheduled form must satisfy the manager's interface.
var _ queue.ScheduledAction = (*sqlaction.Scheduled)(nil)
var _ queue.TaskAction = (*sqlaction.Action)(nil)

func TestScheduledRefreshesMaterializedView(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db,
		`CREATE TABLE orders (customer int, amount numeric)`,
		`CREATE MATERIALIZED VIEW customer_totals AS SELECT customer, sum(amount) AS total FROM orders GROUP BY customer`)
	s, err := sqlaction.NewScheduled(db, "reports", `REFRESH MATERIALIZED VIEW customer_totals`)
	if err != nil {
		t.Fatal(err)
	}
	if s.Stream() != "reports" {
		t.Fatalf("stream %q", s.Stream())
	}
	mustExec(t, db, `INSERT INTO orders VALUES (1, 10), (1, 5), (2, 7)`)
	if err := s.Do(); err != nil {
		t.Fatal(err)
	}
	var total string
	if err := db.QueryRow(`SELECT total FROM customer_totals WHERE customer = 1`).Scan(&total); err != nil {
		t.Fatalf("view not refreshed: %v", err)
	}
	if total != "15" {
		t.Fatalf("total %s, want 15", total)
	}
}

func TestScheduledReconciliationUpdate(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db,
		`CREATE TABLE customer (id int PRIMARY KEY, crm_name text)`,
		`CREATE TABLE crm (id int PRIMARY KEY, name text)`,
		`INSERT INTO customer VALUES (1, 'old'), (2, 'same')`,
		`INSERT INTO crm VALUES (1, 'new'), (2, 'same')`)
	s, err := sqlaction.NewScheduled(db, "crm", `
		UPDATE customer c SET crm_name = crm.name FROM crm
		WHERE crm.id = c.id AND c.crm_name IS DISTINCT FROM crm.name`, sqlaction.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Do(); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := db.QueryRow(`SELECT crm_name FROM customer WHERE id = 1`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "new" {
		t.Fatalf("crm_name %q, want new", name)
	}
}

func TestScheduledFailureReturnsAClassifiableError(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	s, err := sqlaction.NewScheduled(db, "reports", `REFRESH MATERIALIZED VIEW nosuch`)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Do()
	if err == nil {
		t.Fatal("refreshing a missing view succeeded")
	}
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "42P01" {
		t.Fatalf("error %v does not carry SQLSTATE 42P01", err)
	}
	var schedErr *sqlaction.Error
	if !errors.As(err, &schedErr) || schedErr.Stream != "reports" {
		t.Fatalf("error %v is not a *sqlaction.Error for stream reports", err)
	}
	if sqlaction.Classify(err) != queue.TaskResultPermanentFailure {
		t.Fatalf("missing view classified %s", sqlaction.Classify(err))
	}
	if !strings.Contains(err.Error(), "reports") || !strings.Contains(err.Error(), `relation "nosuch" does not exist`) {
		t.Fatalf("error text %q", err)
	}

	slow, err := sqlaction.NewScheduled(db, "reports", `SELECT pg_sleep(600)`, sqlaction.WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Do(); sqlaction.Classify(err) != queue.TaskResultRetryFailure {
		t.Fatalf("timed out run: %v classified %s, want RETRY", err, sqlaction.Classify(err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := slow.DoContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}

func TestConstructorsRefuseBadInput(t *testing.T) {
	db := queuetest.NewDB(t)
	cases := []struct {
		name string
		make func() error
		want string
	}{
		{"nil db", func() error { _, err := sqlaction.New(nil, "SELECT 1"); return err }, "nil *sql.DB"},
		{"empty statement", func() error { _, err := sqlaction.New(db, " "); return err }, "empty statement"},
		{"positional", func() error { _, err := sqlaction.New(db, "SELECT $1"); return err }, "positional placeholders"},
		{"unterminated", func() error { _, err := sqlaction.New(db, "SELECT 'x"); return err }, "unterminated string"},
		{"negative timeout", func() error {
			_, err := sqlaction.New(db, "SELECT 1", sqlaction.WithTimeout(-time.Second))
			return err
		}, "negative timeout"},
		{"negative lock timeout", func() error {
			_, err := sqlaction.New(db, "SELECT 1", sqlaction.WithLockTimeout(-time.Second))
			return err
		}, "negative lock timeout"},
		{"unsupported isolation", func() error {
			_, err := sqlaction.New(db, "SELECT 1", sqlaction.WithIsolation(sql.LevelLinearizable))
			return err
		}, "not supported"},
		{"empty stream", func() error { _, err := sqlaction.NewScheduled(db, "", "SELECT 1"); return err }, "empty stream"},
		{"scheduled with parameters", func() error {
			_, err := sqlaction.NewScheduled(db, "s", "DELETE FROM t WHERE id = :id AND x = :x")
			return err
		}, "names parameters: id, x"},
	}
	for _, tc := range cases {
		err := tc.make()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
