package queuetest_test

import (
	"testing"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// A test of a user's code through PgBouncer in transaction mode and over
// verified TLS.
func ExampleNewPooledServer() {
	var t *testing.T // the test's own
	pooled := queuetest.NewPooledServer(t)
	driver, err := queue.OpenPostgres(pooled.NewDSN(t), queue.WithPooler())
	if err != nil {
		t.Fatal(err)
	}
	defer driver.Close()

	secure := queuetest.NewTLSServer(t)
	dsn := secure.NewDSN(t) // sslmode=verify-full sslrootcert=<secure.RootCert>
	_ = dsn
}
