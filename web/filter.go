package web

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
)

// taskFilter is the tasks page's filter as the form sends it.
type taskFilter struct {
	State, Name, Key, Match, After, Before string
	Filter                                 queue.TaskListFilter
}

// filterFields are the query parameters of a filter; anything else (the
// cursor, the page size, a notice) is not part of it.
var filterFields = []string{"state", "name", "key", "match", "after", "before"}

// timeLayouts are what the time fields accept: a browser's datetime-local
// value (read as UTC, as the page says) or RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

// parseFilter reads a filter from v. An error says which field is wrong.
func parseFilter(v url.Values) (taskFilter, error) {
	for _, name := range filterFields {
		if len(v[name]) > 1 {
			return taskFilter{}, fmt.Errorf("%s is given more than once", name)
		}
	}
	f := taskFilter{
		State:  strings.TrimSpace(v.Get("state")),
		Name:   strings.TrimSpace(v.Get("name")),
		Key:    v.Get("key"),
		Match:  v.Get("match"),
		After:  strings.TrimSpace(v.Get("after")),
		Before: strings.TrimSpace(v.Get("before")),
	}
	f.Filter.State = queue.TaskState(f.State)
	f.Filter.Name = f.Name
	switch f.Match {
	case "", "exact":
		f.Filter.Key = f.Key
	case "prefix":
		f.Filter.KeyPrefix = f.Key
	default:
		return taskFilter{}, fmt.Errorf("match must be exact or prefix, not %q", f.Match)
	}
	var err error
	if f.Filter.CreatedAfter, err = parseTime("after", f.After); err != nil {
		return taskFilter{}, err
	}
	if f.Filter.CreatedBefore, err = parseTime("before", f.Before); err != nil {
		return taskFilter{}, err
	}
	if err := f.Filter.Validate(); err != nil {
		return taskFilter{}, errors.New(strings.TrimPrefix(err.Error(), queue.ErrInvalidFilter.Error()+": "))
	}
	return f, nil
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s must be a time like 2026-01-02T15:04 (UTC)", field)
}

// values is the filter as query parameters, for links and forms.
func (f taskFilter) values() url.Values {
	v := url.Values{}
	for name, value := range map[string]string{"state": f.State, "name": f.Name, "key": f.Key, "after": f.After, "before": f.Before} {
		if value != "" {
			v.Set(name, value)
		}
	}
	if f.Key != "" && f.Match == "prefix" {
		v.Set("match", "prefix")
	}
	return v
}

// Empty reports whether the filter matches every task.
func (f taskFilter) Empty() bool { return len(f.values()) == 0 }

// parseID reads a positive task id.
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a task id (a positive number)", s)
	}
	return id, nil
}
