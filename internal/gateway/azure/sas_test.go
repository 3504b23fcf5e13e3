package azure

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0..31

// azureReference signs a token the way Azure's documented Python sample
// does: sign quote_plus(uri) + "\n" + expiry, then urlencode the fields.
func azureReference(uri, key string, expiry int64) string {
	k, _ := base64.StdEncoding.DecodeString(key)
	m := hmac.New(sha256.New, k)
	m.Write([]byte(url.QueryEscape(uri) + "\n" + itoa(expiry)))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	return "SharedAccessSignature sr=" + url.QueryEscape(uri) + "&sig=" + url.QueryEscape(sig) + "&se=" + itoa(expiry)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSASTokenMatchesAzureReference(t *testing.T) {
	exp := time.Unix(1900000000, 0)
	got, err := SASToken("myhub.azure-devices.net", "press-1", testKey, exp)
	if err != nil {
		t.Fatal(err)
	}
	want := azureReference("myhub.azure-devices.net/devices/press-1", testKey, exp.Unix())
	if got != want {
		t.Fatalf("token differs from Azure's algorithm:\n got %s\nwant %s", got, want)
	}
	s, err := ParseSAS(got)
	if err != nil {
		t.Fatal(err)
	}
	if s.Resource != "myhub.azure-devices.net/devices/press-1" || !s.Expiry.Equal(exp) || s.KeyName != "" {
		t.Fatalf("parsed %+v", s)
	}
	if err := VerifySAS(s, "myhub.azure-devices.net/devices/press-1", testKey, exp.Add(-time.Hour)); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestVerifySASErrors(t *testing.T) {
	now := time.Unix(1800000000, 0)
	tok, _ := SASToken("localhost", "d1", testKey, now.Add(time.Hour))
	s, err := ParseSAS(tok)
	if err != nil {
		t.Fatal(err)
	}
	other := base64.StdEncoding.EncodeToString(make([]byte, 32))
	cases := []struct {
		name     string
		s        SAS
		resource string
		key      string
		now      time.Time
		want     error
	}{
		{"ok", s, "localhost/devices/d1", testKey, now, nil},
		{"host case-insensitive", s, "LOCALHOST/devices/d1", testKey, now, nil},
		{"no resource check", s, "", testKey, now, nil},
		{"wrong key", s, "", other, now, ErrBadSignature},
		{"expired", s, "", testKey, now.Add(time.Hour), ErrExpired},
		{"other device", s, "localhost/devices/d2", testKey, now, ErrWrongResource},
		{"bad key", s, "", "not base64!", now, ErrBadKey},
	}
	for _, c := range cases {
		err := VerifySAS(c.s, c.resource, c.key, c.now)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// A tampered expiry breaks the signature.
	tampered := strings.Replace(tok, "se=", "se=1", 1)
	ts, err := ParseSAS(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySAS(ts, "", testKey, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered expiry: %v", err)
	}
}

func TestVerifySASEncodingVariants(t *testing.T) {
	now := time.Unix(1800000000, 0)
	k, _ := base64.StdEncoding.DecodeString(testKey)
	se := "1800003600"
	signed := func(sr string) string {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(sr + "\n" + se))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	// .NET's HttpUtility encodes with lower-case hex and signs that form.
	lower := "localhost%2fdevices%2fd1"
	// Some clients put sr unencoded but sign the encoded form, others sign
	// the plain resource.
	variants := []string{
		"SharedAccessSignature sr=" + lower + "&sig=" + url.QueryEscape(signed(lower)) + "&se=" + se,
		"SharedAccessSignature sr=localhost/devices/d1&sig=" + url.QueryEscape(signed("localhost%2Fdevices%2Fd1")) + "&se=" + se,
		"SharedAccessSignature se=" + se + "&sr=localhost%2Fdevices%2Fd1&sig=" + url.QueryEscape(signed("localhost/devices/d1")),
		// unencoded signature with '+' and '/' characters kept as they are
		"SharedAccessSignature sr=localhost%2Fdevices%2Fd1&sig=" + signed("localhost%2Fdevices%2Fd1") + "&se=" + se + "&skn=",
	}
	for i, v := range variants {
		s, err := ParseSAS(v)
		if err != nil {
			t.Fatalf("variant %d: parse: %v", i, err)
		}
		if err := VerifySAS(s, "localhost/devices/d1", testKey, now); err != nil {
			t.Fatalf("variant %d: verify: %v", i, err)
		}
	}
}

func TestParseSASMalformed(t *testing.T) {
	bad := []string{
		"",
		"sr=a&sig=b&se=1",
		"SharedAccessSignature ",
		"SharedAccessSignature sr=a&sig=b",
		"SharedAccessSignature sr=a&se=10",
		"SharedAccessSignature sig=b&se=10",
		"SharedAccessSignature sr=a&sig=b&se=soon",
		"SharedAccessSignature sr=a&sig=b&se=-5",
		"SharedAccessSignature sr=a&sig=b&se=010",
		"SharedAccessSignature sr=a&sr=a&sig=b&se=10",
		"SharedAccessSignature sr=a%zz&sig=b&se=10",
		"SharedAccessSignature sr=a&sig=b&se=10&junk",
	}
	for _, b := range bad {
		if _, err := ParseSAS(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseSAS(%q) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestDeriveKeyMatchesDPS(t *testing.T) {
	// Azure DPS: base64(HMACSHA256(key: base64decode(groupKey), data: registrationId)).
	got, err := DeriveKey(testKey, "sensor-7")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := base64.StdEncoding.DecodeString(testKey)
	m := hmac.New(sha256.New, k)
	m.Write([]byte("sensor-7"))
	if want := base64.StdEncoding.EncodeToString(m.Sum(nil)); got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if _, err := DeriveKey("%%%", "x"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad group key: %v", err)
	}
}

func TestConnectionString(t *testing.T) {
	cs := ConnectionString("hub.local", "d1", testKey)
	if cs != "HostName=hub.local;DeviceId=d1;SharedAccessKey="+testKey {
		t.Fatal(cs)
	}
	h, d, k, err := ParseConnectionString(cs)
	if err != nil || h != "hub.local" || d != "d1" || k != testKey {
		t.Fatalf("%s %s %s %v", h, d, k, err)
	}
	if _, _, _, err := ParseConnectionString("HostName=x"); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
}

func FuzzParseSAS(f *testing.F) {
	tok, _ := SASToken("localhost", "d1", testKey, time.Unix(1900000000, 0))
	f.Add(tok)
	f.Add("SharedAccessSignature sr=hub%2Fdevices%2Fd1&sig=abc%2B%2F%3D&se=1&skn=device")
	f.Add("sharedaccesssignature se=5&sr=x&sig=y")
	f.Add("SharedAccessSignature sr=a&sig=b&se=10&&")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSAS(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := ParseSAS(s.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", s.String(), err)
		}
		if again != s {
			t.Fatalf("round trip changed the token:\n%+v\n%+v", s, again)
		}
		// Verification must not panic and must never accept a token for a
		// key it was not signed with.
		if err := VerifySAS(s, "", base64.StdEncoding.EncodeToString([]byte("fuzz-key-not-used-to-sign")), s.Expiry.Add(-time.Second)); err == nil {
			t.Fatalf("accepted a token not signed with the key: %q", in)
		}
	})
}

func BenchmarkSASVerify(b *testing.B) {
	now := time.Unix(1800000000, 0)
	tok, _ := SASToken("localhost", "press-1", testKey, now.Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		s, err := ParseSAS(tok)
		if err != nil {
			b.Fatal(err)
		}
		if err := VerifySAS(s, "", testKey, now); err != nil {
			b.Fatal(err)
		}
	}
}
