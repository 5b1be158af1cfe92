package sqlaction

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCompileRewritesNamedParameters(t *testing.T) {
	cases := []struct {
		name   string
		src    string
		query  string
		params []string
	}{
		{
			name:   "update by id",
			src:    "UPDATE customer SET synced_at = now() WHERE id = :customer_id",
			query:  "UPDATE customer SET synced_at = now() WHERE id = $1",
			params: []string{"customer_id"},
		},
		{
			name:   "repeated name reuses its number",
			src:    "SELECT :a, :b, :a",
			query:  "SELECT $1, $2, $1",
			params: []string{"a", "b"},
		},
		{
			name:   "cast after parameter",
			src:    "SELECT :a::int, :b::jsonb->>'x'",
			query:  "SELECT $1::int, $2::jsonb->>'x'",
			params: []string{"a", "b"},
		},
		{
			name:  "casts alone are not parameters",
			src:   "SELECT x::text, y :: int, '1'::numeric FROM t",
			query: "SELECT x::text, y :: int, '1'::numeric FROM t",
		},
		{
			name:  "array slices are not parameters",
			src:   "SELECT arr[1:2], arr[lo:hi], arr[lo:2] FROM t",
			query: "SELECT arr[1:2], arr[lo:hi], arr[lo:2] FROM t",
		},
		{
			name:  "string constants",
			src:   "SELECT ':a', 'it''s :b', ''",
			query: "SELECT ':a', 'it''s :b', ''",
		},
		{
			name:   "backslash does not escape in a standard string",
			src:    `SELECT 'a\', :x`,
			query:  `SELECT 'a\', $1`,
			params: []string{"x"},
		},
		{
			name:   "escape string with backslash quote",
			src:    `SELECT E'it\'s :a', e'\\', :x`,
			query:  `SELECT E'it\'s :a', e'\\', $1`,
			params: []string{"x"},
		},
		{
			name:   "an identifier ending in e is not an escape string prefix",
			src:    `SELECT name'\', :x`,
			query:  `SELECT name'\', $1`,
			params: []string{"x"},
		},
		{
			name:  "quoted identifiers",
			src:   `SELECT "col:a", "we""ird:b" FROM t`,
			query: `SELECT "col:a", "we""ird:b" FROM t`,
		},
		{
			name:   "dollar quoting",
			src:    "SELECT $$ :a $$, $fn$ it's :b $$ $fn$, :c",
			query:  "SELECT $$ :a $$, $fn$ it's :b $$ $fn$, $1",
			params: []string{"c"},
		},
		{
			name:   "comments",
			src:    "SELECT 1 -- :a\nWHERE x = :x /* :b /* :c */ still :d */",
			query:  "SELECT 1 -- :a\nWHERE x = $1 /* :b /* :c */ still :d */",
			params: []string{"x"},
		},
		{
			name:  "dollar inside identifiers",
			src:   "SELECT a$1, b$$ FROM t",
			query: "SELECT a$1, b$$ FROM t",
		},
		{
			name:   "parameters next to punctuation",
			src:    "SELECT (:a),:b,arr[:c] WHERE :d=:e",
			query:  "SELECT ($1),$2,arr[$3] WHERE $4=$5",
			params: []string{"a", "b", "c", "d", "e"},
		},
		{
			name:   "name characters",
			src:    "SELECT :_x1, :Upper, :a:b",
			query:  "SELECT $1, $2, $3:b",
			params: []string{"_x1", "Upper", "a"},
		},
		{
			name:  "non-ASCII is not a parameter name",
			src:   "SELECT 'é', :ü",
			query: "SELECT 'é', :ü",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := compile(tc.src)
			if err != nil {
				t.Fatalf("compile(%q): %v", tc.src, err)
			}
			if got.query != tc.query {
				t.Errorf("query\n got %q\nwant %q", got.query, tc.query)
			}
			if !reflect.DeepEqual(got.params, tc.params) {
				t.Errorf("params: got %q, want %q", got.params, tc.params)
			}
		})
	}
}

func TestCompileRefusesBadStatements(t *testing.T) {
	cases := []struct {
		src  string
		want string
	}{
		{"", "empty statement"},
		{"  \n ", "empty statement"},
		{"SELECT * FROM t WHERE id = $1", "positional placeholders"},
		{"SELECT ($2)", "positional placeholders"},
		{"SELECT 'abc", "unterminated string"},
		{`SELECT E'abc\'`, "unterminated string"},
		{`SELECT "abc`, "unterminated quoted identifier"},
		{"SELECT 1 /* a /* b */", "unterminated comment"},
		{"SELECT $$ abc", "unterminated dollar-quoted string"},
		{"SELECT $x$ abc $y$", "unterminated dollar-quoted string"},
	}
	for _, tc := range cases {
		_, err := compile(tc.src)
		if err == nil {
			t.Errorf("compile(%q) succeeded, want an error containing %q", tc.src, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("compile(%q) = %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
	if _, err := compile("SELECT $1"); !errors.Is(err, errPositional) {
		t.Errorf("positional error %v does not wrap errPositional", err)
	}
}
