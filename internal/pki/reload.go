package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ReloadCheck is how often, at most, the server certificate files are
// looked at for a change. A stat every few seconds costs nothing next to
// a handshake, and an operator who renewed a certificate sees it served
// within seconds.
const ReloadCheck = 3 * time.Second

// CipherSuites returns the TLS 1.2 cipher suites every hub listener
// accepts: forward-secret (ECDHE) key exchange with an AEAD cipher only.
// CBC suites (padding oracles of the Lucky13 kind) and static RSA key
// exchange (no forward secrecy) are left out. TLS 1.3 suites are not
// configurable in Go and are all modern.
func CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// ServerConfig is the TLS configuration of every hub listener (MQTTS,
// HTTPS and WebSocket over it): TLS 1.2 or later with the suites of
// CipherSuites, the certificate from getCert on every handshake.
// Certificates stays empty on purpose: crypto/tls asks GetCertificate
// only for clients without SNI when Certificates is empty, and devices
// that connect by IP address send no SNI.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   CipherSuites(),
		GetCertificate: getCert,
	}
}

// Reloader serves a server certificate from a certificate file and its key
// file and re-reads them when either file changes, so a renewed
// certificate is served to new connections without a restart. A new pair
// that cannot be used (unreadable, mismatched, not yet or no longer valid)
// is logged and the previous one is kept.
type Reloader struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    fileStamp // the files' state last looked at (loaded or refused)
	checked time.Time // when the files were last looked at
}

// fileStamp identifies a version of the two files without reading them.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// NewReloader loads certFile and keyFile; it fails if they cannot be used,
// since there is then no certificate to keep. every bounds how often the
// files are looked at (ReloadCheck when zero or less).
func NewReloader(log *slog.Logger, certFile, keyFile string, every time.Duration) (*Reloader, error) {
	if every <= 0 {
		every = ReloadCheck
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, every: every, log: log, now: time.Now}
	st, err := r.stamp()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.seen, r.checked = cert, st, r.now()
	return r, nil
}

// GetCertificate is a tls.Config.GetCertificate that serves the current
// pair, first re-reading the files if the last look is older than the
// check interval and they changed since.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		r.refresh()
	}
	return r.cert, nil
}

// refresh loads the files if they changed since last seen. Called with
// r.mu held; a handshake waits at most for one read of two small files.
func (r *Reloader) refresh() {
	st, err := r.stamp()
	if err != nil {
		// A file being replaced by a non-atomic copy can be missing for a
		// moment; the next check tries again.
		r.log.Warn("TLS certificate files cannot be read; still serving the previous certificate",
			"cert", r.certFile, "key", r.keyFile, "error", err)
		return
	}
	if st == r.seen {
		return
	}
	r.seen = st
	cert, err := r.load()
	if err != nil {
		r.log.Error("new TLS certificate refused; still serving the previous one until the files change again",
			"cert", r.certFile, "key", r.keyFile, "error", err)
		return
	}
	r.cert = cert
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

func (r *Reloader) stamp() (fileStamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// load reads and checks the pair: the key must match the certificate and
// the certificate must be valid now.
func (r *Reloader) load() (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: load TLS certificate %s with key %s: %v", ErrInvalid, r.certFile, r.keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: parse TLS certificate %s: %v", ErrInvalid, r.certFile, err)
		}
	}
	now := r.now()
	if now.Before(pair.Leaf.NotBefore) || now.After(pair.Leaf.NotAfter) {
		return nil, fmt.Errorf("%w: TLS certificate %s is valid from %s to %s, not now", ErrInvalid, r.certFile,
			pair.Leaf.NotBefore.UTC().Format(time.RFC3339), pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &pair, nil
}
