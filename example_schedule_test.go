package queue_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/esync/queue"
)

// nightlyReport is a scheduled action with a context: it learns which
// firing it runs from FiringFrom.
type nightlyReport struct{ ran chan queue.Firing }

func (n nightlyReport) Stream() string { return "reports" }
func (n nightlyReport) DoContext(ctx context.Context) error {
	f, _ := queue.FiringFrom(ctx)
	n.ran <- f
	return nil
}

// A cron schedule on weekdays at 09:00 in Berlin, each firing run once
// across the processes sharing the queue. A fake clock (WithScheduleClock)
// stands in for the days between firings; a real deployment leaves it out.
func ExampleSyncManager_ScheduleCronContext() {
	ctx := context.Background()
	driver, done := exampleDriver(ctx)
	defer done()

	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		log.Fatal(err)
	}
	friday := time.Date(2026, 1, 9, 8, 0, 0, 0, berlin)
	clock := clockwork.NewFakeClockAt(friday)
	sm := queue.NewSyncManager(driver, queue.WithScheduleClock(clock))
	act := nightlyReport{ran: make(chan queue.Firing)}
	err = sm.ScheduleCronContext(act, "0 9 * * 1-5",
		queue.ScheduleName("morning-report"),
		queue.ScheduleTimeZone(berlin),
		queue.ScheduleTimeout(30*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	if err := sm.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer sm.Stop()
	// Friday 09:00, then the weekend passes without a firing.
	for _, at := range []time.Time{friday.Add(time.Hour), friday.Add(73 * time.Hour)} {
		clock.BlockUntilContext(ctx, 1) // the next firing's timer is set
		clock.Advance(at.Sub(clock.Now()))
		f := <-act.ran
		fmt.Println(f.Schedule, f.At.In(berlin).Format("Mon 2006-01-02 15:04 MST"))
	}
	// Output:
	// morning-report Fri 2026-01-09 09:00 CET
	// morning-report Mon 2026-01-12 09:00 CET
}

// Every SyncManager registers itself beside the queue; ListProcesses shows
// the fleet, live processes first.
func ExampleTaskManager_ListProcesses() {
	ctx := context.Background()
	driver, done := exampleDriver(ctx)
	defer done()

	sm := queue.NewSyncManager(driver)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	}), "crm.update", queue.InStream("crm"))
	if err := sm.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer sm.Stop()

	ps, err := queue.NewTaskManager(driver).ListProcesses(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range ps {
		fmt.Println("live:", p.Live, "names:", p.TaskNames, "streams:", p.Streams)
	}
	// Output:
	// live: true names: [crm.update] streams: [crm]
}
