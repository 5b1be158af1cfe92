package queue

import "context"

// DeleteFinishedPass runs one retention pass of m's maintenance, for tests.
func DeleteFinishedPass(ctx context.Context, m *SyncManager) (int, error) {
	return m.deleteFinished(ctx)
}

// RetentionBatch is how many finished tasks one delete removes.
const RetentionBatch = retentionBatch

// ExportInsertSQL is the driver's insert statement.
func ExportInsertSQL(d *PostgresDriver) string { return d.q.insert }
