package queue

import (
	"context"
	"database/sql/driver"
)

// redactingConnector connects through lib/pq and takes the connection
// string's secrets (passwords, certificate and key paths) out of the errors
// of failed connections, which every statement then returns.
type redactingConnector struct {
	connector driver.Connector
	dsn       string
}

// Connect opens a connection; its error keeps its type and wrapped errors
// (errors.Is, errors.As) but not the secrets in its text.
func (c redactingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.connector.Connect(ctx)
	if err != nil {
		if text := redactSecrets(err.Error(), c.dsn); text != err.Error() {
			return nil, redactedError{text: text, err: err}
		}
		return nil, err
	}
	return conn, nil
}

// Driver returns lib/pq's driver.
func (c redactingConnector) Driver() driver.Driver { return c.connector.Driver() }

// redactedError is an error with secrets removed from its text.
type redactedError struct {
	text string
	err  error
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }
