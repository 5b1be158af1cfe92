package web

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/esync/queue"
)

// overviewData is the overview page.
type overviewData struct {
	Names       []nameCounts
	Totals      map[string]int
	Chart       template.HTML
	DoneHour    int
	FailedHour  int
	Uncounted   int // minutes of the hour not counted yet
	OldestDue   time.Duration
	OldestID    int64
	HasDue      bool
	Processes   []queue.DashboardProcess
	HasRegistry bool
}

// nameCounts is one row of the counts table.
type nameCounts struct {
	Name   string
	Counts map[queue.TaskState]int
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	counts, err := d.driver.DashboardCounts(ctx)
	if err != nil {
		d.failRead(w, r, "task counts", err)
		return
	}
	hour, err := d.finished.lastHour(ctx, d.driver)
	if err != nil {
		d.failRead(w, r, "finished tasks", err)
		return
	}
	data := overviewData{Totals: map[string]int{}}
	byName := map[string]map[queue.TaskState]int{}
	add := func(name string, state queue.TaskState, n int) {
		if byName[name] == nil {
			byName[name] = map[queue.TaskState]int{}
		}
		byName[name][state] += n
		data.Totals[string(state)] += n
	}
	for _, c := range counts {
		add(c.Name, c.State, c.Count)
	}
	for _, c := range hour.counts {
		switch c.State {
		case queue.TaskDone, queue.TaskSuperseded:
			add(c.Name, c.State, c.Count)
		}
		switch c.State {
		case queue.TaskDone:
			data.DoneHour += c.Count
		case queue.TaskFailed:
			data.FailedHour += c.Count
		}
	}
	for name, m := range byName {
		data.Names = append(data.Names, nameCounts{name, m})
	}
	sort.Slice(data.Names, func(i, j int) bool { return data.Names[i].Name < data.Names[j].Name })
	data.Chart = throughputChart(hour)
	data.Uncounted = len(hour.unknown)
	data.OldestID, data.OldestDue, data.HasDue, err = d.driver.DashboardOldestDue(ctx)
	if err != nil {
		d.failRead(w, r, "the oldest due task", err)
		return
	}
	if d.cfg.caps.processes != nil {
		data.HasRegistry = true
		if data.Processes, err = d.cfg.caps.processes.DashboardProcesses(ctx); err != nil {
			d.failRead(w, r, "processes", err)
			return
		}
	}
	d.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Refresh: true, Data: data})
}

// tasksData is the tasks page.
type tasksData struct {
	Filter     taskFilter
	Query      url.Values // the filter, for links
	Page       queue.TaskPage
	Next       url.Values // the next page's query, nil when there is none
	First      bool       // this is the first page
	RetryQuery url.Values
	CancelQ    url.Values
}

func (d *dashboard) tasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, "Bad filter: "+err.Error()+".")
		return
	}
	if s := q.Get("before_id"); s != "" {
		if f.Filter.BeforeID, err = parseID(s); err != nil {
			d.fail(w, r, http.StatusBadRequest, "Bad page cursor: "+err.Error()+".")
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > queue.MaxDashboardPageSize {
			d.fail(w, r, http.StatusBadRequest, "Bad page size: give 1 to "+strconv.Itoa(queue.MaxDashboardPageSize)+".")
			return
		}
		f.Filter.Limit = n
	}
	p, err := d.driver.DashboardListTasks(r.Context(), f.Filter)
	if errors.Is(err, queue.ErrInvalidFilter) {
		d.fail(w, r, http.StatusBadRequest, "Bad filter: "+err.Error()+".")
		return
	}
	if err != nil {
		d.failRead(w, r, "tasks", err)
		return
	}
	data := tasksData{Filter: f, Query: f.values(), Page: p, First: f.Filter.BeforeID == 0}
	if p.NextBeforeID != 0 {
		data.Next = f.values()
		data.Next.Set("before_id", strconv.FormatInt(p.NextBeforeID, 10))
		if f.Filter.Limit != 0 {
			data.Next.Set("limit", strconv.Itoa(f.Filter.Limit))
		}
	}
	data.RetryQuery, data.CancelQ = f.values(), f.values()
	data.RetryQuery.Set("action", string(queue.BulkRetry))
	data.CancelQ.Set("action", string(queue.BulkCancel))
	d.render(w, r, http.StatusOK, "tasks", page{Title: "Tasks", Nav: "tasks", Refresh: data.First, Data: data})
}

// taskData is a task's detail page.
type taskData struct {
	Task     queue.Task
	Lease    queue.Lease
	HasLease bool
	Chain    queue.SupersedeChain
	CanRetry bool
	CanStop  bool
}

func (d *dashboard) taskDetail(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, err.Error()+".")
		return
	}
	ctx := r.Context()
	t, err := d.driver.GetTask(ctx, id)
	if errors.Is(err, queue.ErrTaskNotFound) {
		d.fail(w, r, http.StatusNotFound, "There is no task "+strconv.FormatInt(id, 10)+" (it may have been removed by retention).")
		return
	}
	if err != nil {
		d.failRead(w, r, "the task", err)
		return
	}
	data := taskData{Task: t,
		CanRetry: t.State == queue.TaskFailed || t.State == queue.TaskCancelled,
		CanStop:  t.State == queue.TaskReady || t.State == queue.TaskRetry}
	if data.Lease, data.HasLease, err = d.driver.DashboardLease(ctx, id); err != nil && !errors.Is(err, queue.ErrTaskNotFound) {
		d.failRead(w, r, "the task's lease", err)
		return
	}
	if data.Chain, err = d.driver.DashboardSupersedeChain(ctx, t); err != nil {
		d.failRead(w, r, "the supersede chain", err)
		return
	}
	d.render(w, r, http.StatusOK, "task", page{Title: "Task " + strconv.FormatInt(id, 10), Nav: "tasks", Data: data})
}

// bulkData is the confirmation page of a bulk action.
type bulkData struct {
	Filter  taskFilter
	Preview queue.BulkPreview
	Fields  url.Values // the filter, as hidden fields
}

func (d *dashboard) bulkPreview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, "Bad filter: "+err.Error()+".")
		return
	}
	action := queue.BulkAction(q.Get("action"))
	if action != queue.BulkRetry && action != queue.BulkCancel {
		d.fail(w, r, http.StatusBadRequest, "Bad bulk action: give retry or cancel.")
		return
	}
	p, err := d.driver.DashboardBulkPreview(r.Context(), action, f.Filter)
	if errors.Is(err, queue.ErrInvalidFilter) {
		d.fail(w, r, http.StatusBadRequest, "Bad filter: "+err.Error()+".")
		return
	}
	if err != nil {
		d.failRead(w, r, "the tasks to change", err)
		return
	}
	d.render(w, r, http.StatusOK, "bulk", page{Title: "Confirm bulk " + string(action), Nav: "tasks",
		Data: bulkData{Filter: f, Preview: p, Fields: f.values()}})
}

// streamsData is the streams page.
type streamsData struct {
	Streams     []queue.DashboardStream
	HasStreams  bool
	CanControl  bool
	RunningName map[string]int
}

func (d *dashboard) streams(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var data streamsData
	var err error
	if data.RunningName, err = d.driver.DashboardRunningByName(ctx); err != nil {
		d.failRead(w, r, "running tasks", err)
		return
	}
	if d.cfg.caps.streams != nil {
		data.HasStreams = true
		if data.Streams, err = d.cfg.caps.streams.DashboardStreams(ctx); err != nil {
			d.failRead(w, r, "streams", err)
			return
		}
	}
	data.CanControl = d.cfg.caps.streamControl != nil
	d.render(w, r, http.StatusOK, "streams", page{Title: "Streams", Nav: "streams", Refresh: true, Data: data})
}

// schedulesData is the schedules page.
type schedulesData struct {
	Runs       []queue.DashboardScheduleRun
	Details    map[string]queue.DashboardSchedule
	HasDetails bool
}

func (d *dashboard) schedules(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	runs, err := d.driver.DashboardSchedules(ctx)
	if err != nil {
		d.failRead(w, r, "schedules", err)
		return
	}
	data := schedulesData{Runs: runs, Details: map[string]queue.DashboardSchedule{}}
	if d.cfg.caps.schedules != nil {
		data.HasDetails = true
		details, err := d.cfg.caps.schedules.DashboardScheduleDetails(ctx)
		if err != nil {
			d.failRead(w, r, "schedule details", err)
			return
		}
		seen := map[string]bool{}
		for _, s := range runs {
			seen[s.Name] = true
		}
		for _, s := range details {
			data.Details[s.Name] = s
			if !seen[s.Name] {
				data.Runs = append(data.Runs, queue.DashboardScheduleRun{Name: s.Name})
			}
		}
		sort.Slice(data.Runs, func(i, j int) bool { return data.Runs[i].Name < data.Runs[j].Name })
	}
	d.render(w, r, http.StatusOK, "schedules", page{Title: "Schedules", Nav: "schedules", Refresh: true, Data: data})
}

func (d *dashboard) cdc(w http.ResponseWriter, r *http.Request) {
	controllers, err := d.driver.DashboardCDCControllers(r.Context())
	if err != nil {
		d.failRead(w, r, "CDC controllers", err)
		return
	}
	d.render(w, r, http.StatusOK, "cdc", page{Title: "CDC controllers", Nav: "cdc", Refresh: true, Data: controllers})
}

// processesData is the processes page.
type processesData struct {
	Processes   []queue.DashboardProcess
	HasRegistry bool
}

func (d *dashboard) processes(w http.ResponseWriter, r *http.Request) {
	var data processesData
	if d.cfg.caps.processes != nil {
		data.HasRegistry = true
		var err error
		if data.Processes, err = d.cfg.caps.processes.DashboardProcesses(r.Context()); err != nil {
			d.failRead(w, r, "processes", err)
			return
		}
	}
	d.render(w, r, http.StatusOK, "processes", page{Title: "Processes", Nav: "processes", Refresh: true, Data: data})
}
