package workerconfig

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// locate finds the line of the file that defines path, or comes closest:
// the key itself, else the table or inline table that holds it. In an
// array of tables (the schedules) nth picks the entry (0-based; -1: any).
// It returns 0 when nothing matches. The TOML library reports lines for
// syntax and type errors only; this is for the problems found after
// decoding: unknown keys and invalid values.
func locate(src string, path toml.Key, nth int) int {
	var table toml.Key
	entry := map[string]int{} // array-of-tables header -> entries seen
	inEntry := -1
	bestLine, bestLen := 0, 0
	multi := "" // the delimiter of a multi-line string being skipped
	consider := func(line int, p toml.Key) {
		if len(p) == 0 || len(p) > len(path) || len(p) <= bestLen {
			return
		}
		for i := range p {
			if p[i] != path[i] {
				return
			}
		}
		if nth >= 0 && len(path) > 0 && entry[path[0]] > 0 && inEntry != nth {
			return
		}
		bestLine, bestLen = line, len(p)
	}
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if multi != "" {
			if strings.Contains(line, multi) {
				multi = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			array := strings.HasPrefix(line, "[[")
			inner := strings.Trim(stripComment(line), "[] \t")
			table = splitKey(inner)
			if array {
				entry[table.String()]++
				if len(table) == 1 {
					inEntry = entry[table[0]] - 1
				}
			}
			consider(i+1, table)
			continue
		}
		eq := indexOutsideQuotes(line, '=')
		if eq < 0 {
			continue
		}
		k := with(table, splitKey(line[:eq])...)
		consider(i+1, k)
		rest := line[eq+1:]
		for _, d := range []string{`"""`, `'''`} {
			if strings.Count(rest, d) == 1 {
				multi = d
			}
		}
	}
	return bestLine
}

// splitKey splits a dotted key into its parts, unquoting quoted ones.
func splitKey(s string) toml.Key {
	var parts toml.Key
	for {
		s = strings.TrimSpace(s)
		if s == "" {
			return parts
		}
		dot := indexOutsideQuotes(s, '.')
		part := s
		if dot >= 0 {
			part, s = s[:dot], s[dot+1:]
		} else {
			s = ""
		}
		part = strings.TrimSpace(part)
		if u, err := strconv.Unquote(part); err == nil && strings.HasPrefix(part, `"`) {
			part = u
		} else if len(part) >= 2 && part[0] == '\'' && part[len(part)-1] == '\'' {
			part = part[1 : len(part)-1]
		}
		parts = append(parts, part)
	}
}

// indexOutsideQuotes finds c outside quoted text.
func indexOutsideQuotes(s string, c byte) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch {
		case quote != 0:
			if s[i] == '\\' && quote == '"' {
				i++
			} else if s[i] == quote {
				quote = 0
			}
		case s[i] == '"' || s[i] == '\'':
			quote = s[i]
		case s[i] == c:
			return i
		}
	}
	return -1
}

// stripComment drops a # comment outside quotes.
func stripComment(s string) string {
	if i := indexOutsideQuotes(s, '#'); i >= 0 {
		return s[:i]
	}
	return s
}
