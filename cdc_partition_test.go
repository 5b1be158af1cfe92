package queue_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// namedTaskRunner is a task runner whose task names start with name, so
// that controllers sharing a database can be drained apart.
func (s cdcSetup) namedTaskRunner(t *testing.T, name, source string, opts ...queue.CDCOption) *queue.CDCRunnerAction {
	t.Helper()
	target := queue.CDCTasks{Create: name + ".create", Update: name + ".update", Delete: name + ".delete", IncludeRow: true}
	r, err := queue.NewCDCRunner(s.d, name, queue.TrackColumns(source), target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// emitted lists "action:object" of the ready tasks a controller emitted,
// sorted, with duplicates kept.
func (s cdcSetup) emitted(t *testing.T, name string) []string {
	t.Helper()
	rows, err := s.db.QueryContext(s.ctx, `SELECT data->>'action' || ':' || (data->>'object_id') FROM message_queue
WHERE created_by = $1 AND state = 'READY' ORDER BY 1`, "cdc:"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// drainNamed runs the ready tasks of a namedTaskRunner through its Wrap.
func (s cdcSetup) drainNamed(t *testing.T, name string, r *queue.CDCRunnerAction) {
	t.Helper()
	sm := queue.NewSyncManager(s.d)
	for _, n := range []string{name + ".create", name + ".update", name + ".delete"} {
		if err := sm.RegisterTaskHandler(r.Wrap(cdcSucceed), n, queue.InStream("crm-"+name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sm.RunUntilIdle(s.ctx); err != nil {
		t.Fatal(err)
	}
}

// partitionOf returns the partition (of n) of each customer id, as the
// runner splits them.
func (s cdcSetup) partitionOf(t *testing.T, n int) map[int]int {
	t.Helper()
	rows, err := s.db.QueryContext(s.ctx, `SELECT id, hashtext(id::text) & $1 FROM customer`, n-1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var id, p int
		if err := rows.Scan(&id, &p); err != nil {
			t.Fatal(err)
		}
		out[id] = p
	}
	return out
}

func TestCDCPartitionsOptionIsValidated(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	for _, n := range []int{0, -1, 3, 32} {
		_, err := queue.NewCDCRunner(s.d, "customers", queue.TrackColumns(customerSource), cdcTaskNames, queue.WithCDCPartitions(n))
		if err == nil || !strings.Contains(err.Error(), "partitions") {
			t.Errorf("WithCDCPartitions(%d): err %v, want one naming partitions", n, err)
		}
	}
}

// Every partition count emits the same changes, each object once: every
// slot holds objects, and creates, updates and deletes of all of them are
// seen.
func TestCDCPartitionsSeeEveryObjectOnce(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, g || '@x', g / 3.0, NULL FROM generate_series(1, 600) g`)
	var slots int
	if err := s.db.QueryRowContext(s.ctx, `SELECT count(DISTINCT hashtext(id::text) & 15) FROM customer`).Scan(&slots); err != nil || slots != 16 {
		t.Fatalf("the test's objects fill %d of 16 slots (%v)", slots, err)
	}
	counts := []int{1, 2, 4, 8, 16}
	runners := map[int]*queue.CDCRunnerAction{}
	name := func(n int) string { return fmt.Sprintf("p%d", n) }
	for _, n := range counts {
		runners[n] = s.namedTaskRunner(t, name(n), customerSource, queue.WithCDCPartitions(n))
	}
	var want []string
	for i := 1; i <= 600; i++ {
		want = append(want, fmt.Sprintf("create:%d", i))
	}
	sort.Strings(want)
	for _, n := range counts {
		if got := s.run(t, runners[n]); got != 600 {
			t.Fatalf("%d partitions: first run emitted %d, want 600", n, got)
		}
		if got := s.emitted(t, name(n)); !equalStrings(got, want) {
			t.Fatalf("%d partitions: first run emitted %d tasks, want each of the 600 objects once", n, len(got))
		}
		s.drainNamed(t, name(n), runners[n])
	}

	s.exec(t, `UPDATE customer SET name = name || '!' WHERE id % 50 = 0`)
	s.exec(t, `DELETE FROM customer WHERE id % 97 = 0`)
	s.exec(t, `INSERT INTO customer SELECT g, 'n' || g, NULL, NULL, NULL FROM generate_series(601, 620) g`)
	want = nil
	for i := 50; i <= 600; i += 50 {
		want = append(want, fmt.Sprintf("update:%d", i))
	}
	for i := 97; i <= 600; i += 97 {
		want = append(want, fmt.Sprintf("delete:%d", i))
	}
	for i := 601; i <= 620; i++ {
		want = append(want, fmt.Sprintf("create:%d", i))
	}
	sort.Strings(want)
	for _, n := range counts {
		if got := s.run(t, runners[n]); got != len(want) {
			t.Fatalf("%d partitions: second run emitted %d, want %d", n, got, len(want))
		}
		if got := s.emitted(t, name(n)); !equalStrings(got, want) {
			t.Fatalf("%d partitions: second run emitted %v, want %v", n, got, want)
		}
		if got := s.run(t, runners[n]); got != 0 {
			t.Fatalf("%d partitions: a run with the changes pending emitted %d, want 0", n, got)
		}
	}
}

// Runs of one controller with different partition counts, at the same
// time, emit each object once: the slot locks keep them apart.
func TestCDCPartitionedRunnersEmitOnce(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(1, 2000) g`)
	counts := []int{1, 2, 4, 16, 2, 8}
	for round, want := range []int{2000, 200} {
		if round == 1 {
			s.exec(t, `UPDATE customer SET name = name || '!' WHERE id % 10 = 0`)
		}
		var wg sync.WaitGroup
		emitted := make([]int, len(counts))
		for i, n := range counts {
			r := s.taskRunner(t, "customers", customerSource, queue.WithCDCPartitions(n))
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := r.Run(s.ctx)
				if err != nil {
					t.Error(err)
				}
				emitted[i] = got
			}()
		}
		wg.Wait()
		total := 0
		for _, n := range emitted {
			total += n
		}
		if total != want {
			t.Fatalf("round %d: concurrent runs with %v partitions emitted %v = %d in all, want %d", round, counts, emitted, total, want)
		}
		var tasks, keys int
		if err := s.db.QueryRowContext(s.ctx, `SELECT count(*), count(DISTINCT task_key) FROM message_queue WHERE state = 'READY'`).Scan(&tasks, &keys); err != nil {
			t.Fatal(err)
		}
		if tasks != want || keys != want {
			t.Fatalf("round %d: %d ready tasks on %d keys, want %d on %d", round, tasks, keys, want, want)
		}
		s.exec(t, `UPDATE message_queue SET state = 'DONE' WHERE state = 'READY'`)
	}
}

// A partition that fails rolls back alone: the other partitions' changes
// stay emitted (once), and the next run emits the failed partition's.
func TestCDCPartitionFailureRollsBackAlone(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(1, 200) g`)
	s.exec(t, `CREATE TABLE fault (fail bool NOT NULL)`)
	s.exec(t, `INSERT INTO fault VALUES (true)`)
	// The tracked column of customer 7 divides by zero while fault.fail.
	const source = `SELECT c.id AS object_id, c.name,
	CASE WHEN c.id = 7 THEN 1 / (SELECT CASE WHEN f.fail THEN 0 ELSE 1 END FROM fault f) END AS boom FROM customer c`
	r := s.taskRunner(t, "customers", source, queue.WithCDCPartitions(4))
	part := s.partitionOf(t, 4)
	inFailed := 0
	for _, p := range part {
		if p == part[7] {
			inFailed++
		}
	}
	n, err := r.Run(s.ctx)
	if err == nil || !strings.Contains(err.Error(), "division by zero") || !strings.Contains(err.Error(), fmt.Sprintf("partition %d of 4", part[7])) {
		t.Fatalf("run with a failing partition: err %v, want division by zero in partition %d of 4", err, part[7])
	}
	if n != 200-inFailed {
		t.Fatalf("run with a failing partition emitted %d, want the other partitions' %d", n, 200-inFailed)
	}
	for _, a := range s.pendingActions(t) {
		var id int
		fmt.Sscanf(a, "create:%d", &id)
		if part[id] == part[7] {
			t.Fatalf("%s of the failed partition was emitted", a)
		}
	}
	s.exec(t, `UPDATE fault SET fail = false`)
	if n := s.run(t, r); n != inFailed {
		t.Fatalf("next run emitted %d, want the failed partition's %d", n, inFailed)
	}
	var tasks, keys int
	if err := s.db.QueryRowContext(s.ctx, `SELECT count(*), count(DISTINCT task_key) FROM message_queue`).Scan(&tasks, &keys); err != nil || tasks != 200 || keys != 200 {
		t.Fatalf("%d tasks on %d keys (%v), want each of 200 objects once", tasks, keys, err)
	}
}

// A change committed while a partitioned diff runs is not lost: a partition
// that takes its snapshot after the change emits it, and one whose snapshot
// came before leaves it to the next run, which emits it once.
func TestCDCPartitionedDiffKeepsConcurrentChanges(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(1, 100) g`)
	r := s.taskRunner(t, "customers", customerSource, queue.WithCDCPartitions(2))
	if n := s.run(t, r); n != 100 {
		t.Fatalf("first run emitted %d, want 100", n)
	}
	s.drain(t, r, cdcSucceed)
	part := s.partitionOf(t, 2)
	var p0, p1 []int64 // ids of partition 0 and of slot 1 (in partition 1)
	for id := 1; id <= 100; id++ {
		if part[id] == 0 {
			p0 = append(p0, int64(id))
		}
	}
	if err := s.db.QueryRowContext(s.ctx, `SELECT array_agg(id ORDER BY id) FROM customer WHERE hashtext(id::text) & 15 = 1`).Scan(pq.Array(&p1)); err != nil || len(p1) < 2 || len(p0) < 2 {
		t.Fatalf("ids of partition 0 %v, of slot 1 %v (%v): the test needs two of each", p0, p1, err)
	}
	a0, b0, a1, b1 := p0[0], p0[1], p1[0], p1[1]
	s.exec(t, `UPDATE customer SET name = 'before' WHERE id IN ($1, $2)`, a0, a1)

	// Hold slot 1's lock: partition 1 waits for it, partition 0 runs.
	hold, err := s.db.BeginTx(s.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback()
	if _, err := hold.ExecContext(s.ctx, `SELECT pg_advisory_xact_lock(hashtextextended('esync-cdc:' || $1::text || ':slot:1', 0))`, r.ControllerID()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.Run(s.ctx)
		done <- result{n, err}
	}()
	eventually(t, 30*time.Second, "partition 0 emitted and partition 1 waits for its slot", func() bool {
		var emitted, waiting int
		s.db.QueryRowContext(s.ctx, `SELECT (SELECT count(*) FROM message_queue WHERE state = 'READY'),
	(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&emitted, &waiting)
		return emitted == 1 && waiting == 1
	})
	// Changes committed now: partition 0 has taken its snapshot, partition
	// 1 has not.
	s.exec(t, `UPDATE customer SET name = 'during' WHERE id IN ($1, $2, $3)`, b0, a1, b1)
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.n != 3 {
		t.Fatalf("partitioned run: %d emitted (%v), want 3: %d, then %d and %d at their newest", res.n, res.err, a0, a1, b1)
	}
	want := []string{fmt.Sprintf("update:%d:before", a0), fmt.Sprintf("update:%d:during", a1), fmt.Sprintf("update:%d:during", b1)}
	if got := s.emittedRows(t); !equalStrings(got, sorted(want)) {
		t.Fatalf("partitioned run emitted %v, want %v", got, sorted(want))
	}
	s.drain(t, r, cdcSucceed)
	if n := s.run(t, r); n != 1 {
		t.Fatalf("next run emitted %d, want 1: %d, changed after partition 0's snapshot", n, b0)
	}
	if got, want := s.emittedRows(t), []string{fmt.Sprintf("update:%d:during", b0)}; !equalStrings(got, want) {
		t.Fatalf("next run emitted %v, want %v", got, want)
	}
}

// emittedRows lists "action:object:name" of the ready tasks, sorted.
func (s cdcSetup) emittedRows(t *testing.T) []string {
	t.Helper()
	rows, err := s.db.QueryContext(s.ctx, `SELECT data->>'action' || ':' || (data->>'object_id') || ':' || (data->'row'->>'name')
FROM message_queue WHERE state = 'READY' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func sorted(a []string) []string {
	out := append([]string(nil), a...)
	sort.Strings(out)
	return out
}

// An emission not confirmed within the pending timeout is emitted again,
// once per run; a fresh one is not. An object whose create is pending and
// that leaves the source is deleted, stale or not.
func TestCDCStalePendingIsEmittedAgain(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(1, 20) g`)
	for _, parts := range []int{1, 2} {
		name := fmt.Sprintf("stale%d", parts)
		r := s.namedTaskRunner(t, name, customerSource, queue.WithCDCPendingTimeout(time.Minute), queue.WithCDCPartitions(parts))
		if n := s.run(t, r); n != 20 {
			t.Fatalf("%d partitions: first run emitted %d, want 20", parts, n)
		}
		if n := s.run(t, r); n != 0 {
			t.Fatalf("%d partitions: a run with fresh pending emissions emitted %d, want 0", parts, n)
		}
		s.exec(t, `UPDATE cdc_hash SET pending_at = now() - interval '2 minutes' WHERE cdc_controller_id = $1 AND object_id::int <= 5`, r.ControllerID())
		if n := s.run(t, r); n != 5 {
			t.Fatalf("%d partitions: a run with 5 stale emissions emitted %d, want 5", parts, n)
		}
		if n := s.run(t, r); n != 0 {
			t.Fatalf("%d partitions: the run after re-emitting emitted %d, want 0", parts, n)
		}
	}
	s.exec(t, `DELETE FROM customer WHERE id IN (1, 20)`)
	s.exec(t, `UPDATE cdc_hash SET pending_at = now() - interval '2 minutes' WHERE object_id = '20'`)
	for _, parts := range []int{1, 2} {
		name := fmt.Sprintf("stale%d", parts)
		r := s.namedTaskRunner(t, name, customerSource, queue.WithCDCPendingTimeout(time.Minute), queue.WithCDCPartitions(parts))
		s.exec(t, `UPDATE message_queue SET state = 'DONE' WHERE created_by = $1`, "cdc:"+name)
		if n := s.run(t, r); n != 2 {
			t.Fatalf("%d partitions: after two objects with pending creates left the source (one stale), the run emitted %d, want 2", parts, n)
		}
		if got, want := s.emitted(t, name), []string{"delete:1", "delete:20"}; !equalStrings(got, want) {
			t.Fatalf("%d partitions: emitted %v, want %v", parts, got, want)
		}
	}
}
