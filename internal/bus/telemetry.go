package bus

import "time"

// The timestamps a telemetry message may carry, relative to when the
// gateway received it. They sit a margin inside the tsdb's own limits (7
// days behind a series' newest sample, 1 hour ahead of the clock), so a
// message the gateway acknowledged is never refused by the tsdb, however
// long it waited in the stream.
const (
	MaxLate  = 7*24*time.Hour - time.Hour - time.Minute
	MaxAhead = time.Hour - time.Minute
)

// InBounds reports whether t's timestamp is within MaxLate and MaxAhead of
// its receive time (of now when it has none).
func (t *Telemetry) InBounds(now time.Time) bool {
	rcv := t.Received
	if rcv == 0 {
		rcv = now.UnixMilli()
	}
	return t.TS >= rcv-MaxLate.Milliseconds() && t.TS <= rcv+MaxAhead.Milliseconds()
}

// Telemetry is one device message after parsing, as it travels on the bus.
type Telemetry struct {
	Org      string             `json:"o"`
	Device   string             `json:"d"`
	Site     string             `json:"s,omitempty"`
	Template string             `json:"tp,omitempty"`
	TS       int64              `json:"t"`            // unix ms: device timestamp, or receive time
	Received int64              `json:"r"`            // unix ms when the gateway received it
	Num      map[string]float64 `json:"n,omitempty"`  // flattened numeric and boolean (1/0) fields
	Str      map[string]string  `json:"st,omitempty"` // string fields
	Props    map[string]string  `json:"p,omitempty"`  // MQTT property bag / user properties
}
