package queue

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/go-multierror"
)

// CDCAction is what should happen downstream to an object.
type CDCAction string

// The CDC actions.
const (
	// CDCActionCreate means a new record should be created.
	CDCActionCreate CDCAction = "create"
	// CDCActionUpdate means an existing record should be updated.
	CDCActionUpdate CDCAction = "update"
	// CDCActionDelete means an existing record should be removed.
	CDCActionDelete CDCAction = "delete"
)

// CDCObjectAction is one change: an object, what to do with it, the hash it
// will be synced at, and (when asked) its source row as JSON.
type CDCObjectAction struct {
	ObjectID string
	Action   CDCAction
	Hash     string
	Row      json.RawMessage
}

// CDCFunc applies one change downstream. An error leaves the object
// unsynced: it is emitted again on the next run.
type CDCFunc func(obj CDCObjectAction) error

// CDCSource is the query a controller tracks. Build it with TrackColumns or
// ReadyHash.
type CDCSource struct {
	query     string
	readyHash bool
}

// TrackColumns tracks a query that yields object_id and the columns to
// track; esync hashes the columns (typed, NULL-safe, independent of session
// settings). The query is SQL you write, never built from input.
func TrackColumns(query string) CDCSource { return CDCSource{query: query} }

// ReadyHash tracks a query that yields object_id and a ready-made hash
// column, as the original runner did.
func ReadyHash(query string) CDCSource { return CDCSource{query: query, readyHash: true} }

// CDCTarget receives the changes: CDCCallbacks or CDCTasks.
type CDCTarget interface{ cdcTarget() }

// CDCCallbacks applies changes by calling functions during the run; an
// object is recorded as synced when its function returns nil.
type CDCCallbacks struct {
	Create, Update, Delete CDCFunc
}

// CDCTasks emits one queue task per change, named per action, keyed by
// controller and object (so the queue's newest-wins applies per object),
// with data {controller, object_id, action, hash[, row]}. Register the task
// names with an action wrapped by CDCRunnerAction.Wrap so that success
// records the object as synced.
type CDCTasks struct {
	Create, Update, Delete string
	// IncludeRow adds the source row as JSON under "row".
	IncludeRow bool
	// MaxAttempts of the emitted tasks (0: the queue's default).
	MaxAttempts int
}

func (CDCCallbacks) cdcTarget() {}
func (CDCTasks) cdcTarget()     {}

// CDCOption configures a CDC runner.
type CDCOption func(*CDCRunnerAction)

// WithCDCStream runs the controller in the given stream (default
// "cdc:<name>").
func WithCDCStream(stream string) CDCOption { return func(r *CDCRunnerAction) { r.stream = stream } }

// WithCDCBatchLimit caps the changes handled per run (default 0: all).
func WithCDCBatchLimit(n int) CDCOption { return func(r *CDCRunnerAction) { r.batchLimit = n } }

// WithCDCPendingTimeout re-emits a change whose task has not confirmed it
// after d (default one hour), in case the task was lost to a cancel.
func WithCDCPendingTimeout(d time.Duration) CDCOption {
	return func(r *CDCRunnerAction) { r.pendingTimeout = d }
}

// WithCDCRebaseline lets a controller whose tracked columns changed
// recompute its stored hashes from the source (emitting nothing for the
// change of columns) instead of failing with ErrCDCHashVersion.
func WithCDCRebaseline() CDCOption { return func(r *CDCRunnerAction) { r.rebaseline = true } }

// CDCRunnerAction is a scheduled action that diffs a source query against
// the hashes last synced and emits creates, updates and deletes.
type CDCRunnerAction struct {
	driver         *PostgresDriver
	name           string
	controller     string // uuid
	source         CDCSource
	target         CDCTarget
	stream         string
	batchLimit     int
	pendingTimeout time.Duration
	rebaseline     bool
	partitions     int
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// NewCDCRunner returns a runner for the controller named name (a uuid, or
// any name, from which a uuid is derived). Its tables come from Migrate.
func NewCDCRunner(driver *PostgresDriver, name string, source CDCSource, target CDCTarget, opts ...CDCOption) (*CDCRunnerAction, error) {
	if driver == nil {
		return nil, errors.New("queue: CDC runner needs a driver")
	}
	if name == "" {
		return nil, errors.New("queue: CDC controller needs a name")
	}
	if err := checkCDCSource(source.query); err != nil {
		return nil, err
	}
	switch t := target.(type) {
	case CDCCallbacks:
		if t.Create == nil || t.Update == nil || t.Delete == nil {
			return nil, errors.New("queue: CDC callbacks need Create, Update and Delete")
		}
	case CDCTasks:
		for _, n := range []string{t.Create, t.Update, t.Delete} {
			if err := checkText("name", n, MaxNameLength, true); err != nil {
				return nil, fmt.Errorf("queue: CDC task names: %w", err)
			}
		}
	default:
		return nil, errors.New("queue: CDC target must be CDCCallbacks or CDCTasks")
	}
	controller := name
	if !uuidPattern.MatchString(name) {
		sum := md5.Sum([]byte("esync-cdc-controller:" + name))
		controller = fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	}
	r := &CDCRunnerAction{
		driver: driver, name: name, controller: controller, source: source, target: target,
		stream: "cdc:" + name, pendingTimeout: time.Hour, partitions: 2,
	}
	for _, opt := range opts {
		opt(r)
	}
	if err := checkCDCPartitions(r.partitions); err != nil {
		return nil, err
	}
	return r, nil
}

// NewCDCRunnerAction is the original constructor: a controller id, a source
// query yielding object_id and hash, the schema of the cdc_hash table, a
// database, the three functions and a limit of changes per run. It
// migrates the schema, as the original expected its tables to exist.
func NewCDCRunnerAction(controllerID, sourceQuery, schema string, db *sql.DB, create, update, delete CDCFunc, batchLimit int) (*CDCRunnerAction, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	d, err := NewPostgresDriverFromDB(db, WithSchema(schema))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		return nil, err
	}
	return NewCDCRunner(d, controllerID, ReadyHash(sourceQuery),
		CDCCallbacks{Create: create, Update: update, Delete: delete}, WithCDCBatchLimit(batchLimit))
}

// Stream is the stream the runner's scheduled runs take a slot of.
func (r *CDCRunnerAction) Stream() string { return r.stream }

// ControllerID is the controller's uuid in the cdc_hash table.
func (r *CDCRunnerAction) ControllerID() string { return r.controller }

// Do runs one diff and emits what changed (ScheduledAction).
func (r *CDCRunnerAction) Do() error {
	_, err := r.Run(context.Background())
	return err
}

// DoContext is Do with a context; the SyncManager calls it so that a
// shutdown can cancel a long diff.
func (r *CDCRunnerAction) DoContext(ctx context.Context) error {
	_, err := r.Run(ctx)
	return err
}

// Run runs one diff and reports how many changes it emitted (or applied).
// A CDCTasks diff runs as partitions (WithCDCPartitions); when some of them
// fail, Run reports what the others emitted along with the error, and the
// next run emits the rest.
func (r *CDCRunnerAction) Run(ctx context.Context) (int, error) {
	if err := r.driver.requireOneRoundTrip(ctx); err != nil {
		return 0, fmt.Errorf("CDC %s: %w", r.name, err)
	}
	hash, version, err := r.hashing(ctx)
	if err != nil {
		return 0, fmt.Errorf("CDC %s: %w", r.name, err)
	}
	if err := r.driver.cdcCheckVersion(ctx, r.controller, r.name, version, r.source.query, hash, r.rebaseline); err != nil {
		return 0, err
	}
	if t, ok := r.target.(CDCTasks); ok && r.partitions > 1 && r.batchLimit == 0 {
		n, err := r.emitPartitioned(ctx, hash, r.emitParams(t))
		if err != nil {
			return n, fmt.Errorf("CDC %s: %w", r.name, err)
		}
		return n, nil
	}
	tx, err := r.driver.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	// A second run of this controller waits here and then sees this run's
	// pending marks: nothing is emitted twice.
	if err := r.driver.cdcLock(ctx, tx, r.controller); err != nil {
		return 0, fmt.Errorf("CDC %s: lock: %w", r.name, err)
	}
	switch t := r.target.(type) {
	case CDCTasks:
		p := r.emitParams(t)
		p.partitions = 1 // all of it, in this transaction
		n, err := r.driver.cdcEmitTasks(ctx, tx, r.source.query, hash, p)
		if err != nil {
			return 0, fmt.Errorf("CDC %s: %w", r.name, err)
		}
		return n, tx.Commit()
	case CDCCallbacks:
		n, err := r.applyCallbacks(ctx, tx, t, hash)
		if cerr := tx.Commit(); err == nil {
			err = cerr
		}
		return n, err
	}
	return 0, nil
}

// emitParams are the settings of this runner's task emission (one
// partition of one, until emitPartitioned picks a partition).
func (r *CDCRunnerAction) emitParams(t CDCTasks) cdcEmitParams {
	return cdcEmitParams{
		controller: r.controller, pendingTimeout: r.pendingTimeout, includeRow: t.IncludeRow,
		limit: r.batchLimit, keyPrefix: r.name + ":", createdBy: truncateRunes("cdc:"+r.name, MaxCreatedByLength),
		maxAttempts: orDefault(t.MaxAttempts, DefaultMaxAttempts),
		names:       map[CDCAction]string{CDCActionCreate: t.Create, CDCActionUpdate: t.Update, CDCActionDelete: t.Delete},
		partitions:  r.partitions,
	}
}

// applyCallbacks streams the diff through the callbacks and records the
// successes in batches, so memory stays flat on large sources.
func (r *CDCRunnerAction) applyCallbacks(ctx context.Context, tx *sql.Tx, t CDCCallbacks, hash string) (int, error) {
	const batch = 500
	var synced []CDCObjectAction
	var errs *multierror.Error
	applied := 0
	flush := func() error {
		err := r.driver.cdcMarkSynced(ctx, r.controller, synced)
		synced = synced[:0]
		return err
	}
	err := r.driver.cdcDiffRows(ctx, tx, r.source.query, hash, r.controller, true, r.batchLimit, func(o CDCObjectAction) error {
		fn := map[CDCAction]CDCFunc{CDCActionCreate: t.Create, CDCActionUpdate: t.Update, CDCActionDelete: t.Delete}[o.Action]
		if err := fn(o); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s %s: %w", o.Action, o.ObjectID, err))
			return nil
		}
		applied++
		synced = append(synced, o)
		if len(synced) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		errs = multierror.Append(errs, err)
	}
	if errs != nil {
		return applied, fmt.Errorf("CDC %s: %w", r.name, errs.ErrorOrNil())
	}
	return applied, nil
}

// hashing returns the SQL of the source's hash and its version.
func (r *CDCRunnerAction) hashing(ctx context.Context) (hash, version string, err error) {
	cols, err := probeColumns(ctx, r.driver.db, r.source.query)
	if err != nil {
		return "", "", err
	}
	var tracked []cdcColumn
	var hasID, hasHash bool
	for _, c := range cols {
		switch c.name {
		case "object_id":
			hasID = true
		case "hash":
			hasHash = true
			if !r.source.readyHash {
				tracked = append(tracked, c)
			}
		default:
			tracked = append(tracked, c)
		}
	}
	if !hasID {
		return "", "", errors.New("source query yields no object_id column")
	}
	if r.source.readyHash {
		if !hasHash {
			return "", "", errors.New("source query yields no hash column")
		}
		// The same reading the upgrade gave hashes stored by the original.
		return "hashtextextended((s.hash)::text, 0)", "ready:text", nil
	}
	return hashExpr("s", tracked), hashVersion(tracked), nil
}

// Wrap returns action with CDC bookkeeping around it, for the task names of
// a CDCTasks target: when the action succeeds the object is recorded as
// synced at the task's hash; when it fails for good the pending emission is
// cleared so the next run emits the object again.
func (r *CDCRunnerAction) Wrap(action TaskAction) TaskAction {
	return TaskActionFunc(func(task Task) (TaskResult, TaskMessage) {
		obj, err := r.decodeTask(task)
		if err != nil {
			return TaskResultPermanentFailure, TaskMessage(err.Error())
		}
		res, msg := action.Do(task)
		o := r.record([]Task{task}, []CDCObjectAction{obj}, []outcome{{res, msg}})
		return o[0].result, o[0].message
	})
}

// WrapBatch is Wrap for a batch action: the objects of the tasks that
// succeeded in a call are recorded as synced in one statement. A task that
// is not one of the controller's fails for good and is not given to the
// action.
func (r *CDCRunnerAction) WrapBatch(action BatchAction) BatchAction {
	return BatchActionFunc(func(ctx context.Context, tasks []Task) []BatchResult {
		results := make([]BatchResult, len(tasks))
		valid := make([]Task, 0, len(tasks))
		objs := make([]CDCObjectAction, 0, len(tasks))
		at := make([]int, 0, len(tasks)) // index in tasks of each valid task
		for i, task := range tasks {
			obj, err := r.decodeTask(task)
			if err != nil {
				results[i] = BatchResult{TaskResultPermanentFailure, TaskMessage(err.Error())}
				continue
			}
			valid, objs, at = append(valid, task), append(objs, obj), append(at, i)
		}
		if len(valid) == 0 {
			return results
		}
		got := action.DoBatch(ctx, valid)
		outcomes := make([]outcome, len(valid))
		for j := range valid {
			if j < len(got) {
				outcomes[j] = outcome{got[j].Result, got[j].Message}
			} // else the manager makes the missing result a retry
		}
		for j, o := range r.record(valid, objs, outcomes) {
			results[at[j]] = BatchResult{o.result, o.message}
		}
		return results
	})
}

// decodeTask reads the object a CDC task is about.
func (r *CDCRunnerAction) decodeTask(task Task) (CDCObjectAction, error) {
	var data struct {
		ObjectID string    `json:"object_id"`
		Action   CDCAction `json:"action"`
		Hash     string    `json:"hash"`
	}
	if err := task.Decode(&data); err != nil || data.ObjectID == "" || data.Hash == "" {
		return CDCObjectAction{}, fmt.Errorf("not a CDC task of controller %s: data lacks object_id or hash", r.name)
	}
	return CDCObjectAction{ObjectID: data.ObjectID, Action: data.Action, Hash: data.Hash}, nil
}

// record does the bookkeeping of the runs of tasks, about objs, that ended
// with outcomes: the successes are recorded as synced, in one statement (a
// success whose record fails becomes a retry), and the pending emission of
// each object that failed for good is cleared.
func (r *CDCRunnerAction) record(tasks []Task, objs []CDCObjectAction, outcomes []outcome) []outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var synced []CDCObjectAction
	for i, o := range outcomes {
		if o.result == TaskResultSuccess {
			synced = append(synced, objs[i])
		}
	}
	if len(synced) > 0 {
		if err := r.driver.cdcMarkSynced(ctx, r.controller, synced); err != nil {
			for i, o := range outcomes {
				if o.result == TaskResultSuccess {
					outcomes[i] = outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("%s; recording the sync failed: %v", o.message, err))}
				}
			}
		}
	}
	for i, o := range outcomes {
		if t := tasks[i]; o.result == TaskResultPermanentFailure || (o.result == TaskResultRetryFailure && t.MaxAttempts > 0 && t.Attempt >= t.MaxAttempts) {
			if err := r.driver.cdcClearPending(ctx, r.controller, objs[i].ObjectID, objs[i].Hash); err != nil {
				outcomes[i].message = TaskMessage(fmt.Sprintf("%s; clearing the pending change failed: %v", o.message, err))
			}
		}
	}
	return outcomes
}

// orDefault returns v, or def when v is zero.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
