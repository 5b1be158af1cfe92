package email

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// MaxRecipients is the most addresses (to, cc and bcc together) SendGrid
// accepts in one message.
const MaxRecipients = 1000

// Payload is one message, as stored in a task's data.
//
// A message needs a sender, at least one recipient, and either a subject
// with text or HTML content, or a dynamic template (TemplateID) that
// supplies them.
type Payload struct {
	// From is the sender. SendGrid only accepts verified senders.
	From Address `json:"from"`
	// To lists the main recipients; there must be at least one.
	To []Address `json:"to"`
	// CC lists the copied recipients.
	CC []Address `json:"cc,omitempty"`
	// BCC lists the blind-copied recipients.
	BCC []Address `json:"bcc,omitempty"`
	// ReplyTo, when set, is where replies go instead of From.
	ReplyTo *Address `json:"reply_to,omitempty"`
	// Subject is the subject line; optional with a template.
	Subject string `json:"subject,omitempty"`
	// Text is the text/plain body.
	Text string `json:"text,omitempty"`
	// HTML is the text/html body.
	HTML string `json:"html,omitempty"`
	// Attachments are files sent with the message.
	Attachments []Attachment `json:"attachments,omitempty"`
	// TemplateID names a SendGrid dynamic template ("d-…").
	TemplateID string `json:"template_id,omitempty"`
	// TemplateData fills in the template's placeholders.
	TemplateData map[string]any `json:"template_data,omitempty"`
}

// Address is one mailbox: a plain address such as "ann@example.com" and an
// optional display name.
type Address struct {
	// Email is the address itself, without a display name or angle brackets.
	Email string `json:"email"`
	// Name is the display name.
	Name string `json:"name,omitempty"`
}

// Attachment is one file sent with a message.
type Attachment struct {
	// Content is the file, base64 encoded (standard alphabet, padded).
	Content string `json:"content"`
	// Filename is the name the recipient sees; it is required.
	Filename string `json:"filename"`
	// Type is the MIME type, such as "application/pdf".
	Type string `json:"type,omitempty"`
	// Disposition is "attachment" (the default) or "inline".
	Disposition string `json:"disposition,omitempty"`
	// ContentID names an inline attachment for use in the HTML body as
	// "cid:<ContentID>"; it is required when Disposition is "inline".
	ContentID string `json:"content_id,omitempty"`
}

// ErrInvalidPayload is wrapped by every error Validate returns.
var ErrInvalidPayload = errors.New("email: invalid payload")

// Validate reports everything that would make SendGrid refuse the message
// or lose part of it, all in one error that wraps ErrInvalidPayload; nil
// means the payload can be sent.
func (p Payload) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...).Error()) }

	if p.From.Email == "" {
		add("from: an address is required")
	} else if err := p.From.validate(); err != nil {
		add("from: %w", err)
	}
	if len(p.To) == 0 {
		add("to: at least one recipient is required")
	}
	seen := map[string]string{}
	count := 0
	for _, list := range []struct {
		field string
		addrs []Address
	}{{"to", p.To}, {"cc", p.CC}, {"bcc", p.BCC}} {
		for i, a := range list.addrs {
			count++
			field := fmt.Sprintf("%s[%d]", list.field, i)
			if err := a.validate(); err != nil {
				add("%s: %w", field, err)
				continue
			}
			k := strings.ToLower(a.Email)
			if first, dup := seen[k]; dup {
				add("%s: %q is already a recipient as %s; SendGrid requires each address once across to, cc and bcc", field, a.Email, first)
				continue
			}
			seen[k] = field
		}
	}
	if count > MaxRecipients {
		add("%d recipients, more than the %d SendGrid allows in one message", count, MaxRecipients)
	}
	if p.ReplyTo != nil {
		if err := p.ReplyTo.validate(); err != nil {
			add("reply_to: %w", err)
		}
	}
	if hasLineBreak(p.Subject) {
		add("subject: contains a line break")
	}
	if p.TemplateID == "" {
		if strings.TrimSpace(p.Subject) == "" {
			add("subject: required unless a template_id is given")
		}
		if p.Text == "" && p.HTML == "" {
			add("content: text or html is required unless a template_id is given")
		}
		if len(p.TemplateData) > 0 {
			add("template_data: given without a template_id")
		}
	} else if strings.TrimSpace(p.TemplateID) != p.TemplateID || hasLineBreak(p.TemplateID) {
		add("template_id: %q contains spaces or line breaks", p.TemplateID)
	}
	for i, a := range p.Attachments {
		for _, problem := range a.problems() {
			add("attachments[%d]: %s", i, problem)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidPayload, strings.Join(problems, "; "))
}

// validate checks that a is a plain address (as net/mail parses it) with a
// display name that fits on one line.
func (a Address) validate() error {
	if a.Email == "" {
		return errors.New("empty address")
	}
	parsed, err := mail.ParseAddress(a.Email)
	if err != nil {
		return fmt.Errorf("%q is not a valid address: %v", a.Email, err)
	}
	if parsed.Address != a.Email {
		return fmt.Errorf("%q is not a plain address (put a display name in name)", a.Email)
	}
	if hasLineBreak(a.Name) {
		return fmt.Errorf("name of %q contains a line break", a.Email)
	}
	return nil
}

// problems lists what is wrong with a, if anything.
func (a Attachment) problems() []string {
	var out []string
	if a.Filename == "" {
		out = append(out, "filename is required")
	} else if hasLineBreak(a.Filename) {
		out = append(out, fmt.Sprintf("filename %q contains a line break", a.Filename))
	}
	if a.Content == "" {
		out = append(out, "content is empty")
	} else if _, err := base64.StdEncoding.DecodeString(a.Content); err != nil {
		out = append(out, fmt.Sprintf("content is not valid base64: %v", err))
	}
	if strings.ContainsAny(a.Type, ";\r\n") {
		out = append(out, fmt.Sprintf("type %q must not contain ';' or line breaks", a.Type))
	}
	switch a.Disposition {
	case "", "attachment":
	case "inline":
		if a.ContentID == "" {
			out = append(out, "content_id is required for an inline attachment")
		}
	default:
		out = append(out, fmt.Sprintf("disposition %q is neither \"attachment\" nor \"inline\"", a.Disposition))
	}
	if hasLineBreak(a.ContentID) {
		out = append(out, "content_id contains a line break")
	}
	return out
}

func hasLineBreak(s string) bool { return strings.ContainsAny(s, "\r\n") }
