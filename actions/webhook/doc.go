// Package webhook calls HTTP endpoints from the queue: an Action that
// posts each task to a URL, and Lifecycle, middleware that calls start,
// success and fail webhooks around any action (after sonic's webhooks).
//
//	hook, err := webhook.New("https://crm.example.com/esync", webhook.WithSecret(secret))
//	if err != nil { ... }
//	sm.RegisterTaskHandler(hook, "crm.push")
//
//	around, err := webhook.Lifecycle(webhook.Hooks{
//		Start:   "https://telemetry.example.com/start",
//		Success: "https://telemetry.example.com/success",
//		Fail:    "https://telemetry.example.com/fail",
//	})
//	if err != nil { ... }
//	sm.RegisterTaskHandler(queue.Chain(myAction, around), "report")
//
// Requests are JSON POSTs: the Action sends a TaskPayload (id, name, key,
// data, attempt), lifecycle webhooks an Event (the same fields plus event,
// result and message). Each carries X-Esync-Event, X-Esync-Task-Id and
// X-Esync-Timestamp headers and, with WithSecret, X-Esync-Signature:
// "sha256=" and the hex HMAC-SHA256 of "<timestamp>.<body>". The timestamp
// is signed with the body so that a receiver can refuse replays; Verify
// checks both. A task may be delivered more than once (a retry after a lost
// answer), so receivers should treat the task id as an idempotency key.
//
// Answers: 2xx succeeds; 400 abandons (FAILED), as do other 4xx and
// redirects, which are not followed; 408, 429, 5xx, timeouts and network
// errors are retried (RETRY), no sooner than Retry-After asks. For the
// start webhook every failure other than 400 is a RETRY, and the action
// does not run. The success and fail webhooks report the outcome and never
// turn a success into a failure: their failure is noted in the task
// message (unless Hooks.StrictSuccess asks for sonic's acknowledging
// success webhook). Messages never contain the secret, nor the user
// information or query of a URL, which often hold tokens.
package webhook
