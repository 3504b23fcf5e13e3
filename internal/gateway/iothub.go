package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/shopfloor/shopfloor/internal/gateway/azure"
)

// The IoT Hub device protocol beyond telemetry: twin GET and reported
// patches, direct-method responses, and what the cloud sends (method
// requests, desired-property notifications, cloud-to-device messages).
// Everything the gateway sends goes to that one device's connection with
// a direct write, never through the broker's topic fan-out.

// Errors a Cloud returns for a device request it refuses; they set the
// status of the twin response.
var (
	ErrRequest         = errors.New("bad device request")        // 400
	ErrRequestTooLarge = errors.New("device request too large")  // 413
	ErrNotConnected    = errors.New("device not connected here") // the device is not connected to this gateway
)

// Cloud serves the $iothub topics and cloud-to-device messages for the
// gateway. Calls come from the device's read goroutine (so a slow call
// holds back only that device) or from a delivery goroutine.
type Cloud interface {
	// Twin returns the device's twin document for a twin GET:
	// {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
	Twin(ctx context.Context, org, device string) ([]byte, error)
	// PatchReported merges a reported-properties patch and returns the new
	// reported $version.
	PatchReported(ctx context.Context, org, device string, patch []byte) (int64, error)
	// MethodResponse passes a device's answer to a method call; false when
	// the request id is unknown (timed out, or never sent to this device).
	MethodResponse(device, rid string, status int, payload []byte) bool
	// Connected is told when a device's session starts and ends.
	Connected(org, device string, up bool)
	// PendingC2D lists the device's queued messages, oldest first.
	PendingC2D(ctx context.Context, org, device string) ([]C2D, error)
	// AttemptC2D counts a delivery; false means do not send the message.
	AttemptC2D(ctx context.Context, org, device, id string) (bool, error)
	// CompleteC2D records the device's acknowledgement.
	CompleteC2D(ctx context.Context, org, device, id string) error
}

// C2D is a cloud-to-device message to deliver.
type C2D struct {
	ID      string
	Body    []byte
	Props   map[string]string
	Expires time.Time
}

// Subscription flags of a session: what the device listens for.
const (
	subMethods uint32 = 1 << iota
	subDesired
	subC2D
	subC2DQoS1
)

// c2dState tracks the cloud-to-device messages in flight on a session.
type c2dState struct {
	mu         sync.Mutex
	inflight   map[uint16]string // packet id -> message id
	delivering bool
	again      bool
}

const maxRequestID = 128

// iothub handles a device's publish to $iothub/. It always returns
// CodeSuccessIgnore: requests are answered on the response topic, and bad
// ones are recorded on the device and dropped without closing its
// connection (other devices are never affected).
func (g *Gateway) iothub(cl *mqtt.Client, s *session, pk packets.Packet) (packets.Packet, error) {
	now := time.Now()
	cloud := g.cfg.Cloud
	if cloud == nil {
		g.recordError(s.device, "twins and direct methods are not available on this gateway", now)
		return pk, packets.CodeSuccessIgnore
	}
	t, err := azure.ParseTopic(pk.TopicName)
	if err != nil {
		g.stats.malformed.Add(1)
		g.recordError(s.device, fmt.Sprintf("publish to %q ignored: %v", clip(pk.TopicName), err), now)
		return pk, packets.CodeSuccessIgnore
	}
	switch t.Kind {
	case azure.TopicTwinGet, azure.TopicTwinReported, azure.TopicMethodResponse:
	default:
		g.recordError(s.device, fmt.Sprintf("publish to %q ignored: devices may publish only twin GET, reported patches and method responses under $iothub/", clip(pk.TopicName)), now)
		return pk, packets.CodeSuccessIgnore
	}
	if t.RequestID == "" || len(t.RequestID) > maxRequestID {
		g.recordError(s.device, fmt.Sprintf("publish to %q ignored: $rid must be 1 to %d characters", clip(pk.TopicName), maxRequestID), now)
		return pk, packets.CodeSuccessIgnore
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.PublishTimeout)
	defer cancel()
	rid := url.QueryEscape(t.RequestID)
	switch t.Kind {
	case azure.TopicTwinGet:
		doc, err := cloud.Twin(ctx, s.org, s.device)
		if err != nil {
			g.log.Warn("twin read failed", "device", s.device, "error", err)
			g.twinResponse(cl, s, statusOf(err), rid, "", errorBody(err))
			break
		}
		g.twinResponse(cl, s, 200, rid, "", doc)
	case azure.TopicTwinReported:
		if t.Version != "" {
			if _, err := strconv.ParseInt(t.Version, 10, 64); err != nil {
				g.recordError(s.device, "reported patch refused: $version must be a whole number", now)
				g.twinResponse(cl, s, 400, rid, "", errorBody(fmt.Errorf("%w: $version must be a whole number", ErrRequest)))
				break
			}
		}
		v, err := cloud.PatchReported(ctx, s.org, s.device, pk.Payload)
		if err != nil {
			st := statusOf(err)
			if st < 500 {
				g.recordError(s.device, "reported patch refused: "+err.Error(), now)
			} else {
				g.log.Warn("reported patch failed", "device", s.device, "error", err)
			}
			g.twinResponse(cl, s, st, rid, "", errorBody(err))
			break
		}
		g.twinResponse(cl, s, 204, rid, strconv.FormatInt(v, 10), nil)
	case azure.TopicMethodResponse:
		if !cloud.MethodResponse(s.device, t.RequestID, t.Status, pk.Payload) {
			g.recordError(s.device, fmt.Sprintf("method response for request %q ignored: no call with that id is waiting (it timed out or was never sent)", clip(t.RequestID)), now)
		}
	}
	return pk, packets.CodeSuccessIgnore
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrRequestTooLarge):
		return 413
	case errors.Is(err, ErrRequest):
		return 400
	}
	return 500
}

func errorBody(err error) []byte {
	msg := "the hub could not complete the request; try again"
	if statusOf(err) < 500 {
		msg = err.Error()
	}
	return []byte(`{"message":` + strconv.Quote(msg) + `}`)
}

func (g *Gateway) twinResponse(cl *mqtt.Client, s *session, status int, rid, version string, body []byte) {
	topic := "$iothub/twin/res/" + strconv.Itoa(status) + "/?$rid=" + rid
	if version != "" {
		topic += "&$version=" + version
	}
	if err := g.writePublish(cl, s, topic, body); err != nil {
		g.log.Debug("twin response not written", "device", s.device, "error", err)
	}
}

// writePublish writes a PUBLISH to a device's connection, paced to its
// downlink bitrate (a throttled message is written later, in order).
func (g *Gateway) writePublish(cl *mqtt.Client, s *session, topic string, payload []byte) error {
	return g.sendDown(cl, s, len(topic)+len(payload), func() error { return g.writeRaw(cl, topic, payload, 0, 0) })
}

// writeRaw writes a PUBLISH to one connection, unmetered. QoS 1 packets
// are tracked in the client's inflight store so that mochi resends them and
// reports their PUBACK through OnQosComplete.
func (g *Gateway) writeRaw(cl *mqtt.Client, topic string, payload []byte, qos byte, expires int64) error {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		Created:     time.Now().Unix(),
		Expiry:      expires,
	}
	if qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			return fmt.Errorf("no packet id free: %w", err)
		}
		pk.PacketID = uint16(id)
		cl.State.Inflight.Set(pk)
		cl.State.Inflight.DecreaseSendQuota()
	}
	return cl.WritePacket(pk)
}

// connected returns the live session of a device on this gateway.
func (g *Gateway) connected(device string) (*mqtt.Client, *session, bool) {
	cl, ok := g.server.Clients.Get(device)
	if !ok || cl.Closed() {
		return nil, nil, false
	}
	v, ok := g.sessions.Load(cl)
	if !ok || !v.(*session).established.Load() {
		return nil, nil, false
	}
	return cl, v.(*session), true
}

// SendMethod sends a direct-method request to a device connected here.
func (g *Gateway) SendMethod(device, rid, method string, payload []byte) error {
	cl, s, ok := g.connected(device)
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotConnected, device)
	}
	if s.subs.Load()&subMethods == 0 {
		return fmt.Errorf("%w: %s is connected but does not listen for direct methods (no subscription to $iothub/methods/POST/#)", ErrNotConnected, device)
	}
	if len(payload) == 0 {
		payload = []byte("null")
	}
	return g.writePublish(cl, s, "$iothub/methods/POST/"+method+"/?$rid="+url.QueryEscape(rid), payload)
}

// NotifyDesired sends a desired-properties patch (with $version) to a
// device connected here that listens for it.
func (g *Gateway) NotifyDesired(device string, version int64, patch []byte) {
	cl, s, ok := g.connected(device)
	if !ok || s.subs.Load()&subDesired == 0 {
		return
	}
	if err := g.writePublish(cl, s, "$iothub/twin/PATCH/properties/desired/?$version="+strconv.FormatInt(version, 10), patch); err != nil {
		g.log.Debug("desired notification not written", "device", device, "error", err)
	}
}

// DeliverC2D sends a connected device the messages queued for it.
func (g *Gateway) DeliverC2D(device string) {
	if cl, s, ok := g.connected(device); ok {
		g.deliverC2D(cl, s)
	}
}

// refreshSubs reads what the device listens for from its subscriptions.
func (g *Gateway) refreshSubs(cl *mqtt.Client, s *session) uint32 {
	var f uint32
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		switch {
		case strings.HasPrefix(filter, "$iothub/methods/POST/"):
			f |= subMethods
		case strings.HasPrefix(filter, "$iothub/twin/PATCH/properties/desired/"):
			f |= subDesired
		case strings.HasPrefix(filter, "devices/"+s.device+"/messages/devicebound/"):
			f |= subC2D
			if sub.Qos > 0 {
				f |= subC2DQoS1
			}
		}
	}
	s.subs.Store(f)
	return f
}

// adoptInflight registers cloud-to-device messages a resumed session still
// has in flight (mochi resends them), so their PUBACK completes them and
// they are not sent twice.
func (s *session) adoptInflight(cl *mqtt.Client) {
	s.c2d.mu.Lock()
	defer s.c2d.mu.Unlock()
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		t, err := azure.ParseTopic(pk.TopicName)
		if err != nil || t.Kind != azure.TopicCloudToDevice {
			continue
		}
		props, err := azure.DecodeBag(t.Bag)
		if err != nil || props["$.mid"] == "" {
			continue
		}
		if s.c2d.inflight == nil {
			s.c2d.inflight = map[uint16]string{}
		}
		s.c2d.inflight[pk.PacketID] = props["$.mid"]
	}
}

// deliverC2D starts a delivery round unless one runs; a request during a
// round makes it run once more.
func (g *Gateway) deliverC2D(cl *mqtt.Client, s *session) {
	if g.cfg.Cloud == nil || s.subs.Load()&subC2D == 0 {
		return
	}
	s.c2d.mu.Lock()
	if s.c2d.delivering {
		s.c2d.again = true
		s.c2d.mu.Unlock()
		return
	}
	s.c2d.delivering = true
	s.c2d.mu.Unlock()
	go func() {
		for {
			g.deliverRound(cl, s)
			s.c2d.mu.Lock()
			if !s.c2d.again || cl.Closed() {
				s.c2d.delivering, s.c2d.again = false, false
				s.c2d.mu.Unlock()
				return
			}
			s.c2d.again = false
			s.c2d.mu.Unlock()
		}
	}()
}

func (g *Gateway) deliverRound(cl *mqtt.Client, s *session) {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.PublishTimeout)
	defer cancel()
	msgs, err := g.cfg.Cloud.PendingC2D(ctx, s.org, s.device)
	if err != nil {
		g.log.Warn("cloud-to-device messages not read", "device", s.device, "error", err)
		return
	}
	for _, m := range msgs {
		if cl.Closed() {
			return
		}
		s.c2d.mu.Lock()
		sent := false
		for _, id := range s.c2d.inflight {
			if id == m.ID {
				sent = true
				break
			}
		}
		s.c2d.mu.Unlock()
		if sent {
			continue
		}
		ok, err := g.cfg.Cloud.AttemptC2D(ctx, s.org, s.device, m.ID)
		if err != nil {
			g.log.Warn("cloud-to-device delivery not counted", "device", s.device, "error", err)
			return
		}
		if !ok {
			continue
		}
		props := make(map[string]string, len(m.Props)+2)
		for k, v := range m.Props {
			props[k] = v
		}
		props["$.mid"] = m.ID
		props["$.to"] = "/devices/" + s.device + "/messages/deviceBound"
		topic := "devices/" + s.device + "/messages/devicebound/" + azure.EncodeBag(props)
		// This round runs on the device's own goroutine: wait here for its
		// downlink bitrate.
		if !g.pace(ctx, cl, s, len(topic)+len(m.Body)) {
			return
		}
		if s.subs.Load()&subC2DQoS1 == 0 {
			// Subscribed at QoS 0: written is as delivered as it gets.
			if err := g.writeRaw(cl, topic, m.Body, 0, 0); err == nil {
				if err := g.cfg.Cloud.CompleteC2D(ctx, s.org, s.device, m.ID); err != nil {
					g.log.Debug("cloud-to-device completion not recorded", "device", s.device, "error", err)
				}
			}
			continue
		}
		// Register before writing: the PUBACK may arrive before WritePacket returns.
		id, err := cl.NextPacketID()
		if err != nil {
			return
		}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic,
			Payload: m.Body, PacketID: uint16(id), Created: time.Now().Unix(), Expiry: m.Expires.Unix()}
		s.c2d.mu.Lock()
		if s.c2d.inflight == nil {
			s.c2d.inflight = map[uint16]string{}
		}
		s.c2d.inflight[pk.PacketID] = m.ID
		s.c2d.mu.Unlock()
		cl.State.Inflight.Set(pk)
		cl.State.Inflight.DecreaseSendQuota()
		if err := cl.WritePacket(pk); err != nil {
			return // the message stays in flight; a resumed session resends it, else the next connection does
		}
	}
}

// c2dAcked completes the cloud-to-device message a PUBACK acknowledged.
func (g *Gateway) c2dAcked(cl *mqtt.Client, s *session, packetID uint16) {
	s.c2d.mu.Lock()
	id, ok := s.c2d.inflight[packetID]
	delete(s.c2d.inflight, packetID)
	s.c2d.mu.Unlock()
	if !ok || g.cfg.Cloud == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.PublishTimeout)
		defer cancel()
		if err := g.cfg.Cloud.CompleteC2D(ctx, s.org, s.device, id); err != nil {
			g.log.Debug("cloud-to-device completion not recorded", "device", s.device, "error", err)
		}
	}()
}

// sessionStarted routes the cloud's traffic for a new session to it and
// sends what is queued if the (resumed) session already listens for it.
func (g *Gateway) sessionStarted(cl *mqtt.Client, s *session) {
	if g.cfg.Cloud == nil {
		return
	}
	s.adoptInflight(cl)
	g.refreshSubs(cl, s)
	g.cfg.Cloud.Connected(s.org, s.device, true)
	g.deliverC2D(cl, s)
}

func (h *hook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if v, ok := h.g.sessions.Load(cl); ok {
		s := v.(*session)
		before := s.subs.Load()
		if after := h.g.refreshSubs(cl, s); after&subC2D != 0 && before&subC2D == 0 {
			h.g.deliverC2D(cl, s)
		}
	}
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if v, ok := h.g.sessions.Load(cl); ok {
		h.g.refreshSubs(cl, v.(*session))
	}
}

// OnQosComplete sees the PUBACK of a cloud-to-device message.
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback {
		return
	}
	if v, ok := h.g.sessions.Load(cl); ok {
		h.g.c2dAcked(cl, v.(*session), pk.PacketID)
	}
}
