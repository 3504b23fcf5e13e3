package e2e

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/shopfloor/shopfloor/internal/config"
	"github.com/shopfloor/shopfloor/internal/gateway/azure"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// v5Device is an MQTT 5 device connection that records the server's DISCONNECT.
type v5Device struct {
	c    *paho.Client
	gone chan byte // the reason code of the server's DISCONNECT
}

// connectV5 connects device id to the hub's MQTT port with a SAS token
// signed with key that expires at expiry.
func connectV5(t *testing.T, hub *testutil.Hub, id, key string, expiry time.Time) (*v5Device, error) {
	t.Helper()
	tok, err := azure.SASToken("localhost", id, key, expiry)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", hub.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	d := &v5Device{gone: make(chan byte, 1)}
	d.c = paho.NewClient(paho.ClientConfig{
		Conn:               packets.NewThreadSafeConn(conn),
		OnServerDisconnect: func(dis *paho.Disconnect) { d.gone <- dis.ReasonCode },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = d.c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: "localhost/" + id + "/?api-version=2021-04-12", UsernameFlag: true,
		Password: []byte(tok), PasswordFlag: true})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	return d, nil
}

func (d *v5Device) waitGone(t *testing.T, want byte) {
	t.Helper()
	select {
	case code := <-d.gone:
		if code != want {
			t.Fatalf("DISCONNECT reason %#x, want %#x", code, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the hub did not end the connection")
	}
}

// Regenerating a key, disabling a device or deleting it ends the
// connections that used its old credential; the unchanged key keeps working.
func TestRevokedCredentialsDisconnect(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	d := a.CreateDevice(t, "press-1", nil)

	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	a.MustDo(t, 200, "POST", "/api/v1/devices/press-1/keys/primary/regenerate", nil, nil)
	testutil.Eventually(t, 15*time.Second, "the connection with the regenerated key to end", func() bool { return !c.IsConnectionOpen() })
	if _, err := hub.ConnectDevice(t, d, testutil.DeviceOptions{}); err == nil {
		t.Fatal("the regenerated primary key still connects")
	}
	var got testutil.Device
	a.MustDo(t, 200, "GET", "/api/v1/devices/press-1", nil, &got)

	// MQTT 5 sees why: 0x87 not authorized.
	v5, err := connectV5(t, hub, "press-1", got.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("the new primary key does not connect: %v", err)
	}
	a.MustDo(t, 200, "POST", "/api/v1/devices/press-1/keys/primary/regenerate", nil, &got)
	v5.waitGone(t, 0x87)

	// Disabling ends the connection: 0x98 administrative action.
	v5, err = connectV5(t, hub, "press-1", got.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a.MustDo(t, 200, "PATCH", "/api/v1/devices/press-1", map[string]any{"disabled": true}, nil)
	v5.waitGone(t, 0x98)
}

// A connection ends when its SAS token expires, and a token valid for longer
// than --max-token-ttl is refused.
func TestTokenExpiryAndLifetime(t *testing.T) {
	hub := testutil.StartHub(t, testutil.Options{Mutate: func(c *config.Config) { c.MaxTokenTTL = 2 * time.Hour }})
	a := hub.API()
	d := a.CreateDevice(t, "press-2", nil)

	if _, err := connectV5(t, hub, d.ID, d.PrimaryKey, time.Now().AddDate(100, 0, 0)); err == nil {
		t.Fatal("a SAS token valid for 100 years was accepted")
	}
	if _, err := hub.ConnectDevice(t, d, testutil.DeviceOptions{Expiry: 3 * time.Hour}); err == nil {
		t.Fatal("a 3 h token was accepted with --max-token-ttl 2h")
	}

	v5, err := connectV5(t, hub, d.ID, d.PrimaryKey, time.Now().Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	v5.waitGone(t, 0xA0)

	c := hub.MustConnect(t, d, testutil.DeviceOptions{Expiry: 3 * time.Second})
	testutil.Eventually(t, 15*time.Second, "the 3.1.1 connection with an expired token to end", func() bool { return !c.IsConnectionOpen() })
	var dev struct {
		LastError string `json:"lastError"`
	}
	a.MustDo(t, 200, "GET", "/api/v1/devices/press-2", nil, &dev)
	if dev.LastError == "" {
		t.Error("the expiry is not shown as the device's last error")
	}
}

// Two hub processes share PostgreSQL and NATS: a key regenerated through one
// ends the device's connection on the other.
func TestRevocationReachesEveryHub(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	natsURL := os.Getenv("SHOPFLOOR_TEST_NATS")
	if natsURL == "" {
		t.Skip("SHOPFLOOR_TEST_NATS not set: skipping (CI sets it to nats://127.0.0.1:4222)")
	}
	prefix := testutil.SharedPrefix(t, natsURL)
	hubA := testutil.StartHub(t, testutil.Options{Postgres: dsn, NATS: natsURL, Prefix: prefix})
	hubB := testutil.StartHub(t, testutil.Options{Postgres: dsn, NATS: natsURL, Prefix: prefix})
	a := hubA.API()
	d := a.CreateDevice(t, "press-3", nil)

	onB, err := connectV5(t, hubB, d.ID, d.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "press-3 connected to hub B", func() bool { return hubB.Gateway.Connected(d.ID) })
	a.MustDo(t, 200, "POST", "/api/v1/devices/press-3/keys/primary/regenerate", nil, nil)
	onB.waitGone(t, 0x87)

	// Hub B dropped its cached record too: the old key, which B accepted a
	// moment ago, is refused there at once, not when the record would
	// have expired (5 s).
	var got testutil.Device
	a.MustDo(t, 200, "GET", "/api/v1/devices/press-3", nil, &got)
	onB, err = connectV5(t, hubB, d.ID, got.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_ = onB.c.Disconnect(&paho.Disconnect{})
	old := got.PrimaryKey
	a.MustDo(t, 200, "POST", "/api/v1/devices/press-3/keys/primary/regenerate", nil, &got)
	testutil.Eventually(t, 2*time.Second, "hub B to refuse the regenerated key", func() bool {
		c, err := connectV5(t, hubB, d.ID, old, time.Now().Add(time.Hour))
		if err == nil {
			_ = c.c.Disconnect(&paho.Disconnect{})
		}
		return err != nil
	})

	// Deleting through hub A ends a connection on hub B as well.
	onB, err = connectV5(t, hubB, d.ID, got.PrimaryKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "press-3 connected to hub B again", func() bool { return hubB.Gateway.Connected(d.ID) })
	a.MustDo(t, 204, "DELETE", "/api/v1/devices/press-3", nil, nil)
	onB.waitGone(t, 0x98)
}
