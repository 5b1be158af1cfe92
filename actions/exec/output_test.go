package execaction

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTailKeepsTheLastBytes(t *testing.T) {
	tl := newTail(8)
	for _, w := range []string{"abc", "defgh", "ij", "", "klmnopqrstu", "vw"} {
		if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := tl.text(); got != "opqrstuvw"[1:] {
		t.Fatalf("kept %q, want %q", got, "pqrstuvw")
	}
	if !tl.truncated() || tl.total != 23 {
		t.Fatalf("truncated %v total %d", tl.truncated(), tl.total)
	}
	if got := tl.section("stdout"); got != "\n--- stdout (last 8 of 23 bytes) ---\npqrstuvw" {
		t.Fatalf("section %q", got)
	}
	if got := newTail(8).section("stderr"); got != "" {
		t.Fatalf("silent stream rendered as %q", got)
	}
}

func TestTailTextIsStorable(t *testing.T) {
	tl := newTail(4)
	tl.Write([]byte("xxxxé€")) // the last 4 bytes start inside "é"
	if got := tl.text(); got != "€" {
		t.Fatalf("text %q, want the cut character dropped", got)
	}
	tl = newTail(64)
	tl.Write([]byte("a\x00b\xffc"))
	got := tl.text()
	if !utf8.ValidString(got) || strings.ContainsRune(got, 0) || got != "a\uFFFDb\uFFFDc" {
		t.Fatalf("text %q", got)
	}
}
