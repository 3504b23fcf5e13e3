package storetest

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Run runs the conformance suite against b: every registry.Store must pass
// it unchanged. Each subtest gets a fresh database.
func Run(t *testing.T, b Backend) {
	if b.Require != nil {
		b.Require(t)
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"Migrate", testMigrate},
		{"Bootstrap", testBootstrap},
		{"Orgs", testOrgs},
		{"Tokens", testTokens},
		{"Sites", testSites},
		{"Devices", testDevices},
		{"DeviceTenancy", testDeviceTenancy},
		{"ListDevices", testListDevices},
		{"EnrollmentGroups", testEnrollmentGroups},
		{"CACerts", testCACerts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

// ts returns a time with the microsecond precision the stores keep.
func ts(sec int) time.Time {
	return time.Date(2025, 3, 1, 8, 0, sec, 123456000, time.UTC)
}

func wantErr(t *testing.T, err, sentinel error, what string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got error %v, want %v", what, err, sentinel)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// seed creates the operator org and two customer orgs, each with site s1.
func seed(t *testing.T, s registry.Store) {
	t.Helper()
	ctx := t.Context()
	must(t, s.CreateOrg(ctx, registry.Org{ID: "operator", Name: "Operator", RetentionDays: 30, CreatedAt: ts(0)}))
	for _, id := range []string{"acme", "globex"} {
		must(t, s.CreateOrg(ctx, registry.Org{ID: id, Name: strings.ToUpper(id), Parent: "operator", RetentionDays: 30, CreatedAt: ts(1)}))
		must(t, s.CreateSite(ctx, registry.Site{ID: "s1", Org: id, Name: "Site 1", CreatedAt: ts(2)}))
	}
}

func device(org, id string) registry.Device {
	return registry.Device{
		ID: id, Org: org, Auth: registry.AuthSAS,
		PrimaryKey: "cHJpbWFyeS1rZXktMTIzNDU2Nzg5MA==", SecondaryKey: "c2Vjb25kYXJ5LWtleS0xMjM0NTY3OA==",
		CreatedAt: ts(3), UpdatedAt: ts(3),
	}
}

func testMigrate(t *testing.T, b Backend) {
	ctx := t.Context()
	loc := b.Location(t)
	log := slog.New(slog.DiscardHandler)

	// Several processes starting at once must all succeed.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			s, err := b.Open(ctx, loc, log)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
	}

	s, err := b.Open(ctx, loc, log)
	must(t, err)
	seed(t, s)
	var n int
	must(t, s.DB().QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE component = 'registry'").Scan(&n))
	if n == 0 {
		t.Fatal("schema_migrations holds no registry rows")
	}
	must(t, s.Close())

	// Reopening keeps the data and applies nothing twice.
	s, err = b.Open(ctx, loc, log)
	must(t, err)
	var n2 int
	must(t, s.DB().QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE component = 'registry'").Scan(&n2))
	equal(t, "migrations after reopen", n2, n)
	if _, err := s.GetOrg(ctx, "acme"); err != nil {
		t.Fatalf("data lost across reopen: %v", err)
	}
	// A database migrated by a newer program is refused, not damaged.
	_, err = s.DB().ExecContext(ctx, "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ('registry', 9999, 'future', 0)")
	must(t, err)
	must(t, s.Close())
	if s, err := b.Open(ctx, loc, log); err == nil {
		s.Close()
		t.Fatal("open succeeded on a database with a newer schema version")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: error %q does not tell to run a newer program", err)
	}
}

func testBootstrap(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	op := registry.Org{ID: "operator", Name: "Operator", RetentionDays: 30, CreatedAt: ts(0)}
	tok := func(i int) registry.Token {
		return registry.Token{ID: fmt.Sprintf("tok_%d", i), Org: "operator", Name: "admin", Role: registry.RoleAdmin, CreatedAt: ts(i)}
	}

	// Concurrent first starts create exactly one admin token.
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := range 4 {
		wg.Go(func() {
			o, c, err := s.Bootstrap(ctx, op, tok(i), fmt.Sprintf("hash-%d", i))
			if err != nil {
				t.Errorf("bootstrap %d: %v", i, err)
				return
			}
			if o.ID != "operator" || o.Parent != "" {
				t.Errorf("bootstrap %d returned org %+v", i, o)
			}
			if c {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	equal(t, "admin tokens created by concurrent bootstraps", created, 1)
	toks, err := s.ListTokens(ctx, "operator")
	must(t, err)
	equal(t, "stored admin tokens", len(toks), 1)

	_, c, err := s.Bootstrap(ctx, op, tok(9), "hash-9")
	must(t, err)
	equal(t, "second bootstrap created a token", c, false)

	// With every admin token gone, bootstrap restores access.
	must(t, s.DeleteToken(ctx, "operator", toks[0].ID))
	_, c, err = s.Bootstrap(ctx, op, tok(10), "hash-10")
	must(t, err)
	equal(t, "bootstrap after the admin token was deleted", c, true)
}

func testOrgs(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	wantErr(t, s.CreateOrg(ctx, registry.Org{ID: "acme", Name: "again", Parent: "operator", RetentionDays: 30, CreatedAt: ts(5)}), registry.ErrConflict, "duplicate org")
	wantErr(t, s.CreateOrg(ctx, registry.Org{ID: "orphan", Name: "x", Parent: "nope", RetentionDays: 30, CreatedAt: ts(5)}), registry.ErrNotFound, "org with missing parent")

	o, err := s.GetOrg(ctx, "acme")
	must(t, err)
	equal(t, "org", o, registry.Org{ID: "acme", Name: "ACME", Parent: "operator", RetentionDays: 30, Retention: 30 * 24 * time.Hour, CreatedAt: ts(1)})
	_, err = s.GetOrg(ctx, "nope")
	wantErr(t, err, registry.ErrNotFound, "missing org")

	list, err := s.ListOrgs(ctx, "operator")
	must(t, err)
	ids := []string{}
	for _, o := range list {
		ids = append(ids, o.ID)
	}
	equal(t, "children of operator", ids, []string{"acme", "globex"})
	list, err = s.ListOrgs(ctx, "acme")
	must(t, err)
	equal(t, "children of acme", len(list), 0)

	o, err = s.SetRetention(ctx, "acme", 90)
	must(t, err)
	equal(t, "retention", o.RetentionDays, 90)
	equal(t, "retention duration", o.Retention, 90*24*time.Hour)
	o, err = s.GetOrg(ctx, "acme")
	must(t, err)
	equal(t, "retention read back", o.RetentionDays, 90)
	_, err = s.SetRetention(ctx, "nope", 90)
	wantErr(t, err, registry.ErrNotFound, "retention of missing org")
}

func testTokens(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	a := registry.Token{ID: "tok_a", Org: "acme", Name: "ci", Role: registry.RoleOperator, CreatedAt: ts(4)}
	g := registry.Token{ID: "tok_g", Org: "globex", Name: "ci", Role: registry.RoleViewer, CreatedAt: ts(4)}
	must(t, s.CreateToken(ctx, a, "hash-a"))
	must(t, s.CreateToken(ctx, g, "hash-g"))
	wantErr(t, s.CreateToken(ctx, registry.Token{ID: "tok_x", Org: "acme", Name: "x", Role: registry.RoleViewer, CreatedAt: ts(4)}, "hash-a"), registry.ErrConflict, "token with a used secret")
	wantErr(t, s.CreateToken(ctx, registry.Token{ID: "tok_y", Org: "nope", Name: "x", Role: registry.RoleViewer, CreatedAt: ts(4)}, "hash-y"), registry.ErrNotFound, "token in missing org")

	got, org, err := s.TokenByHash(ctx, "hash-a")
	must(t, err)
	equal(t, "token by hash", got, a)
	equal(t, "token's org", org.ID, "acme")
	equal(t, "token's org parent", org.Parent, "operator")
	_, _, err = s.TokenByHash(ctx, "hash-none")
	wantErr(t, err, registry.ErrNotFound, "unknown hash")

	list, err := s.ListTokens(ctx, "acme")
	must(t, err)
	equal(t, "acme tokens", list, []registry.Token{a})

	wantErr(t, s.DeleteToken(ctx, "acme", "tok_g"), registry.ErrNotFound, "delete another org's token")
	if _, _, err := s.TokenByHash(ctx, "hash-g"); err != nil {
		t.Fatalf("another org's delete removed the token: %v", err)
	}
	must(t, s.DeleteToken(ctx, "acme", "tok_a"))
	_, _, err = s.TokenByHash(ctx, "hash-a")
	wantErr(t, err, registry.ErrNotFound, "deleted token")
}

func testSites(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	st := registry.Site{ID: "plant-2", Org: "acme", Name: "Plant 2", Tags: map[string]string{"country": "de"}, CreatedAt: ts(5)}
	must(t, s.CreateSite(ctx, st))
	wantErr(t, s.CreateSite(ctx, st), registry.ErrConflict, "duplicate site")
	// Site ids are per organization.
	must(t, s.CreateSite(ctx, registry.Site{ID: "plant-2", Org: "globex", Name: "Other", CreatedAt: ts(5)}))
	wantErr(t, s.CreateSite(ctx, registry.Site{ID: "x", Org: "nope", Name: "x", CreatedAt: ts(5)}), registry.ErrNotFound, "site in missing org")

	got, err := s.GetSite(ctx, "acme", "plant-2")
	must(t, err)
	equal(t, "site", got, st)
	_, err = s.GetSite(ctx, "acme", "nope")
	wantErr(t, err, registry.ErrNotFound, "missing site")

	list, err := s.ListSites(ctx, "acme")
	must(t, err)
	equal(t, "acme sites", len(list), 2)
	equal(t, "acme site order", list[0].ID+","+list[1].ID, "plant-2,s1")

	// A site in use cannot go; another org's site of the same id is untouched.
	d := device("acme", "d1")
	d.Site = "plant-2"
	must(t, s.CreateDevice(ctx, d))
	wantErr(t, s.DeleteSite(ctx, "acme", "plant-2"), registry.ErrConflict, "delete a site with devices")
	must(t, s.DeleteSite(ctx, "globex", "plant-2"))
	wantErr(t, s.DeleteSite(ctx, "globex", "plant-2"), registry.ErrNotFound, "delete a deleted site")
	if _, err := s.GetSite(ctx, "acme", "plant-2"); err != nil {
		t.Fatalf("deleting globex/plant-2 touched acme/plant-2: %v", err)
	}
	must(t, s.DeleteDevice(ctx, "acme", "d1"))
	must(t, s.DeleteSite(ctx, "acme", "plant-2"))
}

func testDevices(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	d := device("acme", "press-01")
	d.Site = "s1"
	d.Template = "press"
	d.Tags = map[string]string{"line": "3", "vendor": "Schuler"}
	must(t, s.CreateDevice(ctx, d))

	got, err := s.GetDevice(ctx, "acme", "press-01")
	must(t, err)
	equal(t, "device", got, d)
	got, err = s.LookupDevice(ctx, "press-01")
	must(t, err)
	equal(t, "looked-up device", got, d)
	_, err = s.LookupDevice(ctx, "nope")
	wantErr(t, err, registry.ErrNotFound, "lookup of a missing device")

	// Ids are unique across the hub.
	wantErr(t, s.CreateDevice(ctx, device("globex", "press-01")), registry.ErrConflict, "same device id in another org")
	// A device cannot point at another org's site, nor at a missing one.
	x := device("globex", "x1")
	x.Site = "plant-9"
	wantErr(t, s.CreateDevice(ctx, x), registry.ErrInvalid, "device with a missing site")
	must(t, s.CreateSite(ctx, registry.Site{ID: "acme-only", Org: "acme", Name: "a", CreatedAt: ts(5)}))
	x.Site = "acme-only"
	wantErr(t, s.CreateDevice(ctx, x), registry.ErrInvalid, "device with another org's site")
	wantErr(t, s.CreateDevice(ctx, device("nope", "x2")), registry.ErrNotFound, "device in a missing org")
	if _, err := s.LookupDevice(ctx, "x1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a failed create left device x1 behind: %v", err)
	}

	// Patch: nil fields stay, tags are replaced, site can be cleared.
	tags := map[string]string{"line": "4"}
	disabled := true
	got, err = s.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{Tags: &tags, Disabled: &disabled}, ts(10))
	must(t, err)
	want := d
	want.Tags = tags
	want.Disabled = true
	want.UpdatedAt = ts(10)
	equal(t, "patched device", got, want)
	got, err = s.GetDevice(ctx, "acme", "press-01")
	must(t, err)
	equal(t, "patched device read back", got, want)
	empty := ""
	got, err = s.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{Site: &empty, Template: &empty}, ts(11))
	must(t, err)
	equal(t, "cleared site and template", got.Site+got.Template, "")
	bad := "plant-9"
	_, err = s.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{Site: &bad}, ts(12))
	wantErr(t, err, registry.ErrInvalid, "patch to a missing site")
	got, err = s.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{}, ts(13))
	must(t, err)
	equal(t, "empty patch changes nothing", got.UpdatedAt, ts(11))

	// Tag filter rows follow the patch.
	list, err := s.ListDevices(ctx, "acme", registry.DeviceFilter{Tag: map[string]string{"line": "3"}})
	must(t, err)
	equal(t, "devices with the old tag", len(list), 0)
	list, err = s.ListDevices(ctx, "acme", registry.DeviceFilter{Tag: map[string]string{"line": "4"}})
	must(t, err)
	equal(t, "devices with the new tag", len(list), 1)

	got, err = s.SetDeviceKey(ctx, "acme", "press-01", registry.KeySecondary, "bmV3LXNlY29uZGFyeS1rZXktMTIzNA==", ts(14))
	must(t, err)
	equal(t, "secondary key", got.SecondaryKey, "bmV3LXNlY29uZGFyeS1rZXktMTIzNA==")
	equal(t, "primary key after secondary changed", got.PrimaryKey, d.PrimaryKey)
	equal(t, "updated at", got.UpdatedAt, ts(14))

	must(t, s.RecordDeviceErrors(ctx, "press-01", "bad SAS token", 1, ts(20)))
	must(t, s.RecordDeviceErrors(ctx, "press-01", "topic not allowed", 1, ts(21)))
	got, err = s.LookupDevice(ctx, "press-01")
	must(t, err)
	equal(t, "last error", got.LastError, "topic not allowed")
	equal(t, "error count", got.ErrorCount, int64(2))
	if got.LastErrorAt == nil || !got.LastErrorAt.Equal(ts(21)) {
		t.Fatalf("last error at = %v, want %v", got.LastErrorAt, ts(21))
	}
	wantErr(t, s.RecordDeviceErrors(ctx, "nope", "x", 1, ts(22)), registry.ErrNotFound, "error of a missing device")

	n, err := s.CountDevices(ctx, "acme")
	must(t, err)
	equal(t, "count", n, 1)

	// Delete takes the tag rows along: the same id can come back.
	must(t, s.DeleteDevice(ctx, "acme", "press-01"))
	wantErr(t, s.DeleteDevice(ctx, "acme", "press-01"), registry.ErrNotFound, "delete twice")
	d2 := device("acme", "press-01")
	d2.Tags = map[string]string{"line": "4"}
	must(t, s.CreateDevice(ctx, d2))
}

func testDeviceTenancy(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	d := device("acme", "robot-7")
	d.Tags = map[string]string{"cell": "a"}
	must(t, s.CreateDevice(ctx, d))

	_, err := s.GetDevice(ctx, "globex", "robot-7")
	wantErr(t, err, registry.ErrNotFound, "get another org's device")
	tags := map[string]string{"cell": "stolen"}
	on := true
	_, err = s.UpdateDevice(ctx, "globex", "robot-7", registry.DevicePatch{Tags: &tags, Disabled: &on}, ts(9))
	wantErr(t, err, registry.ErrNotFound, "update another org's device")
	_, err = s.SetDeviceKey(ctx, "globex", "robot-7", registry.KeyPrimary, "c3RvbGVuLWtleS0xMjM0NTY3ODkw", ts(9))
	wantErr(t, err, registry.ErrNotFound, "set the key of another org's device")
	wantErr(t, s.DeleteDevice(ctx, "globex", "robot-7"), registry.ErrNotFound, "delete another org's device")
	list, err := s.ListDevices(ctx, "globex", registry.DeviceFilter{})
	must(t, err)
	equal(t, "globex sees devices", len(list), 0)
	n, err := s.CountDevices(ctx, "globex")
	must(t, err)
	equal(t, "globex device count", n, 0)

	got, err := s.GetDevice(ctx, "acme", "robot-7")
	must(t, err)
	equal(t, "device after another org's attempts", got, d)
}

func testListDevices(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	must(t, s.CreateSite(ctx, registry.Site{ID: "s2", Org: "acme", Name: "s2", CreatedAt: ts(2)}))
	// Mixed case and punctuation: order must be byte order on every database.
	ids := []string{"B-1", "a.1", "a:2", "a_3", "a-4", "Z9", "m", "m.1", "m1", "0x"}
	for i, id := range ids {
		d := device("acme", id)
		d.Site = []string{"s1", "s2"}[i%2]
		d.Template = []string{"cnc", "press", "agv"}[i%3]
		d.Tags = map[string]string{"line": fmt.Sprint(i % 2), "shift": fmt.Sprint(i % 3)}
		must(t, s.CreateDevice(ctx, d))
	}
	must(t, s.CreateDevice(ctx, device("globex", "a.0"))) // never in acme's lists

	page := func(f registry.DeviceFilter) []string {
		t.Helper()
		list, err := s.ListDevices(ctx, "acme", f)
		must(t, err)
		out := []string{}
		for _, d := range list {
			if d.Org != "acme" {
				t.Fatalf("acme's list holds %s of org %s", d.ID, d.Org)
			}
			out = append(out, d.ID)
		}
		return out
	}
	sorted := []string{"0x", "B-1", "Z9", "a-4", "a.1", "a:2", "a_3", "m", "m.1", "m1"}
	equal(t, "all devices by id", page(registry.DeviceFilter{}), sorted)

	var all []string
	after := ""
	for range 10 {
		p := page(registry.DeviceFilter{Limit: 3, After: after})
		if len(p) == 0 {
			break
		}
		all = append(all, p...)
		after = p[len(p)-1]
	}
	equal(t, "pages of 3", all, sorted)

	// want keeps the sorted ids whose position in ids passes keep.
	want := func(keep func(i int) bool) []string {
		var out []string
		for _, id := range sorted {
			for i, x := range ids {
				if x == id && keep(i) {
					out = append(out, id)
				}
			}
		}
		if out == nil {
			out = []string{}
		}
		return out
	}
	equal(t, "site s2", page(registry.DeviceFilter{Site: "s2"}), want(func(i int) bool { return i%2 == 1 }))
	equal(t, "template press", page(registry.DeviceFilter{Template: "press"}), want(func(i int) bool { return i%3 == 1 }))
	equal(t, "tag line=0", page(registry.DeviceFilter{Tag: map[string]string{"line": "0"}}), want(func(i int) bool { return i%2 == 0 }))
	equal(t, "tags line=0,shift=2", page(registry.DeviceFilter{Tag: map[string]string{"line": "0", "shift": "2"}}), want(func(i int) bool { return i%2 == 0 && i%3 == 2 }))
	equal(t, "site s1, template cnc, tag shift=0, after a-4", page(registry.DeviceFilter{Site: "s1", Template: "cnc", Tag: map[string]string{"shift": "0"}, After: "a-4"}),
		want(func(i int) bool { return i%2 == 0 && i%3 == 0 && ids[i] > "a-4" }))
	equal(t, "unknown tag", page(registry.DeviceFilter{Tag: map[string]string{"nope": "1"}}), []string{})

	n, err := s.CountDevices(ctx, "acme")
	must(t, err)
	equal(t, "count", n, len(ids))
}

func testEnrollmentGroups(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	g := registry.EnrollmentGroup{ID: "line-3", Org: "acme", Site: "s1", Template: "cnc", Tags: map[string]string{"line": "3"},
		PrimaryKey: "Z3JvdXAtcHJpbWFyeS1rZXktMTIzNA==", SecondaryKey: "Z3JvdXAtc2Vjb25kYXJ5LWtleS0xMg==", CreatedAt: ts(6)}
	must(t, s.CreateEnrollmentGroup(ctx, g))
	dup := g
	dup.Org, dup.Site = "globex", ""
	wantErr(t, s.CreateEnrollmentGroup(ctx, dup), registry.ErrConflict, "same group id in another org")
	off := registry.EnrollmentGroup{ID: "off", Org: "globex", PrimaryKey: g.PrimaryKey, SecondaryKey: g.SecondaryKey, Disabled: true, CreatedAt: ts(6)}
	must(t, s.CreateEnrollmentGroup(ctx, off))
	on := registry.EnrollmentGroup{ID: "on", Org: "globex", PrimaryKey: g.PrimaryKey, SecondaryKey: g.SecondaryKey, CreatedAt: ts(6)}
	must(t, s.CreateEnrollmentGroup(ctx, on))
	bad := registry.EnrollmentGroup{ID: "bad", Org: "globex", Site: "nope", PrimaryKey: g.PrimaryKey, SecondaryKey: g.SecondaryKey, CreatedAt: ts(6)}
	wantErr(t, s.CreateEnrollmentGroup(ctx, bad), registry.ErrInvalid, "group with a missing site")

	got, err := s.GetEnrollmentGroup(ctx, "acme", "line-3")
	must(t, err)
	equal(t, "group", got, g)
	_, err = s.GetEnrollmentGroup(ctx, "globex", "line-3")
	wantErr(t, err, registry.ErrNotFound, "get another org's group")
	got, err = s.LookupEnrollmentGroup(ctx, "line-3")
	must(t, err)
	equal(t, "looked-up group", got, g)

	list, err := s.ListEnrollmentGroups(ctx, "globex")
	must(t, err)
	equal(t, "globex groups", []string{list[0].ID, list[1].ID}, []string{"off", "on"})
	enabled, err := s.ListEnabledEnrollmentGroups(ctx)
	must(t, err)
	equal(t, "enabled groups of all orgs", []registry.EnrollmentGroup{g, on}, enabled)

	wantErr(t, s.DeleteEnrollmentGroup(ctx, "globex", "line-3"), registry.ErrNotFound, "delete another org's group")
	must(t, s.DeleteEnrollmentGroup(ctx, "acme", "line-3"))
	_, err = s.LookupEnrollmentGroup(ctx, "line-3")
	wantErr(t, err, registry.ErrNotFound, "deleted group")
}

func testCACerts(t *testing.T, b Backend) {
	ctx := t.Context()
	s := OpenStore(t, b)
	seed(t, s)
	c := registry.CACert{ID: "plant-ca", Org: "acme", Name: "Plant CA", PEM: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
		Thumbprint: strings.Repeat("ab", 32), AutoRegister: true, Site: "s1", CreatedAt: ts(7)}
	must(t, s.CreateCACert(ctx, c))

	again := c
	again.ID = "plant-ca-2"
	err := s.CreateCACert(ctx, again)
	wantErr(t, err, registry.ErrConflict, "same CA twice in one org")
	if !strings.Contains(err.Error(), `"plant-ca"`) {
		t.Fatalf("duplicate CA error %q does not name the registered CA", err)
	}
	other := again
	other.Org, other.Site = "globex", ""
	err = s.CreateCACert(ctx, other)
	wantErr(t, err, registry.ErrConflict, "same CA in another org")
	if strings.Contains(err.Error(), "acme") || strings.Contains(err.Error(), "plant-ca") {
		t.Fatalf("duplicate CA error %q reveals the other organization's CA", err)
	}
	sameID := c
	sameID.Org, sameID.Site, sameID.Thumbprint = "globex", "", strings.Repeat("cd", 32)
	wantErr(t, s.CreateCACert(ctx, sameID), registry.ErrConflict, "same CA id in another org")
	noSite := c
	noSite.ID, noSite.Site, noSite.Thumbprint = "x", "nope", strings.Repeat("ef", 32)
	wantErr(t, s.CreateCACert(ctx, noSite), registry.ErrInvalid, "CA with a missing site")

	g := registry.CACert{ID: "globex-ca", Org: "globex", Name: "G", PEM: c.PEM, Thumbprint: strings.Repeat("12", 32), CreatedAt: ts(8)}
	must(t, s.CreateCACert(ctx, g))

	got, err := s.LookupCACert(ctx, "plant-ca")
	must(t, err)
	equal(t, "CA", got, c)
	list, err := s.ListCACerts(ctx, "globex")
	must(t, err)
	equal(t, "globex CAs", list, []registry.CACert{g})
	all, err := s.ListAllCACerts(ctx)
	must(t, err)
	equal(t, "all CAs", all, []registry.CACert{g, c})

	wantErr(t, s.DeleteCACert(ctx, "globex", "plant-ca"), registry.ErrNotFound, "delete another org's CA")
	must(t, s.DeleteCACert(ctx, "acme", "plant-ca"))
	_, err = s.LookupCACert(ctx, "plant-ca")
	wantErr(t, err, registry.ErrNotFound, "deleted CA")
	// Once deleted, the certificate can be registered again.
	must(t, s.CreateCACert(ctx, other))
}
