package gateway

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestOnConnectionHook(t *testing.T) {
	var (
		mu     sync.Mutex
		events []string
	)
	f := start(t, Config{OnConnection: func(org, device string, connected bool, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if at.IsZero() {
			t.Error("connection event without a time")
		}
		events = append(events, fmt.Sprintf("%s/%s/%v", org, device, connected))
	}})
	key := f.device("press-1")
	c := mustV3(t, f, "press-1", key)
	seen := func(want ...string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(events) != len(want) {
				return false
			}
			for i := range want {
				if events[i] != want[i] {
					return false
				}
			}
			return true
		}
	}
	eventually(t, "the connect event", seen("acme/press-1/true"))
	c.c.Disconnect(100)
	eventually(t, "the disconnect event", seen("acme/press-1/true", "acme/press-1/false"))
}
