package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/pki"
	"github.com/shopfloor/shopfloor/internal/registry"
)

type tlsFixture struct {
	*fixture
	roots *tls.Config
}

func startTLS(t *testing.T) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	tc, err := pki.EnsureServerCert(testLogger(t), dir, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pki.LoadCAPool(pki.CAPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, Config{MQTTSAddr: "127.0.0.1:0", TLS: tc})
	return &tlsFixture{fixture: f, roots: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
}

// connect dials MQTT 5 over TLS presenting cert (if any).
func (f *tlsFixture) connect(t *testing.T, id string, cert *tls.Certificate) (*v5, error) {
	t.Helper()
	cfg := f.roots.Clone()
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := tls.Dial("tcp", f.g.TLSAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, ack, err := dialV5(t, f.fixture, conn, id, username(id), "")
	if err != nil && (ack == nil || ack.ReasonCode != 0x87) {
		t.Fatalf("refusal with CONNACK %+v, want 0x87: %v", ack, err)
	}
	return c, err
}

func issue(t *testing.T, ca *pki.CA, cn string, notAfter time.Time) *tls.Certificate {
	t.Helper()
	c, err := pki.IssueClientCert(ca, cn, time.Time{}, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("org CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestX509SelfSigned(t *testing.T) {
	f := startTLS(t)
	cert := issue(t, nil, "robot-1", time.Time{})
	f.devs.put(registry.Device{ID: "robot-1", Org: "acme", Auth: registry.AuthX509Self, Thumbprint: strings.ToUpper(pki.Thumbprint(cert.Leaf))})

	c, err := f.connect(t, "robot-1", cert)
	if err != nil {
		t.Fatalf("registered self-signed certificate refused: %v", err)
	}
	if _, err := c.publish(t, "devices/robot-1/messages/events/", 1, `{"battery":87}`); err != nil {
		t.Fatal(err)
	}
	if m := f.pub.messages(); len(m) != 1 || m[0].Num["battery"] != 87 {
		t.Fatalf("stored %v", m)
	}
	if _, err := f.connect(t, "robot-1", issue(t, nil, "robot-1", time.Time{})); err == nil {
		t.Fatal("another self-signed certificate with the same CN accepted")
	}
	if _, err := f.connect(t, "robot-1", nil); err == nil {
		t.Fatal("x509 device accepted without a certificate")
	}
	if !containsText(f.devs.errors("robot-1"), "thumbprint") {
		t.Errorf("thumbprint mismatch not recorded: %q", f.devs.errors("robot-1"))
	}
}

func TestX509IssuedByOrgCA(t *testing.T) {
	f := startTLS(t)
	orgCA, otherCA := newCA(t), newCA(t)
	f.devs.setCAs(
		registry.CACert{ID: "acme-ca", Org: "acme", PEM: string(orgCA.PEM())},
		registry.CACert{ID: "other-ca", Org: "other", PEM: string(otherCA.PEM())},
	)
	f.devs.put(registry.Device{ID: "cnc-1", Org: "acme", Site: "plant-1", Auth: registry.AuthX509CA})

	if _, err := f.connect(t, "cnc-1", issue(t, orgCA, "cnc-1", time.Time{})); err != nil {
		t.Fatalf("certificate from the org's CA refused: %v", err)
	}
	refusals := map[string]*tls.Certificate{
		"CN of another device":      issue(t, orgCA, "cnc-2", time.Time{}),
		"expired":                   issue(t, orgCA, "cnc-1", time.Now().Add(-time.Minute)),
		"another organization's CA": issue(t, otherCA, "cnc-1", time.Time{}),
		"self-signed with right CN": issue(t, nil, "cnc-1", time.Time{}),
		"no certificate (SAS-less)": nil,
	}
	for name, cert := range refusals {
		if _, err := f.connect(t, "cnc-1", cert); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// MQTT 3.1.1 over TLS with the same certificate.
	cfg := f.roots.Clone()
	cfg.Certificates = []tls.Certificate{*issue(t, orgCA, "cnc-1", time.Time{})}
	if _, _, err := dialV3(t, "ssl://"+f.g.TLSAddr().String(), "cnc-1", username("cnc-1"), "", cfg); err != nil {
		t.Fatalf("3.1.1 over TLS: %v", err)
	}
}

func TestX509AutoRegister(t *testing.T) {
	f := startTLS(t)
	autoCA, manualCA := newCA(t), newCA(t)
	f.devs.setCAs(
		registry.CACert{ID: "auto", Org: "acme", Site: "plant-9", PEM: string(autoCA.PEM()), AutoRegister: true},
		registry.CACert{ID: "manual", Org: "acme", PEM: string(manualCA.PEM())},
	)
	c, err := f.connect(t, "agv-77", issue(t, autoCA, "agv-77", time.Time{}))
	if err != nil {
		t.Fatalf("zero-touch from an auto-register CA refused: %v", err)
	}
	d, ok := f.devs.get("agv-77")
	if !ok || d.Auth != registry.AuthX509CA || d.Org != "acme" {
		t.Fatalf("registered %+v %v", d, ok)
	}
	if _, err := c.publish(t, "devices/agv-77/messages/events/", 1, `{"speed":1.5}`); err != nil {
		t.Fatal(err)
	}
	if m := f.pub.messages(); len(m) != 1 || m[0].Site != "plant-9" || m[0].Org != "acme" {
		t.Fatalf("stored %+v", m)
	}
	if _, err := f.connect(t, "agv-78", issue(t, manualCA, "agv-78", time.Time{})); err == nil {
		t.Fatal("CA without auto-registration registered a device")
	}
	if _, err := f.connect(t, "agv-79", issue(t, autoCA, "agv-80", time.Time{})); err == nil {
		t.Fatal("auto-registered with a CN that is not the client id")
	}
	for _, id := range []string{"agv-78", "agv-79", "agv-80"} {
		if _, ok := f.devs.get(id); ok {
			t.Errorf("%s registered", id)
		}
	}
	if s := f.g.Stats(); s.Registered != 1 {
		t.Errorf("Registered %d", s.Registered)
	}
}

func TestEnrollmentGroupZeroTouch(t *testing.T) {
	f := start(t, Config{})
	grp := registry.EnrollmentGroup{ID: "sensors", Org: "acme", Site: "hall-2", Template: "vibration", PrimaryKey: newKey(), SecondaryKey: newKey()}
	off := registry.EnrollmentGroup{ID: "retired", Org: "acme", PrimaryKey: newKey(), SecondaryKey: newKey(), Disabled: true}
	f.devs.setGroups(off, grp)

	dk, err := azure.DeriveKey(grp.PrimaryKey, "vib-1")
	if err != nil {
		t.Fatal(err)
	}
	c := mustV5(t, f, "vib-1", dk)
	d, ok := f.devs.get("vib-1")
	if !ok || d.EnrollmentGroup != "sensors" || d.Site != "hall-2" {
		t.Fatalf("registered %+v %v", d, ok)
	}
	if _, err := c.publish(t, "devices/vib-1/messages/events/", 1, `{"rms":0.02}`); err != nil {
		t.Fatal(err)
	}
	if m := f.pub.messages(); len(m) != 1 || m[0].Template != "vibration" || m[0].Site != "hall-2" {
		t.Fatalf("stored %+v", m)
	}
	// The secondary group key works too, and a known device takes the normal path.
	sk, _ := azure.DeriveKey(grp.SecondaryKey, "vib-2")
	mustV3(t, f, "vib-2", sk)
	mustV3(t, f, "vib-2", sk)

	refused := map[string]string{
		"vib-3": token(t, "vib-3", newKey(), hour()),                                       // not derived from any group
		"vib-4": token(t, "vib-4", must(azure.DeriveKey(off.PrimaryKey, "vib-4")), hour()), // disabled group
		"vib-5": token(t, "vib-5", must(azure.DeriveKey(grp.PrimaryKey, "vib-5")), time.Now().Add(-time.Second)),
		"vib-6": token(t, "vib-6", must(azure.DeriveKey(grp.PrimaryKey, "vib-1")), hour()), // another device's derived key
	}
	for id, pass := range refused {
		if _, ack, err := dialV5(t, f, nil, id, username(id), pass); err == nil || ack.ReasonCode != 0x87 {
			t.Errorf("%s: accepted (%v)", id, ack)
		}
		if _, ok := f.devs.get(id); ok {
			t.Errorf("%s registered", id)
		}
	}
	if s := f.g.Stats(); s.Registered != 2 {
		t.Errorf("Registered %d, want 2", s.Registered)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func TestWebSocketTransport(t *testing.T) {
	f := start(t, Config{MQTTAddr: "127.0.0.1:0"})
	srv := httptest.NewServer(f.g.WebSocketHandler())
	defer srv.Close()
	key := f.device("hmi-1")
	c, _, err := dialV3(t, "ws://"+srv.Listener.Addr().String()+"/mqtt", "hmi-1", username("hmi-1"), token(t, "hmi-1", key, hour()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		tok := c.c.Publish("devices/hmi-1/messages/events/", 1, false, `{"n":`+strconv.Itoa(i)+`}`)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish over WebSocket: %v", tok.Error())
		}
	}
	if m := f.pub.messages(); len(m) != 3 || m[2].Num["n"] != 2 {
		t.Fatalf("stored %v", m)
	}
	if !f.g.Connected("hmi-1") {
		t.Fatal("not Connected")
	}
	if _, code, err := dialV3(t, "ws://"+srv.Listener.Addr().String()+"/mqtt", "hmi-1", username("hmi-1"), "SharedAccessSignature sr=x&sig=y&se=1", nil); err == nil || code != 5 {
		t.Fatalf("bad token over WebSocket: %v code %d", err, code)
	}
}

// A real third-party client: mosquitto_pub (Debian package mosquitto-clients).
func TestMosquittoPub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("SKIPPING real-client test: mosquitto_pub not installed (apt-get install mosquitto-clients)")
	}
	f := start(t, Config{})
	key := f.device("plc-1")
	for i, version := range []string{"mqttv311", "mqttv5"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, bin,
			"-h", "127.0.0.1", "-p", portOf(t, f), "-V", version, "-q", "1",
			"-i", "plc-1", "-u", username("plc-1"), "-P", token(t, "plc-1", key, hour()),
			"-t", "devices/plc-1/messages/events/src=mosquitto", "-m", `{"counter":`+strconv.Itoa(i+1)+`,"mode":"auto"}`,
		).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("mosquitto_pub %s: %v\n%s", version, err, out)
		}
	}
	msgs := f.pub.messages()
	if len(msgs) != 2 || msgs[1].Num["counter"] != 2 || msgs[0].Str["mode"] != "auto" || msgs[0].Props["src"] != "mosquitto" {
		t.Fatalf("stored %+v", msgs)
	}
	// A wrong key: mosquitto_pub reports the refusal and exits non-zero.
	out, err := exec.Command(bin, "-h", "127.0.0.1", "-p", portOf(t, f), "-q", "1", "-i", "plc-1", "-u", username("plc-1"),
		"-P", token(t, "plc-1", newKey(), hour()), "-t", "devices/plc-1/messages/events/", "-m", `{"a":1}`).CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "not authori") {
		t.Fatalf("wrong key: err %v, output %q", err, out)
	}
}

func portOf(t *testing.T, f *fixture) string {
	t.Helper()
	_, p, err := net.SplitHostPort(f.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
