package rules

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/egress"
)

func TestStore(t *testing.T) {
	for _, d := range databases() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			db := d.open(t)
			s, err := NewStore(ctx, StoreConfig{DB: db, Driver: d.driver})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewStore(ctx, StoreConfig{DB: db, Driver: d.driver}); err != nil {
				t.Fatalf("second NewStore on the same database: %v", err)
			}
			// The API contract: POST /api/v1/rules body.
			body := `{"name":"hot spindle","condition":"avg(spindle.temp, 5m) > 80","severity":"critical",
				"scope":{"site":"berlin","template":"cnc","tags":{"line":"1"},"device":""},"for":"2m",
				"actions":[{"type":"webhook","url":"https://example.com/hook","secret":"s3cret"}]}`
			var in Rule
			if err := json.Unmarshal([]byte(body), &in); err != nil {
				t.Fatal(err)
			}
			in.Org = "o1"
			c0, _ := s.Changes(ctx)
			r, err := s.Create(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if r.ID == "" || r.Version != 1 || r.Disabled || time.Duration(r.For) != 2*time.Minute || r.Scope.Tags["line"] != "1" {
				t.Fatalf("created: %+v", r)
			}
			if c1, _ := s.Changes(ctx); c1 <= c0 {
				t.Error("the change counter did not move")
			}
			got, err := s.Get(ctx, "o1", r.ID)
			if err != nil || got.Condition != in.Condition || got.Severity != alerts.SeverityCritical || len(got.Actions) != 1 || got.Actions[0].Secret != "s3cret" || !got.CreatedAt.Equal(r.CreatedAt) {
				t.Fatalf("get: %v %+v", err, got)
			}
			out, _ := json.Marshal(got)
			if !strings.Contains(string(out), `"for":"2m0s"`) {
				t.Errorf("JSON of for: %s", out)
			}
			// Tenancy.
			if _, err := s.Get(ctx, "o2", r.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("another organization's rule: want ErrNotFound, got %v", err)
			}
			if err := s.Delete(ctx, "o2", r.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("delete from another organization: want ErrNotFound, got %v", err)
			}
			if _, err := s.Disable(ctx, "o2", r.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("disable from another organization: want ErrNotFound, got %v", err)
			}
			// Names are unique per organization.
			if _, err := s.Create(ctx, in); !errors.Is(err, ErrConflict) {
				t.Errorf("duplicate name: want ErrConflict, got %v", err)
			}
			in2 := in
			in2.Org = "o2"
			if _, err := s.Create(ctx, in2); err != nil {
				t.Errorf("the same name in another organization: %v", err)
			}
			// A condition that does not compile is refused with its position.
			bad := in
			bad.Name, bad.Condition = "bad", "temperature > 80 &&\n  avg(temperature) > 3"
			_, err = s.Create(ctx, bad)
			var ce *CompileError
			if !errors.As(err, &ce) || ce.Line != 2 || ce.Column != 3 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("want a compile error at 2:3, got %v", err)
			}
			if !strings.Contains(err.Error(), "line 2, column 3") {
				t.Errorf("message must name the position: %v", err)
			}
			// Invalid actions and severities are refused.
			bad.Condition, bad.Actions = "x > 1", []actions.Spec{{Type: "webhook", URL: "ftp://x"}}
			if _, err := s.Create(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("bad webhook url: want ErrInvalid, got %v", err)
			}
			bad.Actions, bad.Severity = nil, "urgent"
			if _, err := s.Create(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("bad severity: want ErrInvalid, got %v", err)
			}
			// Update, enable/disable, list, delete.
			upd := got
			upd.Condition = "spindle.temp > 90"
			u, err := s.Update(ctx, upd)
			if err != nil || u.Version != 2 || u.Condition != "spindle.temp > 90" {
				t.Fatalf("update: %v %+v", err, u)
			}
			upd.Condition = "spindle.temp >"
			if _, err := s.Update(ctx, upd); !errors.As(err, &ce) {
				t.Fatalf("update with a broken condition: %v", err)
			}
			if g, _ := s.Get(ctx, "o1", r.ID); g.Version != 2 {
				t.Fatal("a refused update changed the rule")
			}
			if dr, err := s.Disable(ctx, "o1", r.ID); err != nil || !dr.Disabled {
				t.Fatalf("disable: %v %+v", err, dr)
			}
			en, _ := s.Enabled(ctx)
			if len(en) != 1 || en[0].Org != "o2" {
				t.Fatalf("enabled rules: %+v", en)
			}
			if _, err := s.Enable(ctx, "o1", r.ID); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 4; i++ {
				x := in
				x.Name = "extra " + string(rune('a'+i))
				if _, err := s.Create(ctx, x); err != nil {
					t.Fatal(err)
				}
			}
			var names []string
			after := ""
			for {
				p, err := s.List(ctx, "o1", ListFilter{Limit: 2, After: after})
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range p.Items {
					names = append(names, x.Name)
				}
				if p.Next == "" {
					break
				}
				after = p.Next
			}
			if len(names) != 5 {
				t.Fatalf("list of o1: %v", names)
			}
			acts, err := s.RuleActions(ctx, "o1", r.ID)
			if err != nil || len(acts) != 1 || acts[0].URL != "https://example.com/hook" {
				t.Fatalf("rule actions: %v %+v", err, acts)
			}
			if err := s.Delete(ctx, "o1", r.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "o1", r.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted rule: %v", err)
			}
		})
	}
}

func TestCompileErrorsNamePosition(t *testing.T) {
	for _, tc := range []struct {
		src       string
		line, col int
		msg       string
	}{
		{"temperature >", 1, 13, "unexpected token"},
		{"temperature > 80 &&\n  humidity >> 3", 2, 13, "unexpected token"},
		{`rate(parts, 1m, "weird") > 1`, 1, 17, "sliding"},
		{"avg(temperature) > 3", 1, 1, "field and a duration"},
		{"avg(temperature, soon) > 3", 1, 18, "duration"},
		{"avg(1 + 2, 5m) > 3", 1, 7, "field name"},
		{"stddev(x, 10d) > 3", 1, 11, "between 1s and 7d"},
		{"anomaly() > 3", 1, 1, "anomaly detection is not enabled"},
		{"x > 1 && foo(3)", 1, 10, "unknown name foo"},
		{"spindle[i] > 3", 1, 8, "field(\"name\")"},
		{"1 + 2", 1, 1, "expected bool"},
		{"  ", 1, 1, "empty"},
		{`field(x) > 1`, 1, 1, "quoted field name"},
		{"nodata(temperature)", 1, 8, "duration"},
	} {
		_, err := Compile(tc.src, CompileOptions{})
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Errorf("%q: want a CompileError, got %v", tc.src, err)
			continue
		}
		if ce.Line != tc.line || ce.Column != tc.col || !strings.Contains(ce.Message, tc.msg) {
			t.Errorf("%q: got %d:%d %q, want %d:%d containing %q", tc.src, ce.Line, ce.Column, ce.Message, tc.line, tc.col, tc.msg)
		}
	}
}

func TestCompileAccepts(t *testing.T) {
	for src, fields := range map[string]string{
		"temperature > 80":                                                 "temperature",
		"spindle.rpm > 1000 and spindle.load < 0.9":                        "spindle.load spindle.rpm",
		`field("temp-1") > 3 || field("spindle.rpm") > 1`:                  "spindle.rpm temp-1",
		`status == "5m" && x > 5`:                                          "status x", // a duration-looking string stays a string
		"avg(temperature, 5m) > 80":                                        "temperature",
		`max(t, 1h, "tumbling") - min(t, 1h, "tumbling") > 10`:             "t",
		"rate(parts, 90s) > 2 && stddev(vib, 30s) > 0.5 && sum(e, 1d) > 3": "e parts vib",
		"max(a, b) > 3":                                                    "a b", // expr's max of values still works
		`tags.line == "A" && hour >= 22 && weekday in [1, 2, 3, 4, 5]`:     "",
		"let t = temperature; t > 5 // a comment with 5m and a quote '":    "temperature",
		"nodata(10m) || disconnected(2m)":                                  "",
	} {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if got := strings.Join(p.Fields(), " "); got != fields {
			t.Errorf("%q: fields %q, want %q", src, got, fields)
		}
	}
}

func TestDryRun(t *testing.T) {
	hist := &memHistory{}
	// m1 runs hot between minute 10 and 20 and between 40 and 45; m2 never.
	for i := 0; i < 60; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		v := 60.0
		if (i >= 10 && i < 20) || (i >= 40 && i < 45) {
			v = 95
		}
		hist.add(msg("m1", at, "temperature", v), msg("m2", at, "temperature", 50))
	}
	r := Rule{Org: "o1", Name: "hot", Condition: "temperature > 80", For: Duration(2 * time.Minute)}
	res, err := DryRun(context.Background(), r, DryRunOptions{History: hist, From: t0, To: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Firings != 2 || res.Clears != 2 || res.Devices != 2 || res.PerDevice["m1"] != 2 || res.Evaluations != 120 {
		t.Fatalf("dry run: %+v", res)
	}
	if !res.Times[0].Equal(t0.Add(12*time.Minute)) || !res.Times[1].Equal(t0.Add(42*time.Minute)) {
		t.Fatalf("firing times: %v", res.Times)
	}
	// Windows are warmed from before the start: at minute 20 the 15m average
	// still holds the hot period.
	r.Condition, r.For = "avg(temperature, 15m) > 75", 0
	res, err = DryRun(context.Background(), r, DryRunOptions{History: hist, From: t0.Add(20 * time.Minute), To: t0.Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Firings != 1 || !res.Times[0].Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("warm window: %+v", res)
	}
	// A dry run never raises alerts: it has nothing to raise them with, and
	// a bad condition is reported like at creation.
	r.Condition = "temperature >"
	if _, err := DryRun(context.Background(), r, DryRunOptions{History: hist, From: t0, To: t0.Add(time.Hour)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad condition: %v", err)
	}
	_ = bus.Telemetry{}
}

// TestStoreWallsActions: a rule whose actions reach past its organization
// is refused when it is created or updated, with a message that says where
// it may publish (issue 12, items 8 and 9).
func TestStoreWallsActions(t *testing.T) {
	ctx := context.Background()
	s, err := NewStore(ctx, StoreConfig{DB: sqliteDB(t), Driver: "sqlite", Subjects: bus.NewSubjects("PLANT_B")})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(a actions.Spec) Rule {
		return Rule{Org: "acme", Name: "hot", Condition: "temperature > 80", Actions: []actions.Spec{a}}
	}
	for _, a := range []actions.Spec{
		{Type: actions.TypeBus, Subject: "$SYS.x"},
		{Type: actions.TypeBus, Subject: "$JS.API.STREAM.DELETE.PLANT_B_TELEMETRY"},
		{Type: actions.TypeBus, Subject: "plant_b.telemetry"},
		{Type: actions.TypeBus, Subject: "plant_b.alerts.globex"},
		{Type: actions.TypeBus, Subject: "plant_b.exports.globex.feed"},
		{Type: actions.TypeBus, Subject: "shopfloor.exports.acme.alerts"}, // another hub's prefix
		{Type: actions.TypeBus, Subject: "factory.alerts.{device}"},
	} {
		_, err := s.Create(ctx, rule(a))
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, bus.ErrSubjectNotAllowed) {
			t.Errorf("%s: want ErrInvalid for the subject, got %v", a.Subject, err)
			continue
		}
		if !strings.Contains(err.Error(), "plant_b.exports.acme.") {
			t.Errorf("%s: the refusal does not say where to publish: %v", a.Subject, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:192.168.1.1]/"} {
		if _, err := s.Create(ctx, rule(actions.Spec{Type: actions.TypeWebhook, URL: u})); !errors.Is(err, ErrInvalid) || !errors.Is(err, egress.ErrNotAllowed) {
			t.Errorf("%s: want ErrInvalid for the address, got %v", u, err)
		}
	}
	ok, err := s.Create(ctx, rule(actions.Spec{Type: actions.TypeBus, Subject: "plant_b.exports.{org}.alerts.{device}"}))
	if err != nil {
		t.Fatalf("a subject in the organization's space: %v", err)
	}
	bad := ok
	bad.Actions = []actions.Spec{{Type: actions.TypeBus, Subject: "$SYS.x"}}
	if _, err := s.Update(ctx, bad); !errors.Is(err, bus.ErrSubjectNotAllowed) {
		t.Errorf("update to $SYS.x: %v", err)
	}
	if got, _ := s.Get(ctx, "acme", ok.ID); got.Actions[0].Subject != "plant_b.exports.{org}.alerts.{device}" {
		t.Errorf("a refused update changed the rule: %+v", got.Actions)
	}
}
