package registry_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Computed independently with openssl:
//
//	printf sensor-001 | openssl dgst -sha256 -mac HMAC \
//	  -macopt hexkey:$(printf shopfloor-enrollment-group-key-0 | xxd -p) -binary | base64
const (
	groupKey      = "c2hvcGZsb29yLWVucm9sbG1lbnQtZ3JvdXAta2V5LTA=" // base64("shopfloor-enrollment-group-key-0")
	derivedSensor = "xBVZZLLab8L7r7rME6cPU1bnqbYt7ruq877j1tCt4fc="
)

func TestDeriveKey(t *testing.T) {
	k, err := registry.DeriveKey(groupKey, "sensor-001")
	must(t, err)
	if k != derivedSensor {
		t.Fatalf("DeriveKey = %s, want %s (openssl)", k, derivedSensor)
	}
	_, err = registry.DeriveKey("not base64!", "sensor-001")
	wantErr(t, err, registry.ErrInvalid, "group key that is not base64")
}

func TestEnrollmentGroups(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		g, err := e.CreateEnrollmentGroup(ctx, "acme", registry.EnrollmentGroup{
			ID: "line-3-sensors", Site: "s1", Template: "vibration", Tags: map[string]string{"line": "3"},
			PrimaryKey: groupKey,
		})
		must(t, err)
		if g.Org != "acme" || keyBytes(t, g.SecondaryKey) != 32 {
			t.Fatalf("group %+v", g)
		}
		gen, err := e.CreateEnrollmentGroup(ctx, "globex", registry.EnrollmentGroup{})
		must(t, err)
		if !strings.HasPrefix(gen.ID, "eg-") || keyBytes(t, gen.PrimaryKey) != 32 || keyBytes(t, gen.SecondaryKey) != 32 {
			t.Fatalf("generated group %+v", gen)
		}
		_, err = e.CreateEnrollmentGroup(ctx, "globex", registry.EnrollmentGroup{ID: "line-3-sensors"})
		wantErr(t, err, registry.ErrConflict, "group id taken in another org")
		_, err = e.CreateEnrollmentGroup(ctx, "acme", registry.EnrollmentGroup{ID: "x", PrimaryKey: "c2hvcnQ="})
		wantErr(t, err, registry.ErrInvalid, "group key of 5 bytes")
		off, err := e.CreateEnrollmentGroup(ctx, "acme", registry.EnrollmentGroup{ID: "retired", Disabled: true})
		must(t, err)

		all, err := e.ListAllEnrollmentGroups(ctx)
		must(t, err)
		ids := []string{}
		for _, x := range all {
			ids = append(ids, x.ID)
			if x.PrimaryKey == "" {
				t.Fatalf("gateway list lacks keys: %+v", x)
			}
		}
		if strings.Join(ids, ",") != gen.ID+",line-3-sensors" {
			t.Fatalf("enabled groups of all orgs = %v", ids)
		}

		d, err := e.RegisterFromGroup(ctx, g.ID, "sensor-001")
		must(t, err)
		wantSec, err := registry.DeriveKey(g.SecondaryKey, "sensor-001")
		must(t, err)
		if d.PrimaryKey != derivedSensor || d.SecondaryKey != wantSec || d.Org != "acme" || d.Site != "s1" ||
			d.Template != "vibration" || d.Tags["line"] != "3" || d.EnrollmentGroup != g.ID || d.Auth != registry.AuthSAS {
			t.Fatalf("registered device %+v", d)
		}
		l, err := e.LookupDevice(ctx, "sensor-001")
		must(t, err)
		if l.PrimaryKey != derivedSensor || l.EnrollmentGroup != g.ID {
			t.Fatalf("looked-up device %+v", l)
		}
		// The second connect (another gateway node racing) gets the same device.
		again, err := e.RegisterFromGroup(ctx, g.ID, "sensor-001")
		must(t, err)
		if again.PrimaryKey != d.PrimaryKey || !again.CreatedAt.Equal(d.CreatedAt) {
			t.Fatalf("second registration %+v", again)
		}
		// An id registered otherwise is not taken over.
		_, err = e.CreateDevice(ctx, "globex", registry.Device{ID: "taken"})
		must(t, err)
		_, err = e.RegisterFromGroup(ctx, g.ID, "taken")
		wantErr(t, err, registry.ErrConflict, "register an id of another org")
		_, err = e.RegisterFromGroup(ctx, gen.ID, "sensor-001")
		wantErr(t, err, registry.ErrConflict, "register through a second group")

		_, err = e.RegisterFromGroup(ctx, off.ID, "sensor-002")
		wantErr(t, err, registry.ErrForbidden, "disabled group")
		_, err = e.RegisterFromGroup(ctx, "nope", "sensor-002")
		wantErr(t, err, registry.ErrNotFound, "unknown group")
		_, err = e.RegisterFromGroup(ctx, g.ID, "bad id")
		wantErr(t, err, registry.ErrInvalid, "invalid device id")
		if _, err := e.LookupDevice(ctx, "sensor-002"); err == nil {
			t.Fatal("a refused registration created the device")
		}

		must(t, e.DeleteEnrollmentGroup(ctx, "acme", g.ID))
		if _, err := e.LookupDevice(ctx, "sensor-001"); err != nil {
			t.Fatalf("deleting the group removed its device: %v", err)
		}
	})
}

type testCA struct {
	cert *x509.Certificate
	pem  string
}

// newCert makes a self-signed certificate; isCA false makes a leaf.
func newCert(t testing.TB, cn string, isCA bool, notAfter time.Time) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notAfter.Add(-48 * time.Hour),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return testCA{cert: cert, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

func newCA(t testing.TB, cn string, notAfter time.Time) testCA { return newCert(t, cn, true, notAfter) }

func TestCACerts(t *testing.T) {
	forEachStore(t, func(t *testing.T, e env) {
		ctx := t.Context()
		root := newCA(t, "Acme Plant Root CA", time.Now().Add(365*24*time.Hour))
		sum := sha256.Sum256(root.cert.Raw)
		c, err := e.CreateCACert(ctx, "acme", registry.CACert{PEM: "\n" + root.pem + "\n", AutoRegister: true, Site: "s1"})
		must(t, err)
		if c.Thumbprint != hex.EncodeToString(sum[:]) || c.Name != "Acme Plant Root CA" || !strings.HasPrefix(c.ID, "ca-") || c.PEM != root.pem {
			t.Fatalf("registered CA %+v", c)
		}

		leaf := newCert(t, "press-01", false, time.Now().Add(time.Hour))
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		must(t, err)
		other := newCA(t, "Other", time.Now().Add(time.Hour))
		bad := []struct{ name, pem, want string }{
			{"not PEM", "hello", "not PEM"},
			{"leaf certificate", leaf.pem, "not a CA certificate"},
			{"private key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), "never its private key"},
			{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), "cannot be parsed"},
			{"expired CA", newCA(t, "Old", time.Now().Add(-time.Hour)).pem, "expired"},
			{"two certificates", root.pem + other.pem, "more than one"},
		}
		for _, b := range bad {
			_, err := e.CreateCACert(ctx, "acme", registry.CACert{PEM: b.pem})
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Errorf("%s: error %v, want one containing %q", b.name, err, b.want)
			}
			wantErr(t, err, registry.ErrInvalid, b.name)
		}
		_, err = e.CreateCACert(ctx, "acme", registry.CACert{PEM: root.pem})
		wantErr(t, err, registry.ErrConflict, "same CA twice")
		_, err = e.CreateCACert(ctx, "globex", registry.CACert{PEM: root.pem})
		wantErr(t, err, registry.ErrConflict, "same CA in another org")
		manual, err := e.CreateCACert(ctx, "globex", registry.CACert{ID: "globex-ca", Name: "Globex devices", PEM: other.pem})
		must(t, err)

		all, err := e.ListAllCACerts(ctx)
		must(t, err)
		if len(all) != 2 {
			t.Fatalf("all CAs: %d", len(all))
		}

		d, err := e.RegisterFromCA(ctx, c.ID, "press-01")
		must(t, err)
		if d.Org != "acme" || d.Auth != registry.AuthX509CA || d.Site != "s1" || d.PrimaryKey != "" {
			t.Fatalf("device registered from CA %+v", d)
		}
		again, err := e.RegisterFromCA(ctx, c.ID, "press-01")
		must(t, err)
		if !again.CreatedAt.Equal(d.CreatedAt) {
			t.Fatal("second registration from the CA created a new device")
		}
		_, err = e.RegisterFromCA(ctx, manual.ID, "press-02")
		wantErr(t, err, registry.ErrForbidden, "CA without autoRegister")
		_, err = e.RegisterFromCA(ctx, manual.ID, "press-01")
		wantErr(t, err, registry.ErrForbidden, "CA without autoRegister, existing id")
		_, err = e.CreateDevice(ctx, "globex", registry.Device{ID: "globex-sas"})
		must(t, err)
		_, err = e.RegisterFromCA(ctx, c.ID, "globex-sas")
		wantErr(t, err, registry.ErrConflict, "register another org's device id from a CA")
		_, err = e.RegisterFromCA(ctx, "nope", "press-03")
		wantErr(t, err, registry.ErrNotFound, "unknown CA")

		must(t, e.DeleteCACert(ctx, "acme", c.ID))
		l, err := e.ListCACerts(ctx, "acme")
		must(t, err)
		if len(l) != 0 {
			t.Fatalf("acme CAs after delete: %v", l)
		}
	})
}
