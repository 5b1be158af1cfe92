package workerconfig

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/email"
	execaction "github.com/esync/queue/actions/exec"
	sqlaction "github.com/esync/queue/actions/sql"
	"github.com/esync/queue/actions/webhook"
)

// Options adjust what Register builds.
type Options struct {
	// NoRetry gives every task one attempt: a failed run is FAILED.
	NoRetry bool
	// NoSchedules leaves the schedules out (a worker that runs until idle).
	NoSchedules bool
	// DB is the queue's database, used by sql actions that name no
	// database of their own.
	DB *sql.DB
	// OpenDB opens the database of a sql action that names one; default
	// sql.Open("postgres", dsn).
	OpenDB func(dsn string) (*sql.DB, error)
}

// ManagerOptions returns the SyncManager settings of the [worker] table.
func (c *Config) ManagerOptions() []queue.ManagerOption {
	w := c.Worker
	var opts []queue.ManagerOption
	if w.PollInterval != nil {
		opts = append(opts, queue.WithPollInterval(w.PollInterval.D()))
	}
	if w.Lease != nil {
		opts = append(opts, queue.WithLease(w.Lease.D()))
	}
	if w.ShutdownTimeout != nil {
		opts = append(opts, queue.WithStopTimeout(w.ShutdownTimeout.D()))
	}
	if w.Retention != nil {
		opts = append(opts, queue.WithRetention(w.Retention.D()))
	}
	if w.MaintenanceInterval != nil {
		opts = append(opts, queue.WithMaintenanceInterval(w.MaintenanceInterval.D()))
	}
	if w.BatchSize != nil {
		opts = append(opts, queue.WithBatchSize(*w.BatchSize))
	}
	if w.CancelUnhandled != nil {
		opts = append(opts, queue.WithCancelUnhandled(*w.CancelUnhandled))
	}
	if w.Listen != nil {
		opts = append(opts, queue.WithListen(*w.Listen))
	}
	return opts
}

// TaskNames returns the configured task names, sorted.
func (c *Config) TaskNames() []string { return sortedKeys(c.Tasks) }

// Register builds every configured action and registers the tasks,
// streams and schedules with sm (not started yet). The returned function
// closes the databases that sql actions opened; call it after the manager
// stopped. An action that refuses its settings is reported with the
// task's field and line.
func (c *Config) Register(sm *queue.SyncManager, o Options) (closeDBs func() error, err error) {
	b := &builder{c: c, o: o, dbs: map[string]*sql.DB{}}
	if b.o.OpenDB == nil {
		b.o.OpenDB = func(dsn string) (*sql.DB, error) { return sql.Open("postgres", dsn) }
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	var problems []error
	for _, name := range sortedKeys(c.Streams) {
		s := c.Streams[name]
		var opts []queue.StreamOption
		if s.Concurrency > 0 {
			opts = append(opts, queue.WithConcurrency(s.Concurrency))
		}
		if s.Exclusive {
			opts = append(opts, queue.Exclusive())
		}
		if err := sm.ConfigureStream(name, opts...); err != nil {
			problems = append(problems, c.errorAt(key("streams", name), "%v", err))
		}
	}
	for _, name := range sortedKeys(c.Tasks) {
		if err := b.registerTask(sm, name, c.Tasks[name]); err != nil {
			problems = append(problems, err)
		}
	}
	for i := range c.Schedules {
		if o.NoSchedules {
			break
		}
		if err := b.registerSchedule(sm, i); err != nil {
			problems = append(problems, err)
		}
	}
	if err := joinProblems(problems); err != nil {
		return nil, err
	}
	return b.close, nil
}

// Check builds every action and registers everything with a manager that
// is never started, without connecting to any database: what
// `esync worker --check` does after Parse.
func (c *Config) Check() error {
	placeholder, err := sql.Open("postgres", "")
	if err != nil {
		return err
	}
	defer placeholder.Close()
	closeDBs, err := c.Register(queue.NewSyncManager(nil), Options{DB: placeholder,
		OpenDB: func(string) (*sql.DB, error) { return sql.Open("postgres", "") }})
	if err != nil {
		return err
	}
	return closeDBs()
}

// builder builds the actions of one Register call.
type builder struct {
	c   *Config
	o   Options
	dbs map[string]*sql.DB // opened for sql actions, by DSN
}

func (b *builder) close() error {
	var errs []error
	for _, db := range b.dbs {
		errs = append(errs, db.Close())
	}
	b.dbs = map[string]*sql.DB{}
	return errors.Join(errs...)
}

func (b *builder) registerTask(sm *queue.SyncManager, name string, t Task) error {
	tk := key("tasks", name)
	action, field, err := b.taskAction(t)
	if err != nil {
		return b.c.errorAt(with(tk, field), "%v", err)
	}
	var opts []queue.TaskOption
	if t.Stream != "" {
		opts = append(opts, queue.InStream(t.Stream))
	}
	if t.Timeout != nil {
		opts = append(opts, queue.WithTimeout(t.Timeout.D()))
	}
	switch {
	case b.o.NoRetry:
		opts = append(opts, queue.WithTaskMaxAttempts(1))
	case t.MaxAttempts > 0:
		opts = append(opts, queue.WithTaskMaxAttempts(t.MaxAttempts))
	}
	if r := t.Retry; r != nil {
		opts = append(opts, queue.WithRetryPolicy(r.policy()))
	}
	if h := t.Hooks; h != nil {
		mw, err := webhook.Lifecycle(webhook.Hooks{Start: h.Start, Success: h.Success, Fail: h.Fail, StrictSuccess: h.StrictSuccess},
			webhookOptions(h.Secret, h.Timeout)...)
		if err != nil {
			return b.c.errorAt(with(tk, "hooks"), "%v", err)
		}
		opts = append(opts, queue.WithTaskMiddleware(mw))
	}
	if err := sm.RegisterTaskHandler(action, name, opts...); err != nil {
		return b.c.errorAt(tk, "%v", err)
	}
	return nil
}

// taskAction builds the one action of t and names its field.
func (b *builder) taskAction(t Task) (queue.TaskAction, string, error) {
	switch {
	case t.Exec != nil:
		a, err := execaction.New(t.Exec.config())
		return a, "exec", err
	case t.Webhook != nil:
		a, err := webhook.New(t.Webhook.URL, webhookOptions(t.Webhook.Secret, t.Webhook.Timeout)...)
		return a, "webhook", err
	case t.SQL != nil:
		db, opts, err := b.sqlSetup(t.SQL)
		if err != nil {
			return nil, "sql", err
		}
		a, err := sqlaction.New(db, t.SQL.Statement, opts...)
		return a, "sql", err
	case t.Email != nil:
		a, err := email.New(t.Email.APIKey, t.Email.options()...)
		return a, "email", err
	}
	return nil, "", errors.New("no action")
}

func (b *builder) registerSchedule(sm *queue.SyncManager, i int) error {
	s := b.c.Schedules[i]
	var action queue.ScheduledAction
	field := "sql"
	if s.SQL != nil {
		db, opts, err := b.sqlSetup(s.SQL)
		if err == nil {
			action, err = sqlaction.NewScheduled(db, s.Stream, s.SQL.Statement, opts...)
		}
		if err != nil {
			return b.c.scheduleErrorAt(i, key(field), "%v", err)
		}
	} else {
		field = "exec"
		a, err := execaction.New(s.Exec.config())
		if err != nil {
			return b.c.scheduleErrorAt(i, key(field), "%v", err)
		}
		action = &scheduledExec{name: s.Name, stream: s.Stream, action: a}
	}
	var err error
	if s.Cron != "" {
		err = sm.ScheduleCron(action, s.Cron, queue.ScheduleName(s.Name))
	} else {
		err = sm.Schedule(action, s.Every.D(), queue.ScheduleName(s.Name))
	}
	if err != nil {
		return b.c.scheduleErrorAt(i, nil, "%v", err)
	}
	return nil
}

// sqlSetup picks the database of a sql action and its options.
func (b *builder) sqlSetup(s *SQL) (*sql.DB, []sqlaction.Option, error) {
	var opts []sqlaction.Option
	if s.Timeout != 0 {
		opts = append(opts, sqlaction.WithTimeout(s.Timeout.D()))
	}
	if s.LockTimeout != 0 {
		opts = append(opts, sqlaction.WithLockTimeout(s.LockTimeout.D()))
	}
	if s.Isolation != "" {
		level, ok := map[string]sql.IsolationLevel{
			"read committed":  sql.LevelReadCommitted,
			"repeatable read": sql.LevelRepeatableRead,
			"serializable":    sql.LevelSerializable,
		}[strings.ToLower(strings.TrimSpace(s.Isolation))]
		if !ok {
			return nil, nil, fmt.Errorf("isolation %q: want read committed, repeatable read or serializable", s.Isolation)
		}
		opts = append(opts, sqlaction.WithIsolation(level))
	}
	if s.Database == "" {
		if b.o.DB == nil {
			return nil, nil, errors.New("no database: the queue's database is not available")
		}
		return b.o.DB, opts, nil
	}
	if db, ok := b.dbs[s.Database]; ok {
		return db, opts, nil
	}
	db, err := b.o.OpenDB(s.Database)
	if err != nil {
		// The DSN may hold a password: never quote it.
		return nil, nil, errors.New("database: the connection string cannot be used (not shown: it may hold a password)")
	}
	b.dbs[s.Database] = db
	return db, opts, nil
}

// policy turns the retry table into a RetryPolicy.
func (r *Retry) policy() queue.RetryPolicy {
	if r.Constant != nil {
		return queue.ConstantBackoff(r.Constant.D())
	}
	p := queue.ExponentialBackoff{Base: r.Base.D(), Max: r.Max.D(), Jitter: 0.2}
	if r.Jitter != nil {
		p.Jitter = *r.Jitter
	}
	return p
}

func (e *Exec) config() execaction.Config {
	return execaction.Config{
		Program:            e.Program,
		Args:               e.Args,
		Env:                e.Env,
		PassEnv:            e.PassEnv,
		Dir:                e.Dir,
		Timeout:            e.Timeout.D(),
		KillGrace:          e.KillGrace.D(),
		PermanentExitCodes: e.PermanentExitCodes,
		OutputLimit:        e.OutputLimit,
	}
}

func (e *Email) options() []email.Option {
	var opts []email.Option
	if e.Host != "" {
		opts = append(opts, email.WithHost(e.Host))
	}
	if e.BCC != "" {
		opts = append(opts, email.WithBCC(e.BCC))
	}
	if e.Timeout != 0 {
		opts = append(opts, email.WithTimeout(e.Timeout.D()))
	}
	return opts
}

func webhookOptions(secret string, timeout Duration) []webhook.Option {
	var opts []webhook.Option
	if secret != "" {
		opts = append(opts, webhook.WithSecret(secret))
	}
	if timeout != 0 {
		opts = append(opts, webhook.WithTimeout(timeout.D()))
	}
	return opts
}

// scheduledExec runs an exec action on a schedule, as a task without data.
type scheduledExec struct {
	name, stream string
	action       *execaction.Action
}

// Stream implements queue.ScheduledAction.
func (s *scheduledExec) Stream() string { return s.stream }

// Do implements queue.ScheduledAction.
func (s *scheduledExec) Do() error { return s.DoContext(context.Background()) }

// DoContext runs the program once; a run that does not succeed is an
// error with the program's exit status and output.
func (s *scheduledExec) DoContext(ctx context.Context) error {
	task := queue.Task{Name: s.name, Key: "schedule:" + s.name, Created: time.Now(), Attempt: 1, RawData: []byte("{}")}
	res, msg := s.action.Do(task.WithContext(ctx))
	if res == queue.TaskResultSuccess {
		return nil
	}
	return fmt.Errorf("%s: %s", res, msg)
}
