package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/webhook"
)

// Posting a task to a receiver that checks its signature.
func ExampleNew() {
	secret := "shared-secret"
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(secret), r.Header, body, 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Println("received:", string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	hook, err := webhook.New(receiver.URL+"/esync", webhook.WithSecret(secret))
	if err != nil {
		panic(err)
	}
	res, msg := hook.Do(queue.Task{ID: 9, Name: "crm.push", Key: "customer:7", Attempt: 1, RawData: []byte(`{"email":"ann@example.net"}`)})
	fmt.Println(res, msg[:len("delivered")])
	// Output:
	// received: {"id":9,"name":"crm.push","key":"customer:7","data":{"email":"ann@example.net"},"attempt":1}
	// SUCCESS delivered
}

// Start, success and fail webhooks around an action; a 400 to "start"
// abandons the task without running it.
func ExampleLifecycle() {
	telemetry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("webhook:", r.Header.Get(webhook.HeaderEvent), r.Header.Get(webhook.HeaderTaskID))
		if r.Header.Get(webhook.HeaderTaskID) == "2" && r.URL.Path == "/start" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer telemetry.Close()

	around, err := webhook.Lifecycle(webhook.Hooks{
		Start:   telemetry.URL + "/start",
		Success: telemetry.URL + "/success",
		Fail:    telemetry.URL + "/fail",
	})
	if err != nil {
		panic(err)
	}
	action := queue.Chain(queue.TaskActionFunc(func(t queue.Task) (queue.TaskResult, queue.TaskMessage) {
		fmt.Println("action runs task", t.ID)
		return queue.TaskResultSuccess, "done"
	}), around)

	for _, id := range []int64{1, 2} {
		res, _ := action.Do(queue.Task{ID: id, Name: "report", Key: fmt.Sprint("k", id)})
		fmt.Println("result:", res)
	}
	// Output:
	// webhook: start 1
	// action runs task 1
	// webhook: success 1
	// result: SUCCESS
	// webhook: start 2
	// result: ERROR
}

// What a receiver does with the signature headers.
func ExampleVerify() {
	secret := []byte("shared-secret")
	body := []byte(`{"id":1}`)
	h := http.Header{}
	h.Set(webhook.HeaderTimestamp, "1700000000")
	h.Set(webhook.HeaderSignature, webhook.Sign(secret, 1700000000, body))

	fmt.Println(webhook.Verify(secret, h, body, 0))
	fmt.Println(webhook.Verify(secret, h, []byte(`{"id":2}`), 0))
	// Output:
	// <nil>
	// webhook: bad signature: signature does not match the body
}
