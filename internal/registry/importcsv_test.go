package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/registry"
)

func TestImportCSV(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		_, err := e.CreateDevice(ctx, "globex", registry.Device{ID: "taken-elsewhere"})
		must(t, err)
		_, err = e.CreateDevice(ctx, "acme", registry.Device{ID: "already-here"})
		must(t, err)

		tp := strings.Repeat("0f", 32)
		csv := "\ufeffid,site,template,tags,auth,thumbprint\n" + // line 1, with the BOM spreadsheets write
			"press-01,s1,press,line=3;shift=a,,\n" + // 2 ok
			"press-02,,press,\"line=3;note=a,b\",sas,\n" + // 3 ok: quoted comma inside tags
			"a b,s1,,,,\n" + // 4 bad id
			"press-01,s1,,,,\n" + // 5 duplicate of line 2
			"taken-elsewhere,,,,,\n" + // 6 exists in another org
			"already-here,,,,,\n" + // 7 exists in this org
			"press-03,nope,,,,\n" + // 8 missing site
			"press-04,s1,,line3,,\n" + // 9 bad tags
			"cam-01,s1,,,x509_self,\n" + // 10 no thumbprint
			"cam-02,s1,,,x509_self," + tp + "\n" + // 11 ok
			"press-05,s1\n" + // 12 too few fields
			"\n" + // blank: skipped
			"press-06,s1,\"un\"closed,,,\n" + // 14 bad quoting
			"press-07,,,,x509_ca,\n" // 15 ok
		var progress [][2]int
		rep, err := e.ImportCSV(ctx, "acme", strings.NewReader(csv), func(done, total int) { progress = append(progress, [2]int{done, total}) })
		must(t, err)

		want := []struct {
			line int
			id   string
			err  string // "" for a created row; else a part of the message
		}{
			{2, "press-01", ""},
			{3, "press-02", ""},
			{4, "a b", `device id "a b" is invalid`},
			{5, "press-01", "appears more than once in the file (first on line 2)"},
			{6, "taken-elsewhere", "already registered"},
			{7, "already-here", "already registered"},
			{8, "press-03", `site "nope" does not exist`},
			{9, "press-04", "key=value"},
			{10, "cam-01", "needs the thumbprint"},
			{11, "cam-02", ""},
			{12, "press-05", "2 fields but the header has 6"},
			{14, "", "not valid CSV"},
			{15, "press-07", ""},
		}
		if len(rep.Rows) != len(want) {
			t.Fatalf("report has %d rows, want %d: %+v", len(rep.Rows), len(want), rep.Rows)
		}
		created := 0
		for i, w := range want {
			r := rep.Rows[i]
			if r.Line != w.line || r.ID != w.id {
				t.Errorf("row %d: line %d id %q, want line %d id %q", i, r.Line, r.ID, w.line, w.id)
			}
			if w.err == "" {
				created++
				if r.Error != "" {
					t.Errorf("line %d: unexpected error %q", w.line, r.Error)
				}
				continue
			}
			if !strings.Contains(r.Error, w.err) {
				t.Errorf("line %d: error %q, want one containing %q", w.line, r.Error, w.err)
			}
		}
		if rep.Created != created || rep.Failed != len(want)-created {
			t.Fatalf("report counts created %d failed %d, want %d and %d", rep.Created, rep.Failed, created, len(want)-created)
		}
		if len(progress) != len(want) || progress[len(progress)-1] != [2]int{len(want), len(want)} {
			t.Fatalf("progress calls %v", progress)
		}

		// The database holds exactly the good rows, with what they said.
		n, err := e.CountDevices(ctx, "acme")
		must(t, err)
		if n != created+1 { // + already-here
			t.Fatalf("acme has %d devices, want %d", n, created+1)
		}
		d, err := e.GetDevice(ctx, "acme", "press-02")
		must(t, err)
		if d.Tags["note"] != "a,b" || d.Tags["line"] != "3" || d.Template != "press" || keyBytes(t, d.PrimaryKey) != 32 {
			t.Fatalf("press-02 = %+v", d)
		}
		d, err = e.GetDevice(ctx, "acme", "cam-02")
		must(t, err)
		if d.Auth != registry.AuthX509Self || d.Thumbprint != tp {
			t.Fatalf("cam-02 = %+v", d)
		}
		for _, id := range []string{"press-03", "press-04", "cam-01", "press-05", "press-06"} {
			if _, err := e.LookupDevice(ctx, id); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("bad row %s left a device: %v", id, err)
			}
		}
		if d, err := e.LookupDevice(ctx, "taken-elsewhere"); err != nil || d.Org != "globex" {
			t.Fatalf("the import touched globex's device: %+v %v", d, err)
		}
	})
}

func TestImportCSVWholeFile(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		// Columns in any order, only id required.
		rep, err := e.ImportCSV(ctx, "acme", strings.NewReader("Tags , ID\nline=1,m-1\n,m-2\n"), nil)
		must(t, err)
		if rep.Created != 2 || rep.Failed != 0 {
			t.Fatalf("reordered header: %+v", rep)
		}
		bad := []struct{ name, csv, want string }{
			{"empty file", "", "empty"},
			{"unknown column", "id,colour\nx,red\n", `column "colour"`},
			{"no id column", "site,template\ns1,x\n", "no id column"},
			{"semicolons", "id;site;template\nx;s1;t\n", "separated by semicolons"},
			{"column twice", "id,site,id\nx,s1,y\n", "appears twice"},
		}
		for _, b := range bad {
			_, err := e.ImportCSV(ctx, "acme", strings.NewReader(b.csv), nil)
			if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
				t.Errorf("%s: error %v, want ErrInvalid containing %q", b.name, err, b.want)
			}
		}
		// An unterminated quote on the last line is that row's error, not a
		// panic (FuzzAPIBodies found one: FieldPos after a parse error).
		rep, err = e.ImportCSV(ctx, "acme", strings.NewReader("id\n\"00000000000"), nil)
		must(t, err)
		if rep.Created != 0 || rep.Failed != 1 || len(rep.Rows) != 1 || rep.Rows[0].Line != 2 || !strings.Contains(rep.Rows[0].Error, "not valid CSV") {
			t.Fatalf("unterminated quote: %+v", rep)
		}
		_, err = e.ImportCSV(ctx, "nope", strings.NewReader("id\nx\n"), nil)
		wantErr(t, err, registry.ErrNotFound, "import into a missing org")
		n, err := e.CountDevices(ctx, "acme")
		must(t, err)
		if n != 2 {
			t.Fatalf("refused files created devices: %d", n)
		}

		// A cancelled import stops between rows and says how far it got.
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rep, err = e.ImportCSV(cctx, "acme", strings.NewReader("id\nc-1\nc-2\nc-3\n"), func(done, total int) {
			if done == 1 {
				cancel()
			}
		})
		if err == nil || !strings.Contains(err.Error(), "after 1 of 3 rows") || rep.Created != 1 {
			t.Fatalf("cancelled import: %+v, %v", rep, err)
		}
	})
}
