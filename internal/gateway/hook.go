package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/gateway/azure"
)

// hook plugs the gateway into mochi. mochi calls OnConnect, OnACLCheck and
// OnPublish on the connection's own read goroutine, so blocking in OnPublish
// holds back only that device, and its PUBACK is written after OnPublish
// returns.
type hook struct {
	mqtt.HookBase
	g *Gateway
}

func (h *hook) ID() string { return "shopfloor-gateway" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnPacketEncode,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnQosComplete:
		return true
	}
	return false
}

// OnConnect authenticates. It answers a refusal itself because mochi's own
// refusal (after OnConnectAuthenticate) says "bad user name or password"
// (0x86) where IoT Hub devices expect "not authorized" (0x87, 3.1.1 code 5).
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	g := h.g
	sess, aerr := g.authenticate(cl, pk)
	if aerr != nil {
		g.stats.authFailures.Add(1)
		g.log.Info("device connection refused", "device", clip(pk.Connect.ClientIdentifier), "remote", cl.Net.Remote, "reason", aerr.detail)
		if aerr.device {
			g.recordError(pk.Connect.ClientIdentifier, "connection refused: "+aerr.detail, time.Now())
		}
		code := aerr.code
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.Err3NotAuthorized
			if aerr.code.Code == packets.ErrServerUnavailable.Code {
				code = packets.Err3ServerUnavailable
			}
		}
		_ = g.server.SendConnack(cl, code, false, nil)
		return aerr.code
	}
	g.sessions.Store(cl, sess)
	return nil
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.g.sessions.Load(cl)
	return ok
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if v, ok := h.g.sessions.Load(cl); ok {
		v.(*session).established.Store(true)
		h.g.stats.connections.Add(1)
		h.g.stats.connects.Add(1)
		if f := h.g.cfg.OnConnection; f != nil {
			f(v.(*session).org, v.(*session).device, true, time.Now())
		}
		h.g.watchCredential(cl, v.(*session))
		h.g.sessionStarted(cl, v.(*session))
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	g := h.g
	v, ok := g.sessions.LoadAndDelete(cl)
	if !ok {
		return
	}
	s := v.(*session)
	s.stopExpiry()
	if s.established.Load() {
		g.stats.connections.Add(-1)
		if f := g.cfg.OnConnection; f != nil {
			f(s.org, s.device, false, time.Now())
		}
		if g.cfg.Cloud != nil {
			g.cfg.Cloud.Connected(s.org, s.device, false)
		}
	}
	if s.will != nil && err != nil && g.ctx.Err() == nil {
		g.sendWill(s)
	}
}

// OnPacketEncode advertises the maximum packet size in the MQTT 5 CONNACK,
// so that clients know the limit before they send.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && cl.Properties.ProtocolVersion == 5 && pk.ReasonCode == 0 {
		pk.Properties.MaximumPacketSize = uint32(h.g.cfg.MaxPayload + packetOverhead)
	}
	return pk
}

// OnACLCheck lets a device publish only its telemetry and the $iothub twin
// and method namespaces, and subscribe only to its own cloud-to-device
// topic and the $iothub response namespaces. mochi answers refusals: MQTT 5
// PUBACK/SUBACK 0x87; 3.1.1 SUBACK 0x80, QoS 0 publish dropped, QoS 1
// publish closes the connection.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write {
		if canPublish(cl.ID, topic) {
			return true
		}
		h.g.stats.denied.Add(1)
		h.g.recordError(cl.ID, fmt.Sprintf("publish to %q refused: a device may publish only to devices/%s/messages/events/ and $iothub/twin/ or $iothub/methods/", clip(topic), cl.ID), time.Now())
		return false
	}
	return canSubscribe(cl.ID, topic)
}

func canPublish(id, topic string) bool {
	if _, ok := telemetryBag(id, topic); ok {
		return true
	}
	return strings.HasPrefix(topic, "$iothub/twin/") || strings.HasPrefix(topic, "$iothub/methods/")
}

// telemetryBag returns the property bag of a telemetry topic of device id:
// devices/{id}/messages/events[/{bag}].
func telemetryBag(id, topic string) (string, bool) {
	rest, ok := deviceTopic(id, topic)
	if !ok {
		return "", false
	}
	rest, ok = strings.CutPrefix(rest, "/messages/events")
	switch {
	case !ok:
		return "", false
	case rest == "":
		return "", true
	case rest[0] == '/':
		return rest[1:], true
	}
	return "", false
}

func canSubscribe(id, filter string) bool {
	if rest, ok := deviceTopic(id, filter); ok {
		return strings.HasPrefix(rest, "/messages/devicebound/")
	}
	return strings.HasPrefix(filter, "$iothub/twin/res/") ||
		strings.HasPrefix(filter, "$iothub/twin/PATCH/properties/desired/") ||
		strings.HasPrefix(filter, "$iothub/methods/POST/")
}

// deviceTopic returns what follows "devices/{id}" in topic.
func deviceTopic(id, topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "devices/")
	if !ok {
		return "", false
	}
	return strings.CutPrefix(rest, id)
}

// OnPublish ingests telemetry. Returning packets.CodeSuccessIgnore makes
// mochi acknowledge without forwarding: device messages never fan out to
// other clients.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	v, ok := h.g.sessions.Load(cl)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	s := v.(*session)
	bag, ok := telemetryBag(s.device, pk.TopicName)
	if !ok {
		// $iothub/... (twin, methods): answered on the device's own
		// connection, never forwarded.
		return h.g.iothub(cl, s, pk)
	}
	return h.g.ingest(cl, s, pk, bag)
}

func (g *Gateway) ingest(cl *mqtt.Client, s *session, pk packets.Packet, bag string) (packets.Packet, error) {
	now := time.Now()
	g.stats.messagesIn.Add(1)
	s.messages.Add(1)
	if len(pk.Payload) > g.cfg.MaxPayload {
		g.stats.oversize.Add(1)
		g.recordError(s.device, fmt.Sprintf("message of %d bytes refused: the limit is %d bytes", len(pk.Payload), g.cfg.MaxPayload), now)
		return g.refuse(cl, pk, packets.ErrPacketTooLarge)
	}
	if wait := g.meter(s.device, true, len(pk.TopicName)+len(pk.Payload)); wait > 0 {
		time.Sleep(min(wait, maxThrottle))
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.PublishTimeout)
	defer cancel()
	// Under overload, wait for a slot behind more important devices only.
	if err := g.gate.acquire(ctx, func() int { return g.priority(s.device) }); err != nil {
		g.stats.publishFailures.Add(1)
		g.log.Warn("telemetry not accepted: the hub is saturated and more important devices went first", "device", s.device, "qos", pk.FixedHeader.Qos, "error", err)
		return g.refuse(cl, pk, packets.ErrUnspecifiedError)
	}
	defer g.gate.release()
	t, err := g.telemetry(s, bag, pk.Payload, pk.Properties.User, now)
	if errors.Is(err, ErrTooFast) {
		g.stats.tooFast.Add(1)
		g.recordError(s.device, "telemetry not stored: "+err.Error(), now)
		return g.refuse(cl, pk, packets.ErrMessageRateTooHigh) // 0x96: sending again later works
	}
	if errors.Is(err, ErrTimestamp) {
		g.stats.outOfBounds.Add(1)
	}
	if err != nil {
		g.stats.malformed.Add(1)
		s.malformed.Add(1)
		g.recordError(s.device, "telemetry not stored: "+err.Error(), now)
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
			return pk, packets.ErrPayloadFormatInvalid // PUBACK 0x99; the connection stays up
		}
		return pk, packets.CodeSuccessIgnore // acknowledged: resending cannot fix it
	}
	if g.cfg.Limits != nil {
		if err := g.admit(s, t); err != nil {
			g.stats.limited.Add(1)
			g.recordError(s.device, "telemetry not stored: "+err.Error(), now)
			if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
				return pk, packets.ErrQuotaExceeded // PUBACK 0x97; the connection stays up
			}
			return pk, packets.CodeSuccessIgnore // 3.1.1 has no negative PUBACK; resending cannot fix it
		}
	}
	err = g.pub.Publish(ctx, t)
	g.metrics.publishSeconds.Observe(time.Since(now).Seconds())
	if err != nil {
		g.stats.publishFailures.Add(1)
		g.log.Warn("telemetry not stored and not acknowledged", "device", s.device, "qos", pk.FixedHeader.Qos, "error", err)
		return g.refuse(cl, pk, packets.ErrUnspecifiedError)
	}
	g.stats.stored.Add(1)
	return pk, packets.CodeSuccessIgnore
}

// admit asks the limits about the message's field names.
func (g *Gateway) admit(s *session, t *bus.Telemetry) error {
	s.names = s.names[:0]
	for k := range t.Num {
		s.names = append(s.names, k)
	}
	for k := range t.Str {
		s.names = append(s.names, k)
	}
	return g.cfg.Limits.Admit(s.org, s.device, s.names)
}

// refuse makes sure a message that was not stored is not acknowledged as
// if it were: MQTT 5 QoS 1 gets a PUBACK with the reason code; 3.1.1 has no
// negative PUBACK, so the connection is closed and the client sends the
// message again after reconnecting (QoS 2 likewise, because mochi would
// answer a QoS 2 error with a PUBACK); QoS 0 is dropped.
func (g *Gateway) refuse(cl *mqtt.Client, pk packets.Packet, code packets.Code) (packets.Packet, error) {
	switch {
	case pk.FixedHeader.Qos == 0:
		return pk, packets.ErrRejectPacket
	case cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1:
		return pk, code
	case cl.Properties.ProtocolVersion == 5:
		_ = g.server.DisconnectClient(cl, code)
	default:
		cl.Stop(code)
	}
	return pk, packets.ErrRejectPacket
}

// telemetry builds the bus envelope of one message.
func (g *Gateway) telemetry(s *session, bag string, payload []byte, user []packets.UserProperty, now time.Time) (*bus.Telemetry, error) {
	f, err := Flatten(payload, g.cfg.MaxFields)
	if err != nil {
		return nil, err
	}
	var props map[string]string
	if bag != "" || len(user) > 0 {
		props = make(map[string]string, strings.Count(bag, "&")+1+len(user))
		if err := azure.DecodeBagInto(bag, props); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		for _, u := range user {
			props[u.Key] = u.Val
		}
	}
	ts := f.TS
	if ts == 0 {
		if v, ok := props["iothub-creation-time-utc"]; ok {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.UnixMilli() > 0 {
				ts = t.UnixMilli()
			}
		}
	}
	rcv := now.UnixMilli()
	if ts == 0 {
		var err error
		if ts, err = g.stamp(s.org, s.device, rcv); err != nil {
			return nil, err
		}
	} else if ts < rcv-bus.MaxLate.Milliseconds() || ts > rcv+bus.MaxAhead.Milliseconds() {
		return nil, fmt.Errorf("%w: stamped %s; timestamps may be at most 7 days old and 1 hour ahead of the hub's clock; check the device clock (NTP)",
			ErrTimestamp, time.UnixMilli(ts).UTC().Format(time.RFC3339Nano))
	}
	return &bus.Telemetry{
		Org:      s.org,
		Device:   s.device,
		Site:     s.site,
		Template: s.template,
		TS:       ts,
		Received: rcv,
		Num:      f.Num,
		Str:      f.Str,
		Props:    props,
	}, nil
}

// maxStampLead bounds how far ahead of the clock stamp may move a device's
// messages: a burst of up to a thousand unstamped messages is stored whole,
// and a device that goes on sending faster than one message per
// millisecond is told to slow down rather than stamped ever further into
// the future. It is kept short because the last stamps live in memory and
// the store (Config.LastStamp) learns of them only once they are written.
const maxStampLead = time.Second

// stamp gives a message without a device timestamp its receive time, but
// never the same or an earlier millisecond than the device's previous such
// message: the tsdb keeps one sample per series and millisecond, so two
// messages received in the same millisecond would otherwise collapse into
// one (issue 12, case 2). Messages of one device arrive on one connection
// goroutine, so the stamps follow the order the device sent them.
func (g *Gateway) stamp(org, device string, rcv int64) (int64, error) {
	v, ok := g.stamps.Load(device)
	if !ok {
		// The first stamp of a device in this process comes after what is
		// stored of it, so it cannot reuse a millisecond an earlier process
		// gave the device ahead of its clock.
		first := new(atomic.Int64)
		if g.cfg.LastStamp != nil {
			first.Store(g.cfg.LastStamp(org, device))
		}
		v, _ = g.stamps.LoadOrStore(device, first)
	}
	last := v.(*atomic.Int64)
	for {
		prev := last.Load()
		ts := max(rcv, prev+1)
		if ts-rcv > maxStampLead.Milliseconds() {
			return 0, fmt.Errorf("%w: more than 1,000 messages a second without a \"ts\"; add a \"ts\" to each message or send less often", ErrTooFast)
		}
		if last.CompareAndSwap(prev, ts) {
			return ts, nil
		}
	}
}

// sendWill stores a device's last will as telemetry after its connection
// dropped without DISCONNECT.
func (g *Gateway) sendWill(s *session) {
	now := time.Now()
	t, err := g.telemetry(s, s.will.bag, s.will.payload, s.will.user, now)
	if err != nil {
		g.recordError(s.device, "last-will message not stored: "+err.Error(), now)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.PublishTimeout)
	defer cancel()
	if err := g.pub.Publish(ctx, t); err != nil {
		g.log.Warn("last-will message not stored", "device", s.device, "error", err)
		return
	}
	g.stats.stored.Add(1)
}

// maxThrottle bounds one pause of an over-rate device, so a misconfigured
// bitrate cannot stall a connection past its keep-alive.
const maxThrottle = 5 * time.Second

// priority is the device's rank under overload (Config.Priority), 0 without one.
func (g *Gateway) priority(deviceID string) int {
	if g.cfg.Priority == nil {
		return 0
	}
	return g.cfg.Priority(deviceID)
}

// meter reports traffic to Config.Meter, if set.
func (g *Gateway) meter(deviceID string, uplink bool, n int) time.Duration {
	if g.cfg.Meter == nil {
		return 0
	}
	return g.cfg.Meter(deviceID, uplink, n)
}
