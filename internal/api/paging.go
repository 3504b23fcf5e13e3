package api

import "net/http"

// maxCursorLen is the longest id any listed collection has.
const maxCursorLen = 128

// afterParam reads the paging cursor ?after=, the "next" of the previous
// page. Every collection pages by an id made of letters, digits and
// . _ : - (devices, SIMs, rules, alerts, audit entries, deliveries), so
// anything else cannot have come from a previous page and is refused
// rather than silently answered with some page. A well-formed cursor is a
// position: one naming an item deleted meanwhile still continues after it.
func afterParam(r *http.Request) (string, error) {
	after := r.URL.Query().Get("after")
	if after == "" {
		return "", nil
	}
	if len(after) > maxCursorLen || !cursorChars(after) {
		return "", invalid("parameter \"after\" must be the \"next\" value of a previous page (letters, digits and . _ : -, at most %d), not %q; leave it out for the first page", maxCursorLen, clipParam(after))
	}
	return after, nil
}

func cursorChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// clipParam shortens a parameter quoted back in an error message.
func clipParam(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
