package email_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/esync/queue/actions/email"
)

func TestValidate(t *testing.T) {
	ok := simplePayload
	for _, c := range []struct {
		name string
		p    func() email.Payload
		want []string // empty: valid
	}{
		{"simple", ok, nil},
		{"html only", func() email.Payload { p := ok(); p.Text, p.HTML = "", "<p>hi</p>"; return p }, nil},
		{"template without subject or content", func() email.Payload {
			p := ok()
			p.Subject, p.Text, p.TemplateID, p.TemplateData = "", "", "d-1", map[string]any{"a": 1}
			return p
		}, nil},
		{"nothing", func() email.Payload { return email.Payload{} }, []string{"from: an address is required", "to: at least one recipient", "subject: required", "text or html is required"}},
		{"display name in address", func() email.Payload { p := ok(); p.From.Email = "Shop <shop@example.com>"; return p }, []string{"from:", "not a plain address"}},
		{"no at sign", func() email.Payload { p := ok(); p.CC = []email.Address{{Email: "carl"}}; return p }, []string{"cc[0]:", `"carl" is not a valid address`}},
		{"empty recipient", func() email.Payload { p := ok(); p.BCC = []email.Address{{Name: "Nobody"}}; return p }, []string{"bcc[0]: empty address"}},
		{"line break in name", func() email.Payload { p := ok(); p.To[0].Name = "Ann\r\nBcc: x@example.com"; return p }, []string{"to[0]:", "line break"}},
		{"duplicate across lists", func() email.Payload { p := ok(); p.BCC = []email.Address{{Email: "ANN@example.net"}}; return p }, []string{"bcc[0]:", "already a recipient as to[0]"}},
		{"bad reply-to", func() email.Payload { p := ok(); p.ReplyTo = &email.Address{Email: "@"}; return p }, []string{"reply_to:"}},
		{"blank subject", func() email.Payload { p := ok(); p.Subject = "  "; return p }, []string{"subject: required"}},
		{"subject line break", func() email.Payload { p := ok(); p.Subject = "a\nb"; return p }, []string{"subject: contains a line break"}},
		{"template data alone", func() email.Payload { p := ok(); p.TemplateData = map[string]any{"a": 1}; return p }, []string{"template_data: given without a template_id"}},
		{"too many recipients", func() email.Payload {
			p := ok()
			for i := range email.MaxRecipients {
				p.CC = append(p.CC, email.Address{Email: fmt.Sprintf("r%d@example.org", i)})
			}
			return p
		}, []string{"1001 recipients"}},
		{"attachment problems", func() email.Payload {
			p := ok()
			p.Attachments = []email.Attachment{
				{Content: "aGVsbG8=", Filename: "ok.txt"},
				{Content: "not base64!", Filename: "a.txt"},
				{Content: "aGVsbG8="},
				{Filename: "empty.txt"},
				{Content: "aGVsbG8=", Filename: "i.png", Disposition: "inline"},
				{Content: "aGVsbG8=", Filename: "x", Disposition: "sideways"},
				{Content: "aGVsbG8=", Filename: "x", Type: "text/plain; charset=utf-8"},
			}
			return p
		}, []string{
			"attachments[1]: content is not valid base64",
			"attachments[2]: filename is required",
			"attachments[3]: content is empty",
			"attachments[4]: content_id is required for an inline attachment",
			`attachments[5]: disposition "sideways"`,
			"attachments[6]: type",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.p().Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("valid payload refused: %v", err)
				}
				return
			}
			if !errors.Is(err, email.ErrInvalidPayload) {
				t.Fatalf("error %v does not wrap ErrInvalidPayload", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if c.name == "attachment problems" && strings.Contains(err.Error(), "attachments[0]") {
				t.Errorf("valid attachment reported: %v", err)
			}
		})
	}
}

// A Payload survives the trip through JSON, which is how it is queued.
func TestPayloadJSONKeys(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	raw := []byte(`{"from":{"email":"a@example.com","name":"A"},"to":[{"email":"b@example.com"}],
		"cc":[{"email":"c@example.com"}],"bcc":[{"email":"d@example.com"}],"reply_to":{"email":"e@example.com"},
		"subject":"s","text":"t","html":"h",
		"attachments":[{"content":"eA==","filename":"x.txt","type":"text/plain","disposition":"inline","content_id":"x"}]}`)
	res, msg := actionFor(t, f).Do(taskOf(t, raw))
	if res != "SUCCESS" {
		t.Fatalf("%s %s", res, msg)
	}
	got, _ := f.Only(t)
	if got.Personalizations[0].CC[0].Email != "c@example.com" || got.Personalizations[0].BCC[0].Email != "d@example.com" ||
		got.ReplyTo.Email != "e@example.com" || got.Attachments[0].ContentID != "x" || len(got.Content) != 2 {
		t.Errorf("documented JSON keys not all read: %+v", got)
	}
}
