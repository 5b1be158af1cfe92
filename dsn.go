package queue

import (
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// dsnPassword matches a password=... pair in a key=value connection string,
// quoted or not.
var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

// RedactDSN returns dsn with its password replaced by "xxxxx", for logs and
// error text. It handles URLs and key=value strings.
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.Contains(dsn, "://") {
		// A URL that does not parse: hide whatever stands between the
		// user's colon and the @.
		return urlPassword.ReplaceAllString(dsn, "${1}xxxxx@")
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// urlPassword matches the user:password@ part of a URL.
var urlPassword = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)

// redactSecrets removes from text the secrets that dsn carries, wherever
// they appear: its passwords (password, sslpassword) and the paths or inline
// contents of its certificate and key (sslrootcert, sslcert, sslkey), which
// lib/pq's file errors quote.
func redactSecrets(text, dsn string) string {
	for _, secret := range dsnPasswords(dsn) {
		if len(secret) >= 3 {
			text = strings.ReplaceAll(text, secret, "xxxxx")
		}
	}
	return text
}

// secretKeys are the connection parameters whose values never reach error
// text.
var secretKeys = []string{"password", "sslpassword", "sslrootcert", "sslcert", "sslkey"}

// dsnValue matches key=value pairs of a key=value connection string, quoted
// or not.
var dsnValue = regexp.MustCompile(`(?i)\b(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]*)`)

// dsnPasswords returns the secrets in dsn (see secretKeys), longest first,
// in the forms they may be echoed in.
func dsnPasswords(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if p, has := u.User.Password(); has {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
		q := u.Query()
		for _, k := range secretKeys {
			if v := q.Get(k); v != "" {
				out = append(out, v, url.QueryEscape(v))
			}
		}
	} else {
		for _, m := range dsnValue.FindAllStringSubmatch(dsn, -1) {
			if !slices.Contains(secretKeys, strings.ToLower(m[1])) {
				continue
			}
			v := m[2]
			out = append(out, v)
			if strings.HasPrefix(v, "'") {
				unq := strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(strings.Trim(v, "'"))
				out = append(out, strings.Trim(v, "'"), unq)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// quoteDSNValue quotes a value for a key=value connection string.
func quoteDSNValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
