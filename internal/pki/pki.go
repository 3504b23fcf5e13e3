package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ErrInvalid is returned for unusable certificate or key material.
var ErrInvalid = errors.New("invalid certificate material")

// File names inside the directory managed by EnsureServerCert.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
	// renewBefore: a server certificate closer than this to expiry is
	// reissued at start.
	renewBefore = 30 * 24 * time.Hour
)

// CA is a certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// PEM returns the CA certificate in PEM form (what devices need to trust the
// hub, and what an organization registers to authenticate its devices).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// NewCA creates a self-signed ECDSA P-256 certificate authority.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Shopfloor"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA certificate and its private key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: load CA %s / %s: %v", ErrInvalid, certFile, keyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: parse CA %s: %v", ErrInvalid, certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrInvalid, certFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: CA key in %s cannot sign", ErrInvalid, keyFile)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// IssueServer issues a TLS server certificate for hosts (DNS names or IP
// addresses).
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: firstOr(hosts, "shopfloor"), Organization: []string{"Shopfloor"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, key)
}

// IssueClient issues a device client certificate with CN=deviceID.
func (ca *CA) IssueClient(deviceID string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.issue(clientTemplate(deviceID, notBefore, notAfter), key)
}

func (ca *CA) issue(tmpl *x509.Certificate, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueClientCert issues a device client certificate with CN=deviceID,
// signed by ca, or self-signed when ca is nil. A zero notBefore/notAfter
// means now-1h / now+1 year.
func IssueClientCert(ca *CA, deviceID string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	if ca != nil {
		return ca.IssueClient(deviceID, notBefore, notAfter)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := clientTemplate(deviceID, notBefore, notAfter)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate for %q: %w", deviceID, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func clientTemplate(deviceID string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: deviceID},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// Thumbprint is the hex SHA-256 of a certificate's DER encoding, as used to
// register self-signed devices (lower case; compare case-insensitively).
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// CertPEM encodes the leaf of a tls.Certificate as PEM.
func CertPEM(c tls.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

// KeyPEM encodes the private key of a tls.Certificate as PKCS#8 PEM.
func KeyPEM(c tls.Certificate) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EnsureServerCert returns the TLS server configuration of the hub's
// listeners (see ServerConfig): its certificate is re-read from the files
// when they change (see Reloader), and log hears about reloads and refused
// replacements. With certFile and keyFile it loads them. Otherwise it uses dir: on first start it creates a
// CA (ca.pem, ca-key.pem) and a server certificate (server.pem,
// server-key.pem) valid for localhost, 127.0.0.1, ::1, the machine's host
// name and extraSANs; later starts reuse them, reissuing the server
// certificate from the same CA when it nears expiry or lacks a requested
// name. Devices trust the hub by trusting ca.pem (see CAPath).
func EnsureServerCert(log *slog.Logger, dir, certFile, keyFile string, extraSANs []string) (*tls.Config, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, fmt.Errorf("%w: give both a TLS certificate file and its key file, or neither to use generated ones", ErrInvalid)
		}
		return reloading(log, certFile, keyFile)
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: no directory for generated TLS certificates", ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create TLS directory %s: %w", dir, err)
	}
	ca, err := ensureCA(dir)
	if err != nil {
		return nil, err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	for _, s := range extraSANs {
		if s != "" && !slices.Contains(hosts, s) {
			hosts = append(hosts, s)
		}
	}
	certPath, keyPath := filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && serverCertUsable(pair, ca, hosts) {
		return reloading(log, certPath, keyPath)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s or %s is damaged (%v); delete both to have them recreated", ErrInvalid, certPath, keyPath, err)
	}
	pair, err := ca.IssueServer(hosts, serverValidity)
	if err != nil {
		return nil, err
	}
	keyPEM, err := KeyPEM(pair)
	if err != nil {
		return nil, err
	}
	certChain := append(CertPEM(pair), ca.PEM()...)
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, certChain, 0o644); err != nil {
		return nil, err
	}
	return reloading(log, certPath, keyPath)
}

// CAPath is the generated CA certificate in dir, to hand to devices.
func CAPath(dir string) string { return filepath.Join(dir, CAFile) }

// LoadCAPool reads a PEM file of one or more certificates into a pool.
func LoadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrInvalid, path)
	}
	return p, nil
}

func ensureCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	ca, err := LoadCA(certPath, keyPath)
	if err == nil {
		return ca, nil
	}
	if _, statErr := os.Stat(certPath); statErr == nil {
		return nil, fmt.Errorf("%w: %s exists but cannot be used (%v); restore %s or delete both to create a new CA (devices must then trust the new ca.pem)", ErrInvalid, certPath, err, keyPath)
	}
	ca, err = NewCA("Shopfloor hub CA", caValidity)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, ca.PEM(), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func serverCertUsable(pair tls.Certificate, ca *CA, hosts []string) bool {
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || time.Until(leaf.NotAfter) < renewBefore {
		return false
	}
	if err := leaf.CheckSignatureFrom(ca.Cert); err != nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func reloading(log *slog.Logger, certFile, keyFile string) (*tls.Config, error) {
	r, err := NewReloader(log, certFile, keyFile, ReloadCheck)
	if err != nil {
		return nil, err
	}
	return ServerConfig(r.GetCertificate), nil
}

// writeFile writes atomically so a crash never leaves half a key behind.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // crypto/rand never fails on supported platforms
	}
	return n
}

func firstOr(s []string, def string) string {
	if len(s) > 0 && s[0] != "" {
		return s[0]
	}
	return def
}
