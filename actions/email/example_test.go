package email_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/email"
)

// Sending one task's message through a stand-in for SendGrid.
func ExampleAction_Do() {
	sendgrid := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Subject          string `json:"subject"`
			Personalizations []struct {
				To []struct{ Email string } `json:"to"`
			} `json:"personalizations"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		fmt.Println("SendGrid got:", r.Method, r.URL.Path, body.Subject, "to", body.Personalizations[0].To[0].Email)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sendgrid.Close()

	act, err := email.New("SG.example-key", email.WithHost(sendgrid.URL))
	if err != nil {
		panic(err)
	}
	data, _ := json.Marshal(email.Payload{
		From:    email.Address{Email: "shop@example.com", Name: "Shop"},
		To:      []email.Address{{Email: "ann@example.net"}},
		Subject: "Your order",
		Text:    "It ships today.",
	})
	res, msg := act.Do(queue.Task{Name: email.TaskName, Key: "order:42", RawData: data})
	fmt.Println(res, msg)
	// Output:
	// SendGrid got: POST /v3/mail/send Your order to ann@example.net
	// SUCCESS sent: SendGrid answered 202 Accepted
}

// A refusal is a permanent failure carrying SendGrid's own words.
func ExampleAction_Do_refused() {
	sendgrid := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}`)
	}))
	defer sendgrid.Close()

	act, _ := email.New("SG.example-key", email.WithHost(sendgrid.URL))
	data, _ := json.Marshal(email.Payload{
		From:    email.Address{Email: "someone@example.org"},
		To:      []email.Address{{Email: "ann@example.net"}},
		Subject: "Hello",
		HTML:    "<p>Hello</p>",
	})
	res, msg := act.Do(queue.Task{Name: email.TaskName, Key: "hello", RawData: data})
	fmt.Println(res)
	fmt.Println(msg)
	// Output:
	// ERROR
	// not sent: SendGrid answered 403 Forbidden: The from address does not match a verified Sender Identity. (field from)
}

// Validate reports every problem at once; Enqueue refuses such a payload.
func ExamplePayload_Validate() {
	p := email.Payload{
		From: email.Address{Email: "Shop <shop@example.com>"},
		To:   []email.Address{{Email: "ann@example.net"}},
		Text: "no subject",
	}
	fmt.Println(p.Validate())
	// Output:
	// email: invalid payload: from: "Shop <shop@example.com>" is not a plain address (put a display name in name); subject: required unless a template_id is given
}
