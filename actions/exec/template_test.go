package execaction

import (
	"encoding/json"
	"strings"
	"testing"
)

func decode(t *testing.T, raw string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTemplateRender(t *testing.T) {
	data := decode(t, `{"id": 12345678901234567890, "f": 1.50, "s": "{{id}}", "b": false,
		"o": {"k": "<&>", "n": [1, {"x": "y"}]}, "with-dash": "d"}`)
	cases := map[string]string{
		"plain":                "plain",
		"{{id}}":               "12345678901234567890",
		"--id={{ id }}!":       "--id=12345678901234567890!",
		"{{f}}":                "1.50",
		"{{b}}":                "false",
		"{{s}}":                "{{id}}", // values are not expanded again
		"{{o}}":                `{"k":"<&>","n":[1,{"x":"y"}]}`,
		"{{o.n.1.x}}{{o.n.0}}": "y1",
		"{{with-dash}}":        "d",
		"a}}b":                 "a}}b",
		"{{id}}-{{id}}":        "12345678901234567890-12345678901234567890",
		"":                     "",
	}
	for src, want := range cases {
		tmpl, err := parseTemplate(src)
		if err != nil {
			t.Errorf("parse %q: %v", src, err)
			continue
		}
		got, err := tmpl.render(data)
		if err != nil {
			t.Errorf("render %q: %v", src, err)
			continue
		}
		if got != want {
			t.Errorf("render %q = %q, want %q", src, got, want)
		}
	}
}

func TestTemplateKinds(t *testing.T) {
	for src, want := range map[string][2]bool{ // bare, literal
		"{{a}}":      {true, false},
		" {{a}}":     {false, false},
		"-{{a}}":     {false, false},
		"{{a}}{{b}}": {false, false},
		"--":         {false, true},
		"":           {false, true},
	} {
		tmpl, err := parseTemplate(src)
		if err != nil {
			t.Fatal(err)
		}
		_, lit := tmpl.literal()
		if tmpl.bare() != want[0] || lit != want[1] {
			t.Errorf("%q: bare %v literal %v, want %v", src, tmpl.bare(), lit, want)
		}
	}
}
