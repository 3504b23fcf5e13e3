package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/quota"
)

// A fast device that does not stamp its messages must not lose any to the
// tsdb's one-sample-per-millisecond rule: 200 messages sent back to back get
// 200 distinct, increasing timestamps, close to their receive time (issue 12,
// case 2: mosquitto_pub -l stored 17 of 200).
func TestUnstampedMessagesGetTheirOwnMillisecond(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV3(t, f, "press-1", key)
	before := time.Now().UnixMilli()
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		tok := c.c.Publish("devices/press-1/messages/events/", 1, false, fmt.Sprintf(`{"seq":%d}`, i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Errorf("publish: %v", tok.Error())
			}
		}()
	}
	wg.Wait()
	msgs := f.pub.messages()
	if len(msgs) != 200 {
		t.Fatalf("%d messages published to the bus, want 200", len(msgs))
	}
	seen := map[int64]bool{}
	var prevSeq float64 = -1
	var prevTS int64
	for _, m := range msgs {
		if seen[m.TS] {
			t.Fatalf("two messages stamped %d: the tsdb would keep only one", m.TS)
		}
		seen[m.TS] = true
		if m.TS < before || m.TS > time.Now().UnixMilli()+maxStampLead.Milliseconds() {
			t.Errorf("stamp %d far from the receive time %d", m.TS, before)
		}
		// The order the device sent is the order of the stamps.
		if m.Num["seq"] > prevSeq && m.TS < prevTS {
			t.Errorf("seq %v stamped %d, before seq %v at %d", m.Num["seq"], m.TS, prevSeq, prevTS)
		}
		prevSeq, prevTS = m.Num["seq"], m.TS
	}
}

// A device stamp more than 7 days old or more than an hour ahead used to be
// acknowledged with 0x00 and dropped by the tsdb writer. It is refused with
// a reason code, counted and shown as the device's last error; the
// connection stays up (issue 12, case 3).
func TestTimestampOutOfRangeRefused(t *testing.T) {
	f := start(t, Config{})
	key := f.device("press-1")
	c := mustV5(t, f, "press-1", key)
	now := time.Now()
	for _, ts := range []time.Time{now.Add(2 * time.Hour), now.Add(-8 * 24 * time.Hour)} {
		resp, err := c.publish(t, "devices/press-1/messages/events/", 1, fmt.Sprintf(`{"ts":%d,"temp":20}`, ts.UnixMilli()))
		if err == nil || resp == nil || resp.ReasonCode != 0x99 {
			t.Fatalf("ts %s: %+v %v, want PUBACK 0x99", ts, resp, err)
		}
	}
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, fmt.Sprintf(`{"ts":%d,"temp":20}`, now.Add(-6*24*time.Hour).UnixMilli())); err != nil {
		t.Fatalf("a message 6 days late is refused: %v", err)
	}
	if n := len(f.pub.messages()); n != 1 {
		t.Fatalf("%d messages stored, want only the one in range", n)
	}
	eventually(t, "device error names the clock", func() bool { return containsText(f.devs.errors("press-1"), "check the device clock") })
	if s := f.g.Stats(); s.OutOfBounds != 2 {
		t.Errorf("OutOfBounds %d, want 2", s.OutOfBounds)
	}
}

// The stamp never runs more than maxStampLead ahead of the clock: past it a
// device is told to slow down (0x96) rather than stamped into the future.
func TestStampLeadBounded(t *testing.T) {
	g := &Gateway{}
	rcv := time.Now().UnixMilli()
	n := 0
	for ; n < 200000; n++ {
		if _, err := g.stamp("acme", "d", rcv); err != nil {
			break
		}
	}
	if want := int(maxStampLead.Milliseconds()) + 1; n != want {
		t.Fatalf("%d messages stamped in one millisecond before refusal, want %d", n, want)
	}
	// Time passing makes room again.
	if _, err := g.stamp("acme", "d", rcv+10); err != nil {
		t.Fatalf("after 10 ms: %v", err)
	}
}

func BenchmarkStamp(b *testing.B) {
	g := &Gateway{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = g.stamp("acme", "press-1", int64(i))
	}
}

// One device inventing field names without end used to create series until
// the hub ran out of memory, all acknowledged. Over a limit a message is
// refused whole (MQTT 5 PUBACK 0x97), counted, and the device's last error
// says which limit (issue 12, case 5).
func TestCardinalityLimitRefusesWholeMessage(t *testing.T) {
	f := start(t, Config{Limits: quota.New(quota.Limits{FieldsPerDevice: 3})})
	key := f.device("press-1")
	c := mustV5(t, f, "press-1", key)
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":1,"b":2}`); err != nil {
		t.Fatal(err)
	}
	resp, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":1,"c":3,"d":"x"}`)
	if err == nil || resp == nil || resp.ReasonCode != 0x97 {
		t.Fatalf("over the field limit: %+v %v, want PUBACK 0x97 quota exceeded", resp, err)
	}
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, fmt.Sprintf(`{"%s":1}`, strings.Repeat("n", 300))); err == nil {
		t.Fatal("a 300-byte field name was accepted")
	}
	// Known fields still go through, and so does one more within the limit.
	if _, err := c.publish(t, "devices/press-1/messages/events/", 1, `{"a":5,"b":6,"c":7}`); err != nil {
		t.Fatalf("within the limit: %v", err)
	}
	if n := len(f.pub.messages()); n != 2 {
		t.Fatalf("%d messages stored, want the 2 within the limits", n)
	}
	eventually(t, "device error names the limit", func() bool { return containsText(f.devs.errors("press-1"), "--max-device-fields") })
	if s := f.g.Stats(); s.Limited != 2 {
		t.Errorf("Limited %d, want 2", s.Limited)
	}
}

// After a restart the first stamp of a device comes after the newest one
// stored, even when that is ahead of the clock (a burst before the stop).
func TestStampAfterStoredOnes(t *testing.T) {
	rcv := time.Now().UnixMilli()
	g := &Gateway{cfg: Config{LastStamp: func(org, device string) int64 { return rcv + 500 }}}
	ts, err := g.stamp("acme", "d", rcv)
	if err != nil || ts != rcv+501 {
		t.Fatalf("first stamp %d %v, want %d", ts, err, rcv+501)
	}
}
