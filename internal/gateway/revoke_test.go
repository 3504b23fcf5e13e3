package gateway

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/pki"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// waitDisconnect waits for the server's DISCONNECT and returns its reason.
func waitDisconnect(t *testing.T, c *v5, within time.Duration) byte {
	t.Helper()
	select {
	case d := <-c.disconnected:
		return d.ReasonCode
	case <-time.After(within):
		t.Fatalf("no DISCONNECT from the gateway within %s", within)
	}
	return 0
}

func TestTokenLifetimeLimited(t *testing.T) {
	t.Run("default refuses a 100-year token", func(t *testing.T) {
		f := start(t, Config{})
		key := f.device("press-1")
		_, ack, err := dialV5(t, f, nil, "press-1", username("press-1"), token(t, "press-1", key, time.Now().AddDate(100, 0, 0)))
		if err == nil {
			t.Fatal("a SAS token valid for 100 years was accepted")
		}
		if ack == nil || ack.ReasonCode != 0x87 {
			t.Fatalf("CONNACK %+v, want 0x87", ack)
		}
		if !containsText(f.devs.errors("press-1"), "longer than the 365 days this hub accepts") {
			t.Errorf("device's last error does not explain the limit: %q", f.devs.errors("press-1"))
		}
		// A token for 300 days is within the default year.
		if _, _, err := dialV5(t, f, nil, "press-1", username("press-1"), token(t, "press-1", key, time.Now().AddDate(0, 0, 300))); err != nil {
			t.Fatalf("a 300-day token was refused: %v", err)
		}
	})
	t.Run("configured", func(t *testing.T) {
		f := start(t, Config{MaxTokenTTL: time.Hour})
		key := f.device("press-2")
		if _, _, err := dialV5(t, f, nil, "press-2", username("press-2"), token(t, "press-2", key, time.Now().Add(2*time.Hour))); err == nil {
			t.Fatal("a 2 h token was accepted with a 1 h limit")
		}
		if _, _, err := dialV3(t, "tcp://"+f.g.Addr().String(), "press-2", username("press-2"), token(t, "press-2", key, time.Now().Add(2*time.Hour)), nil); err == nil {
			t.Fatal("3.1.1: a 2 h token was accepted with a 1 h limit")
		}
		if _, _, err := dialV5(t, f, nil, "press-2", username("press-2"), token(t, "press-2", key, time.Now().Add(30*time.Minute))); err != nil {
			t.Fatalf("a 30 min token was refused with a 1 h limit: %v", err)
		}
	})
	t.Run("enrollment group", func(t *testing.T) {
		f := start(t, Config{MaxTokenTTL: time.Hour})
		gk := newKey()
		f.devs.setGroups(registry.EnrollmentGroup{ID: "presses", Org: "acme", PrimaryKey: gk})
		dk := must(azure.DeriveKey(gk, "new-press"))
		if _, _, err := dialV5(t, f, nil, "new-press", username("new-press"), token(t, "new-press", dk, time.Now().AddDate(1, 0, 0))); err == nil {
			t.Fatal("zero-touch with a 1-year token accepted under a 1 h limit")
		}
		if _, ok := f.devs.get("new-press"); ok {
			t.Fatal("a device was registered from a token the hub refuses")
		}
	})
}

func TestConnectionEndsWhenTokenExpires(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	// SAS expiry has whole seconds: 3 s from now expires in 2 to 3 s.
	c, _, err := dialV5(t, f, nil, "press-1", username("press-1"), token(t, "press-1", key, time.Now().Add(3*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "connected", func() bool { return f.g.Connected("press-1") })
	if code := waitDisconnect(t, c, 10*time.Second); code != 0xA0 {
		t.Fatalf("DISCONNECT reason %#x, want 0xA0 maximum connect time", code)
	}
	eventually(t, "not connected", func() bool { return !f.g.Connected("press-1") })
	if !containsText(f.devs.errors("press-1"), "SAS token expired") {
		t.Errorf("expiry not recorded on the device: %q", f.devs.errors("press-1"))
	}

	key3 := f.device("press-3")
	c3, _, err := dialV3(t, "tcp://"+f.g.Addr().String(), "press-3", username("press-3"), token(t, "press-3", key3, time.Now().Add(3*time.Second)), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitLost(t, c3)
	if s := f.g.Stats(); s.Expired != 2 {
		t.Errorf("Stats.Expired %d, want 2", s.Expired)
	}
}

func TestRevalidateEndsRevokedConnections(t *testing.T) {
	f := start(t, Config{DeviceCacheTTL: time.Hour})
	key := f.device("press-1")
	dev, _ := f.devs.get("press-1")
	onPrimary := mustV5(t, f, "press-1", key)

	// Unchanged record: the connection stays.
	if f.g.Revalidate("press-1") {
		t.Fatal("Revalidate closed a connection whose credential still holds")
	}
	// The secondary key is regenerated: the primary-key connection stays.
	dev.SecondaryKey = newKey()
	f.devs.put(dev)
	if f.g.Revalidate("press-1") {
		t.Fatal("regenerating the secondary key closed a connection that used the primary key")
	}
	// The primary key is regenerated: the connection ends, not authorized.
	dev.PrimaryKey = newKey()
	f.devs.put(dev)
	if !f.g.Revalidate("press-1") {
		t.Fatal("Revalidate kept a connection whose key was regenerated")
	}
	if code := waitDisconnect(t, onPrimary, 10*time.Second); code != 0x87 {
		t.Fatalf("DISCONNECT reason %#x, want 0x87 not authorized", code)
	}
	if !containsText(f.devs.errors("press-1"), "was regenerated") {
		t.Errorf("revocation not recorded on the device: %q", f.devs.errors("press-1"))
	}
	// The old key no longer connects, even though the cache is an hour long.
	if _, _, err := dialV5(t, f, nil, "press-1", username("press-1"), token(t, "press-1", key, hour())); err == nil {
		t.Fatal("the regenerated key still connects")
	}
	// The new key connects; disabling the device ends it (administrative action).
	onNew := mustV5(t, f, "press-1", dev.PrimaryKey)
	dev.Disabled = true
	f.devs.put(dev)
	if !f.g.Revalidate("press-1") {
		t.Fatal("Revalidate kept a disabled device's connection")
	}
	if code := waitDisconnect(t, onNew, 10*time.Second); code != 0x98 {
		t.Fatalf("DISCONNECT reason %#x, want 0x98 administrative action", code)
	}

	// A deleted device, over MQTT 3.1.1.
	key2 := f.device("press-2")
	c2 := mustV3(t, f, "press-2", key2)
	f.devs.mu.Lock()
	delete(f.devs.devices, "press-2")
	f.devs.mu.Unlock()
	if !f.g.Revalidate("press-2") {
		t.Fatal("Revalidate kept a deleted device's connection")
	}
	waitLost(t, c2)
	if s := f.g.Stats(); s.Revoked != 3 {
		t.Errorf("Stats.Revoked %d, want 3", s.Revoked)
	}
}

func TestRevalidateThumbprintChanged(t *testing.T) {
	f := startTLS(t)
	cert := issue(t, nil, "robot-1", time.Time{})
	f.devs.put(registry.Device{ID: "robot-1", Org: "acme", Auth: registry.AuthX509Self, Thumbprint: strings.ToUpper(pki.Thumbprint(cert.Leaf))})
	c, err := f.connect(t, "robot-1", cert)
	if err != nil {
		t.Fatal(err)
	}
	if f.g.Revalidate("robot-1") {
		t.Fatal("Revalidate closed a connection whose thumbprint still matches")
	}
	other := issue(t, nil, "robot-1", time.Time{})
	f.devs.put(registry.Device{ID: "robot-1", Org: "acme", Auth: registry.AuthX509Self, Thumbprint: pki.Thumbprint(other.Leaf)})
	if !f.g.Revalidate("robot-1") {
		t.Fatal("Revalidate kept a connection whose thumbprint changed")
	}
	if code := waitDisconnect(t, c, 10*time.Second); code != 0x87 {
		t.Fatalf("DISCONNECT reason %#x, want 0x87", code)
	}
}

// A key regenerated while the device was connecting (after the gateway read
// its record, before the session existed) still ends the connection: the
// revocation found no connection, so the session re-checks itself.
func TestRevocationDuringConnect(t *testing.T) {
	f := start(t, Config{DeviceCacheTTL: time.Hour})
	key := f.device("press-1")
	var once sync.Once
	f.devs.mu.Lock()
	f.devs.afterRead = func(id string) {
		once.Do(func() {
			d, _ := f.devs.get(id)
			d.PrimaryKey = newKey()
			f.devs.put(d)
			if f.g.Revalidate(id) {
				t.Error("Revalidate found a connection before the device had one")
			}
		})
	}
	f.devs.mu.Unlock()
	c, _, err := dialV5(t, f, nil, "press-1", username("press-1"), token(t, "press-1", key, hour()))
	if err != nil {
		t.Fatalf("the connect that read the old record was refused: %v", err)
	}
	if code := waitDisconnect(t, c, 10*time.Second); code != 0x87 {
		t.Fatalf("DISCONNECT reason %#x, want 0x87", code)
	}
}
