package workerconfig

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// expand replaces ${NAME} in s with the variable NAME from lookup and $$
// with $. It returns the values it put in, to be kept secret.
func expand(s string, lookup func(string) (string, bool)) (string, []string, error) {
	if !strings.Contains(s, "$") {
		return s, nil, nil
	}
	var b strings.Builder
	var used []string
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", nil, fmt.Errorf("unclosed ${ (write $$ for a literal $)")
			}
			name := s[i+2 : i+2+end]
			if !validEnvName(name) {
				return "", nil, fmt.Errorf("${%s}: not a valid environment variable name", name)
			}
			v, ok := lookup(name)
			if !ok {
				return "", nil, fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			if v != "" {
				used = append(used, v)
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), used, nil
}

// validEnvName accepts portable variable names.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// expandAll expands every string value of the configuration, in place,
// and records the values that came from the environment.
func (c *Config) expandAll(lookup func(string) (string, bool)) error {
	var problems []error
	var walk func(v reflect.Value, path toml.Key)
	walk = func(v reflect.Value, path toml.Key) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				tag := t.Field(i).Tag.Get("toml")
				if tag == "" || !t.Field(i).IsExported() {
					continue
				}
				walk(v.Field(i), append(append(toml.Key{}, path...), tag))
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path)
			}
		case reflect.Map:
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				elem := reflect.New(v.Type().Elem()).Elem()
				elem.Set(v.MapIndex(k))
				walk(elem, append(append(toml.Key{}, path...), k.String()))
				v.SetMapIndex(k, elem)
			}
		case reflect.String:
			out, used, err := expand(v.String(), lookup)
			if err != nil {
				problems = append(problems, c.errorAt(path, "%v", err))
				return
			}
			v.SetString(out)
			c.secrets = append(c.secrets, used...)
		}
	}
	walk(reflect.ValueOf(c).Elem(), nil)
	sort.Slice(c.secrets, func(i, j int) bool { return len(c.secrets[i]) > len(c.secrets[j]) })
	return joinProblems(problems)
}

// Redact replaces every value that came from the environment in s with
// [redacted]: use it on any text that may quote the configuration.
func (c *Config) Redact(s string) string {
	for _, secret := range c.secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}
