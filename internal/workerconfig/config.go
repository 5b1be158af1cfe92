package workerconfig

import (
	"fmt"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Queue     Queue             `toml:"queue"`
	Worker    Worker            `toml:"worker"`
	Streams   map[string]Stream `toml:"streams"`
	Tasks     map[string]Task   `toml:"tasks"`
	Schedules []Schedule        `toml:"schedules"`

	file    string   // where it was read from, for errors
	src     string   // the file's text, to find lines
	secrets []string // values that came from the environment
}

// Queue says where the queue is. Empty fields leave the choice to the
// command line and the environment.
type Queue struct {
	DSN    string `toml:"dsn"`
	Schema string `toml:"schema"`
	Table  string `toml:"table"`
}

// Worker holds the SyncManager's settings; unset ones keep its defaults.
type Worker struct {
	PollInterval        *Duration `toml:"poll_interval"`
	Lease               *Duration `toml:"lease"`
	ShutdownTimeout     *Duration `toml:"shutdown_timeout"`
	Retention           *Duration `toml:"retention"`
	MaintenanceInterval *Duration `toml:"maintenance_interval"`
	BatchSize           *int      `toml:"batch_size"`
	CancelUnhandled     *bool     `toml:"cancel_unhandled"`
	Listen              *bool     `toml:"listen"`
	// Metrics is the address to serve Prometheus metrics on; empty: none.
	Metrics string `toml:"metrics"`
}

// Stream configures one stream.
type Stream struct {
	Concurrency int  `toml:"concurrency"` // 0 means 1
	Exclusive   bool `toml:"exclusive"`
}

// Task says what runs the tasks of one name, and how.
type Task struct {
	Stream      string    `toml:"stream"`
	Timeout     *Duration `toml:"timeout"`
	MaxAttempts int       `toml:"max_attempts"`
	Retry       *Retry    `toml:"retry"`

	Exec    *Exec    `toml:"exec"`
	Webhook *Webhook `toml:"webhook"`
	SQL     *SQL     `toml:"sql"`
	Email   *Email   `toml:"email"`
	Hooks   *Hooks   `toml:"hooks"`
}

// Retry is the backoff between attempts: exponential (base, max, jitter)
// or constant.
type Retry struct {
	Base     Duration  `toml:"base"`
	Max      Duration  `toml:"max"`
	Jitter   *float64  `toml:"jitter"`
	Constant *Duration `toml:"constant"`
}

// Exec runs a program per task (package execaction).
type Exec struct {
	Program            string            `toml:"program"`
	Args               []string          `toml:"args"`
	Env                map[string]string `toml:"env"`
	PassEnv            []string          `toml:"pass_env"`
	Dir                string            `toml:"dir"`
	Timeout            Duration          `toml:"timeout"`
	KillGrace          Duration          `toml:"kill_grace"`
	PermanentExitCodes []int             `toml:"permanent_exit_codes"`
	OutputLimit        int               `toml:"output_limit"`
}

// Webhook posts each task to a URL (package webhook).
type Webhook struct {
	URL     string   `toml:"url"`
	Secret  string   `toml:"secret"`
	Timeout Duration `toml:"timeout"`
}

// Hooks are lifecycle webhooks called around a task's action.
type Hooks struct {
	Start         string   `toml:"start"`
	Success       string   `toml:"success"`
	Fail          string   `toml:"fail"`
	StrictSuccess bool     `toml:"strict_success"`
	Secret        string   `toml:"secret"`
	Timeout       Duration `toml:"timeout"`
}

// SQL runs a statement per task, or on a schedule (package sqlaction).
type SQL struct {
	Statement   string   `toml:"statement"`
	Database    string   `toml:"database"` // a DSN; empty: the queue's database
	Timeout     Duration `toml:"timeout"`
	LockTimeout Duration `toml:"lock_timeout"`
	Isolation   string   `toml:"isolation"` // read committed, repeatable read, serializable
}

// Email sends each task as an email through SendGrid (package email).
type Email struct {
	APIKey  string   `toml:"api_key"`
	Host    string   `toml:"host"`
	BCC     string   `toml:"bcc"`
	Timeout Duration `toml:"timeout"`
}

// Schedule runs a SQL statement or a program at an interval or on a cron
// spec.
type Schedule struct {
	Name   string   `toml:"name"`
	Stream string   `toml:"stream"`
	Every  Duration `toml:"every"`
	Cron   string   `toml:"cron"`
	SQL    *SQL     `toml:"sql"`
	Exec   *Exec    `toml:"exec"`
}

// Duration is a time.Duration written as a string ("30s", "2m").
type Duration time.Duration

// UnmarshalText parses a duration such as "1m30s".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("not a duration (such as \"30s\" or \"2m\"): %q", text)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
