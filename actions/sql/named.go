package sqlaction

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// statement is a SQL statement whose named parameters have been rewritten to
// PostgreSQL's positional placeholders.
type statement struct {
	// query is the text PostgreSQL receives, with $1..$n in place of names.
	query string
	// params[i] is the task data field bound to $i+1.
	params []string
}

// errPositional is returned for a statement that uses $1-style placeholders.
var errPositional = errors.New("positional placeholders ($1, $2, …) are not supported; name them (:customer_id) and the values come from task data")

// compile rewrites the named parameters of src (:name) to $1..$n. A name used
// twice gets the same number. It leaves alone everything that is not a
// parameter:
//
//   - casts (value::int) and array slices (arr[1:n], arr[lo:hi]): a colon
//     right after a letter, digit, underscore, dollar sign or another colon
//     does not start a parameter;
//   - string constants ('…', E'…' with backslash escapes, $$…$$ and
//     $tag$…$tag$), quoted identifiers ("…") and comments (-- and nested /* */).
//
// A parameter name starts with an ASCII letter or underscore and goes on with
// ASCII letters, digits and underscores.
func compile(src string) (statement, error) {
	if strings.TrimSpace(src) == "" {
		return statement{}, errors.New("empty statement")
	}
	var (
		out    strings.Builder
		params []string
		number = map[string]int{}
	)
	out.Grow(len(src) + 8)
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\'':
			end, err := skipString(src, i, isEscapeString(src, i))
			if err != nil {
				return statement{}, err
			}
			out.WriteString(src[i:end])
			i = end
		case c == '"':
			end, err := skipQuoted(src, i, '"', "quoted identifier")
			if err != nil {
				return statement{}, err
			}
			out.WriteString(src[i:end])
			i = end
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				end = len(src)
			} else {
				end += i
			}
			out.WriteString(src[i:end])
			i = end
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end, err := skipBlockComment(src, i)
			if err != nil {
				return statement{}, err
			}
			out.WriteString(src[i:end])
			i = end
		case c == '$' && !precededByIdent(src, i):
			if i+1 < len(src) && isDigit(src[i+1]) {
				return statement{}, fmt.Errorf("at offset %d: %w", i, errPositional)
			}
			if tag, ok := dollarTag(src, i); ok {
				closing := strings.Index(src[i+len(tag):], tag)
				if closing < 0 {
					return statement{}, fmt.Errorf("unterminated dollar-quoted string starting at offset %d", i)
				}
				end := i + len(tag) + closing + len(tag)
				out.WriteString(src[i:end])
				i = end
				continue
			}
			out.WriteByte(c)
			i++
		case c == ':' && i+1 < len(src) && src[i+1] == ':':
			out.WriteString("::")
			i += 2
		case c == ':' && !precededByIdent(src, i) && i+1 < len(src) && isIdentStart(src[i+1]):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			name := src[i+1 : j]
			n, seen := number[name]
			if !seen {
				params = append(params, name)
				n = len(params)
				number[name] = n
			}
			out.WriteString("$" + strconv.Itoa(n))
			i = j
		default:
			out.WriteByte(c)
			i++
		}
	}
	return statement{query: out.String(), params: params}, nil
}

// isEscapeString reports whether the quote at src[i] opens an E'…' string,
// in which a backslash escapes the next character.
func isEscapeString(src string, i int) bool {
	return i > 0 && (src[i-1] == 'E' || src[i-1] == 'e') && !precededByIdent(src, i-1)
}

// skipString returns the offset just past the string constant opening at
// src[i]. Two quotes in a row stand for one; with backslashes enabled a
// backslash escapes the next byte.
func skipString(src string, i int, backslashes bool) (int, error) {
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			if backslashes {
				j++
			}
		case '\'':
			if j+1 < len(src) && src[j+1] == '\'' {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string constant starting at offset %d", i)
}

// skipQuoted returns the offset just past the quoted text opening at src[i],
// where a doubled quote character stands for one.
func skipQuoted(src string, i int, q byte, what string) (int, error) {
	for j := i + 1; j < len(src); j++ {
		if src[j] == q {
			if j+1 < len(src) && src[j+1] == q {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %s starting at offset %d", what, i)
}

// skipBlockComment returns the offset just past the /* comment */ opening at
// src[i]; PostgreSQL block comments nest.
func skipBlockComment(src string, i int) (int, error) {
	depth := 0
	for j := i; j+1 < len(src); j++ {
		switch {
		case src[j] == '/' && src[j+1] == '*':
			depth++
			j++
		case src[j] == '*' && src[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unterminated comment starting at offset %d", i)
}

// dollarTag returns the opening delimiter ($$ or $tag$) of a dollar-quoted
// string at src[i], if there is one.
func dollarTag(src string, i int) (string, bool) {
	j := i + 1
	if j < len(src) && isIdentStart(src[j]) {
		for j < len(src) && isIdentPart(src[j]) {
			j++
		}
	}
	if j < len(src) && src[j] == '$' {
		return src[i : j+1], true
	}
	return "", false
}

// precededByIdent reports whether the byte before src[i] can be part of an
// identifier, a number or a placeholder, in which case src[i] continues a
// token rather than starting one.
func precededByIdent(src string, i int) bool {
	if i == 0 {
		return false
	}
	p := src[i-1]
	return isIdentPart(p) || p == '$' || p >= 0x80
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
