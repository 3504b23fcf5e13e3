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
// blocking the caller, which may be serving other devices or an API
// request with a timeout. One writer at a time per device: a message within
// the rate is written at once by its caller when nothing else is being
// written to the device; otherwise it waits, in order, on a goroutine that
// exists only while the device is behind. A device that stops reading
// therefore holds up at most one caller, for at most the write timeout
// (after which it is disconnected), and at most maxDownlinkBacklog
// messages wait for it; more are refused with ErrDownlinkBacklog.
type downlink struct {
	queue []downItem
	busy  bool      // a caller or the drain goroutine is writing
	last  time.Time // when the last waiting message is due
}

type downItem struct {
	due   time.Time
	write func() error
}

// sendDown meters n downlink bytes for the device and writes now or when
// its bitrate and the device allow. Callers get write's error only when it
// ran at once.
func (g *Gateway) sendDown(cl *mqtt.Client, s *session, n int, write func() error) error {
	wait := g.meter(s.device, false, n)
	s.downMu.Lock()
	if !s.down.busy && wait <= 0 {
		s.down.busy = true
		s.downMu.Unlock()
		err := write()
		s.downMu.Lock()
		if len(s.down.queue) > 0 {
			go g.drainDown(cl, s) // busy passes to it
		} else {
			s.down.busy = false
		}
		s.downMu.Unlock()
		return err
	}
	if len(s.down.queue) >= maxDownlinkBacklog {
		s.downMu.Unlock()
		g.stats.downlinkDropped.Add(1)
		return ErrDownlinkBacklog
	}
	due := time.Now().Add(min(max(wait, 0), maxThrottle))
	if due.Before(s.down.last) {
		due = s.down.last // keep the device's messages in order
	}
	s.down.last = due
	s.down.queue = append(s.down.queue, downItem{due: due, write: write})
	if !s.down.busy {
		s.down.busy = true
		go g.drainDown(cl, s)
	}
	s.downMu.Unlock()
	return nil
}

// drainDown writes the queued messages in order; it owns s.down.busy.
func (g *Gateway) drainDown(cl *mqtt.Client, s *session) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.downMu.Lock()
		if len(s.down.queue) == 0 || cl.Closed() || g.ctx.Err() != nil {
			s.down.queue, s.down.busy = nil, false
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
			}
		}
		if err := it.write(); err != nil {
			g.log.Debug("queued downlink message not written", "device", s.device, "error", err)
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
