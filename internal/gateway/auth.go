package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/sync/singleflight"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// authenticator reads devices, enrollment groups and CAs from the registry
// and caches them for ttl: long enough to absorb a reconnect storm, short
// enough that a disabled device is refused within seconds even without
// Disconnect.
type authenticator struct {
	devices Devices
	ttl     time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	byID   map[string]cachedDevice
	drops  dropClock // counts forget, by bucket of device ids (revoke.go)
	loads  singleflight.Group
	groups cachedValue[[]registry.EnrollmentGroup]
	cas    cachedValue[*caSet]
}

type cachedDevice struct {
	dev registry.Device
	at  time.Time
}

type cachedValue[T any] struct {
	mu  sync.Mutex // held while loading, so concurrent connects share one query
	val T
	at  time.Time
	ok  bool
}

func (c *cachedValue[T]) get(ctx context.Context, ttl time.Duration, load func(context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && time.Since(c.at) < ttl {
		return c.val, nil
	}
	v, err := load(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	c.val, c.at, c.ok = v, time.Now(), true
	return v, nil
}

// caSet is the registered CAs, parsed.
type caSet struct {
	byOrg map[string]*x509.CertPool
	auto  *x509.CertPool // CAs with AutoRegister
	byRaw map[string]registry.CACert
}

func newAuthenticator(d Devices, ttl time.Duration, log *slog.Logger) *authenticator {
	return &authenticator{devices: d, ttl: ttl, log: log, byID: map[string]cachedDevice{}}
}

func (a *authenticator) lookup(ctx context.Context, id string) (registry.Device, error) {
	a.mu.Lock()
	c, ok := a.byID[id]
	a.mu.Unlock()
	if ok && time.Since(c.at) < a.ttl {
		return c.dev, nil
	}
	// DoChan runs the lookup on its own short-lived goroutine: the database
	// driver needs a deep stack, and a connection's goroutine that grew one
	// would keep it for as long as the device stays connected (measured: 10k
	// idle devices held 279 MB of stacks).
	ch := a.loads.DoChan(id, func() (any, error) {
		d, err := a.devices.LookupDevice(context.WithoutCancel(ctx), id)
		if err != nil {
			return nil, err
		}
		a.remember(d)
		return d, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return registry.Device{}, r.Err
		}
		return r.Val.(registry.Device), nil
	case <-ctx.Done():
		return registry.Device{}, ctx.Err()
	}
}

func (a *authenticator) remember(d registry.Device) {
	a.mu.Lock()
	a.byID[d.ID] = cachedDevice{dev: d, at: time.Now()}
	a.mu.Unlock()
}

func (a *authenticator) forget(id string) {
	a.mu.Lock()
	delete(a.byID, id)
	a.mu.Unlock()
	a.drops.of(id).Add(1)
}

func (a *authenticator) sweep(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, c := range a.byID {
		if now.Sub(c.at) >= a.ttl {
			delete(a.byID, id)
		}
	}
}

func (a *authenticator) enrollmentGroups(ctx context.Context) ([]registry.EnrollmentGroup, error) {
	return a.groups.get(ctx, a.ttl, a.devices.ListAllEnrollmentGroups)
}

func (a *authenticator) caSet(ctx context.Context) (*caSet, error) {
	return a.cas.get(ctx, a.ttl, func(ctx context.Context) (*caSet, error) {
		list, err := a.devices.ListAllCACerts(ctx)
		if err != nil {
			return nil, err
		}
		s := &caSet{byOrg: map[string]*x509.CertPool{}, auto: x509.NewCertPool(), byRaw: map[string]registry.CACert{}}
		for _, c := range list {
			cert, err := parseCertPEM(c.PEM)
			if err != nil {
				a.log.Warn("registered CA certificate cannot be used; re-register it", "ca", c.ID, "org", c.Org, "error", err)
				continue
			}
			if s.byOrg[c.Org] == nil {
				s.byOrg[c.Org] = x509.NewCertPool()
			}
			s.byOrg[c.Org].AddCert(cert)
			if c.AutoRegister {
				s.auto.AddCert(cert)
			}
			s.byRaw[string(cert.Raw)] = c
		}
		return s, nil
	})
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// authError is a refused CONNECT.
type authError struct {
	code   packets.Code // CONNACK reason (MQTT 5); mapped for 3.1.1
	detail string       // for the log and the device's last error
	device bool         // the device exists: record detail on it
}

func (e *authError) Error() string { return e.detail }

// deny refuses with "not authorized". reason, when set, is told to the
// client; it never says whether a device exists.
func deny(reason, detail string, known bool) *authError {
	c := packets.ErrNotAuthorized
	if reason != "" {
		c.Reason = reason
	}
	return &authError{code: c, detail: detail, device: known}
}

// authenticate checks a CONNECT and returns the session to attach to the
// connection.
func (g *Gateway) authenticate(cl *mqtt.Client, pk packets.Packet) (*session, *authError) {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ConnectTimeout)
	defer cancel()
	now := time.Now()
	id := pk.Connect.ClientIdentifier
	if id == "" {
		return nil, deny("client id must be the device id", "empty client id", false)
	}
	if pk.Connect.UsernameFlag && len(pk.Connect.Username) > 0 {
		_, uid, module, err := azure.ParseUsername(string(pk.Connect.Username))
		switch {
		case err != nil:
			return nil, deny("user name must be {host}/{deviceId}/?api-version=2021-04-12", err.Error(), false)
		case module != "":
			return nil, deny("module identities are not supported", "module "+module+" in user name", false)
		case uid != id:
			msg := fmt.Sprintf("user name names device %q but the client id is %q", clip(uid), clip(id))
			return nil, deny(msg, msg, false)
		}
	}
	certs := peerCertificates(cl.Net.Conn)

	// Read before the lookup: a record dropped after it (a revocation)
	// shows as a change when the session is established.
	drops := g.auth.drops.of(id).Load()
	dev, err := g.auth.lookup(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		var aerr *authError
		if dev, aerr = g.zeroTouch(ctx, id, pk, certs, now); aerr != nil {
			return nil, aerr
		}
	} else if err != nil {
		g.log.Error("device registry unavailable; refusing connection", "device", id, "error", err)
		return nil, &authError{code: packets.ErrServerUnavailable, detail: "registry unavailable: " + err.Error()}
	}
	if dev.Disabled {
		return nil, deny("", "device is disabled", false)
	}

	var cred credential
	var aerr *authError
	switch dev.Auth {
	case registry.AuthX509Self:
		cred, aerr = checkSelfSigned(dev, certs, now)
	case registry.AuthX509CA:
		cred, aerr = g.checkCASigned(ctx, dev, certs, now)
	default: // registry.AuthSAS
		cred, aerr = g.checkSAS(dev, pk, now)
	}
	if aerr != nil {
		return nil, aerr
	}

	if g.cfg.Admit != nil {
		ok, reason, err := g.cfg.Admit(ctx, dev.ID, connectIMEI(pk))
		if err != nil {
			g.log.Error("connectivity check failed; refusing connection", "device", id, "error", err)
			return nil, &authError{code: packets.ErrServerUnavailable, detail: "connectivity check: " + err.Error()}
		}
		if !ok {
			return nil, deny(reason, "refused by connectivity: "+reason, true)
		}
	}

	sess := &session{org: dev.Org, device: dev.ID, site: dev.Site, template: dev.Template, cred: cred, drops: drops}
	if pk.Connect.WillFlag {
		t, err := azure.ParseTopic(pk.Connect.WillTopic)
		if err != nil || t.Kind != azure.TopicTelemetry || t.DeviceID != id {
			msg := "the last-will topic must be devices/" + id + "/messages/events/"
			return nil, deny(msg, msg, true)
		}
		sess.will = &will{bag: t.Bag, payload: pk.Connect.WillPayload, user: pk.Connect.WillProperties.User}
		// The gateway sends the will as telemetry itself; mochi would
		// deliver it to subscribers, bypassing ingest.
		cl.Properties.Will = mqtt.Will{}
	}
	return sess, nil
}

// checkSelfSigned accepts a device whose self-signed certificate has the
// registered thumbprint and is valid now.
func checkSelfSigned(dev registry.Device, certs []*x509.Certificate, now time.Time) (credential, *authError) {
	if len(certs) == 0 {
		return credential{}, deny("this device authenticates with its X.509 certificate: connect over TLS and present it", "no client certificate", true)
	}
	leaf := certs[0]
	if dev.Thumbprint == "" || !strings.EqualFold(thumbprint(leaf), dev.Thumbprint) {
		return credential{}, deny("", "client certificate thumbprint "+thumbprint(leaf)+" does not match the registered one", true)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return credential{}, deny("client certificate is expired or not yet valid", fmt.Sprintf("client certificate valid %s to %s", leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339)), true)
	}
	return credential{auth: registry.AuthX509Self, secret: strings.ToLower(dev.Thumbprint), expires: leaf.NotAfter}, nil
}

// checkCASigned accepts a device whose certificate chains to a CA its
// organization registered and names the device.
func (g *Gateway) checkCASigned(ctx context.Context, dev registry.Device, certs []*x509.Certificate, now time.Time) (credential, *authError) {
	if len(certs) == 0 {
		return credential{}, deny("this device authenticates with its X.509 certificate: connect over TLS and present it", "no client certificate", true)
	}
	set, err := g.auth.caSet(ctx)
	if err != nil {
		return credential{}, &authError{code: packets.ErrServerUnavailable, detail: "registry unavailable: " + err.Error()}
	}
	if _, err := verifyChain(certs, set.byOrg[dev.Org], dev.ID, now); err != nil {
		return credential{}, deny("", "client certificate: "+err.Error(), true)
	}
	return credential{auth: registry.AuthX509CA, expires: certs[0].NotAfter}, nil
}

// checkSAS accepts a SAS token for the device signed with its primary or
// secondary key, unexpired and within the longest lifetime allowed.
func (g *Gateway) checkSAS(dev registry.Device, pk packets.Packet, now time.Time) (credential, *authError) {
	if !pk.Connect.PasswordFlag || len(pk.Connect.Password) == 0 {
		return credential{}, deny("the password must be a SAS token", "no SAS token", true)
	}
	s, err := azure.ParseSAS(string(pk.Connect.Password))
	if err != nil {
		return credential{}, deny(err.Error(), err.Error(), true)
	}
	if _, rid, err := azure.DeviceFromResource(s.Resource); err != nil || rid != dev.ID {
		msg := fmt.Sprintf("SAS token is for %q, not for device %q", clip(s.Resource), clip(dev.ID))
		return credential{}, deny(msg, msg, true)
	}
	used := dev.PrimaryKey
	err = azure.VerifySAS(s, "", dev.PrimaryKey, now)
	if errors.Is(err, azure.ErrBadSignature) && dev.SecondaryKey != "" {
		used = dev.SecondaryKey
		err = azure.VerifySAS(s, "", dev.SecondaryKey, now)
	}
	switch {
	case errors.Is(err, azure.ErrExpired):
		return credential{}, deny("SAS token expired", err.Error(), true)
	case err != nil:
		return credential{}, deny("", "SAS token: "+err.Error(), true)
	}
	if aerr := g.checkTokenLifetime(s.Expiry, now, true); aerr != nil {
		return credential{}, aerr
	}
	return credential{auth: registry.AuthSAS, secret: keyHash(used), expires: s.Expiry}, nil
}

// zeroTouch registers an unknown device that proves membership of an
// enrollment group (a SAS token signed with the group-derived key) or
// presents a certificate from an auto-registering CA.
func (g *Gateway) zeroTouch(ctx context.Context, id string, pk packets.Packet, certs []*x509.Certificate, now time.Time) (registry.Device, *authError) {
	unknown := deny("", "unknown device", false)
	if len(certs) > 0 {
		set, err := g.auth.caSet(ctx)
		if err != nil {
			return registry.Device{}, &authError{code: packets.ErrServerUnavailable, detail: "registry unavailable: " + err.Error()}
		}
		root, err := verifyChain(certs, set.auto, id, now)
		if err != nil {
			unknown.detail = "unknown device; client certificate not accepted for auto-registration: " + err.Error()
			return registry.Device{}, unknown
		}
		ca := set.byRaw[string(root.Raw)]
		dev, aerr := g.register(ctx, id, func(ctx context.Context) (registry.Device, error) {
			return g.devices.RegisterFromCA(ctx, ca.ID, id)
		})
		if aerr != nil {
			return registry.Device{}, aerr
		}
		g.log.Info("device registered zero-touch from CA", "device", id, "ca", ca.ID, "org", dev.Org)
		return dev, nil
	}
	if !pk.Connect.PasswordFlag || len(pk.Connect.Password) == 0 {
		return registry.Device{}, unknown
	}
	s, err := azure.ParseSAS(string(pk.Connect.Password))
	if err != nil {
		return registry.Device{}, deny(err.Error(), "unknown device with malformed SAS token", false)
	}
	if _, rid, err := azure.DeviceFromResource(s.Resource); err != nil || rid != id {
		return registry.Device{}, unknown
	}
	groups, err := g.auth.enrollmentGroups(ctx)
	if err != nil {
		return registry.Device{}, &authError{code: packets.ErrServerUnavailable, detail: "registry unavailable: " + err.Error()}
	}
	for _, grp := range groups {
		if grp.Disabled {
			continue
		}
		for _, gk := range []string{grp.PrimaryKey, grp.SecondaryKey} {
			if gk == "" {
				continue
			}
			dk, err := azure.DeriveKey(gk, id)
			if err != nil {
				continue
			}
			switch err := azure.VerifySAS(s, "", dk, now); {
			case errors.Is(err, azure.ErrExpired):
				return registry.Device{}, deny("SAS token expired", "enrollment group "+grp.ID+": "+err.Error(), false)
			case err != nil:
				continue
			}
			if aerr := g.checkTokenLifetime(s.Expiry, now, false); aerr != nil {
				return registry.Device{}, aerr
			}
			dev, aerr := g.register(ctx, id, func(ctx context.Context) (registry.Device, error) {
				return g.devices.RegisterFromGroup(ctx, grp.ID, id)
			})
			if aerr != nil {
				return registry.Device{}, aerr
			}
			g.log.Info("device registered zero-touch from enrollment group", "device", id, "group", grp.ID, "org", dev.Org)
			return dev, nil
		}
	}
	return registry.Device{}, unknown
}

func (g *Gateway) register(ctx context.Context, id string, reg func(context.Context) (registry.Device, error)) (registry.Device, *authError) {
	dev, err := reg(ctx)
	if errors.Is(err, registry.ErrConflict) {
		// Registered meanwhile by a concurrent connect of the same device.
		dev, err = g.devices.LookupDevice(ctx, id)
	} else if err == nil {
		g.stats.registered.Add(1)
	}
	if err != nil {
		g.log.Error("zero-touch registration failed", "device", id, "error", err)
		return registry.Device{}, &authError{code: packets.ErrServerUnavailable, detail: "registration failed: " + err.Error()}
	}
	g.auth.remember(dev)
	return dev, nil
}

// verifyChain verifies a presented chain against roots (validity dates
// included) and that the leaf's CN is the device id; it returns the root.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, deviceID string, now time.Time) (*x509.Certificate, error) {
	if roots == nil {
		return nil, errors.New("no CA certificate is registered for this organization")
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != deviceID {
		return nil, fmt.Errorf("certificate CN %q must equal the device id %q", clip(leaf.Subject.CommonName), clip(deviceID))
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, err
	}
	c := chains[0]
	return c[len(c)-1], nil
}

func thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func peerCertificates(c net.Conn) []*x509.Certificate {
	if d, ok := c.(*deadlineConn); ok {
		c = d.Conn
	}
	switch c := c.(type) {
	case *tls.Conn:
		return c.ConnectionState().PeerCertificates
	case *wsConn:
		return c.certs
	}
	return nil
}

// connectIMEI is the IMEI a device presented at CONNECT: the MQTT 5 user
// property "imei", or an "imei=" parameter in the user name's query string
// (MQTT 3.1.1 has no properties).
func connectIMEI(pk packets.Packet) string {
	for _, p := range pk.Properties.User {
		if strings.EqualFold(p.Key, "imei") {
			return p.Val
		}
	}
	name := string(pk.Connect.Username)
	if i := strings.IndexByte(name, '?'); i >= 0 {
		if q, err := url.ParseQuery(name[i+1:]); err == nil {
			return q.Get("imei")
		}
	}
	return ""
}
