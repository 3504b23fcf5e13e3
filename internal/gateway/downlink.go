package gateway

import (
	"context"
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// ErrDownlinkBacklog is returned when a device's downlink is throttled so
// far behind that more messages would only wait past any use.
var ErrDownlinkBacklog = errors.New("gateway: the device's downlink is throttled and its backlog is full")

// maxDownlinkBacklog bounds the messages waiting on one device's downlink
// bitrate.
const maxDownlinkBacklog = 256

// downlink paces the messages the hub sends one device (twin answers,
// desired-property notifications, method calls) to its bitrate without
// blocking the caller, which may be serving other devices: a message
// within the rate is written at once; otherwise it waits, in order, on a
// goroutine that exists only while the device is behind.
type downlink struct {
	queue   []downItem
	running bool
	last    time.Time // when the last waiting message is due
}

type downItem struct {
	due   time.Time
	write func() error
}

// sendDown meters n downlink bytes for the device and writes now or when
// its bitrate allows. Callers get write's error only when it ran at once.
func (g *Gateway) sendDown(cl *mqtt.Client, s *session, n int, write func() error) error {
	wait := g.meter(s.device, false, n)
	s.downMu.Lock()
	if !s.down.running && wait <= 0 {
		s.downMu.Unlock()
		return write()
	}
	if len(s.down.queue) >= maxDownlinkBacklog {
		s.downMu.Unlock()
		g.stats.downlinkDropped.Add(1)
		return ErrDownlinkBacklog
	}
	due := time.Now().Add(min(wait, maxThrottle))
	if due.Before(s.down.last) {
		due = s.down.last // keep the device's messages in order
	}
	s.down.last = due
	s.down.queue = append(s.down.queue, downItem{due: due, write: write})
	if !s.down.running {
		s.down.running = true
		go g.drainDown(cl, s)
	}
	s.downMu.Unlock()
	return nil
}

func (g *Gateway) drainDown(cl *mqtt.Client, s *session) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.downMu.Lock()
		if len(s.down.queue) == 0 || cl.Closed() {
			s.down.queue, s.down.running = nil, false
			s.downMu.Unlock()
			return
		}
		it := s.down.queue[0]
		s.down.queue[0] = downItem{}
		s.down.queue = s.down.queue[1:]
		s.downMu.Unlock()
		if d := time.Until(it.due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-g.ctx.Done():
				return
			}
		}
		if err := it.write(); err != nil {
			g.log.Debug("throttled downlink message not written", "device", s.device, "error", err)
		}
	}
}

// pace meters n downlink bytes and waits until the device's bitrate allows
// them; for callers that run on the device's own goroutine. It reports
// false when ctx ended or the connection closed meanwhile.
func (g *Gateway) pace(ctx context.Context, cl *mqtt.Client, s *session, n int) bool {
	wait := g.meter(s.device, false, n)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(min(wait, maxThrottle))
	defer t.Stop()
	select {
	case <-t.C:
		return !cl.Closed()
	case <-ctx.Done():
		return false
	}
}
