package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
)

// DeviceOptions for ConnectDevice.
type DeviceOptions struct {
	TLS    bool   // connect to the MQTTS port, trusting the hub's CA
	WS     bool   // connect over WebSocket at /mqtt on the HTTP port
	IMEI   string // presented as imei= in the user name, as 3.1.1 devices do
	Expiry time.Duration
	Key    string // override the SAS key
}

// ConnectDevice connects a device with a SAS token over MQTT 3.1.1 (paho).
func (h *Hub) ConnectDevice(t testing.TB, d Device, o DeviceOptions) (mqtt.Client, error) {
	t.Helper()
	key := o.Key
	if key == "" {
		key = d.PrimaryKey
	}
	if o.Expiry == 0 {
		o.Expiry = time.Hour
	}
	tok, err := azure.SASToken("localhost", d.ID, key, time.Now().Add(o.Expiry))
	if err != nil {
		t.Fatal(err)
	}
	opts := mqtt.NewClientOptions().
		SetClientID(d.ID).
		SetUsername("localhost/" + d.ID + "/?api-version=2021-04-12" + imeiParam(o.IMEI)).
		SetPassword(tok).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetCleanSession(true)
	if o.TLS {
		pem, err := os.ReadFile(h.CAFile())
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		opts.AddBroker("ssl://" + h.MQTTSAddr()).SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"})
	} else if o.WS {
		opts.AddBroker("ws://" + h.HTTPAddr() + "/mqtt")
	} else {
		opts.AddBroker("tcp://" + h.MQTTAddr())
	}
	c := mqtt.NewClient(opts)
	tk := c.Connect()
	if !tk.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", d.ID)
	}
	if err := tk.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// MustConnect is ConnectDevice that fails the test on error.
func (h *Hub) MustConnect(t testing.TB, d Device, o DeviceOptions) mqtt.Client {
	t.Helper()
	c, err := h.ConnectDevice(t, d, o)
	if err != nil {
		t.Fatalf("device %s could not connect: %v", d.ID, err)
	}
	return c
}

// Publish sends one telemetry message at QoS 1 and waits for the PUBACK.
func Publish(t testing.TB, c mqtt.Client, deviceID string, body any) {
	t.Helper()
	payload, ok := body.([]byte)
	if !ok {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	tk := c.Publish("devices/"+deviceID+"/messages/events/", 1, false, payload)
	if !tk.WaitTimeout(15 * time.Second) {
		t.Fatalf("publish from %s: no PUBACK within 15s", deviceID)
	}
	if err := tk.Error(); err != nil {
		t.Fatalf("publish from %s: %v", deviceID, err)
	}
}

func imeiParam(imei string) string {
	if imei == "" {
		return ""
	}
	return "&imei=" + imei
}
