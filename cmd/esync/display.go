package main

import (
	"strconv"
	"strings"
	"unicode"
)

// shown makes text safe for one cell of a table or one line of output: text
// of printable characters is shown as it is, anything else (a tab, a
// newline, an escape sequence, invalid UTF-8) as a Go-quoted string, so it
// can neither break the table nor reach the terminal as a control.
func shown(s string) string {
	for _, r := range s {
		if r == unicode.ReplacementChar || r == '\t' || !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	if s == "" || strings.HasPrefix(s, `"`) || strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// quoteArg quotes a command-line argument for an error message.
func quoteArg(s string) string { return strconv.Quote(s) }

// shorten cuts s to at most n characters, marking the cut with "...".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
