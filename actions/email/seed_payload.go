package email

import "strings"

// EmailPayload is the task data of the original esync email action. Tasks
// queued in this shape (for example rows kept by an in-place upgrade of the
// original queue table) are still sent; new code should queue a Payload.
type EmailPayload struct {
	// Attachments are files sent with the message.
	Attachments []EmailAttachment `json:"attachments"`
	// FromEmail and FromName are the sender.
	FromEmail string `json:"from_email"`
	FromName  string `json:"from_name"`
	// HTMLBody is the text/html body.
	HTMLBody string `json:"html_body"`
	// ReplyToEmail and ReplyToName, when set, are where replies go.
	ReplyToEmail string `json:"reply_to_email"`
	ReplyToName  string `json:"reply_to_name"`
	// Subject is the subject line.
	Subject string `json:"subject"`
	// TextBody is the text/plain body.
	TextBody string `json:"text_body"`
	// ToEmail and ToName are the one main recipient.
	ToEmail string `json:"to_email"`
	ToName  string `json:"to_name"`
	// CCEmails are the copied recipients.
	CCEmails []Address `json:"cc_emails"`
}

// EmailAttachment is an attachment in the original shape. Its JSON keys are
// the Go field names, as in the original.
type EmailAttachment struct {
	// Data is the file, base64 encoded.
	Data string
	// Filename is the name the recipient sees.
	Filename string
	// Type is the MIME type.
	Type string
}

// seedKeys are JSON keys found only in the original shape.
var seedKeys = []string{
	"from_email", "from_name", "html_body", "reply_to_email",
	"reply_to_name", "text_body", "to_email", "to_name", "cc_emails",
}

// Payload converts e to the current shape. Addresses are trimmed of
// surrounding spaces, as the original did for cc addresses.
func (e EmailPayload) Payload() Payload {
	p := Payload{
		From:    Address{Email: strings.TrimSpace(e.FromEmail), Name: strings.TrimSpace(e.FromName)},
		Subject: e.Subject,
		Text:    e.TextBody,
		HTML:    e.HTMLBody,
	}
	if e.ToEmail != "" || e.ToName != "" {
		p.To = []Address{{Email: strings.TrimSpace(e.ToEmail), Name: strings.TrimSpace(e.ToName)}}
	}
	for _, cc := range e.CCEmails {
		p.CC = append(p.CC, Address{Email: strings.TrimSpace(cc.Email), Name: strings.TrimSpace(cc.Name)})
	}
	if e.ReplyToEmail != "" {
		p.ReplyTo = &Address{Email: strings.TrimSpace(e.ReplyToEmail), Name: strings.TrimSpace(e.ReplyToName)}
	}
	for _, a := range e.Attachments {
		p.Attachments = append(p.Attachments, Attachment{Content: a.Data, Filename: a.Filename, Type: a.Type})
	}
	return p
}
