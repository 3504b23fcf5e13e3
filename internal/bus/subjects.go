package bus

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSubjectNotAllowed wraps every refusal of a subject a tenant named (a
// rule's bus action, a NATS export) that lies outside its organization's
// subject space.
var ErrSubjectNotAllowed = errors.New("outside the organization's subject space")

// DefaultPrefix is the bus prefix when none is configured.
const DefaultPrefix = "SHOPFLOOR"

// Subjects names the subjects of one hub's bus. Every name starts with the
// lower-cased bus prefix:
//
//	<prefix>.telemetry               device telemetry (the stream)
//	<prefix>.alerts.<org>            live alert events of an organization
//	<prefix>.dev.<org>.<device>.*    commands to devices
//	<prefix>.exports.<org>.…         the organization's own subject space
//
// An organization may publish only in its own subject space: NATS exports
// publish there (their subject is relative to it) and a rule's bus action
// must name a subject inside it. Everything else — the telemetry stream,
// other organizations' subjects, $JS.API.…, $SYS.… and subjects of other
// systems on a shared NATS — is refused.
type Subjects struct{ prefix string }

// NewSubjects names the subjects of a bus with prefix (DefaultPrefix when
// empty).
func NewSubjects(prefix string) Subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Subjects{prefix: strings.ToLower(prefix)}
}

// Subjects names this bus's subjects.
func (b *Bus) Subjects() Subjects { return NewSubjects(b.cfg.Prefix) }

// Prefix is the lower-cased prefix every subject starts with ("shopfloor").
func (s Subjects) Prefix() string { return s.prefix }

// Telemetry is where telemetry batches are published.
func (s Subjects) Telemetry() string { return s.prefix + ".telemetry" }

// Alerts is where org's alert events are published as a live feed.
func (s Subjects) Alerts(org string) string { return s.prefix + ".alerts." + org }

// OrgSpace is the root of org's own subject space, "<prefix>.exports.<org>";
// the organization may publish on subjects below it.
func (s Subjects) OrgSpace(org string) string { return s.prefix + ".exports." + org }

// CheckOrgSubject returns nil if org may publish on subject: a subject of
// whole tokens, without wildcards, below OrgSpace(org). The error wraps
// ErrSubjectNotAllowed and says where the organization may publish.
func (s Subjects) CheckOrgSubject(org, subject string) error {
	if !validToken(org) {
		return fmt.Errorf("subject %q is %w: organization id %q is not one subject token", subject, ErrSubjectNotAllowed, org)
	}
	space := s.OrgSpace(org) + "."
	if !validSubject(subject) {
		return fmt.Errorf("subject %q is %w: it is not a NATS subject of whole tokens without wildcards; organization %s may publish only on subjects starting with %q, for example %q",
			subject, ErrSubjectNotAllowed, org, space, space+"alerts")
	}
	if !strings.HasPrefix(subject, space) {
		return fmt.Errorf("subject %q is %w: organization %s may publish only on subjects starting with %q, for example %q",
			subject, ErrSubjectNotAllowed, org, space, space+"alerts")
	}
	return nil
}

// validSubject: dot-separated non-empty tokens, no wildcard tokens, no
// spaces or control characters.
func validSubject(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for _, t := range strings.Split(s, ".") {
		if !validToken(t) {
			return false
		}
	}
	return true
}

// validToken: one non-empty subject token that is not and holds no
// wildcard, dot, space or control character.
func validToken(t string) bool {
	if t == "" {
		return false
	}
	for _, r := range t {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}
