package sqlaction

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/esync/queue"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// Classify says whether an error from running a statement is worth another
// attempt. It returns queue.TaskResultSuccess for nil,
// queue.TaskResultRetryFailure for errors that may pass, and
// queue.TaskResultPermanentFailure for errors that will happen again on the
// same input.
//
// Retried, by SQLSTATE of a *pq.Error:
//
//   - class 40, transaction rollback: serialization failure (40001),
//     deadlock (40P01), statement completion unknown (40003) — except
//     40002, an integrity constraint violation at commit;
//   - 55P03 lock not available (lock_timeout, NOWAIT) and 55006 object in use;
//   - class 57, operator intervention: query canceled or statement timeout
//     (57014), admin or crash shutdown (57P01, 57P02), cannot connect now
//     (57P03);
//   - class 08 connection exceptions, class 53 insufficient resources (too
//     many connections, out of memory, disk full), class 58 system errors;
//   - 25006 read-only transaction (a primary that became a replica).
//
// Also retried: driver.ErrBadConn (what lib/pq reports for a connection the
// server closed, including a terminated backend), sql.ErrConnDone, io.EOF,
// io.ErrUnexpectedEOF, net errors, connection refused or reset, and
// context.DeadlineExceeded and context.Canceled.
//
// Every other error is permanent: syntax errors (42601), undefined tables and
// columns (42P01, 42703), permission denied (42501), constraint violations
// (class 23), bad data (class 22), and anything unrecognised.
func Classify(err error) queue.TaskResult {
	if err == nil {
		return queue.TaskResultSuccess
	}
	if pqErr := pq.As(err); pqErr != nil {
		if retryableCode(pqErr.Code) {
			return queue.TaskResultRetryFailure
		}
		return queue.TaskResultPermanentFailure
	}
	if connectionError(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return queue.TaskResultRetryFailure
	}
	return queue.TaskResultPermanentFailure
}

// retryableCode reports whether a SQLSTATE names a condition that may pass.
func retryableCode(code pqerror.Code) bool {
	if len(code) != 5 {
		return false
	}
	switch code {
	case "40002": // integrity constraint violation detected at commit
		return false
	case "55P03", "55006", "25006":
		return true
	}
	switch code.Class() {
	case "40", "57", "08", "53", "58":
		return true
	}
	return false
}

// connectionError reports whether err means the connection to the server
// failed or was lost, as opposed to the server refusing the statement.
func connectionError(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// describe renders err for a task message: for a PostgreSQL error the
// server's message, its SQLSTATE and condition name, and the detail and hint
// when there are any.
func describe(err error) string {
	if pqErr := pq.As(err); pqErr != nil {
		var b strings.Builder
		b.WriteString(pqErr.Message)
		b.WriteString(" (SQLSTATE ")
		b.WriteString(string(pqErr.Code))
		if name := pqErr.Code.Name(); name != "" {
			b.WriteString(" " + name)
		}
		b.WriteString(")")
		if pqErr.Detail != "" {
			b.WriteString("; detail: " + pqErr.Detail)
		}
		if pqErr.Hint != "" {
			b.WriteString("; hint: " + pqErr.Hint)
		}
		return b.String()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out: " + err.Error()
	case errors.Is(err, context.Canceled):
		return "cancelled: " + err.Error()
	case connectionError(err):
		return "database connection lost: " + err.Error()
	}
	return err.Error()
}
