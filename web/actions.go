package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/esync/queue"
)

// maxForm bounds the body of an action's form.
const maxForm = 64 << 10

// action wraps a POST handler: a request from another site, without this
// browser's CSRF token, or to a read-only dashboard changes nothing.
func (d *dashboard) action(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.cfg.readOnly {
			d.cfg.logger.Warn("esync dashboard: action refused: read-only", append(d.who(r), "path", r.URL.Path)...)
			d.fail(w, r, http.StatusForbidden, "This dashboard is read-only: it changes nothing.")
			return
		}
		if err := crossOrigin.Check(r); err != nil {
			d.cfg.logger.Warn("esync dashboard: action refused: cross-origin", append(d.who(r), "path", r.URL.Path)...)
			d.fail(w, r, http.StatusForbidden, "Refused: the request came from another site.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !d.csrfValid(r) {
			d.cfg.logger.Warn("esync dashboard: action refused: bad CSRF token", append(d.who(r), "path", r.URL.Path)...)
			d.fail(w, r, http.StatusForbidden, "Refused: the form's security token is missing or stale. Reload the page and try again.")
			return
		}
		h(w, r)
	}
}

// done redirects after an action, with a notice for the next page.
func (d *dashboard) done(w http.ResponseWriter, r *http.Request, to, notice string) {
	u := prefixOf(r.Context()) + to
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	http.Redirect(w, r, u+sep+"notice="+url.QueryEscape(notice), http.StatusSeeOther)
}

func (d *dashboard) retryTask(w http.ResponseWriter, r *http.Request) {
	d.taskAction(w, r, "retry", func(id int64) error { return d.driver.RetryTask(r.Context(), id) },
		queue.ErrNotRetryable, "is READY again")
}

func (d *dashboard) cancelTask(w http.ResponseWriter, r *http.Request) {
	d.taskAction(w, r, "cancel", func(id int64) error {
		return d.driver.CancelTask(r.Context(), id, "cancelled from the dashboard")
	}, queue.ErrNotCancellable, "is CANCELLED")
}

// taskAction runs one task's action and logs it.
func (d *dashboard) taskAction(w http.ResponseWriter, r *http.Request, what string, do func(int64) error, refused error, outcome string) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, err.Error()+".")
		return
	}
	log := append(d.who(r), "action", what, "task", id)
	err = do(id)
	switch {
	case errors.Is(err, queue.ErrTaskNotFound):
		d.cfg.logger.Warn("esync dashboard: action on a missing task", log...)
		d.fail(w, r, http.StatusNotFound, fmt.Sprintf("There is no task %d.", id))
	case errors.Is(err, refused):
		d.cfg.logger.Warn("esync dashboard: action refused", append(log, "reason", err.Error())...)
		d.fail(w, r, http.StatusConflict, fmt.Sprintf("Task %d cannot be %s: %s.", id, pastTense(what), reason(err, refused)))
	case err != nil:
		d.cfg.logger.Error("esync dashboard: action failed", append(log, "err", err)...)
		d.fail(w, r, http.StatusInternalServerError, "The action failed; the server log has the details.")
	default:
		d.cfg.logger.Info("esync dashboard: action", log...)
		d.done(w, r, "/tasks/"+strconv.FormatInt(id, 10), fmt.Sprintf("Task %d %s.", id, outcome))
	}
}

func pastTense(action string) string {
	if action == "cancel" {
		return "cancelled"
	}
	return action + "d"
}

// reason is err's text without the sentinel's.
func reason(err, sentinel error) string {
	s := err.Error()
	return strings.TrimPrefix(s, sentinel.Error()+": ")
}

// bulkApply runs a confirmed bulk action on what its preview counted.
func (d *dashboard) bulkApply(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.PostForm)
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, "Bad filter: "+err.Error()+".")
		return
	}
	action := queue.BulkAction(r.PostFormValue("action"))
	if action != queue.BulkRetry && action != queue.BulkCancel {
		d.fail(w, r, http.StatusBadRequest, "Bad bulk action: give retry or cancel.")
		return
	}
	upTo, err := parseID(r.PostFormValue("up_to"))
	if err != nil {
		d.fail(w, r, http.StatusBadRequest, "Bad confirmation: "+err.Error()+". Start again from the tasks page.")
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		d.fail(w, r, http.StatusBadRequest, "A bulk action needs its confirmation.")
		return
	}
	log := append(d.who(r), "action", "bulk "+string(action), "filter", f.values().Encode(), "up_to", upTo)
	res, err := d.driver.DashboardBulkApply(r.Context(), queue.BulkPreview{Action: action, UpToID: upTo}, f.Filter, "cancelled in bulk from the dashboard")
	if err != nil {
		d.cfg.logger.Error("esync dashboard: bulk action failed", append(log, "changed", res.Changed, "err", err)...)
		d.fail(w, r, http.StatusInternalServerError, fmt.Sprintf("The bulk action stopped after %d tasks; the server log has the details.", res.Changed))
		return
	}
	d.cfg.logger.Info("esync dashboard: action", append(log, "changed", res.Changed, "skipped", res.Skipped)...)
	notice := fmt.Sprintf("%d tasks %s.", res.Changed, map[queue.BulkAction]string{queue.BulkRetry: "retried", queue.BulkCancel: "cancelled"}[action])
	if res.Skipped > 0 {
		notice += fmt.Sprintf(" %d left as they were (changed meanwhile, or a newer task of their key has started).", res.Skipped)
	}
	d.done(w, r, "/tasks?"+f.values().Encode(), notice)
}

func (d *dashboard) pauseStream(w http.ResponseWriter, r *http.Request) {
	d.streamAction(w, r, "pause", func(c StreamController, name string) error {
		return c.PauseStream(r.Context(), name, d.actor(r))
	})
}

func (d *dashboard) resumeStream(w http.ResponseWriter, r *http.Request) {
	d.streamAction(w, r, "resume", func(c StreamController, name string) error {
		_, err := c.ResumeStream(r.Context(), name)
		return err
	})
}

func (d *dashboard) streamAction(w http.ResponseWriter, r *http.Request, what string, do func(StreamController, string) error) {
	name := r.PathValue("name")
	c := d.cfg.caps.streamControl
	if c == nil {
		d.fail(w, r, http.StatusNotImplemented, "This queue cannot pause or resume streams yet: no stream control is available.")
		return
	}
	if name == "" || len(name) > 200 {
		d.fail(w, r, http.StatusBadRequest, "Bad stream name.")
		return
	}
	log := append(d.who(r), "action", what+" stream", "stream", name)
	if err := do(c, name); err != nil {
		d.cfg.logger.Error("esync dashboard: action failed", append(log, "err", err)...)
		d.fail(w, r, http.StatusConflict, fmt.Sprintf("Stream %q could not be %sd: %v", name, what, err))
		return
	}
	d.cfg.logger.Info("esync dashboard: action", log...)
	d.done(w, r, "/streams", fmt.Sprintf("Stream %q %sd.", name, what))
}

// actor names who acts, for a pause's "paused by": the basic auth user, or
// the dashboard.
func (d *dashboard) actor(r *http.Request) string {
	if user, _, ok := r.BasicAuth(); ok && d.cfg.user != "" {
		return user + " (dashboard)"
	}
	return "dashboard"
}
