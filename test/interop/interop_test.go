package interop

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/pki"
	"github.com/shopfloor/shopfloor/internal/testutil"
)

// requireNode skips (loudly) without node or the installed npm packages.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("SKIPPED: node is not installed; the Azure IoT SDK interop tests need Node 20")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "azure-iot-device-mqtt")); err != nil {
		t.Skip("SKIPPED: test/interop/node_modules is missing; run `npm ci` in test/interop")
	}
	return node
}

// runDevice runs device.mjs and fails the test with its output on error.
func runDevice(t *testing.T, node string, h *testutil.Hub, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "device.mjs")
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+h.CAFile(), "SF_API="+h.URL, "SF_TOKEN="+h.Token)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("device.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the Azure IoT SDK device failed: %v", err)
	}
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// checkTelemetry waits until the SDK's telemetry is queryable.
func checkTelemetry(t *testing.T, a *testutil.API, device string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "the SDK's telemetry to be queryable", func() bool {
		var latest json.RawMessage
		if a.Do(t, "GET", "/api/v1/devices/"+device+"/latest", nil, &latest) != 200 {
			return false
		}
		return strings.Contains(string(latest), "temperature") && strings.Contains(string(latest), "21.5")
	})
}

func TestAzureSDK(t *testing.T) {
	node := requireNode(t)
	h := testutil.StartHub(t, testutil.Options{})
	a := h.API()
	for _, tc := range []struct{ name, transport, uri string }{
		{"mqtt", "mqtt", "mqtts://localhost:" + port(h.MQTTSAddr())},
		{"mqttws", "mqttws", "wss://localhost:" + port(h.HTTPSAddr()) + "/$iothub/websocket"},
	} {
		t.Run(tc.name+"-sas", func(t *testing.T) {
			id := "sdk." + tc.name
			d := a.CreateDevice(t, id, nil)
			runDevice(t, node, h, map[string]string{
				"SF_CONNECTION_STRING": "HostName=localhost;DeviceId=" + id + ";SharedAccessKey=" + d.PrimaryKey,
				"SF_TRANSPORT":         tc.transport, "SF_URI": tc.uri, "SF_DEVICE": id,
			})
			checkTelemetry(t, a, id)
			waitState(t, a, id, "delivered", 1)
		})
	}
	t.Run("mqtt-x509", func(t *testing.T) {
		id := "sdk-x509"
		ca, err := pki.NewCA("interop test devices", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := pki.IssueClientCert(ca, id, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.KeyPEM(cert)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
		if err := os.WriteFile(certFile, pki.CertPEM(cert), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		var d testutil.Device
		a.MustDo(t, 201, "POST", "/api/v1/devices", map[string]any{"id": id, "auth": "x509_self", "thumbprint": pki.Thumbprint(leaf)}, &d)
		runDevice(t, node, h, map[string]string{
			"SF_CONNECTION_STRING": "HostName=localhost;DeviceId=" + id + ";x509=true",
			"SF_TRANSPORT":         "mqtt", "SF_URI": "mqtts://localhost:" + port(h.MQTTSAddr()), "SF_DEVICE": id,
			"SF_CERT": certFile, "SF_KEY": keyFile,
		})
		checkTelemetry(t, a, id)
	})
}
