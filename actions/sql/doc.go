// Package sqlaction runs SQL statements as queue actions: once per task, with
// parameters bound from the task's data (Action), or on a schedule for
// reconciliations (Scheduled).
//
// Usage:
//
//	markSynced, err := sqlaction.New(db,
//		`UPDATE customer SET synced_at = now() WHERE id = :customer_id`,
//		sqlaction.WithTimeout(30*time.Second))
//	if err != nil { ... }
//	manager.RegisterTaskHandler(markSynced, "customer.synced")
//
//	refresh, err := sqlaction.NewScheduled(db, "reports",
//		`REFRESH MATERIALIZED VIEW customer_totals`)
//	if err != nil { ... }
//	manager.Schedule(refresh, 15*time.Minute)
//
// A task {"customer_id": 42} then runs the UPDATE with $1 = 42. Named
// parameters are rewritten to $1..$n when the action is built; the values
// always travel as bind parameters, never inside the SQL text, so a hostile
// value is stored as the text it is. Casts (::int), string constants,
// quoted identifiers and comments are left alone. A parameter missing from
// the task data fails the task with a message naming it; a field present as
// null binds NULL.
//
// Each run is one transaction, committed on success. WithTimeout becomes the
// transaction's statement_timeout (SET LOCAL, so pooled connections keep
// their settings) and a task's own deadline lowers it further;
// WithLockTimeout sets lock_timeout; WithIsolation picks the isolation level.
// Statements that cannot run inside a transaction block (VACUUM, CREATE
// INDEX CONCURRENTLY) are not supported.
//
// Errors are classified by SQLSTATE (see Classify): serialization failures,
// deadlocks, lock and statement timeouts, shutdowns and lost connections are
// retried; syntax errors, missing tables or columns, constraint violations,
// permission errors and bad data fail the task with PostgreSQL's message.
// The action takes a *sql.DB, never a connection string, so no password can
// reach a task message.
package sqlaction
