package sqlaction_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/esync/queue"
	sqlaction "github.com/esync/queue/actions/sql"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

func TestClassifyBySQLSTATE(t *testing.T) {
	retry := []pqerror.Code{
		"40001", "40P01", "40003", "40000", // transaction rollback
		"55P03", "55006", // lock not available, object in use
		"57014", "57P01", "57P02", "57P03", // canceled, shutdowns
		"08000", "08003", "08006", "08001", // connection exceptions
		"53300", "53200", "53100", // too many connections, out of memory, disk full
		"58000", "58030", // system errors
		"25006", // read-only transaction
	}
	permanent := []pqerror.Code{
		"40002",                            // integrity constraint violation at commit
		"42601", "42P01", "42703", "42501", // syntax, undefined, permission
		"23505", "23503", "23502", "23514", // constraints
		"22P02", "22003", "22021", "22001", // data exceptions
		"55000", "0A000", "XX000", "28P01", "3D000", // others
		"", "4", // malformed
	}
	for _, code := range retry {
		err := fmt.Errorf("wrapped: %w", &pq.Error{Code: code, Message: "m"})
		if got := sqlaction.Classify(err); got != queue.TaskResultRetryFailure {
			t.Errorf("SQLSTATE %s: %s, want RETRY", code, got)
		}
	}
	for _, code := range permanent {
		if got := sqlaction.Classify(&pq.Error{Code: code, Message: "m"}); got != queue.TaskResultPermanentFailure {
			t.Errorf("SQLSTATE %q: %s, want ERROR", code, got)
		}
	}
}

func TestClassifyDriverErrors(t *testing.T) {
	retry := []error{
		driver.ErrBadConn,
		fmt.Errorf("exec: %w", driver.ErrBadConn),
		sql.ErrConnDone,
		io.EOF,
		io.ErrUnexpectedEOF,
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		syscall.ECONNRESET,
		context.DeadlineExceeded,
		context.Canceled,
	}
	for _, err := range retry {
		if got := sqlaction.Classify(err); got != queue.TaskResultRetryFailure {
			t.Errorf("%v: %s, want RETRY", err, got)
		}
	}
	if got := sqlaction.Classify(errors.New("sql: converting argument")); got != queue.TaskResultPermanentFailure {
		t.Errorf("unknown error: %s, want ERROR", got)
	}
	if got := sqlaction.Classify(nil); got != queue.TaskResultSuccess {
		t.Errorf("nil: %s, want SUCCESS", got)
	}
}
