package registry_test

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/store/storetest"
)

// env is one service over a fresh database, bootstrapped, with customer
// orgs acme and globex, each with site s1.
type env struct {
	*registry.Service
	store storetest.Store
	admin string // operator admin secret
}

// forEachStore runs fn over SQLite and, when configured, PostgreSQL.
func forEachStore(t *testing.T, fn func(t *testing.T, e env)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			if b.Require != nil {
				b.Require(t)
			}
			st := storetest.OpenStore(t, b)
			svc := registry.New(st, slog.New(slog.NewTextHandler(t.Output(), nil)))
			_, secret, err := svc.Bootstrap(t.Context(), "")
			must(t, err)
			for _, id := range []string{"acme", "globex"} {
				_, err := svc.CreateOrg(t.Context(), registry.OperatorOrg, registry.Org{ID: id, Name: strings.ToUpper(id)})
				must(t, err)
				_, err = svc.CreateSite(t.Context(), id, registry.Site{ID: "s1", Name: "Site 1"})
				must(t, err)
			}
			fn(t, env{Service: svc, store: st, admin: secret})
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, sentinel error, what string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got error %v, want %v", what, err, sentinel)
	}
}

func keyBytes(t testing.TB, k string) int {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		t.Fatalf("key %q is not base64: %v", k, err)
	}
	return len(b)
}

func TestBootstrap(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		if !strings.HasPrefix(e.admin, "sft_") {
			t.Fatalf("generated admin secret %q does not start with sft_", e.admin)
		}
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(e.admin, "sft_")); err != nil || len(b) != 32 {
			t.Fatalf("admin secret %q is not sft_ + base64url of 32 bytes", e.admin)
		}
		p, err := e.Authenticate(ctx, e.admin)
		must(t, err)
		if p.Org != registry.OperatorOrg || p.Role != registry.RoleAdmin || !p.Operator || p.TokenID == "" {
			t.Fatalf("admin principal = %+v", p)
		}

		// Only the hash is stored.
		var plain, hashed int
		must(t, e.store.DB().QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE secret_hash = $1", e.admin).Scan(&plain))
		must(t, e.store.DB().QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE secret_hash = $1", registry.HashSecret(e.admin)).Scan(&hashed))
		if plain != 0 || hashed != 1 {
			t.Fatalf("tokens with the plain secret: %d, with its hash: %d", plain, hashed)
		}

		org, secret, err := e.Bootstrap(ctx, "")
		must(t, err)
		if secret != "" {
			t.Fatalf("second bootstrap returned a secret %q", secret)
		}
		if org.ID != registry.OperatorOrg || org.RetentionDays != registry.DefaultRetentionDays {
			t.Fatalf("second bootstrap returned org %+v", org)
		}
		_, secret, err = e.Bootstrap(ctx, "a-configured-admin-secret")
		must(t, err)
		if secret != "" {
			t.Fatalf("bootstrap with an admin present returned a secret")
		}
		_, err = e.Authenticate(ctx, "a-configured-admin-secret")
		wantErr(t, err, registry.ErrUnauthorized, "a secret given after the first bootstrap")

		_, err = e.Authenticate(ctx, "")
		wantErr(t, err, registry.ErrUnauthorized, "empty secret")
		_, err = e.Authenticate(ctx, e.admin+"x")
		wantErr(t, err, registry.ErrUnauthorized, "wrong secret")
	})
}

func TestBootstrapWithSecret(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			if b.Require != nil {
				b.Require(t)
			}
			svc := registry.New(storetest.OpenStore(t, b), nil)
			_, _, err := svc.Bootstrap(t.Context(), "short")
			wantErr(t, err, registry.ErrInvalid, "short admin secret")
			_, err = svc.GetOrg(t.Context(), registry.OperatorOrg)
			wantErr(t, err, registry.ErrNotFound, "operator org after a refused bootstrap")

			const given = "configured-admin-secret-0123456789"
			_, secret, err := svc.Bootstrap(t.Context(), given)
			must(t, err)
			if secret != given {
				t.Fatalf("bootstrap returned %q, want the configured secret", secret)
			}
			p, err := svc.Authenticate(t.Context(), given)
			must(t, err)
			if p.Role != registry.RoleAdmin || !p.Operator {
				t.Fatalf("principal = %+v", p)
			}
		})
	}
}

func TestOrgs(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		o, err := e.CreateOrg(ctx, registry.OperatorOrg, registry.Org{Name: "ACME Corp. (Stuttgart)"})
		must(t, err)
		if o.ID != "acme-corp-stuttgart" || o.RetentionDays != 30 || o.Retention != 30*24*time.Hour || o.Parent != registry.OperatorOrg {
			t.Fatalf("created org %+v", o)
		}
		o2, err := e.CreateOrg(ctx, registry.OperatorOrg, registry.Org{Name: "ACME Corp. (Stuttgart)", RetentionDays: 7})
		must(t, err)
		if !strings.HasPrefix(o2.ID, "acme-corp-stuttgart-") || o2.RetentionDays != 7 {
			t.Fatalf("org with a taken slug got %+v", o2)
		}
		got, err := e.GetOrg(ctx, o.ID)
		must(t, err)
		if !got.CreatedAt.Equal(o.CreatedAt) || got.Name != o.Name {
			t.Fatalf("read back %+v, created %+v", got, o)
		}

		_, err = e.CreateOrg(ctx, registry.OperatorOrg, registry.Org{ID: "acme"})
		wantErr(t, err, registry.ErrConflict, "explicit id taken")
		_, err = e.CreateOrg(ctx, registry.OperatorOrg, registry.Org{ID: "Bad_Id"})
		wantErr(t, err, registry.ErrInvalid, "uppercase id")
		_, err = e.CreateOrg(ctx, registry.OperatorOrg, registry.Org{})
		wantErr(t, err, registry.ErrInvalid, "no id and no name")
		_, err = e.CreateOrg(ctx, "", registry.Org{ID: "x"})
		wantErr(t, err, registry.ErrInvalid, "no parent")
		_, err = e.CreateOrg(ctx, "acme", registry.Org{ID: "sub"})
		wantErr(t, err, registry.ErrInvalid, "customer org as parent")
		_, err = e.CreateOrg(ctx, "nope", registry.Org{ID: "x"})
		wantErr(t, err, registry.ErrNotFound, "missing parent")
		_, err = e.CreateOrg(ctx, registry.OperatorOrg, registry.Org{ID: "x", RetentionDays: -1})
		wantErr(t, err, registry.ErrInvalid, "negative retention")

		list, err := e.ListOrgs(ctx, registry.OperatorOrg)
		must(t, err)
		if len(list) != 4 {
			t.Fatalf("operator has %d orgs, want 4", len(list))
		}

		for _, d := range []int{0, -3, registry.MaxRetentionDays + 1} {
			_, err = e.SetRetention(ctx, "acme", d)
			wantErr(t, err, registry.ErrInvalid, "retention out of range")
		}
		o, err = e.SetRetention(ctx, "acme", 365)
		must(t, err)
		if o.RetentionDays != 365 {
			t.Fatalf("retention = %d", o.RetentionDays)
		}
		_, err = e.SetRetention(ctx, "nope", 30)
		wantErr(t, err, registry.ErrNotFound, "retention of a missing org")
	})
}

func TestTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		tok, err := e.CreateToken(ctx, "acme", "line PLC bridge", registry.RoleOperator)
		must(t, err)
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok.Secret, "sft_")); !strings.HasPrefix(tok.Secret, "sft_") || err != nil || len(b) != 32 {
			t.Fatalf("token secret %q is not sft_ + base64url of 32 bytes", tok.Secret)
		}
		p, err := e.Authenticate(ctx, tok.Secret)
		must(t, err)
		if (p != registry.Principal{TokenID: tok.ID, Org: "acme", Role: registry.RoleOperator}) {
			t.Fatalf("principal = %+v", p)
		}
		list, err := e.ListTokens(ctx, "acme")
		must(t, err)
		if len(list) != 1 || list[0].ID != tok.ID || list[0].Secret != "" {
			t.Fatalf("acme tokens = %+v", list)
		}

		_, err = e.CreateToken(ctx, "acme", "x", "root")
		wantErr(t, err, registry.ErrInvalid, "unknown role")
		_, err = e.CreateToken(ctx, "acme", " ", registry.RoleViewer)
		wantErr(t, err, registry.ErrInvalid, "blank name")
		_, err = e.CreateToken(ctx, "nope", "x", registry.RoleViewer)
		wantErr(t, err, registry.ErrNotFound, "token in a missing org")

		wantErr(t, e.DeleteToken(ctx, "globex", tok.ID), registry.ErrNotFound, "delete another org's token")
		if _, err := e.Authenticate(ctx, tok.Secret); err != nil {
			t.Fatalf("token stopped working after another org tried to delete it: %v", err)
		}
		must(t, e.DeleteToken(ctx, "acme", tok.ID))
		_, err = e.Authenticate(ctx, tok.Secret)
		wantErr(t, err, registry.ErrUnauthorized, "deleted token")
	})
}

func TestSites(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		st, err := e.CreateSite(ctx, "acme", registry.Site{Name: "Werk Zuffenhausen", Tags: map[string]string{"country": "DE"}})
		must(t, err)
		if st.ID != "werk-zuffenhausen" || st.Org != "acme" {
			t.Fatalf("site %+v", st)
		}
		_, err = e.CreateSite(ctx, "acme", registry.Site{ID: "s1"})
		wantErr(t, err, registry.ErrConflict, "duplicate site id")
		_, err = e.CreateSite(ctx, "acme", registry.Site{ID: "bad id"})
		wantErr(t, err, registry.ErrInvalid, "site id with a space")
		_, err = e.CreateSite(ctx, "acme", registry.Site{ID: "x", Tags: map[string]string{"1bad": "x"}})
		wantErr(t, err, registry.ErrInvalid, "tag key starting with a digit")

		_, err = e.CreateDevice(ctx, "acme", registry.Device{ID: "d1", Site: st.ID})
		must(t, err)
		err = e.DeleteSite(ctx, "acme", st.ID)
		wantErr(t, err, registry.ErrConflict, "delete a site with devices")
		if !strings.Contains(err.Error(), "move or delete them first") {
			t.Fatalf("message %q does not say what to do", err)
		}
		must(t, e.DeleteDevice(ctx, "acme", "d1"))
		must(t, e.DeleteSite(ctx, "acme", st.ID))
	})
}

func TestDeviceValidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		_, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "a b"})
		if err == nil || err.Error() != `device id "a b" is invalid: use letters, digits and . _ : - (at most 128): invalid` {
			t.Fatalf("error for id \"a b\" = %v", err)
		}
		tp := strings.Repeat("ab", 32)
		short := base64.StdEncoding.EncodeToString([]byte("8 bytes!"))
		cases := []struct {
			name string
			d    registry.Device
			want string // part of the message
		}{
			{"empty id", registry.Device{}, "device id is required"},
			{"id too long", registry.Device{ID: strings.Repeat("x", 129)}, "at most 128"},
			{"slash in id", registry.Device{ID: "line/1"}, "is invalid"},
			{"bad template", registry.Device{ID: "d", Template: "a b"}, "template"},
			{"bad tag key", registry.Device{ID: "d", Tags: map[string]string{"a b": "1"}}, "tag key"},
			{"control char in tag value", registry.Device{ID: "d", Tags: map[string]string{"a": "x\ny"}}, "invalid value"},
			{"unknown auth", registry.Device{ID: "d", Auth: "password"}, "use sas, x509_self or x509_ca"},
			{"key not base64", registry.Device{ID: "d", PrimaryKey: "not base64!"}, "primary key is invalid"},
			{"key too short", registry.Device{ID: "d", SecondaryKey: short}, "16 to 64"},
			{"sas with thumbprint", registry.Device{ID: "d", Thumbprint: tp}, "no thumbprint"},
			{"x509_self without thumbprint", registry.Device{ID: "d", Auth: registry.AuthX509Self}, "needs the thumbprint"},
			{"x509_self with a SHA-1 thumbprint", registry.Device{ID: "d", Auth: registry.AuthX509Self, Thumbprint: strings.Repeat("ab", 20)}, "64 hex digits"},
			{"x509_self with keys", registry.Device{ID: "d", Auth: registry.AuthX509Self, Thumbprint: tp, PrimaryKey: base64.StdEncoding.EncodeToString(make([]byte, 32))}, "no symmetric keys"},
			{"x509_ca with thumbprint", registry.Device{ID: "d", Auth: registry.AuthX509CA, Thumbprint: tp}, "remove the thumbprint"},
			{"missing site", registry.Device{ID: "d", Site: "nope"}, `site "nope" does not exist in organization "acme"`},
		}
		for _, c := range cases {
			_, err := e.CreateDevice(ctx, "acme", c.d)
			if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v, want ErrInvalid containing %q", c.name, err, c.want)
			}
		}
		n, err := e.CountDevices(ctx, "acme")
		must(t, err)
		if n != 0 {
			t.Fatalf("invalid input created %d devices", n)
		}
		_, err = e.CreateDevice(ctx, "nope", registry.Device{ID: "d"})
		wantErr(t, err, registry.ErrNotFound, "device in a missing org")
	})
}

func TestDevices(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		d, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "press-01", Site: "s1", Template: "press", Tags: map[string]string{"line": "3"}, Org: "globex"})
		must(t, err)
		if d.Org != "acme" || d.Auth != registry.AuthSAS || keyBytes(t, d.PrimaryKey) != 32 || keyBytes(t, d.SecondaryKey) != 32 || d.PrimaryKey == d.SecondaryKey {
			t.Fatalf("created device %+v", d)
		}
		got, err := e.GetDevice(ctx, "acme", "press-01")
		must(t, err)
		if got.PrimaryKey != d.PrimaryKey || !got.CreatedAt.Equal(d.CreatedAt) || got.Tags["line"] != "3" {
			t.Fatalf("read back %+v, created %+v", got, d)
		}
		_, err = e.CreateDevice(ctx, "globex", registry.Device{ID: "press-01"})
		wantErr(t, err, registry.ErrConflict, "device id taken in another org")

		given := base64.StdEncoding.EncodeToString([]byte("a-user-supplied-key-of-32-bytes!"))
		d2, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "press-02", PrimaryKey: given})
		must(t, err)
		if d2.PrimaryKey != given || keyBytes(t, d2.SecondaryKey) != 32 {
			t.Fatalf("given primary key: device %+v", d2)
		}
		x, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "cam-1", Auth: registry.AuthX509Self, Thumbprint: strings.ToUpper(strings.Repeat("a1:", 31) + "a1")})
		must(t, err)
		if x.Thumbprint != strings.Repeat("a1", 32) || x.PrimaryKey != "" {
			t.Fatalf("x509 device %+v", x)
		}

		tags := map[string]string{"line": "4"}
		site := ""
		off := true
		u, err := e.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{Tags: &tags, Site: &site, Disabled: &off})
		must(t, err)
		if u.Site != "" || u.Template != "press" || u.Tags["line"] != "4" || !u.Disabled || u.UpdatedAt.Before(d.UpdatedAt) {
			t.Fatalf("patched device %+v", u)
		}
		bad := map[string]string{"": "x"}
		_, err = e.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{Tags: &bad})
		wantErr(t, err, registry.ErrInvalid, "patch with an empty tag key")
		missing := "nope"
		_, err = e.UpdateDevice(ctx, "acme", "press-01", registry.DevicePatch{Site: &missing})
		wantErr(t, err, registry.ErrInvalid, "patch to a missing site")

		r, err := e.RegenerateKey(ctx, "acme", "press-01", "primary")
		must(t, err)
		if r.PrimaryKey == d.PrimaryKey || r.SecondaryKey != d.SecondaryKey || keyBytes(t, r.PrimaryKey) != 32 {
			t.Fatalf("regenerated primary: old %q/%q, new %q/%q", d.PrimaryKey, d.SecondaryKey, r.PrimaryKey, r.SecondaryKey)
		}
		r2, err := e.RegenerateKey(ctx, "acme", "press-01", "secondary")
		must(t, err)
		if r2.PrimaryKey != r.PrimaryKey || r2.SecondaryKey == r.SecondaryKey {
			t.Fatal("regenerating the secondary key changed the primary or kept the secondary")
		}
		_, err = e.RegenerateKey(ctx, "acme", "press-01", "tertiary")
		wantErr(t, err, registry.ErrInvalid, "unknown key slot")
		_, err = e.RegenerateKey(ctx, "acme", "cam-1", "primary")
		wantErr(t, err, registry.ErrInvalid, "regenerate keys of an x509 device")

		long := strings.Repeat("é", registry.MaxErrorLen)
		must(t, e.RecordDeviceError(ctx, "press-01", long, time.Time{}))
		l, err := e.LookupDevice(ctx, "press-01")
		must(t, err)
		if len(l.LastError) > registry.MaxErrorLen || !strings.HasPrefix(long, l.LastError) || l.ErrorCount != 1 || l.LastErrorAt == nil {
			t.Fatalf("recorded error: %d bytes, count %d, at %v", len(l.LastError), l.ErrorCount, l.LastErrorAt)
		}
		wantErr(t, e.RecordDeviceError(ctx, "nope", "x", time.Now()), registry.ErrNotFound, "error of an unknown device")

		must(t, e.DeleteDevice(ctx, "acme", "press-01"))
		_, err = e.LookupDevice(ctx, "press-01")
		wantErr(t, err, registry.ErrNotFound, "lookup of a deleted device")
	})
}

func TestListDevicesPaging(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		for _, id := range []string{"d5", "d1", "d3", "d2", "d4"} {
			_, err := e.CreateDevice(ctx, "acme", registry.Device{ID: id, Site: "s1", Tags: map[string]string{"odd": map[bool]string{true: "y", false: "n"}[id[1]%2 == 1]}})
			must(t, err)
		}
		_, err := e.CreateDevice(ctx, "globex", registry.Device{ID: "d0"})
		must(t, err)

		var seen []string
		next := ""
		for pages := 0; ; pages++ {
			items, n, err := e.ListDevices(ctx, "acme", registry.DeviceFilter{Limit: 2, After: next})
			must(t, err)
			for _, d := range items {
				seen = append(seen, d.ID)
			}
			if n == "" {
				break
			}
			if pages > 5 {
				t.Fatal("paging does not end")
			}
			next = n
		}
		if strings.Join(seen, ",") != "d1,d2,d3,d4,d5" {
			t.Fatalf("pages gave %v", seen)
		}
		items, next, err := e.ListDevices(ctx, "acme", registry.DeviceFilter{Limit: 5})
		must(t, err)
		if len(items) != 5 || next != "" {
			t.Fatalf("a full last page: %d items, next %q", len(items), next)
		}
		items, _, err = e.ListDevices(ctx, "acme", registry.DeviceFilter{Tag: map[string]string{"odd": "y"}, Site: "s1"})
		must(t, err)
		if len(items) != 3 {
			t.Fatalf("odd devices: %d", len(items))
		}
		items, next, err = e.ListDevices(ctx, "acme", registry.DeviceFilter{Site: "nope"})
		must(t, err)
		if items == nil || len(items) != 0 || next != "" {
			t.Fatalf("empty result: %#v %q", items, next)
		}
		for _, l := range []int{-1, registry.MaxPageSize + 1} {
			_, _, err = e.ListDevices(ctx, "acme", registry.DeviceFilter{Limit: l})
			wantErr(t, err, registry.ErrInvalid, "limit out of range")
		}
		n, err := e.CountDevices(ctx, "acme")
		must(t, err)
		if n != 5 {
			t.Fatalf("count = %d", n)
		}
	})
}

// TestTenancy checks that every org-scoped method refuses another org's
// objects with ErrNotFound and leaves them unchanged.
func TestTenancy(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		dev, err := e.CreateDevice(ctx, "acme", registry.Device{ID: "acme-dev", Site: "s1"})
		must(t, err)
		grp, err := e.CreateEnrollmentGroup(ctx, "acme", registry.EnrollmentGroup{ID: "acme-group"})
		must(t, err)
		ca, err := e.CreateCACert(ctx, "acme", registry.CACert{ID: "acme-ca", PEM: newCA(t, "Acme Root", time.Now().Add(time.Hour)).pem})
		must(t, err)
		tok, err := e.CreateToken(ctx, "acme", "acme token", registry.RoleAdmin)
		must(t, err)
		plant, err := e.CreateSite(ctx, "acme", registry.Site{ID: "acme-plant"})
		must(t, err)

		const other = "globex"
		tags := map[string]string{"owned": "globex"}
		on := true
		checks := map[string]error{}
		_, checks["GetDevice"] = e.GetDevice(ctx, other, dev.ID)
		_, checks["UpdateDevice"] = e.UpdateDevice(ctx, other, dev.ID, registry.DevicePatch{Tags: &tags, Disabled: &on})
		_, checks["RegenerateKey"] = e.RegenerateKey(ctx, other, dev.ID, "primary")
		checks["DeleteDevice"] = e.DeleteDevice(ctx, other, dev.ID)
		_, checks["GetSite"] = e.GetSite(ctx, other, plant.ID)
		checks["DeleteSite"] = e.DeleteSite(ctx, other, plant.ID)
		_, checks["GetEnrollmentGroup"] = e.GetEnrollmentGroup(ctx, other, grp.ID)
		checks["DeleteEnrollmentGroup"] = e.DeleteEnrollmentGroup(ctx, other, grp.ID)
		checks["DeleteCACert"] = e.DeleteCACert(ctx, other, ca.ID)
		checks["DeleteToken"] = e.DeleteToken(ctx, other, tok.ID)
		for name, err := range checks {
			if !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("%s on another org's object: got %v, want ErrNotFound", name, err)
			}
		}
		// A device may not be put on another org's site.
		_, err = e.CreateDevice(ctx, other, registry.Device{ID: "g1", Site: plant.ID})
		wantErr(t, err, registry.ErrInvalid, "device on another org's site")
		plantID := plant.ID
		g, err := e.CreateDevice(ctx, other, registry.Device{ID: "g2"})
		must(t, err)
		_, err = e.UpdateDevice(ctx, other, g.ID, registry.DevicePatch{Site: &plantID})
		wantErr(t, err, registry.ErrInvalid, "move a device to another org's site")
		_, err = e.CreateEnrollmentGroup(ctx, other, registry.EnrollmentGroup{Site: plant.ID})
		wantErr(t, err, registry.ErrInvalid, "group on another org's site")

		// Lists of the other org hold nothing of acme's.
		devs, _, err := e.ListDevices(ctx, other, registry.DeviceFilter{})
		must(t, err)
		groups, err := e.ListEnrollmentGroups(ctx, other)
		must(t, err)
		cas, err := e.ListCACerts(ctx, other)
		must(t, err)
		toks, err := e.ListTokens(ctx, other)
		must(t, err)
		sites, err := e.ListSites(ctx, other)
		must(t, err)
		if len(devs) != 1 || devs[0].ID != "g2" || len(groups) != 0 || len(cas) != 0 || len(toks) != 0 || len(sites) != 1 || sites[0].ID != "s1" {
			t.Fatalf("globex lists: devices %v, groups %v, CAs %v, tokens %v, sites %v", devs, groups, cas, toks, sites)
		}
		if n, _ := e.CountDevices(ctx, other); n != 1 {
			t.Fatalf("globex counts %d devices", n)
		}

		// Everything of acme's is unchanged.
		d, err := e.GetDevice(ctx, "acme", dev.ID)
		must(t, err)
		if d.PrimaryKey != dev.PrimaryKey || d.Disabled || d.Tags != nil || !d.UpdatedAt.Equal(dev.UpdatedAt) {
			t.Fatalf("acme's device changed: %+v", d)
		}
		_, err = e.GetEnrollmentGroup(ctx, "acme", grp.ID)
		must(t, err)
		_, err = e.GetSite(ctx, "acme", plant.ID)
		must(t, err)
		if l, _ := e.ListCACerts(ctx, "acme"); len(l) != 1 {
			t.Fatal("acme's CA is gone")
		}
		if _, err := e.Authenticate(ctx, tok.Secret); err != nil {
			t.Fatalf("acme's token is gone: %v", err)
		}
	})
}
