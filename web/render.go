package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
)

// pageTemplate is the layout with one page's content.
type pageTemplate struct{ t *template.Template }

var pageNames = []string{"overview", "tasks", "task", "bulk", "streams", "schedules", "cdc", "processes", "error"}

func parsePages() (map[string]*pageTemplate, error) {
	out := map[string]*pageTemplate{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		out[name] = &pageTemplate{t: t}
	}
	return out, nil
}

// page is what every template gets: the layout's fields and the page's own.
type page struct {
	Title    string
	Nav      string // which menu entry is current
	Prefix   string
	CSRF     string
	ReadOnly bool
	Refresh  bool // offer live refresh
	Every    int  // live refresh interval, milliseconds
	Notice   string
	Data     any
}

// render writes a page; the response is buffered so a template error is a
// clean 500, not half a page.
func (d *dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Prefix = prefixOf(r.Context())
	p.CSRF = d.csrfToken(w, r)
	p.ReadOnly = d.cfg.readOnly
	p.Every = int(d.cfg.refresh / time.Millisecond)
	if p.Notice == "" {
		p.Notice = r.URL.Query().Get("notice")
	}
	var buf bytes.Buffer
	if err := d.pages[name].t.Execute(&buf, p); err != nil {
		d.cfg.logger.Error("esync dashboard: render", "page", name, "err", err)
		http.Error(w, "esync dashboard: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail shows an error page with a plain message.
func (d *dashboard) fail(w http.ResponseWriter, r *http.Request, status int, message string) {
	d.render(w, r, status, "error", page{Title: http.StatusText(status), Data: struct {
		Status  int
		Message string
	}{status, message}})
}

// failRead reports a database error without its text (which may name
// tables or values) and logs it.
func (d *dashboard) failRead(w http.ResponseWriter, r *http.Request, what string, err error) {
	d.cfg.logger.Error("esync dashboard: read failed", "what", what, "err", err)
	d.fail(w, r, http.StatusInternalServerError, "Reading "+what+" from the database failed; the server log has the details.")
}

var funcs = template.FuncMap{
	"ago":      ago,
	"when":     when,
	"duration": roundDuration,
	"pretty":   prettyJSON,
	"lower":    func(s queue.TaskState) string { return strings.ToLower(strings.ReplaceAll(string(s), " ", "-")) },
	"query":    func(v url.Values) template.URL { return template.URL(v.Encode()) },
	"join":     strings.Join,
	"states":   func() []queue.TaskState { return allStates },
	"add":      func(a, b int) int { return a + b },
	"itoa":     func(n int64) string { return strconv.FormatInt(n, 10) },
	"window":   func() int { return queue.DashboardScanWindow },
}

var allStates = []queue.TaskState{queue.TaskReady, queue.TaskRetry, queue.TaskInProgress, queue.TaskDone,
	queue.TaskFailed, queue.TaskCancelled, queue.TaskSuperseded}

// when prints a time in UTC to the second, "" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long ago (or in how long) t is, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + roundDuration(-d)
	}
	return roundDuration(d) + " ago"
}

// roundDuration prints d to a useful precision.
func roundDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%dd%s", d/(24*time.Hour), (d % (24 * time.Hour)).Round(time.Minute))
}

// prettyJSON indents a task's data for reading.
func prettyJSON(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}
