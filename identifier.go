package queue

import (
	"fmt"

	"github.com/lib/pq"
)

// maxIdentifierLen leaves room for the suffixes esync appends to the table
// name for its indexes and functions within PostgreSQL's 63-byte limit.
const maxIdentifierLen = 40

// validateIdentifier accepts a plain lower-case SQL identifier: a letter or
// underscore, then letters, digits or underscores. Anything else is refused
// rather than quoted, so a typo never creates a surprising object.
func validateIdentifier(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidIdentifier, kind)
	}
	if len(name) > maxIdentifierLen {
		return fmt.Errorf("%w: %s name %q is longer than %d bytes", ErrInvalidIdentifier, kind, name, maxIdentifierLen)
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("%w: %s name %q must match [a-z_][a-z0-9_]*", ErrInvalidIdentifier, kind, name)
		}
	}
	return nil
}

// quoteIdent quotes one identifier for SQL text.
func quoteIdent(name string) string { return pq.QuoteIdentifier(name) }

// quoteQualified quotes schema.name for SQL text.
func quoteQualified(schema, name string) string {
	return pq.QuoteIdentifier(schema) + "." + pq.QuoteIdentifier(name)
}
