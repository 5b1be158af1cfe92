package execaction

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// template is an argument or environment value with {{field}} placeholders
// filled from task data.
type template struct {
	parts []part
}

// part is literal text or one placeholder.
type part struct {
	literal string
	field   string   // the placeholder as written, e.g. "customer.id"
	path    []string // field split at dots; nil for literal text
}

// parseTemplate reads src. A placeholder is {{name}}, spaces inside the
// braces allowed; name is a data field, or a path into nested objects and
// arrays with dots (customer.id, ids.0). Path segments use ASCII letters,
// digits, underscores and hyphens. An unclosed {{ is an error; text outside
// placeholders is literal.
func parseTemplate(src string) (template, error) {
	if strings.IndexByte(src, 0) >= 0 {
		return template{}, errors.New("contains a NUL byte")
	}
	var t template
	rest := src
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{literal: rest})
			}
			return t, nil
		}
		if open > 0 {
			t.parts = append(t.parts, part{literal: rest[:open]})
		}
		closing := strings.Index(rest[open+2:], "}}")
		if closing < 0 {
			return template{}, fmt.Errorf("unclosed {{ in %q", src)
		}
		field := strings.TrimSpace(rest[open+2 : open+2+closing])
		path, err := parsePath(field)
		if err != nil {
			return template{}, fmt.Errorf("placeholder {{%s}} in %q: %w", field, src, err)
		}
		t.parts = append(t.parts, part{field: field, path: path})
		rest = rest[open+2+closing+2:]
	}
}

func parsePath(field string) ([]string, error) {
	if field == "" {
		return nil, errors.New("empty field name")
	}
	path := strings.Split(field, ".")
	for _, seg := range path {
		if seg == "" {
			return nil, errors.New("empty path segment")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
				return nil, fmt.Errorf("character %q is not allowed in a field name", c)
			}
		}
	}
	return path, nil
}

// bare reports whether the template is a single placeholder and nothing
// else, so its whole value becomes one argument.
func (t template) bare() bool { return len(t.parts) == 1 && t.parts[0].path != nil }

// literal reports whether the template has no placeholders, and its text.
func (t template) literal() (string, bool) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path != nil {
			return "", false
		}
		b.WriteString(p.literal)
	}
	return b.String(), true
}

// render fills the placeholders from data in a single pass: a value that
// itself contains {{…}} is copied as it is, never expanded again.
func (t template) render(data map[string]any) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.literal)
			continue
		}
		v, err := lookup(data, p.path)
		if err != nil {
			return "", fmt.Errorf("field %s: %w", p.field, err)
		}
		s, err := valueText(v)
		if err != nil {
			return "", fmt.Errorf("field %s: %w", p.field, err)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return "", fmt.Errorf("field %s contains a NUL byte, which cannot be passed to a program", p.field)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// lookup follows path through nested objects (by key) and arrays (by index).
func lookup(data map[string]any, path []string) (any, error) {
	var cur any = data
	for i, seg := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, errors.New("missing from the task data")
			}
			cur = v
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(c) {
				return nil, fmt.Errorf("no element %q in an array of %d", seg, len(c))
			}
			cur = c[n]
		default:
			return nil, fmt.Errorf("%s is not an object or array", strings.Join(path[:i], "."))
		}
	}
	return cur, nil
}

// valueText renders a decoded JSON value: strings as they are, numbers as
// their exact decimal text, booleans as true or false, objects and arrays as
// compact JSON. null is refused: a placeholder needs a value.
func valueText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	case nil:
		return "", errors.New("is null")
	case map[string]any, []any:
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSuffix(b.String(), "\n"), nil
	default:
		return "", fmt.Errorf("unsupported value of type %T", v)
	}
}
