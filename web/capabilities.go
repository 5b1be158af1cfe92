package web

import (
	"context"

	"github.com/esync/queue"
)

// The dashboard shows some things only when something can tell it: a
// process registry, stream controls, schedule specs and their next firings.
// Each is a small interface. The driver provides it when it has the method
// (checked with a type assertion), or an option hands one in; without
// either, the page says the queue does not record it.

// ProcessLister lists the processes running the queue, with heartbeats.
type ProcessLister interface {
	DashboardProcesses(ctx context.Context) ([]queue.DashboardProcess, error)
}

// StreamLister lists the streams of the processes running the queue.
type StreamLister interface {
	DashboardStreams(ctx context.Context) ([]queue.DashboardStream, error)
}

// StreamController pauses and resumes a stream across its processes.
type StreamController interface {
	// PauseStream pauses the stream on every process; by says who did.
	PauseStream(ctx context.Context, stream, by string) error
	// ResumeStream resumes it and reports whether it was paused.
	ResumeStream(ctx context.Context, stream string) (bool, error)
}

// ScheduleLister tells each schedule's spec, last result and next firing.
type ScheduleLister interface {
	DashboardScheduleDetails(ctx context.Context) ([]queue.DashboardSchedule, error)
}

// WithProcesses shows the processes p lists.
func WithProcesses(p ProcessLister) Option { return func(c *config) { c.caps.processes = p } }

// WithStreams shows the streams s lists.
func WithStreams(s StreamLister) Option { return func(c *config) { c.caps.streams = s } }

// WithStreamControl offers pause and resume through s.
func WithStreamControl(s StreamController) Option {
	return func(c *config) { c.caps.streamControl = s }
}

// WithScheduleDetails shows what s tells of each schedule.
func WithScheduleDetails(s ScheduleLister) Option {
	return func(c *config) { c.caps.schedules = s }
}

// capabilities is what the dashboard can show beyond the queue table.
type capabilities struct {
	processes     ProcessLister
	streams       StreamLister
	streamControl StreamController
	schedules     ScheduleLister
}

// fill takes from the driver what the options did not give.
func (c capabilities) fill(driver *queue.PostgresDriver) capabilities {
	var d any = driver
	if c.processes == nil {
		c.processes, _ = d.(ProcessLister)
	}
	if c.streams == nil {
		c.streams, _ = d.(StreamLister)
	}
	if c.streamControl == nil {
		c.streamControl, _ = d.(StreamController)
	}
	if c.schedules == nil {
		c.schedules, _ = d.(ScheduleLister)
	}
	return c
}
