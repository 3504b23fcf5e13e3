package e2e

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/pki"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// writePair issues a server certificate for localhost from ca and writes
// it and its key to certFile and keyFile, replacing them atomically as a
// certificate renewal tool would (write aside, rename).
func writePair(t *testing.T, ca *pki.CA, certFile, keyFile string) []byte {
	t.Helper()
	pair, err := ca.IssueServer([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(pair)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, keyPEM}, {certFile, pki.CertPEM(pair)}} {
		if err := os.WriteFile(f.path+".new", f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
	return pair.Certificate[0]
}

// handshake completes a TLS handshake with addr and returns the server's
// certificate.
func handshake(addr string, cfg *tls.Config) ([]byte, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw, nil
}

// Every TLS listener of the hub (MQTTS, and HTTPS, which also carries MQTT
// over WebSocket) refuses TLS 1.1 and CBC suites under TLS 1.2, accepts
// ECDHE with AES-GCM or ChaCha20 and TLS 1.3, and serves a certificate
// replaced on disk to new connections without a restart.
func TestTLSListeners(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("tls e2e", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub-key.pem")
	first := writePair(t, ca, certFile, keyFile)
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.TLSCert, c.TLSKey = certFile, keyFile }})
	listeners := map[string]string{"MQTTS": hub.MQTTSAddr(), "HTTPS": hub.HTTPSAddr()}
	base := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	for name, addr := range listeners {
		if addr == "" {
			t.Fatalf("%s is not listening", name)
		}
		for _, c := range []struct {
			what     string
			min, max uint16
			suites   []uint16
			ok       bool
		}{
			{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, nil, false},
			{"TLS 1.2 ECDHE AES-CBC", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, false},
			{"TLS 1.2 RSA key exchange", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, false},
			{"TLS 1.2 ECDHE AES-GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, true},
			{"TLS 1.2 ECDHE ChaCha20", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, true},
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
		} {
			cfg := base.Clone()
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = c.min, c.max, c.suites
			got, err := handshake(addr, cfg)
			if (err == nil) != c.ok {
				t.Errorf("%s, %s: handshake error %v, want accepted=%v", name, c.what, err, c.ok)
			}
			if err == nil && !bytes.Equal(got, first) {
				t.Errorf("%s serves a certificate other than the configured one", name)
			}
		}
	}

	second := writePair(t, ca, certFile, keyFile)
	for name, addr := range listeners {
		testutil.Eventually(t, 15*time.Second, name+" serving the replaced certificate", func() bool {
			got, err := handshake(addr, base)
			return err == nil && bytes.Equal(got, second)
		})
	}
}
