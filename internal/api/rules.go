package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/rules"
)

// Rule routes: alert rule definitions, enable/disable and dry runs over
// stored history. The bodies are internal/rules' own types.

// Rules is the rule service the API calls; *rules.Service satisfies it.
// Errors wrap rules' sentinels (see errors.go).
type Rules interface {
	Create(ctx context.Context, r rules.Rule) (rules.Rule, error)
	Get(ctx context.Context, org, id string) (rules.Rule, error)
	List(ctx context.Context, org string, f rules.ListFilter) (rules.RulePage, error)
	// Update replaces rule r.ID of r.Org, its disabled flag included.
	Update(ctx context.Context, r rules.Rule) (rules.Rule, error)
	Delete(ctx context.Context, org, id string) error
	SetDisabled(ctx context.Context, org, id string, disabled bool) (rules.Rule, error)
	// DryRun replays stored history between from and to through r.
	DryRun(ctx context.Context, r rules.Rule, from, to time.Time) (rules.DryRunResult, error)
}

type dryRunRequest struct {
	Rule *rules.Rule `json:"rule,omitempty"`
	From string      `json:"from,omitempty"`
	To   string      `json:"to,omitempty"`
}

// redacted replaces secrets in API output; sent back unchanged in an update
// it keeps the stored secret.
const redacted = "*****"

var exampleRuleSpec = rules.Rule{
	Name: "press overheating", Description: "hydraulic oil too hot for two minutes",
	Condition: "temperature > 80 && avg(temperature, 5m) > 75", Severity: "major",
	Scope: rules.Scope{Site: "plant-north", Template: "press"}, For: rules.Duration(2 * time.Minute),
	Actions: []actions.Spec{{Type: "webhook", URL: "https://hooks.example.com/shopfloor", Secret: "s3cr3t-key"}},
}

func exampleRule() rules.Rule {
	r := exampleRuleSpec
	r.Actions = []actions.Spec{{Type: "webhook", URL: "https://hooks.example.com/shopfloor", Secret: redacted}}
	r.ID, r.Org, r.Version, r.CreatedAt, r.UpdatedAt = "r-01hq3k8v2m", "acme", 1, exampleTime, exampleTime
	return r
}

func ruleSchemas() (spec, rule, action schema) {
	action = object("an action run when an alert of the rule changes", []string{"type"}, schema{
		"type":    strEnum("webhook: signed HTTP POST; device: method, desired patch or C2D; bus: NATS publication", "webhook", "device", "bus"),
		"on":      arrayOf(strEnum("", "opened", "acknowledged", "resolved")),
		"url":     str("webhook: http(s) address; internal addresses are refused unless the operator allows them (--egress-allow)"),
		"secret":  str("webhook: HMAC-SHA256 key for X-Shopfloor-Signature (sha256=<hex>); shown as ***** in responses"),
		"timeout": str("per attempt, e.g. 10s"),
		"headers": schema{"type": "object", "additionalProperties": schema{"type": "string"}, "description": "extra headers; values shown as ***** in responses"},
		"device":  str("device action: target device (default the alert's)"),
		"op":      strEnum("device action", "method", "desired", "c2d"),
		"method":  str("device action: direct method name"),
		"payload": schema{"description": "device action: JSON payload"},
		"subject": str("bus action: NATS subject in the organization's subject space <prefix>.exports.<org>., e.g. shopfloor.exports.{org}.alerts.{device}; may hold {org}, {device}, {rule}, {severity}, {event}"),
	})
	props := schema{
		"name":        schema{"type": "string", "minLength": 1, "maxLength": 200},
		"description": str(""),
		"condition":   str("expression over the message's fields, e.g. temperature > 80 && avg(temperature, 5m) > 75"),
		"severity":    strEnum("default warning", "critical", "major", "minor", "warning", "info"),
		"scope": object("devices the rule watches; empty fields do not narrow", nil, schema{
			"site": str(""), "template": str(""), "tags": tags(), "device": str(""),
		}),
		"for":           str("how long the condition must hold before firing, e.g. 2m"),
		"clearAfter":    integer("consecutive false evaluations before the alert clears (default 1)", 0),
		"clearFor":      str("how long the condition must be false before the alert clears"),
		"manualResolve": boolean("leave alerts open when the condition clears"),
		"actions":       arrayOf(action),
		"disabled":      boolean(""),
	}
	spec = object("a rule definition", []string{"name", "condition"}, props)
	rprops := schema{"id": str(""), "org": str(""), "version": integer("goes up with every change", 0),
		"createdAt": dateTime(""), "updatedAt": dateTime("")}
	for k, v := range props {
		rprops[k] = v
	}
	rule = object("an alert rule", []string{"id", "org", "name", "condition", "severity", "scope", "disabled", "version", "createdAt", "updatedAt"}, rprops)
	return spec, rule, action
}

func (s *Server) ruleRoutes() {
	specSchema, ruleSchema, _ := ruleSchemas()
	idOnly := map[string]string{"id": "rule id"}
	ex := exampleRule()
	ruleBody := &content{Schema: ruleSchema, Example: ex}
	dis := ex
	dis.Disabled = true
	dryRes := rules.DryRunResult{From: exampleTime.Add(-7 * 24 * time.Hour), To: exampleTime, Devices: 12, Evaluations: 120960,
		Firings: 3, Clears: 3, Times: []time.Time{exampleTime.Add(-50 * time.Hour)}, PerDevice: map[string]int{"press-7": 3}}
	drySchema := object("how often the rule would have fired", []string{"from", "to", "devices", "evaluations", "firings", "clears", "times"}, schema{
		"from": dateTime(""), "to": dateTime(""), "devices": integer("devices replayed", 0),
		"evaluations": integer("", 0), "firings": integer("", 0), "clears": integer("", 0),
		"times":     arrayOf(dateTime("firing times")),
		"perDevice": schema{"type": "object", "additionalProperties": schema{"type": "integer"}},
		"truncated": boolean("times was cut"),
	})
	dryReq := schema{"type": "object", "additionalProperties": false, "properties": schema{
		"rule": specSchema,
		"from": str("RFC 3339 or unix milliseconds; default 7 days before to"),
		"to":   str("RFC 3339 or unix milliseconds; default now"),
	}}

	s.add(&route{Method: "POST", Pattern: "/api/v1/rules", ID: "createRule", Tag: "rules", Role: registry.RoleOperator,
		Summary:   "Create an alert rule; a condition that does not compile is refused with its line and column",
		Request:   &content{Schema: specSchema, Example: exampleRuleSpec},
		Responses: []response{{Status: 201, Description: "created", Body: ruleBody}},
		Errors:    []int{409, 503}, handle: s.createRule})
	s.add(&route{Method: "GET", Pattern: "/api/v1/rules", ID: "listRules", Tag: "rules", Role: registry.RoleViewer,
		Summary: "List the organization's rules, oldest first",
		Query: []param{
			{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": 1000}},
			{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}},
		},
		Responses: []response{{Status: 200, Description: "a page of rules", Body: &content{
			Schema: object("", []string{"items"}, schema{"items": arrayOf(ruleSchema), "next": str("")}), Example: rules.RulePage{Items: []rules.Rule{ex}}}}},
		Errors: []int{503}, handle: s.listRules})
	s.add(&route{Method: "GET", Pattern: "/api/v1/rules/{id}", ID: "getRule", Tag: "rules", Role: registry.RoleViewer,
		Summary: "Get a rule (action secrets redacted)", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the rule", Body: ruleBody}}, Errors: []int{503}, handle: s.getRule})
	s.add(&route{Method: "PUT", Pattern: "/api/v1/rules/{id}", ID: "replaceRule", Tag: "rules", Role: registry.RoleOperator,
		Summary: "Replace a rule's definition; a secret sent back as ***** keeps the stored one", PathParams: idOnly,
		Request:   &content{Schema: specSchema, Example: exampleRuleSpec},
		Responses: []response{{Status: 200, Description: "the updated rule", Body: ruleBody}}, Errors: []int{409, 503}, handle: s.putRule})
	s.add(&route{Method: "PATCH", Pattern: "/api/v1/rules/{id}", ID: "updateRule", Tag: "rules", Role: registry.RoleOperator,
		Summary: "Change some fields of a rule; the fields sent replace the stored ones", PathParams: idOnly,
		Request: &content{Schema: schema{"type": "object", "description": "any fields of a rule definition", "properties": specSchema["properties"], "additionalProperties": false},
			Example: map[string]any{"condition": "temperature > 85", "severity": "critical"}},
		Responses: []response{{Status: 200, Description: "the updated rule", Body: ruleBody}}, Errors: []int{409, 503}, handle: s.patchRule})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/rules/{id}", ID: "deleteRule", Tag: "rules", Role: registry.RoleOperator,
		Summary: "Delete a rule; its open alerts stay as they are", PathParams: idOnly,
		Responses: []response{{Status: 204, Description: "deleted"}}, Errors: []int{503}, handle: s.deleteRule})
	s.add(&route{Method: "POST", Pattern: "/api/v1/rules/{id}/enable", ID: "enableRule", Tag: "rules", Role: registry.RoleOperator,
		Summary: "Switch a rule on", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the rule", Body: ruleBody}}, Errors: []int{503}, handle: s.enableRule})
	s.add(&route{Method: "POST", Pattern: "/api/v1/rules/{id}/disable", ID: "disableRule", Tag: "rules", Role: registry.RoleOperator,
		Summary: "Switch a rule off", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the rule", Body: &content{Schema: ruleSchema, Example: dis}}}, Errors: []int{503}, handle: s.disableRule})
	s.add(&route{Method: "POST", Pattern: "/api/v1/rules/dry-run", ID: "dryRunRule", Tag: "rules", Role: registry.RoleViewer,
		Summary:   "How often a rule would have fired over stored history (default: the last 7 days); nothing is stored or raised",
		Request:   &content{Schema: dryReq, Example: dryRunRequest{Rule: &exampleRuleSpec, From: "2026-02-23T08:30:00Z", To: "2026-03-02T08:30:00Z"}},
		Responses: []response{{Status: 200, Description: "the replay's result", Body: &content{Schema: drySchema, Example: dryRes}}},
		Errors:    []int{503}, handle: s.dryRunRule})
	s.add(&route{Method: "POST", Pattern: "/api/v1/rules/{id}/dry-run", ID: "dryRunStoredRule", Tag: "rules", Role: registry.RoleViewer,
		Summary: "How often a stored rule would have fired over stored history; the body (from, to) is optional", PathParams: idOnly,
		Request:   &content{Schema: dryReq, Example: dryRunRequest{From: "2026-02-23T08:30:00Z"}},
		Responses: []response{{Status: 200, Description: "the replay's result", Body: &content{Schema: drySchema, Example: dryRes}}},
		Errors:    []int{503}, handle: s.dryRunStored})
}

// ruleOf is a rule definition from a request body: the organization and id
// come from the request, the version and times from the hub, whatever the
// body said.
func ruleOf(in rules.Rule, org, id string) rules.Rule {
	in.Org, in.ID, in.Version, in.CreatedAt, in.UpdatedAt = org, id, 0, time.Time{}, time.Time{}
	return in
}

func (s *Server) rulesDep() (Rules, error) {
	if s.deps.Rules == nil {
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "rules are not running on this hub"}
	}
	return s.deps.Rules, nil
}

// redactRule hides action secrets and header values.
func redactRule(r rules.Rule) rules.Rule {
	acts := make([]actions.Spec, len(r.Actions))
	for i, a := range r.Actions {
		if a.Secret != "" {
			a.Secret = redacted
		}
		if len(a.Headers) > 0 {
			h := make(map[string]string, len(a.Headers))
			for k := range a.Headers {
				h[k] = redacted
			}
			a.Headers = h
		}
		acts[i] = a
	}
	if r.Actions != nil {
		r.Actions = acts
	}
	return r
}

// keepSecrets puts the stored secrets back where a client sent the
// redacted marker (it read the rule and sent it back).
func keepSecrets(in *rules.Rule, old rules.Rule) {
	for i := range in.Actions {
		a := &in.Actions[i]
		var prev *actions.Spec
		if i < len(old.Actions) {
			prev = &old.Actions[i]
		}
		if a.Secret == redacted {
			a.Secret = ""
			if prev != nil {
				a.Secret = prev.Secret
			}
		}
		for k, v := range a.Headers {
			if v == redacted {
				if prev != nil {
					a.Headers[k] = prev.Headers[k]
				} else {
					delete(a.Headers, k)
				}
			}
		}
	}
}

func (s *Server) createRule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	var in rules.Rule
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	out, err := svc.Create(r.Context(), ruleOf(in, orgOf(r), ""))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, redactRule(out))
	return nil
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	limit, err := limitParam(r, 100)
	if err != nil {
		return err
	}
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	page, err := svc.List(r.Context(), orgOf(r), rules.ListFilter{Limit: limit, After: after})
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []rules.Rule{}
	}
	for i := range page.Items {
		page.Items[i] = redactRule(page.Items[i])
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// limitParam reads ?limit=1..1000.
func limitParam(r *http.Request, def int) (int, error) {
	l := r.URL.Query().Get("limit")
	if l == "" {
		return def, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > 1000 {
		return 0, invalid("parameter \"limit\" must be a whole number from 1 to 1000, not %q", l)
	}
	return n, nil
}

func (s *Server) getRule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	out, err := svc.Get(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, redactRule(out))
	return nil
}

func (s *Server) putRule(w http.ResponseWriter, r *http.Request) error {
	return s.updateRuleWith(w, r, false)
}

func (s *Server) patchRule(w http.ResponseWriter, r *http.Request) error {
	return s.updateRuleWith(w, r, true)
}

// updateRuleWith replaces (PUT) or merges (PATCH: the body is decoded over
// the stored definition) a rule.
func (s *Server) updateRuleWith(w http.ResponseWriter, r *http.Request, merge bool) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	org, id := orgOf(r), r.PathValue("id")
	old, err := svc.Get(r.Context(), org, id)
	if err != nil {
		return err
	}
	var in rules.Rule
	var acts []actions.Spec
	if merge {
		in = redactRule(old)
		// The actions list is replaced whole when sent, never merged.
		acts, in.Actions = in.Actions, nil
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if merge && in.Actions == nil {
		in.Actions = acts
	}
	keepSecrets(&in, old)
	out, err := svc.Update(r.Context(), ruleOf(in, org, id))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, redactRule(out))
	return nil
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) enableRule(w http.ResponseWriter, r *http.Request) error {
	return s.setRule(w, r, false)
}
func (s *Server) disableRule(w http.ResponseWriter, r *http.Request) error {
	return s.setRule(w, r, true)
}

func (s *Server) setRule(w http.ResponseWriter, r *http.Request, disabled bool) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	out, err := svc.SetDisabled(r.Context(), orgOf(r), r.PathValue("id"), disabled)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, redactRule(out))
	return nil
}

func (s *Server) dryRange(req dryRunRequest) (from, to time.Time, err error) {
	if to, err = parseTime("to", req.To, s.now()); err != nil {
		return
	}
	from, err = parseTime("from", req.From, to.Add(-7*24*time.Hour))
	return
}

func (s *Server) dryRunRule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	var req dryRunRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Rule == nil {
		return invalid("field \"rule\" is required: the rule definition to replay (or use /api/v1/rules/{id}/dry-run for a stored rule)")
	}
	from, to, err := s.dryRange(req)
	if err != nil {
		return err
	}
	res, err := svc.DryRun(r.Context(), ruleOf(*req.Rule, orgOf(r), ""), from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) dryRunStored(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.rulesDep()
	if err != nil {
		return err
	}
	var req dryRunRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	if req.Rule != nil {
		return invalid("field \"rule\" is not allowed here: this replays the stored rule; use /api/v1/rules/dry-run to try a definition")
	}
	org := orgOf(r)
	stored, err := svc.Get(r.Context(), org, r.PathValue("id"))
	if err != nil {
		return err
	}
	from, to, err := s.dryRange(req)
	if err != nil {
		return err
	}
	res, err := svc.DryRun(r.Context(), stored, from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
