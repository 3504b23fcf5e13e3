package template_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/store/storetest"
	"github.com/shopfloor/shopfloor/internal/template"
)

func f(v float64) *float64 { return &v }

func pressTemplate() template.Template {
	return template.Template{
		ID: "press", Name: "Hydraulic press",
		Telemetry: []template.Telemetry{
			{Name: "temperature", Schema: "double", Unit: "degC", Min: f(-40), Max: f(150)},
			{Name: "strokes", Schema: "long", Min: f(0)},
			{Name: "running", Schema: "boolean"},
			{Name: "mode", Schema: "string"},
		},
		Properties: []template.Property{
			{Name: "firmware", Schema: "string"},
			{Name: "setpoint", Schema: "double", Writable: true, Min: f(0), Max: f(120)},
		},
		Commands: []template.Command{{Name: "reboot", Request: "object", Response: "object"}, {Name: "ping"}},
	}
}

func TestCheckTelemetry(t *testing.T) {
	tm := pressTemplate()
	if vs := tm.CheckTelemetry(map[string]float64{"temperature": 71.5, "strokes": 12, "running": 1}, map[string]string{"mode": "auto"}); len(vs) != 0 {
		t.Fatalf("good message flagged: %v", vs)
	}
	vs := tm.CheckTelemetry(map[string]float64{"temperature": 900, "strokes": 1.5, "running": 3, "mode": 2, "humidity": 1}, map[string]string{"temperature": "hot"})
	got := map[string]bool{}
	for _, v := range vs {
		got[v.Name+": "+v.Problem] = true
	}
	for _, want := range []string{
		"temperature: is 900, above the maximum 150",
		"strokes: is 1.5, expected a whole number (long)",
		"running: is the number 3, expected a boolean",
		"mode: is the number 2, expected a string",
		"humidity: is not declared in the template",
		`temperature: is the string "hot", expected double`,
	} {
		if !got[want] {
			t.Errorf("missing violation %q in %v", want, vs)
		}
	}
	if len(vs) != 6 {
		t.Errorf("%d violations, want 6: %v", len(vs), vs)
	}
}

func TestCheckReportedAndAck(t *testing.T) {
	tm := pressTemplate()
	ack := template.Ack(72.5, 200, 4, "")
	b, _ := json.Marshal(ack)
	if string(b) != `{"ac":200,"av":4,"value":72.5}` {
		t.Fatalf("ack = %s", b)
	}
	var patch map[string]any
	if err := json.Unmarshal([]byte(`{"firmware":"2.4.1","setpoint":`+string(b)+`,"old":null}`), &patch); err != nil {
		t.Fatal(err)
	}
	if vs := tm.CheckReported(patch); len(vs) != 0 {
		t.Fatalf("good reported patch flagged: %v", vs)
	}
	bad := map[string]any{
		"firmware": 3.0,
		"setpoint": map[string]any{"value": 500.0, "ac": 200, "av": 5},
		"color":    "red",
	}
	vs := tm.CheckReported(bad)
	if len(vs) != 3 {
		t.Fatalf("violations %v, want 3", vs)
	}
	if vs := tm.CheckReported(map[string]any{"setpoint": map[string]any{"value": 1.0}}); len(vs) != 1 || !strings.Contains(vs[0].Problem, `"ac":200`) {
		t.Fatalf("an ack without ac/av: %v", vs)
	}
	if vs := tm.CheckDesired(map[string]any{"setpoint": 80.0}); len(vs) != 0 {
		t.Fatalf("good desired flagged: %v", vs)
	}
	if vs := tm.CheckDesired(map[string]any{"firmware": "x"}); len(vs) != 1 || !strings.Contains(vs[0].Problem, "read-only") {
		t.Fatalf("desired read-only: %v", vs)
	}
	if vs := tm.CheckDesired(map[string]any{"color": "red", "setpoint": "hot"}); len(vs) != 2 || vs[0].Name != "color" || vs[1].Name != "setpoint" {
		t.Fatalf("desired undeclared and mistyped: %v", vs)
	}
	if vs := tm.CheckDesired(map[string]any{"color": nil, "firmware": nil}); len(vs) != 0 {
		t.Fatalf("removing properties flagged: %v", vs)
	}
	if vs := tm.CheckCommand("reboot", []byte(`{"delay":3}`)); len(vs) != 0 {
		t.Fatalf("good command flagged: %v", vs)
	}
	if vs := tm.CheckCommand("reboot", []byte(`3`)); len(vs) != 1 {
		t.Fatalf("bad command payload: %v", vs)
	}
	if vs := tm.CheckCommand("ping", nil); len(vs) != 0 {
		t.Fatalf("any-payload command flagged: %v", vs)
	}
	if vs := tm.CheckCommand("explode", nil); len(vs) != 1 {
		t.Fatalf("unknown command: %v", vs)
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*template.Template){
		"bad id":         func(t *template.Template) { t.ID = "a b" },
		"unknown schema": func(t *template.Template) { t.Telemetry[0].Schema = "decimal" },
		"min above max":  func(t *template.Template) { t.Telemetry[0].Min = f(500) },
		"duplicate":      func(t *template.Template) { t.Telemetry[1].Name = "temperature" },
		"range on text":  func(t *template.Template) { t.Properties[0].Max = f(1) },
	} {
		tm := pressTemplate()
		mut(&tm)
		if err := tm.Validate(); !errors.Is(err, template.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if err := pressTemplate().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestStore(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, driver := open(t)
			s, err := template.New(ctx, template.Config{DB: db, Driver: driver})
			if err != nil {
				t.Fatal(err)
			}
			if has, err := s.HasTemplates(ctx, "acme"); err != nil || has {
				t.Fatalf("HasTemplates before any: %v %v", has, err)
			}
			in := pressTemplate()
			created, err := s.Create(ctx, "acme", in)
			if err != nil {
				t.Fatal(err)
			}
			// The cached "none" is forgotten when a template is created here.
			if has, err := s.HasTemplates(ctx, "acme"); err != nil || !has {
				t.Fatalf("HasTemplates after create: %v %v", has, err)
			}
			if has, err := s.HasTemplates(ctx, "other"); err != nil || has {
				t.Fatalf("HasTemplates of another org: %v %v", has, err)
			}
			if _, err := s.Create(ctx, "acme", in); !errors.Is(err, template.ErrExists) {
				t.Fatalf("second create: %v", err)
			}
			if _, err := s.Get(ctx, "other", "press"); !errors.Is(err, template.ErrNotFound) {
				t.Fatalf("another org reads it: %v", err)
			}
			doc, err := s.Export(ctx, "acme", "press")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(doc), "acme") || strings.Contains(string(doc), "createdAt") {
				t.Fatalf("export carries org or timestamps: %s", doc)
			}
			imported, err := s.Import(ctx, "globex", doc, false)
			if err != nil {
				t.Fatal(err)
			}
			imported.Org, imported.CreatedAt, imported.UpdatedAt = created.Org, created.CreatedAt, created.UpdatedAt
			if !reflect.DeepEqual(imported, created) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", imported, created)
			}
			if _, err := s.Import(ctx, "globex", doc, false); !errors.Is(err, template.ErrExists) {
				t.Fatalf("import over an existing template: %v", err)
			}
			if _, err := s.Import(ctx, "globex", []byte(`{"id":"x","telemetry":[],"bogus":1}`), false); !errors.Is(err, template.ErrInvalid) {
				t.Fatalf("import of a foreign document: %v", err)
			}
			changed := pressTemplate()
			changed.Name = "Press v2"
			b, _ := json.Marshal(changed)
			if got, err := s.Import(ctx, "globex", b, true); err != nil || got.Name != "Press v2" {
				t.Fatalf("import with replace: %+v %v", got, err)
			}
			if tm, ok, err := s.Lookup(ctx, "globex", "press"); err != nil || !ok || tm.Name != "Press v2" {
				t.Fatalf("lookup: %+v %v %v", tm, ok, err)
			}
			list, err := s.List(ctx, "acme")
			if err != nil || len(list) != 1 || list[0].ID != "press" {
				t.Fatalf("list: %+v %v", list, err)
			}
			if err := s.Delete(ctx, "acme", "press"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "acme", "press"); !errors.Is(err, template.ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			if _, ok, err := s.Lookup(ctx, "acme", "press"); err != nil || ok {
				t.Fatalf("lookup after delete: %v %v", ok, err)
			}

			for range 2 {
				if err := s.Flag(ctx, "acme", "press-7", "press", "telemetry", "too hot", 1); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Flag(ctx, "acme", "press-7", "press", "reported", "bad firmware", 1); err != nil {
				t.Fatal(err)
			}
			c, err := s.Violations(ctx, "acme", "press-7")
			if err != nil || c.Telemetry != 2 || c.Reported != 1 || c.LastError != "bad firmware" {
				t.Fatalf("violations %+v %v", c, err)
			}
			if c, err := s.Violations(ctx, "globex", "press-7"); err != nil || c.Telemetry != 0 {
				t.Fatalf("other org's violations %+v %v", c, err)
			}
			if err := s.Flag(ctx, "globex", "press-7", "press", "telemetry", "too cold", 1); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteViolations(ctx, "acme", "press-7"); err != nil {
				t.Fatal(err)
			}
			if c, err := s.Violations(ctx, "acme", "press-7"); err != nil || c.Telemetry != 0 || c.Reported != 0 || c.LastError != "" {
				t.Fatalf("violations after DeleteViolations %+v %v", c, err)
			}
			if c, err := s.Violations(ctx, "globex", "press-7"); err != nil || c.Telemetry != 1 {
				t.Fatalf("DeleteViolations touched another org's device: %+v %v", c, err)
			}
		})
	}
}

func BenchmarkCheckTelemetry(b *testing.B) {
	tm := pressTemplate()
	num := map[string]float64{"temperature": 71.5, "strokes": 12, "running": 1}
	str := map[string]string{"mode": "auto"}
	b.ReportAllocs()
	for b.Loop() {
		if vs := tm.CheckTelemetry(num, str); len(vs) != 0 {
			b.Fatal(vs)
		}
	}
}
