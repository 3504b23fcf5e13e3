package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var discard = slog.New(slog.DiscardHandler)

// served is the certificate cfg presents to a client without SNI.
func served(t *testing.T, cfg *tls.Config) *tls.Certificate {
	t.Helper()
	if len(cfg.Certificates) > 0 {
		t.Fatal("the config carries a fixed certificate: crypto/tls would not ask GetCertificate for clients without SNI")
	}
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil {
		t.Fatalf("GetCertificate: %v, %v", c, err)
	}
	return c
}

// pairFiles writes a certificate for name (and its key) to dir.
func pairFiles(t *testing.T, ca *CA, dir, name string) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	pair, err := ca.IssueServer([]string{"localhost", "127.0.0.1", name}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := KeyPEM(pair)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	if err := writeFile(certFile, CertPEM(pair), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// logBuffer collects log records for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tlsServer serves TLS with cfg on loopback; every connection completes
// its handshake and is closed.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// peerCert dials addr (trusting roots) and returns the server's leaf.
func peerCert(t *testing.T, addr string, roots *x509.CertPool) []byte {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

// A certificate replaced on disk is served to new connections without a
// restart; a replacement that cannot be used is refused with a logged
// reason and the previous certificate stays; a later good one is taken.
func TestReloaderServesReplacedCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("reload test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, first := pairFiles(t, ca, dir, "first.example")
	logs := &logBuffer{}
	r, err := NewReloader(slog.New(slog.NewTextHandler(logs, nil)), certFile, keyFile, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, ServerConfig(r.GetCertificate))
	if got := peerCert(t, addr, ca.Pool()); !bytes.Equal(got, first.Certificate[0]) {
		t.Fatal("the first certificate is not served")
	}

	_, _, second := pairFiles(t, ca, dir, "second.example")
	waitServed(t, addr, ca, second.Certificate[0], "the replaced certificate")

	// A key that does not belong to the certificate.
	other, err := ca.IssueServer([]string{"other.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := KeyPEM(other)
	if err := writeFile(keyFile, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, logs, addr, ca, "new TLS certificate refused", "private key does not match public key")
	if got := peerCert(t, addr, ca.Pool()); !bytes.Equal(got, second.Certificate[0]) {
		t.Fatal("a mismatched key replaced the served certificate")
	}

	// Not PEM at all.
	if err := writeFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, logs, addr, ca, "new TLS certificate refused", "failed to find any PEM data in certificate input")
	if got := peerCert(t, addr, ca.Pool()); !bytes.Equal(got, second.Certificate[0]) {
		t.Fatal("an unreadable certificate replaced the served one")
	}

	// A good pair again is taken.
	_, _, third := pairFiles(t, ca, dir, "third.example")
	waitServed(t, addr, ca, third.Certificate[0], "a good pair after refused ones")
}

// An expired certificate is refused like an invalid one.
func TestReloaderRefusesExpiredCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("reload test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, first := pairFiles(t, ca, dir, "first.example")
	logs := &logBuffer{}
	r, err := NewReloader(slog.New(slog.NewTextHandler(logs, nil)), certFile, keyFile, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "expired"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	c, _ := r.GetCertificate(&tls.ClientHelloInfo{})
	if !bytes.Equal(c.Certificate[0], first.Certificate[0]) {
		t.Fatal("an expired certificate replaced the served one")
	}
	if !strings.Contains(logs.String(), "not now") {
		t.Fatalf("the refusal does not say why: %s", logs.String())
	}
}

// Files are looked at no more often than the check interval.
func TestReloaderChecksAtMostEveryInterval(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("reload test", time.Hour)
	certFile, keyFile, first := pairFiles(t, ca, dir, "first.example")
	r, err := NewReloader(discard, certFile, keyFile, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	_, _, second := pairFiles(t, ca, dir, "second.example")
	if c, _ := r.GetCertificate(nil); !bytes.Equal(c.Certificate[0], first.Certificate[0]) {
		t.Fatal("the files were read again before the interval passed")
	}
	now = now.Add(time.Minute)
	if c, _ := r.GetCertificate(nil); !bytes.Equal(c.Certificate[0], second.Certificate[0]) {
		t.Fatal("the changed files were not read once the interval passed")
	}
}

func waitServed(t *testing.T, addr string, ca *CA, want []byte, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Equal(peerCert(t, addr, ca.Pool()), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s is not served after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitLogged(t *testing.T, logs *logBuffer, addr string, ca *CA, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A new handshake makes the reloader look at the files.
		peerCert(t, addr, ca.Pool())
		all := true
		for _, p := range parts {
			all = all && strings.Contains(logs.String(), p)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log does not say %q: %s", parts, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The hub's listeners refuse TLS 1.1, CBC suites and static RSA key
// exchange under TLS 1.2, and accept ECDHE with AES-GCM or ChaCha20 and
// TLS 1.3. Both an ECDSA and an RSA server certificate are tried: the
// suites on offer depend on the key type.
func TestServerConfigProtocolsAndSuites(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("suites", time.Hour)
	ecCert, ecKey, _ := pairFiles(t, ca, t.TempDir(), "ec")
	rsaCert, rsaKey := rsaPairFiles(t, ca, dir)
	for _, files := range [][2]string{{ecCert, ecKey}, {rsaCert, rsaKey}} {
		r, err := NewReloader(discard, files[0], files[1], 0)
		if err != nil {
			t.Fatal(err)
		}
		addr := tlsServer(t, ServerConfig(r.GetCertificate))
		isRSA := files[0] == rsaCert
		ecdheGCM, ecdheChaCha, ecdheCBC := tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
		if isRSA {
			ecdheGCM, ecdheChaCha, ecdheCBC = tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
		}
		for _, c := range []struct {
			name     string
			min, max uint16
			suites   []uint16
			ok       bool
		}{
			{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, nil, false},
			{"TLS 1.2 ECDHE CBC", tls.VersionTLS12, tls.VersionTLS12, []uint16{ecdheCBC}, false},
			{"TLS 1.2 RSA key exchange CBC", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, false},
			{"TLS 1.2 RSA key exchange GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, false},
			{"TLS 1.2 ECDHE AES-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{ecdheGCM}, true},
			{"TLS 1.2 ECDHE ChaCha20", tls.VersionTLS12, tls.VersionTLS12, []uint16{ecdheChaCha}, true},
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
		} {
			err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: c.min, MaxVersion: c.max, CipherSuites: c.suites})
			if (err == nil) != c.ok {
				t.Errorf("RSA certificate %v, %s: handshake error %v, want accepted=%v", isRSA, c.name, err, c.ok)
			}
		}
	}
}

// handshake dials addr with cfg and completes a TLS handshake.
func handshake(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

func rsaPairFiles(t *testing.T, ca *CA, dir string) (string, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	cf, kf := filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "rsa-key.pem")
	writeFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return cf, kf
}
