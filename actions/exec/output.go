package execaction

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// tail keeps the last limit bytes written to it and counts them all. It is
// written by one goroutine and read once that one is done.
type tail struct {
	limit int
	buf   []byte
	total int64
}

func newTail(limit int) *tail { return &tail{limit: limit} }

// Write keeps the end of what it is given; it never fails, so the program's
// output is always drained.
func (t *tail) Write(p []byte) (int, error) {
	t.total += int64(len(p))
	if len(p) >= t.limit {
		t.buf = append(t.buf[:0], p[len(p)-t.limit:]...)
		return len(p), nil
	}
	if over := len(t.buf) + len(p) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return len(p), nil
}

// truncated reports whether output was dropped.
func (t *tail) truncated() bool { return t.total > int64(len(t.buf)) }

// text returns what was kept as valid UTF-8 without NUL bytes, so it can be
// stored in a PostgreSQL text column: a character cut by truncation is
// dropped, invalid bytes and NULs become U+FFFD.
func (t *tail) text() string {
	b := t.buf
	if t.truncated() {
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// section renders one stream for the task message, or "" if it was silent.
func (t *tail) section(name string) string {
	if t.total == 0 {
		return ""
	}
	head := "\n--- " + name
	if t.truncated() {
		head += " (last " + strconv.Itoa(len(t.buf)) + " of " + strconv.FormatInt(t.total, 10) + " bytes)"
	}
	return head + " ---\n" + strings.TrimRight(t.text(), "\n")
}
