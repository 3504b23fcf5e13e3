package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// publicError shows a tenant-safe text and keeps the original error for
// errors.Is and errors.As.
type publicError struct {
	msg string
	err error
}

func (e *publicError) Error() string { return e.msg }
func (e *publicError) Unwrap() error { return e.err }

// Describe returns err, the error of a request made through Client, with a
// text a tenant may read: what went wrong, in a plant engineer's words,
// without the addresses a name resolved to, ports, local addresses or the
// resolver — what would let a tenant map the hub's network. The result
// still matches the original with errors.Is and errors.As (ErrNotAllowed,
// context.DeadlineExceeded, …). It returns nil for nil.
func Describe(err error) error {
	if err == nil {
		return nil
	}
	return &publicError{msg: describe(err), err: err}
}

func describe(err error) string {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		record  tls.RecordHeaderError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, ErrNotAllowed):
		return ErrNotAllowed.Error()
	case errors.Is(err, context.Canceled):
		return "the request was cancelled (the hub is stopping)"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "host " + quote(dnsErr.Name) + " not found in DNS"
		}
		return "cannot resolve host " + quote(dnsErr.Name) + " (DNS did not answer)"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return "no answer within the timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens at that address and port"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable from the hub"
	case errors.As(err, &unknown):
		return "the server's TLS certificate is signed by an authority the hub does not trust"
	case errors.As(err, &host):
		return "the server's TLS certificate is not valid for " + quote(host.Host)
	case errors.As(err, &invalid) || errors.As(err, &certErr):
		return "the server's TLS certificate was not accepted (expired or not valid for this use)"
	case errors.As(err, &record) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the server did not answer with TLS; use http:// or check the port"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection before answering"
	case errors.Is(err, errRedirects):
		return errRedirects.Error()
	case errors.Is(err, errRedirectScheme):
		return errRedirectScheme.Error()
	}
	return "the request could not be completed"
}

func quote(s string) string { return "\"" + s + "\"" }
