package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// DefaultMaxTokenTTL is the longest SAS token lifetime accepted unless
// configured otherwise: one year, the longest token the hub's own API
// issues (GET /api/v1/devices/{id}/token?ttl=8760h). It leaves room for a
// device that is flashed with a token once a maintenance year, while a
// token that leaks cannot be used forever.
const DefaultMaxTokenTTL = 365 * 24 * time.Hour

// credential is what a connection proved at CONNECT. A live connection is
// only as good as its credential: it ends when the credential expires or
// is revoked (a key regenerated, a thumbprint changed, the device disabled
// or deleted).
type credential struct {
	auth    registry.AuthKind
	secret  string    // sas: SHA-256 of the key that signed the token; x509_self: the certificate thumbprint
	expires time.Time // the token's expiry or the certificate's NotAfter
}

func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// checkTokenLifetime refuses a SAS token valid for longer than the
// configured maximum.
func (g *Gateway) checkTokenLifetime(expiry, now time.Time, known bool) *authError {
	life := expiry.Sub(now)
	if life <= g.cfg.MaxTokenTTL {
		return nil
	}
	msg := fmt.Sprintf("SAS token is valid until %s, longer than the %s this hub accepts: generate a token with a shorter expiry",
		expiry.UTC().Format(time.RFC3339), fmtDuration(g.cfg.MaxTokenTTL))
	return deny(msg, msg, known)
}

// fmtDuration writes whole days as days ("365 days"), anything else as Go does.
func fmtDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// dropClock counts the times device records were dropped from the cache
// (a revocation, a disable, a delete), in buckets of device ids so that it
// stays small. A connection that was authenticated from a record dropped
// while it connected is re-checked once it is established.
type dropClock [256]atomic.Uint64

func (c *dropClock) of(id string) *atomic.Uint64 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return &c[h%uint32(len(c))]
}

// watchCredential runs when a session is established. It re-checks the
// credential if the device's record was dropped while the device was
// connecting: a revocation that arrived between the registry read and the
// session would otherwise find no connection to end. It then arms the
// timer that ends the connection when its credential expires, as IoT Hub
// does: MQTT 5 clients get DISCONNECT 0xA0 (maximum connect time), 3.1.1
// clients a closed connection.
func (g *Gateway) watchCredential(cl *mqtt.Client, s *session) {
	if g.auth.drops.of(s.device).Load() != s.drops {
		go g.recheck(s.device) // a registry read: not on the connection's goroutine
	}
	if s.cred.expires.IsZero() {
		return
	}
	t := time.AfterFunc(time.Until(s.cred.expires), func() {
		if cl.Closed() {
			return
		}
		what := "SAS token"
		if s.cred.auth != registry.AuthSAS {
			what = "client certificate"
		}
		msg := fmt.Sprintf("connection closed: its %s expired at %s; the device must reconnect with a new one", what, s.cred.expires.UTC().Format(time.RFC3339))
		g.log.Info("device connection ended: credential expired", "device", s.device, "expired", s.cred.expires)
		g.recordError(s.device, msg, time.Now())
		g.stats.expired.Add(1)
		g.endConnection(cl, packets.ErrMaxConnectTime)
	})
	if old := s.expiry.Swap(t); old != nil {
		old.Stop()
	}
}

// stopExpiry disarms the expiry timer of an ended connection.
func (s *session) stopExpiry() {
	if t := s.expiry.Swap(nil); t != nil {
		t.Stop()
	}
}

// endConnection closes a connection with a reason: a DISCONNECT carrying
// it for MQTT 5, a plain close for 3.1.1, which has no server DISCONNECT.
func (g *Gateway) endConnection(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = g.server.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// Revalidate checks a device's live connection on this gateway against its
// current registry record and closes it when the credential it connected
// with no longer holds: the device was deleted or disabled (MQTT 5
// DISCONNECT 0x98 administrative action), its key was regenerated, its
// thumbprint or authentication method changed (0x87 not authorized). A
// connection that used the other, unchanged key stays up. The hub calls it
// on every process after a device's record changed; a registry that cannot
// be read leaves the connection up and is logged.
func (g *Gateway) Revalidate(deviceID string) bool {
	g.auth.forget(deviceID)
	return g.recheck(deviceID)
}

// recheck is Revalidate without dropping the cached record.
func (g *Gateway) recheck(deviceID string) bool {
	cl, s, ok := g.liveSession(deviceID)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ConnectTimeout)
	defer cancel()
	dev, err := g.devices.LookupDevice(ctx, deviceID)
	var (
		why  string
		code = packets.ErrNotAuthorized
	)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		why, code = "the device was deleted", packets.ErrAdministrativeAction
	case err != nil:
		g.log.Warn("could not re-check a connected device's credentials; its connection stays up", "device", deviceID, "error", err)
		return false
	case dev.Disabled:
		why, code = "the device was disabled", packets.ErrAdministrativeAction
	default:
		why = revoked(dev, s.cred)
	}
	if why == "" {
		return false
	}
	g.log.Info("device connection ended: credential revoked", "device", deviceID, "reason", why)
	if err == nil {
		g.recordError(deviceID, "connection closed: "+why, time.Now())
	}
	g.stats.revoked.Add(1)
	g.endConnection(cl, code)
	return true
}

// revoked says why cred no longer authenticates dev, or "" when it does.
func revoked(dev registry.Device, cred credential) string {
	auth := dev.Auth
	if auth == "" {
		auth = registry.AuthSAS
	}
	if auth != cred.auth {
		return fmt.Sprintf("the device now authenticates with %s, not %s", auth, cred.auth)
	}
	switch auth {
	case registry.AuthSAS:
		for _, k := range []string{dev.PrimaryKey, dev.SecondaryKey} {
			if k != "" && keyHash(k) == cred.secret {
				return ""
			}
		}
		return "the key its SAS token was signed with was regenerated; connect with a token signed with the new key"
	case registry.AuthX509Self:
		if !strings.EqualFold(dev.Thumbprint, cred.secret) {
			return "the registered certificate thumbprint changed; connect with the new certificate"
		}
	}
	return ""
}

// liveSession is a device's connection on this gateway with its session,
// established or not.
func (g *Gateway) liveSession(deviceID string) (*mqtt.Client, *session, bool) {
	cl, ok := g.server.Clients.Get(deviceID)
	if !ok || cl.Closed() {
		return nil, nil, false
	}
	v, ok := g.sessions.Load(cl)
	if !ok {
		return nil, nil, false
	}
	return cl, v.(*session), true
}
