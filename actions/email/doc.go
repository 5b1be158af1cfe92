// Package email sends queued email through SendGrid's v3 API.
//
// Queue a message with Enqueue, which checks it first (addresses, a
// recipient, a subject and content or a template, base64 attachments) and
// queues nothing when it is wrong. Register an Action, built with New (or
// NewEmailSendgridAction, the original form), under TaskName:
//
//	act, err := email.New(os.Getenv("SENDGRID_API_KEY"), email.WithHost(email.EUHost))
//	if err != nil { ... }
//	sm.RegisterTaskHandler(act, email.TaskName)
//	id, err := email.Enqueue(ctx, tm, "welcome:42", email.Payload{
//		From:    email.Address{Email: "hello@example.com", Name: "Example"},
//		To:      []email.Address{{Email: "ann@example.net"}},
//		Subject: "Welcome",
//		Text:    "Hello Ann",
//	})
//
// Enqueue stores the task under the key "email:" + key (see Key): the queue
// lets only the newest pending task of a key run, across task names, and the
// prefix keeps an email keyed "welcome:42" from being superseded by another
// service's task keyed "welcome:42". A newer email with the same key does
// replace a pending one, so key an email by what should be sent once.
//
// Results: a 2xx answer is DONE; 400, 401, 403, 413, any other 4xx and
// redirects are FAILED with SendGrid's error text; 408, 429, 5xx, timeouts
// and network errors are RETRY, no sooner than the Retry-After header (or,
// on 429, X-RateLimit-Reset) asks, capped at a day. Task data that cannot
// be decoded or would be refused is FAILED and nothing is sent. Tasks in the
// original esync shape (EmailPayload) are still understood.
//
// A retried task may send its message twice if SendGrid accepted it but the
// answer was lost (a timeout after the request left): delivery is at least
// once, as for every queue action.
//
// The API key is never written to a task message or an error, and an
// Action prints redacted with any fmt verb. The package does not log.
package email
