package main

import (
	"strings"

	"github.com/esync/queue"
)

// allStates lists every task state in the order a task moves through them.
var allStates = []queue.TaskState{queue.TaskReady, queue.TaskInProgress, queue.TaskRetry, queue.TaskDone,
	queue.TaskFailed, queue.TaskCancelled, queue.TaskSuperseded}

// stateNames are the states as a shell takes them without quotes
// (IN_PROGRESS for "IN PROGRESS").
func stateNames() []string {
	names := make([]string, len(allStates))
	for i, s := range allStates {
		names[i] = strings.ReplaceAll(string(s), " ", "_")
	}
	return names
}

// parseStates reads states given as flag values, each one or several
// separated by commas. Case does not matter, and '_', '-' and spaces are the
// same: IN_PROGRESS, in-progress and 'IN PROGRESS' all name IN PROGRESS.
// CANCELED is taken for CANCELLED.
func parseStates(values []string) ([]queue.TaskState, error) {
	var out []queue.TaskState
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			st, ok := parseState(part)
			if !ok {
				return nil, usagef("unknown state %s; valid states: %s", quoteArg(part), joinNames(stateNames()))
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// parseState reads one state name.
func parseState(s string) (queue.TaskState, bool) {
	norm := strings.ToUpper(strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == '_' || r == '-' || r == ' ' || r == '\t'
	}), " "))
	if norm == "CANCELED" {
		norm = string(queue.TaskCancelled)
	}
	st := queue.TaskState(norm)
	return st, st.Valid()
}
