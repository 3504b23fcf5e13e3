package api

import (
	"net/http"

	"github.com/shopfloor/shopfloor/internal/registry"
)

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
	if !registry.IsID(after) {
		return "", invalid("parameter \"after\" must be the \"next\" value of a previous page (letters, digits and . _ : -, at most %d), not %q; leave it out for the first page", registry.MaxIDLen, clipString(after))
	}
	return after, nil
}
