package e2e

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shopfloor/shopfloor/internal/testutil"
)

// A hub started, loaded and stopped leaves no goroutine behind: every one
// has an owner that waits for it (issue 13, case 5).
func TestHubStopLeavesNoGoroutine(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		// The HTTP client's idle keep-alive connections belong to the test.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		// database/sql's opener is stopped by DB.Close, which the hub calls;
		// modernc's and pgx's own helpers end with their connections.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	}
	hub := testutil.StartHub(t, testutil.Options{})
	a := hub.API()
	d := a.CreateDevice(t, "leak-press", nil)
	c := hub.MustConnect(t, d, testutil.DeviceOptions{})
	for i := 0; i < 200; i++ {
		if tok := c.Publish("devices/"+d.ID+"/messages/events/", 1, false, fmt.Sprintf(`{"n":%d}`, i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	c.Disconnect(100)
	hub.Stop()
	// Goroutines end shortly after Stop returns (connections closing).
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = goleak.Find(opts...); err == nil {
			return
		}
	}
	t.Fatal(err)
}
