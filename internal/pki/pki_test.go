package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureServerCertCreatesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	cfg, err := EnsureServerCert(discard, dir, "", "", []string{"hub.plant.example", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAFile, CAKeyFile, ServerFile, ServerKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if (f == CAKeyFile || f == ServerKeyFile) && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	pool, err := LoadCAPool(CAPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(served(t, cfg).Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "hub.plant.example", "10.1.2.3"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool}); err != nil {
			t.Errorf("server cert not valid for %s: %v", h, err)
		}
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("not valid for the machine host name: %v", err)
		}
	}

	before, _ := os.ReadFile(filepath.Join(dir, ServerFile))
	if _, err := EnsureServerCert(discard, dir, "", "", []string{"hub.plant.example"}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, ServerFile))
	if !bytes.Equal(before, after) {
		t.Fatal("server certificate was reissued although it still fits")
	}
	caBefore, _ := os.ReadFile(CAPath(dir))
	if _, err := EnsureServerCert(discard, dir, "", "", []string{"new-name.example"}); err != nil {
		t.Fatal(err)
	}
	renewed, _ := os.ReadFile(filepath.Join(dir, ServerFile))
	caAfter, _ := os.ReadFile(CAPath(dir))
	if bytes.Equal(before, renewed) {
		t.Fatal("server certificate not reissued for a new name")
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Fatal("CA changed: devices would stop trusting the hub")
	}
}

func TestEnsureServerCertLoadsGivenFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.IssueServer([]string{"example.test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := KeyPEM(pair)
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, CertPEM(pair), 0o600)
	os.WriteFile(kf, keyPEM, 0o600)
	cfg, err := EnsureServerCert(discard, "", cf, kf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(t, cfg).Certificate[0], pair.Certificate[0]) {
		t.Fatal("did not load the given certificate")
	}
	if _, err := EnsureServerCert(discard, "", cf, "", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cert without key: %v", err)
	}
	if _, err := EnsureServerCert(discard, "", cf, cf, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cert as key: %v", err)
	}
}

func TestEnsureServerCertRefusesDamagedCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureServerCert(discard, dir, "", "", nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("garbage"), 0o600)
	if _, err := EnsureServerCert(discard, dir, "", "", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("damaged CA key: %v", err)
	}
}

func TestClientCerts(t *testing.T) {
	ca, err := NewCA("org CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := IssueClientCert(ca, "press-1", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.Subject.CommonName != "press-1" {
		t.Fatal(c.Leaf.Subject)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	self, err := IssueClientCert(nil, "robot-2", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := self.Leaf.CheckSignature(self.Leaf.SignatureAlgorithm, self.Leaf.RawTBSCertificate, self.Leaf.Signature); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	tp := Thumbprint(self.Leaf)
	if len(tp) != 64 || tp == Thumbprint(c.Leaf) {
		t.Fatal(tp)
	}
	// The pair works for a TLS client.
	if _, err := tls.X509KeyPair(CertPEM(self), must(KeyPEM(self))); err != nil {
		t.Fatal(err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
