package queue

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// cdcColumn is one column of a CDC source query and the hash function its
// values go through.
type cdcColumn struct {
	name     string // column name as the source returns it
	typ      string // its type, as PostgreSQL names it
	hashFunc string // a hash opclass's extended support function, e.g. hashtextextended
	castTo   string // the type the function takes, when the column needs a cast
	hashable bool   // the type has a hash operator class
}

// probeColumns asks PostgreSQL for the columns of source and, for each, the
// 64-bit hash function of its type's default hash operator class. Hashing
// the internal value (not its text form) makes the result independent of
// session settings: TimeZone, DateStyle, extra_float_digits, IntervalStyle.
// Types without a hash class fall back to json → jsonb, or to their text.
func probeColumns(ctx context.Context, db *sql.DB, source string) ([]cdcColumn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() // the probe view goes with it
	if _, err := tx.ExecContext(ctx, `CREATE TEMP VIEW esync_cdc_probe AS `+source); err != nil {
		return nil, fmt.Errorf("CDC source query: %w", err)
	}
	rows, err := tx.QueryContext(ctx, cdcProbeQuery)
	if err != nil {
		return nil, fmt.Errorf("CDC source columns: %w", err)
	}
	defer rows.Close()
	var cols []cdcColumn
	for rows.Next() {
		var c cdcColumn
		var fn, cast sql.NullString
		var hashable sql.NullBool
		if err := rows.Scan(&c.name, &c.typ, &fn, &cast, &hashable); err != nil {
			return nil, err
		}
		c.hashFunc, c.castTo, c.hashable = fn.String, cast.String, hashable.Bool
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// cdcProbeQuery lists the probe view's columns with the extended hash
// function of the first hash operator class that fits: the type's own, its
// domain's base type's, the array or enum class, or one reached by a
// binary-compatible cast (varchar → text).
const cdcProbeQuery = `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), h.fn, h.cast_to, h.fn IS NOT NULL OR h.hashable
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN LATERAL (
	SELECT true AS hashable,
		-- The support function can be called on the column directly when it
		-- takes the column's type, a polymorphic type, or a type the column
		-- casts to implicitly without conversion (varchar to text).
		CASE WHEN f.proargtypes[0] = a.atttypid
				OR f.proargtypes[0] IN ('anyarray'::regtype, 'anyenum'::regtype, 'anyrange'::regtype)
				OR k.casttarget IS NOT NULL
			THEN p.amproc::regproc::text END AS fn,
		CASE WHEN k.casttarget IS NOT NULL THEN format_type(k.casttarget, NULL) END AS cast_to
	FROM pg_opclass c
	JOIN pg_am am ON am.oid = c.opcmethod AND am.amname = 'hash'
	JOIN pg_amproc p ON p.amprocfamily = c.opcfamily AND p.amprocnum = 2
		AND p.amproclefttype = c.opcintype AND p.amprocrighttype = c.opcintype
	JOIN pg_proc f ON f.oid = p.amproc
	LEFT JOIN pg_cast k ON k.castsource = a.atttypid AND k.casttarget = f.proargtypes[0]
		AND k.castmethod = 'b' AND k.castcontext = 'i'
	WHERE c.opcdefault AND (
		c.opcintype = a.atttypid
		OR (t.typtype = 'd' AND c.opcintype = t.typbasetype)
		OR (c.opcintype = 'anyarray'::regtype AND t.typelem <> 0 AND t.typlen = -1)
		OR (c.opcintype = 'anyenum'::regtype AND t.typtype = 'e')
		OR EXISTS (SELECT 1 FROM pg_cast b WHERE b.castsource = a.atttypid
			AND b.casttarget = c.opcintype AND b.castmethod = 'b'))
	ORDER BY (c.opcintype = a.atttypid) DESC, (c.opcintype = t.typbasetype) DESC
	LIMIT 1
) h ON true
WHERE a.attrelid = 'esync_cdc_probe'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

// hashExpr builds the SQL expression of a row's hash over the tracked
// columns of alias: one 64-bit hash per column, seeded by its position (so
// swapped values differ) and a distinct constant for NULL (so NULL differs
// from ” and 0), combined with xor and shown as a uuid.
func hashExpr(alias string, cols []cdcColumn) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		ref := alias + "." + pq.QuoteIdentifier(c.name)
		seed := 0x5eed0000 + i
		var h string
		switch {
		case c.hashFunc != "" && c.castTo != "":
			h = fmt.Sprintf("%s((%s)::%s, %d::int8)", c.hashFunc, ref, c.castTo, seed)
		case c.hashFunc != "":
			h = fmt.Sprintf("%s(%s, %d::int8)", c.hashFunc, ref, seed)
		case c.typ == "timestamp with time zone":
			// The same instant in UTC: independent of the session's
			// TimeZone, and cheaper than hashing a one-column record.
			h = fmt.Sprintf("timestamp_hash_extended((%s) AT TIME ZONE 'UTC', %d::int8)", ref, seed)
		case c.hashable:
			// The class's function takes a binary-compatible type the column
			// cannot be cast to without conversion (timestamptz): hash it as
			// a one-column record, which uses the same class.
			h = fmt.Sprintf("hash_record_extended(ROW(%s), %d::int8)", ref, seed)
		case c.typ == "json":
			h = fmt.Sprintf("jsonb_hash_extended((%s)::jsonb, %d::int8)", ref, seed)
		default:
			h = fmt.Sprintf("hashtextextended((%s)::text, %d::int8)", ref, seed)
		}
		// The NULL constant is fixed per position and not a seed's output.
		parts[i] = fmt.Sprintf("coalesce(%s, %d)", h, -7046029254386353131+int64(i)*7919)
	}
	if len(parts) == 0 {
		parts = []string{"0::bigint"}
	}
	return "(" + strings.Join(parts, " # ") + ")"
}

// hashVersion names how a controller's hashes are computed: the hashing
// scheme and each tracked column with its type and hash function. When it
// changes, stored hashes no longer compare with new ones.
func hashVersion(cols []cdcColumn) string {
	h := sha256.New()
	h.Write([]byte("esync-cdc-hash-v3"))
	for _, c := range cols {
		fmt.Fprintf(h, "\x00%s\x00%s\x00%s\x00%s\x00%v", c.name, c.typ, c.hashFunc, c.castTo, c.hashable)
	}
	return "v3:" + hex.EncodeToString(h.Sum(nil))[:16]
}
