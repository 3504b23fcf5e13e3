package bus

import (
	"errors"
	"strings"
	"testing"
)

// TestOrgSubjectSpace is the wall of issue 12 item 8: an organization may
// publish only below <prefix>.exports.<org>.
func TestOrgSubjectSpace(t *testing.T) {
	s := NewSubjects("")
	if s.Prefix() != "shopfloor" || s.Telemetry() != "shopfloor.telemetry" || s.OrgSpace("acme") != "shopfloor.exports.acme" {
		t.Fatalf("names: %q %q %q", s.Prefix(), s.Telemetry(), s.OrgSpace("acme"))
	}
	for _, ok := range []string{"shopfloor.exports.acme.alerts", "shopfloor.exports.acme.line3.press-7.opened", "shopfloor.exports.acme.$x"} {
		if err := s.CheckOrgSubject("acme", ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"$SYS.x", "$SYS.REQ.SERVER.PING", "$JS.API.STREAM.DELETE.SHOPFLOOR_TELEMETRY", "$JS.API.>",
		"shopfloor.telemetry", "shopfloor.alerts.globex", "shopfloor.alerts.acme", "shopfloor.exports.globex.feed",
		"shopfloor.dev.acme.press-7.method", "factory.alerts.press-7", "SHOPFLOOR.exports.acme.x",
		"shopfloor.exports.acme", "shopfloor.exports.acme.", "shopfloor.exports.acme.*", "shopfloor.exports.acme.>",
		"shopfloor.exports.acme..x", "shopfloor.exports.acme.a b", "shopfloor.exports.acme-other.x", "",
	} {
		err := s.CheckOrgSubject("acme", bad)
		if !errors.Is(err, ErrSubjectNotAllowed) {
			t.Errorf("%q: want ErrSubjectNotAllowed, got %v", bad, err)
			continue
		}
		if !strings.Contains(err.Error(), "shopfloor.exports.acme.") {
			t.Errorf("%q: the refusal does not say where to publish: %v", bad, err)
		}
	}
	// An organization id that is not one token cannot reach into another's
	// space ("acme.x" would otherwise own shopfloor.exports.acme.x.…).
	for _, org := range []string{"", "acme.x", "*", ">"} {
		if err := s.CheckOrgSubject(org, "shopfloor.exports.acme.x.y"); !errors.Is(err, ErrSubjectNotAllowed) {
			t.Errorf("org %q: want ErrSubjectNotAllowed, got %v", org, err)
		}
	}
	p := NewSubjects("PLANT_B")
	if err := p.CheckOrgSubject("acme", "plant_b.exports.acme.x"); err != nil {
		t.Errorf("custom prefix: %v", err)
	}
	if err := p.CheckOrgSubject("acme", "shopfloor.exports.acme.x"); !errors.Is(err, ErrSubjectNotAllowed) {
		t.Errorf("another hub's space on a shared NATS: %v", err)
	}
}
