package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/esync/queue"
)

// crmBatchAction applies CDC tasks to the CRM in bulk: one POST
// /v1/contacts/batch per call, with an operation per task (create and
// update upsert the contact, delete deletes it). It is a queue.BatchAction,
// safe for concurrent use, and shares the URL, token, timeout and HTTP
// client of the crmAction it is made from.
//
// Each task gets the outcome of its own operation: 2xx (and 404 to a
// delete: already gone) makes it DONE; 408, 409, 425, 429 and 5xx make it
// RETRY; 400, 422 and any other status make it FAILED with the CRM's error
// text. When the request fails as a whole, every task sent gets what
// crmAction gives a task for that answer (a Retry-After asked of each),
// and no answer (a timeout, a network error, the call's end) makes each a
// RETRY. Task data that cannot be used fails that task alone, and it is
// not sent. The token never appears in a message.
type crmBatchAction struct {
	a *crmAction
}

// newCRMBatchAction returns a batch action that talks to the CRM as a does.
func newCRMBatchAction(a *crmAction) *crmBatchAction {
	return &crmBatchAction{a: a}
}

// bulkOp is one operation as the batch action sends it; a delete carries
// the external id alone.
type bulkOp struct {
	Op         string  `json:"op"`
	ExternalID string  `json:"external_id"`
	Name       *string `json:"name,omitempty"`
	Email      *string `json:"email,omitempty"`
	Tier       *string `json:"tier,omitempty"`
}

// bulkRequest is the body of a bulk request.
type bulkRequest struct {
	Operations []bulkOp `json:"operations"`
}

// DoBatch sends the tasks' changes in one bulk request and returns each
// task's outcome.
func (b *crmBatchAction) DoBatch(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
	results := make([]queue.BatchResult, len(tasks))
	var sent []queue.Task
	var ops []bulkOp
	var at []int // index in tasks of each task sent
	for i, task := range tasks {
		ch, err := decodeCRMChange(task)
		if err != nil {
			results[i] = b.result(queue.TaskResultPermanentFailure, "not sent: bad task data: "+err.Error())
			continue
		}
		sent, ops, at = append(sent, task), append(ops, ch.operation()), append(at, i)
	}
	if len(ops) == 0 {
		return results
	}
	for j, r := range b.send(ctx, sent, ops) {
		results[at[j]] = r
	}
	return results
}

// send makes the bulk request and returns the outcome of each operation.
func (b *crmBatchAction) send(ctx context.Context, tasks []queue.Task, ops []bulkOp) []queue.BatchResult {
	all := func(res queue.TaskResult, msg string) []queue.BatchResult {
		out := make([]queue.BatchResult, len(tasks))
		for i := range out {
			out[i] = b.result(res, msg)
		}
		return out
	}
	if err := ctx.Err(); err != nil {
		return all(queue.TaskResultRetryFailure, "not sent: the run ended before sending ("+err.Error()+")")
	}
	ans, err := b.a.call(ctx, http.MethodPost, crmBulkPath, bulkRequest{Operations: ops})
	what := fmt.Sprintf("%s (%d records)", crmBulkPath, len(ops)) // for messages
	if err != nil {
		return all(b.a.noAnswer(ctx, http.MethodPost, what, err))
	}
	ans.path = what
	out := make([]queue.BatchResult, len(tasks))
	if ans.status < 200 || ans.status >= 300 {
		for i, task := range tasks {
			out[i] = b.result(b.a.classify(task, ans, ""))
		}
		return out
	}
	var answer bulkAnswer
	if err := json.Unmarshal(ans.body, &answer); err != nil || len(answer.Results) != len(ops) {
		return all(queue.TaskResultRetryFailure, fmt.Sprintf("CRM answered %d to POST %s without a result for each record (%d results): will retry",
			ans.status, what, len(answer.Results)))
	}
	for i, r := range answer.Results {
		out[i] = b.result(classifyBulkResult(ops[i], r, len(ops)))
	}
	return out
}

// classifyBulkResult turns the CRM's result for one operation of a bulk
// request of n into the task's outcome.
func classifyBulkResult(op bulkOp, r bulkResult, n int) (queue.TaskResult, string) {
	in := fmt.Sprintf("in a bulk request of %d", n)
	head := fmt.Sprintf("CRM answered %d %s to the %s of contact %s %s", r.Status, http.StatusText(r.Status), op.Op, op.ExternalID, in)
	switch s := r.Status; {
	case r.ExternalID != op.ExternalID:
		return queue.TaskResultRetryFailure, fmt.Sprintf("CRM's result for the %s of contact %s %s names contact %q: will retry",
			op.Op, op.ExternalID, in, crmOneLine(r.ExternalID, 130))
	case s >= 200 && s < 300 && op.Op == "delete":
		return queue.TaskResultSuccess, fmt.Sprintf("deleted contact %s from the CRM (%d, %s)", op.ExternalID, s, in)
	case s >= 200 && s < 300:
		return queue.TaskResultSuccess, fmt.Sprintf("upserted contact %s in the CRM (%d %s, CRM id %s, %s)",
			op.ExternalID, s, crmOneLine(r.Code, 50), crmOneLine(r.ID, 50), in)
	case s == http.StatusNotFound && op.Op == "delete" && r.Code == "not_found":
		return queue.TaskResultSuccess, fmt.Sprintf("contact %s was already gone from the CRM (404 to the delete %s)", op.ExternalID, in)
	case retryableStatus(s):
		return queue.TaskResultRetryFailure, head + ": " + crmErrorText(r.Code, r.Message) + "; will retry"
	default:
		return queue.TaskResultPermanentFailure, head + ": " + crmErrorText(r.Code, r.Message)
	}
}

// result is a task's outcome with the token redacted from its message.
func (b *crmBatchAction) result(res queue.TaskResult, msg string) queue.BatchResult {
	return queue.BatchResult{Result: res, Message: queue.TaskMessage(b.a.redact(msg))}
}

// String describes the action without its token.
func (b *crmBatchAction) String() string {
	return "crmBatchAction{" + b.a.String() + "}"
}

// Format prints the action as String does, whatever the verb, so the token
// cannot reach a log line through fmt.
func (b *crmBatchAction) Format(f fmt.State, _ rune) { io.WriteString(f, b.String()) } //nolint:errcheck // as fmt does

// operation is the change as a bulk operation.
func (ch crmChange) operation() bulkOp {
	if ch.action == "delete" {
		return bulkOp{Op: "delete", ExternalID: ch.externalID}
	}
	body := ch.body(false)
	return bulkOp{Op: "upsert", ExternalID: ch.externalID, Name: &body.Name, Email: &body.Email, Tier: &body.Tier}
}
