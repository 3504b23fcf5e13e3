package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

func TestRedact(t *testing.T) {
	in := `{"id":"press-1","primaryKey":"c2VjcmV0LWtleS0x","secondaryKey":"c2VjcmV0LWtleS0y","groupKey":"Zw==",
		"password":"correct horse battery","token":"sft_abc","ki":"000102","opc":"0a0b","secret":"hmac-me",
		"actions":[{"type":"webhook","url":"https://x","secret":"s3","headers":{"Authorization":"Bearer xyz","X-Api-Key":"k"}}],
		"keys":{"primary":"p","secondary":"s"},"connectionString":"HostName=h;SharedAccessKey=abc",
		"site":"plant-a","tags":{"line":"2"},"disabled":false,"auth":"sas","tokenId":"tok_1","empty":""}`
	out := string(audit.Redact(json.RawMessage(in)))
	for _, secret := range []string{"c2VjcmV0LWtleS0x", "c2VjcmV0LWtleS0y", "Zw==", "correct horse", "sft_abc", "000102", "0a0b",
		"hmac-me", "s3\"", "Bearer xyz", "\"k\"", "\"p\"", "\"s\"", "SharedAccessKey"} {
		if strings.Contains(out, secret) {
			t.Errorf("redacted document still holds %s: %s", secret, out)
		}
	}
	for _, kept := range []string{`"site":"plant-a"`, `"line":"2"`, `"auth":"sas"`, `"tokenId":"tok_1"`, `"primaryKey":"[redacted]"`, `"Authorization":"[redacted]"`} {
		if !strings.Contains(out, kept) {
			t.Errorf("redacted document lost %s: %s", kept, out)
		}
	}
	if got := audit.Redact(json.RawMessage("not json password=x")); strings.Contains(string(got), "password=x") {
		t.Errorf("a document that is not JSON was kept: %s", got)
	}
	if got := audit.Redact(json.RawMessage("null")); got != nil {
		t.Errorf("null became %s", got)
	}
}

func TestLog(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, driver := open(t)
			clock := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			svc, err := audit.New(ctx, audit.Config{DB: db, Driver: driver, Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			// A restart migrates nothing twice.
			if _, err := audit.New(ctx, audit.Config{DB: db, Driver: driver}); err != nil {
				t.Fatal(err)
			}
			rec := func(org, actor, kind, object, action, before, after string) audit.Entry {
				t.Helper()
				clock = clock.Add(time.Second)
				e := audit.Entry{Org: org, Actor: actor, Kind: kind, Object: object, Action: action}
				if before != "" {
					e.Before = json.RawMessage(before)
				}
				if after != "" {
					e.After = json.RawMessage(after)
				}
				got, err := svc.Record(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			first := rec("acme", "token:tok_1", "device", "press-1", "create", "", `{"id":"press-1","primaryKey":"abc"}`)
			rec("acme", "token:tok_1", "device", "press-1", "update", `{"site":""}`, `{"site":"a"}`)
			rec("acme", "user:anna", "rule", "r1", "update", `{"name":"hot"}`, `{"name":"hotter"}`)
			rec("acme", "user:anna", "device", "press-2", "delete", `{"id":"press-2"}`, "")
			rec("globex", "token:tok_9", "device", "press-1", "create", "", `{"id":"press-1"}`)
			if _, err := svc.Record(ctx, audit.Entry{Org: "globex", Actor: "token:tok_9", Kind: "token", Object: "tok_2", Action: "create", Role: "admin"}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Record(ctx, audit.Entry{Org: "acme", Kind: "device", Action: "create"}); err == nil {
				t.Fatal("an entry without an actor was recorded")
			}

			all, err := svc.List(ctx, "acme", audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(all.Items) != 4 || all.Next != "" {
				t.Fatalf("acme sees %d entries (next %q), want its 4", len(all.Items), all.Next)
			}
			if all.Items[0].ID != first.ID || all.Items[0].Via != audit.ViaAPI || !all.Items[0].At.Equal(first.At) {
				t.Fatalf("first entry %+v, recorded %+v", all.Items[0], first)
			}
			if strings.Contains(string(all.Items[0].After), "abc") {
				t.Fatalf("a key was stored: %s", all.Items[0].After)
			}
			g, _ := svc.List(ctx, "globex", audit.Filter{})
			if len(g.Items) != 2 || g.Items[0].Actor != "token:tok_9" || g.Items[1].Role != "admin" {
				t.Fatalf("globex sees %+v", g.Items)
			}
			// A viewer or operator does not read what only admins may.
			g, _ = svc.List(ctx, "globex", audit.Filter{Roles: []string{"viewer", "operator"}})
			if len(g.Items) != 1 || g.Items[0].Kind != "device" {
				t.Fatalf("globex's viewer sees %+v", g.Items)
			}
			g, _ = svc.List(ctx, "globex", audit.Filter{Roles: []string{"viewer", "operator", "admin"}})
			if len(g.Items) != 2 {
				t.Fatalf("globex's admin sees %+v", g.Items)
			}

			for _, c := range []struct {
				f    audit.Filter
				want int
			}{
				{audit.Filter{Kind: "device"}, 3},
				{audit.Filter{Kind: "device", Object: "press-1"}, 2},
				{audit.Filter{Actor: "user:anna"}, 2},
				{audit.Filter{Action: "delete"}, 1},
				{audit.Filter{From: first.At.Add(time.Second)}, 3},
				{audit.Filter{From: first.At, To: first.At.Add(2 * time.Second)}, 2},
			} {
				p, err := svc.List(ctx, "acme", c.f)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Items) != c.want {
					t.Errorf("filter %+v: %d entries, want %d", c.f, len(p.Items), c.want)
				}
			}

			// Paging, both directions, visits every entry once in order.
			for _, newest := range []bool{false, true} {
				var ids []string
				after := ""
				for i := 0; ; i++ {
					p, err := svc.List(ctx, "acme", audit.Filter{Limit: 3, After: after, Newest: newest})
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range p.Items {
						ids = append(ids, e.ID)
					}
					if p.Next == "" {
						break
					}
					after = p.Next
					if i > 5 {
						t.Fatal("paging does not end")
					}
				}
				if len(ids) != 4 {
					t.Fatalf("newest=%v: paged %d entries, want 4", newest, len(ids))
				}
				for i := 1; i < len(ids); i++ {
					if (ids[i] > ids[i-1]) == newest {
						t.Fatalf("newest=%v: out of order %v", newest, ids)
					}
				}
			}

			for _, f := range []audit.Filter{{After: "not-a-cursor"}, {After: "' OR 1=1 --"}, {Limit: 5000}, {From: first.At, To: first.At}} {
				if _, err := svc.List(ctx, "acme", f); !errors.Is(err, audit.ErrInvalid) {
					t.Errorf("filter %+v: err %v, want ErrInvalid", f, err)
				}
			}
		})
	}
}

// TestSIMAuditCopied: the SIM state changes audited before the audit log
// existed are read through it.
func TestSIMAuditCopied(t *testing.T) {
	for name, open := range storetest.DBs() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, driver := open(t)
			if _, err := db.ExecContext(ctx, `CREATE TABLE conn_audit (id TEXT PRIMARY KEY, org TEXT NOT NULL, iccid TEXT NOT NULL,
				actor TEXT NOT NULL, at BIGINT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
			if _, err := db.ExecContext(ctx, `INSERT INTO conn_audit VALUES ('00000000000001000000010001', 'acme', '8988211000000000001', 'token:tok_1', 1769936400000000, 'INVENTORY', 'ACTIVATED', '')`); err != nil {
				t.Fatal(err)
			}
			svc, err := audit.New(ctx, audit.Config{DB: db, Driver: driver})
			if err != nil {
				t.Fatal(err)
			}
			p, err := svc.List(ctx, "acme", audit.Filter{Kind: "sim", Object: "8988211000000000001"})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Items) != 1 {
				t.Fatalf("copied %d SIM entries, want 1", len(p.Items))
			}
			e := p.Items[0]
			if e.Actor != "token:tok_1" || e.Action != "setState" || !e.At.Equal(at) ||
				string(e.Before) != `{"state":"INVENTORY"}` || string(e.After) != `{"state":"ACTIVATED"}` {
				t.Fatalf("copied entry %+v (before %s, after %s)", e, e.Before, e.After)
			}
		})
	}
}
