package queue

import (
	"net/url"
	"regexp"
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

// redactSecrets removes from text the password that dsn carries, wherever it
// appears.
func redactSecrets(text, dsn string) string {
	for _, secret := range dsnPasswords(dsn) {
		if len(secret) >= 3 {
			text = strings.ReplaceAll(text, secret, "xxxxx")
		}
	}
	return text
}

// dsnPasswords returns the password in dsn in the forms it may be echoed in.
func dsnPasswords(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if p, has := u.User.Password(); has {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
		if p := u.Query().Get("password"); p != "" {
			out = append(out, p)
		}
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(dsn, -1) {
		p := m[2]
		out = append(out, p, strings.Trim(p, "'"))
	}
	return out
}

// quoteDSNValue quotes a value for a key=value connection string.
func quoteDSNValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
