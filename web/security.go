package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// authorized checks HTTP basic credentials in constant time. Both sides
// are hashed first, so the comparison does not even leak their lengths.
func (d *dashboard) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	gotUser, wantUser := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(d.cfg.user))
	gotPass, wantPass := sha256.Sum256([]byte(pass)), sha256.Sum256([]byte(d.cfg.pass))
	userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
	passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
	return userOK&passOK == 1
}

// csrfCookie holds a random value per browser; a form carries the HMAC of
// that value under the dashboard's key. A forged form from another site
// can neither read the cookie nor compute the HMAC without the key, and a
// cookie planted by a sibling domain does not come with a valid token.
const csrfCookie = "esync_csrf"

// csrfToken returns the token for the request's browser, setting the
// cookie when it has none yet.
func (d *dashboard) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return d.sign(c.Value)
	}
	b := make([]byte, 32)
	rand.Read(b)
	value := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    value,
		Path:     prefixOf(r.Context()) + "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	return d.sign(value)
}

func (d *dashboard) sign(value string) string {
	m := hmac.New(sha256.New, d.cfg.csrfKey)
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfValid checks the form's token against the browser's cookie.
func (d *dashboard) csrfValid(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(d.sign(c.Value)))
}

// crossOrigin refuses requests a browser marks as coming from another
// site (Sec-Fetch-Site, Origin), before the token is even looked at.
var crossOrigin = http.NewCrossOriginProtection()

type prefixKey struct{}

func withPrefix(ctx context.Context, prefix string) context.Context {
	return context.WithValue(ctx, prefixKey{}, prefix)
}

func prefixOf(ctx context.Context) string {
	p, _ := ctx.Value(prefixKey{}).(string)
	return p
}

// who names the person behind a request for the log: the basic auth user,
// and the client address.
func (d *dashboard) who(r *http.Request) []any {
	attrs := []any{"remote", r.RemoteAddr}
	if user, _, ok := r.BasicAuth(); ok && d.cfg.auth {
		attrs = append(attrs, "user", user)
	}
	return attrs
}
