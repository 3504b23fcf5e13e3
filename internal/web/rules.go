package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// RuleSpec is what the rule editor edits.
type RuleSpec struct {
	Name        string
	Description string
	Condition   string
	Severity    string // critical, major, minor, warning, info
	// Scope: empty fields do not narrow.
	Site, Template, Device string
	// For is how long the condition must hold, as "2m"; "" fires at once.
	For      string
	Disabled bool
}

// Rule is a stored rule.
type Rule struct {
	ID string
	RuleSpec
	UpdatedAt time.Time
}

// ConditionError is a condition that does not compile, with the position
// of the problem (line and column start at 1).
type ConditionError struct {
	Line, Column int
	Message      string
	Snippet      string // the line with a caret under the position
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// DryRun is how often a rule would have fired over stored history.
type DryRun struct {
	From, To    time.Time
	Devices     int
	Evaluations int64
	Firings     int
	Clears      int
	Times       []time.Time
	PerDevice   map[string]int
	Truncated   bool
}

// Rules edits an organization's alert rules. Errors wrap the registry
// sentinels; a condition that does not compile is a *ConditionError.
type Rules interface {
	ListRules(ctx context.Context, org string) ([]Rule, error)
	GetRule(ctx context.Context, org, id string) (Rule, error)
	// CheckRule validates spec and compiles its condition without storing it.
	CheckRule(ctx context.Context, org string, spec RuleSpec) error
	// SaveRule creates a rule (id "") or replaces one; it takes effect at once.
	SaveRule(ctx context.Context, org, id string, spec RuleSpec) (Rule, error)
	DeleteRule(ctx context.Context, org, id string) error
	DryRunRule(ctx context.Context, org string, spec RuleSpec, from, to time.Time) (DryRun, error)
}

// AlertNote is a note on an alert.
type AlertNote struct {
	At       time.Time
	By, Text string
}

// AlertDetail is one alert with its notes and who acted on it.
type AlertDetail struct {
	Alert
	Count               int64
	FirstSeen           time.Time
	AckedBy, ResolvedBy string
	AckedAt, ResolvedAt *time.Time
	Notes               []AlertNote
	Values              map[string]float64
}

// Inbox lists alerts and acts on them.
type Inbox interface {
	// ListAlerts returns org's alerts in state, newest first: open,
	// acknowledged, resolved, active (open or acknowledged) or all.
	ListAlerts(ctx context.Context, org, state string, limit int) ([]Alert, error)
	GetAlert(ctx context.Context, org, id string) (AlertDetail, error)
	Ack(ctx context.Context, org, id, by, note string) error
	Resolve(ctx context.Context, org, id, by, note string) error
	Note(ctx context.Context, org, id, by, text string) error
}

var severities = []string{"critical", "major", "minor", "warning", "info"}

type rulesData struct {
	RulesOn, InboxOn bool
	Rules            []Rule
	EditID           string
	Spec             RuleSpec
	Check            *checkResult
	Error            string
	DryRun           *DryRun
	Range            string
	Alerts           []Alert
	State            string
	Sites            []registry.Site
	Severities       []string
	Ranges           []string
	Flash            string
}

// checkResult is the live validation's answer.
type checkResult struct {
	OK  bool
	Err *ConditionError
	Msg string
}

func specFromForm(r *http.Request) RuleSpec {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	return RuleSpec{Name: f("name"), Description: f("description"), Condition: r.PostFormValue("condition"), Severity: f("severity"),
		Site: f("site"), Template: f("template"), Device: f("device"), For: f("for"), Disabled: r.PostFormValue("disabled") == "1"}
}

var dryRanges = map[string]time.Duration{"1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func (s *Server) rulesPage(w http.ResponseWriter, r *http.Request, status int, d *rulesData) {
	ctx := r.Context()
	org := viewerOf(r).org
	d.RulesOn, d.InboxOn, d.Severities, d.Ranges = s.deps.Rules != nil, s.deps.Inbox != nil, severities, []string{"1h", "6h", "24h", "7d"}
	if d.Range == "" {
		d.Range = "24h"
	}
	if d.Spec.Severity == "" {
		d.Spec.Severity = "warning"
	}
	var err error
	if s.deps.Rules != nil {
		if d.Rules, err = s.deps.Rules.ListRules(ctx, org); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if s.deps.Inbox != nil {
		if d.Alerts, err = s.deps.Inbox.ListAlerts(ctx, org, d.State, 100); err != nil {
			s.fail(w, r, err)
			return
		}
	} else if s.deps.Alerts != nil {
		if d.Alerts, err = s.deps.Alerts.Recent(ctx, org, "", 100); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if d.Sites, err = s.deps.Registry.ListSites(ctx, org); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, status, "rules", d)
}

func (s *Server) rules(w http.ResponseWriter, r *http.Request) {
	d := &rulesData{State: r.URL.Query().Get("state")}
	if r.URL.Query().Get("saved") != "" {
		d.Flash = "Rule saved. It runs from now on; its alerts appear in the inbox below."
	}
	switch d.State {
	case "active", "open", "acknowledged", "resolved", "all":
	default:
		d.State = "active"
	}
	if id := r.URL.Query().Get("id"); id != "" && s.deps.Rules != nil {
		ru, err := s.deps.Rules.GetRule(r.Context(), viewerOf(r).org, id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d.EditID, d.Spec = ru.ID, ru.RuleSpec
	}
	s.rulesPage(w, r, http.StatusOK, d)
}

func (s *Server) rulesDep(w http.ResponseWriter, r *http.Request) bool {
	if s.deps.Rules == nil {
		s.problem(w, r, http.StatusServiceUnavailable, "The rules engine is not enabled on this hub.")
		return false
	}
	return true
}

// check runs the live validation; it answers a fragment under the editor.
func (s *Server) ruleValidate(w http.ResponseWriter, r *http.Request) {
	if !s.rulesDep(w, r) {
		return
	}
	spec := specFromForm(r)
	res := s.checkSpec(r, spec)
	s.renderAs(w, r, http.StatusOK, "rules", "cond-check", res)
}

func (s *Server) checkSpec(r *http.Request, spec RuleSpec) *checkResult {
	if strings.TrimSpace(spec.Condition) == "" {
		return &checkResult{Msg: "Write a condition, for example temperature > 80."}
	}
	if spec.Name == "" {
		spec.Name = "draft" // the name is checked on save, not while typing the condition
	}
	err := s.deps.Rules.CheckRule(r.Context(), viewerOf(r).org, spec)
	var ce *ConditionError
	switch {
	case err == nil:
		return &checkResult{OK: true}
	case errors.As(err, &ce):
		return &checkResult{Err: ce}
	default:
		return &checkResult{Msg: sentence(err)}
	}
}

func (s *Server) ruleDryRun(w http.ResponseWriter, r *http.Request) {
	if !s.rulesDep(w, r) {
		return
	}
	d := &rulesData{Spec: specFromForm(r), EditID: r.PostFormValue("id"), Range: r.PostFormValue("range")}
	span, ok := dryRanges[d.Range]
	if !ok {
		d.Range, span = "24h", 24*time.Hour
	}
	if d.Spec.Name == "" {
		d.Spec.Name = "dry run"
	}
	to := s.now()
	res, err := s.deps.Rules.DryRunRule(r.Context(), viewerOf(r).org, d.Spec, to.Add(-span), to)
	var ce *ConditionError
	switch {
	case err == nil:
		d.DryRun = &res
	case errors.As(err, &ce):
		d.Check = &checkResult{Err: ce}
	case errors.Is(err, registry.ErrInvalid):
		d.Error = sentence(err)
	default:
		s.fail(w, r, err)
		return
	}
	if r.Header.Get("HX-Request") != "" {
		s.renderAs(w, r, http.StatusOK, "rules", "dryrun", d)
		return
	}
	s.rulesPage(w, r, http.StatusOK, d)
}

func (s *Server) ruleSave(w http.ResponseWriter, r *http.Request) {
	if !s.rulesDep(w, r) {
		return
	}
	id := r.PathValue("id")
	spec := specFromForm(r)
	ru, err := s.deps.Rules.SaveRule(r.Context(), viewerOf(r).org, id, spec)
	if err != nil {
		d := &rulesData{Spec: spec, EditID: id}
		var ce *ConditionError
		switch {
		case errors.As(err, &ce):
			d.Check = &checkResult{Err: ce}
		case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrConflict):
			d.Error = sentence(err)
		default:
			s.fail(w, r, err)
			return
		}
		s.rulesPage(w, r, http.StatusBadRequest, d)
		return
	}
	s.log.Info("rule saved in the console", "org", viewerOf(r).org, "rule", ru.ID, "by", viewerOf(r).Who())
	http.Redirect(w, r, "/rules?saved="+ru.ID+"#rules-list", http.StatusSeeOther)
}

func (s *Server) ruleDelete(w http.ResponseWriter, r *http.Request) {
	if !s.rulesDep(w, r) {
		return
	}
	if err := s.deps.Rules.DeleteRule(r.Context(), viewerOf(r).org, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/rules", http.StatusSeeOther)
}

func (s *Server) inboxDep(w http.ResponseWriter, r *http.Request) bool {
	if s.deps.Inbox == nil {
		s.problem(w, r, http.StatusServiceUnavailable, "Alerts are available when the rules engine is enabled on this hub.")
		return false
	}
	return true
}

func (s *Server) alertDetail(w http.ResponseWriter, r *http.Request) {
	if !s.inboxDep(w, r) {
		return
	}
	a, err := s.deps.Inbox.GetAlert(r.Context(), viewerOf(r).org, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "alert", a)
}

// alertAct acknowledges, resolves or notes an alert, then goes back to
// where the form was (the inbox or the alert's page).
func (s *Server) alertAct(w http.ResponseWriter, r *http.Request) {
	if !s.inboxDep(w, r) {
		return
	}
	v := viewerOf(r)
	id, note := r.PathValue("id"), strings.TrimSpace(r.PostFormValue("note"))
	var err error
	switch r.PathValue("action") {
	case "ack":
		err = s.deps.Inbox.Ack(r.Context(), v.org, id, v.Who(), note)
	case "resolve":
		err = s.deps.Inbox.Resolve(r.Context(), v.org, id, v.Who(), note)
	case "note":
		if note == "" {
			s.problem(w, r, http.StatusBadRequest, "Write the note first.")
			return
		}
		err = s.deps.Inbox.Note(r.Context(), v.org, id, v.Who(), note)
	default:
		s.problem(w, r, http.StatusNotFound, "Alerts can be acknowledged, resolved or noted.")
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	back := "/alerts/" + id
	if r.PostFormValue("back") == "inbox" {
		back = "/rules?state=" + url.QueryEscape(r.PostFormValue("state")) + "#inbox"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
