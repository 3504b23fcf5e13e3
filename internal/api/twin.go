package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/twin"
)

// Twin routes: device twins, direct methods and cloud-to-device messages.
// The bodies are internal/twin's own types.

// Twins serves twins and cloud-to-device messages; *twin.Service
// satisfies it.
type Twins interface {
	Get(ctx context.Context, org, device string) (twin.Twin, error)
	// Change merges tags and desired properties (JSON merge patches, nil
	// leaves a part alone); ifMatch, when not empty, must be the etag.
	Change(ctx context.Context, org, device string, p twin.Patch, ifMatch string) (twin.Twin, error)
	Queue(ctx context.Context, org, device string, body []byte, props map[string]string, ttl time.Duration) (twin.Message, error)
	// List lists messages in a state: pending (""), delivered, expired, rejected.
	List(ctx context.Context, org, device, state string) ([]twin.Message, error)
	Purge(ctx context.Context, org, device string) (int, error)
}

// Methods invokes direct methods; *command.Router satisfies it.
type Methods interface {
	Invoke(ctx context.Context, org, device, method string, payload []byte, timeout time.Duration) (status int, response []byte, err error)
}

// c2dView shows the body as text when it is UTF-8, else base64.
type c2dView struct {
	twin.Message
	Body       *string `json:"body,omitempty"`
	BodyBase64 *string `json:"bodyBase64,omitempty"`
}

func viewC2D(m twin.Message) c2dView {
	v := c2dView{Message: m}
	if utf8.Valid(m.Body) {
		s := string(m.Body)
		v.Body = &s
	} else {
		s := base64.StdEncoding.EncodeToString(m.Body)
		v.BodyBase64 = &s
	}
	return v
}

type twinPatchRequest struct {
	Tags       json.RawMessage `json:"tags,omitempty"`
	Properties *struct {
		Desired json.RawMessage `json:"desired,omitempty"`
	} `json:"properties,omitempty"`
}

type methodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

const (
	defaultMethodTimeout = 30 * time.Second
	maxMethodTimeout     = 300 * time.Second
)

var methodNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

var exampleTwin = twin.View{DeviceID: "press-7", ETag: `"12"`, Version: 12,
	Tags: map[string]any{"line": "3"},
	Properties: twin.ViewProperties{
		Desired:  map[string]any{"setpoint": 72.5, "$version": 4},
		Reported: map[string]any{"temperature": 71.9, "firmware": "2.4.1", "$version": 9},
	}}

var exampleC2D = twin.Message{ID: "5f1c0a7e9d3b42a8c6e1f0d2", DeviceID: "press-7", Properties: map[string]string{"priority": "high"},
	Created: exampleTime, Expires: exampleTime.Add(time.Hour), State: "pending"}

func twinSchemas() (twin, patch, msg schema) {
	props := schema{"type": "object", "description": "properties with their $version", "required": []string{"$version"},
		"properties": schema{"$version": integer("rises with every change of these properties", 1)}}
	twin = object("a device twin", []string{"deviceId", "etag", "version", "tags", "properties"}, schema{
		"deviceId": str("device id"),
		"etag":     str("the twin's entity tag; send it as If-Match to patch only this version"),
		"version":  integer("rises with every change of tags, desired or reported properties", 1),
		"tags":     schema{"type": "object", "description": "service-side labels (not seen by the device)"},
		"properties": object("desired (set by the service) and reported (set by the device) properties", []string{"desired", "reported"},
			schema{"desired": props, "reported": props}),
	})
	patch = input("a JSON merge patch of tags and desired properties: null removes a key", nil, schema{
		"tags": schema{"type": "object", "description": "merged into the tags (at most 8 KB in all)"},
		"properties": input("", nil, schema{
			"desired": schema{"type": "object", "description": "merged into the desired properties (at most 32 KB in all); names starting with $ are reserved"},
		}),
	})
	msg = object("a cloud-to-device message", []string{"id", "deviceId", "properties", "createdAt", "expiresAt", "deliveryCount", "state"}, schema{
		"id":            str("message id (the device sees it as $.mid)"),
		"deviceId":      str("device id"),
		"properties":    schema{"type": "object", "additionalProperties": schema{"type": "string"}, "description": "application properties, sent in the topic's property bag"},
		"createdAt":     dateTime("when it was queued"),
		"expiresAt":     dateTime("when it expires unless delivered"),
		"deliveryCount": integer("times it was sent to the device without an acknowledgement", 0),
		"state":         strEnum("pending: waiting; delivered: the device acknowledged it; expired: its TTL passed first; rejected: sent 10 times without an acknowledgement", "pending", "delivered", "expired", "rejected"),
		"body":          str("the body, when it is UTF-8 text"),
		"bodyBase64":    str("the body in base64, when it is not UTF-8"),
	})
	return twin, patch, msg
}

func (s *Server) twinRoutes() {
	idOnly := map[string]string{"id": "device id"}
	twinSchema, patchSchema, msgSchema := twinSchemas()
	body := "a body"
	exampleMsg := c2dView{Message: exampleC2D, Body: &body}
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/twin", ID: "getTwin", Tag: "twins", Role: registry.RoleViewer,
		Summary: "Get a device's twin: tags, desired and reported properties; the ETag header carries its etag", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the twin", Body: &content{Schema: twinSchema, Example: exampleTwin}}},
		Errors:    []int{503}, handle: s.getTwin})
	s.add(&route{Method: "PATCH", Pattern: "/api/v1/devices/{id}/twin", ID: "patchTwin", Tag: "twins", Role: registry.RoleOperator,
		Summary: "Change tags and desired properties (JSON merge patch: null removes a key); with If-Match only if the twin is unchanged. The device is notified of desired changes", PathParams: idOnly,
		Request:   &content{Schema: patchSchema, Example: map[string]any{"tags": map[string]any{"line": "3"}, "properties": map[string]any{"desired": map[string]any{"setpoint": 72.5, "mode": nil}}}},
		Responses: []response{{Status: 200, Description: "the twin after the patch", Body: &content{Schema: twinSchema, Example: exampleTwin}}},
		Errors:    []int{412, 413, 503}, handle: s.patchTwin})
	s.add(&route{Method: "POST", Pattern: "/api/v1/devices/{id}/methods/{name}", ID: "invokeMethod", Tag: "twins", Role: registry.RoleOperator,
		Summary:    "Invoke a direct method: the body is its JSON payload; answers with the device's status and payload",
		PathParams: map[string]string{"id": "device id", "name": "method name (letters, digits and . _ : -)"},
		Query:      []param{{Name: "timeout", Description: "seconds to wait for the device, 1 to 300 (default 30)", Schema: schema{"type": "integer", "minimum": 1, "maximum": 300}, Example: 30}},
		Request:    &content{Schema: schema{"description": "any JSON value; empty means null"}, Example: map[string]any{"speed": 3}},
		Responses: []response{{Status: 200, Description: "the device answered", Body: &content{
			Schema: object("the device's answer", []string{"status", "payload"}, schema{
				"status":  integer("the status the device answered with", 0),
				"payload": schema{"description": "the device's JSON payload (a string when it was not JSON)"},
			}),
			Example: methodResult{Status: 200, Payload: json.RawMessage(`{"result":"started"}`)}}}},
		Errors: []int{503, 504}, handle: s.invokeMethod})
	s.add(&route{Method: "POST", Pattern: "/api/v1/devices/{id}/messages", ID: "sendC2D", Tag: "twins", Role: registry.RoleOperator,
		Summary:    "Queue a cloud-to-device message; query parameters other than ttl (and org) become its properties. At most 50 wait per device: more are refused with 409",
		PathParams: idOnly,
		Query: []param{
			{Name: "ttl", Description: "how long it may wait for the device: a Go duration (90s, 2h) or seconds; default 1h, at most 48h", Schema: schema{"type": "string"}, Example: "2h"},
		},
		Request:   &content{Type: "application/octet-stream", Schema: schema{"type": "string"}, Example: `{"command":"stop"}`},
		Responses: []response{{Status: 201, Description: "queued", Body: &content{Schema: msgSchema, Example: exampleMsg}}},
		Errors:    []int{409, 413, 503}, handle: s.sendC2D})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/messages", ID: "listC2D", Tag: "twins", Role: registry.RoleViewer,
		Summary: "List a device's cloud-to-device messages: pending ones, or the feedback of finished ones", PathParams: idOnly,
		Query: []param{{Name: "state", Description: "pending (default), delivered, expired or rejected", Schema: strEnum("", "pending", "delivered", "expired", "rejected")}},
		Responses: []response{{Status: 200, Description: "the messages, oldest first (at most 1000)", Body: &content{
			Schema:  object("messages", []string{"items"}, schema{"items": arrayOf(msgSchema)}),
			Example: map[string]any{"items": []c2dView{exampleMsg}}}}},
		Errors: []int{503}, handle: s.listC2D})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/devices/{id}/messages", ID: "purgeC2D", Tag: "twins", Role: registry.RoleOperator,
		Summary: "Drop a device's pending cloud-to-device messages", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "how many were dropped", Body: &content{
			Schema:  object("purge result", []string{"purged"}, schema{"purged": integer("messages dropped", 0)}),
			Example: map[string]int{"purged": 3}}}},
		Errors: []int{503}, handle: s.purgeC2D})

	if h := s.deps.MQTTWebSocket; h != nil {
		s.mounts = append(s.mounts, &mount{
			Pattern: "/$iothub/websocket",
			Handler: h,
			Docs: []*route{{
				Method: http.MethodGet, Pattern: "/$iothub/websocket", ID: "iothubWebSocket", Tag: "mqtt",
				Summary: "MQTT over WebSocket where Azure IoT device SDKs look for it (MqttWs transport); the same as /mqtt",
				Responses: []response{
					{Status: http.StatusSwitchingProtocols, Description: "the connection is upgraded to a WebSocket carrying MQTT"},
					{Status: http.StatusBadRequest, Description: "the request is not a WebSocket upgrade", Body: &content{
						Type: "text/plain", Schema: schema{"type": "string"}, Example: "Bad Request\n"}},
				},
			}},
		})
	}
}

// twinDevice checks the twin service and that the device exists in the
// caller's organization.
func (s *Server) twinDevice(r *http.Request) (string, error) {
	if s.deps.Twins == nil {
		return "", &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "twins, methods and messages are not available on this hub"}
	}
	id, org := r.PathValue("id"), orgOf(r)
	if s.seen.has(org, id, s.now()) {
		return id, nil
	}
	if _, err := s.deps.Registry.GetDevice(r.Context(), org, id); err != nil {
		return "", err
	}
	s.seen.add(org, id, s.now())
	return id, nil
}

// seenTTL is how long a device found in the registry is taken to exist by
// the twin, method and message routes, which check it on every call. A
// deletion through this process applies at once; one through another hub
// process within seenTTL (its device is disconnected and its twin gone).
const seenTTL = 5 * time.Second

// seenDevices remembers devices found to exist, per organization.
type seenDevices struct {
	mu sync.Mutex
	m  map[string]seenDevice // by device id
}

type seenDevice struct {
	org   string
	until time.Time
}

func (c *seenDevices) has(org, id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	return ok && e.org == org && now.Before(e.until)
}

func (c *seenDevices) add(org, id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= 100_000 {
		c.m = map[string]seenDevice{}
	}
	c.m[id] = seenDevice{org: org, until: now.Add(seenTTL)}
}

func (c *seenDevices) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func writeTwin(w http.ResponseWriter, t twin.Twin) {
	v := t.View()
	w.Header().Set("ETag", v.ETag)
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) getTwin(w http.ResponseWriter, r *http.Request) error {
	id, err := s.twinDevice(r)
	if err != nil {
		return err
	}
	t, err := s.deps.Twins.Get(r.Context(), orgOf(r), id)
	if err != nil {
		return err
	}
	writeTwin(w, t)
	return nil
}

func (s *Server) patchTwin(w http.ResponseWriter, r *http.Request) error {
	id, err := s.twinDevice(r)
	if err != nil {
		return err
	}
	var req twinPatchRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	var desired json.RawMessage
	if req.Properties != nil {
		desired = req.Properties.Desired
	}
	if req.Tags == nil && desired == nil {
		return invalid(`the patch changes nothing: give "tags" and/or "properties": {"desired": {…}}`)
	}
	t, err := s.deps.Twins.Change(r.Context(), orgOf(r), id, twin.Patch{Tags: req.Tags, Desired: desired}, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	writeTwin(w, t)
	return nil
}

func (s *Server) invokeMethod(w http.ResponseWriter, r *http.Request) error {
	id, err := s.twinDevice(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if !methodNameRE.MatchString(name) {
		return invalid("method name %q must be 1 to 128 letters, digits or . _ : -", clipString(name))
	}
	timeout := defaultMethodTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > int(maxMethodTimeout/time.Second) {
			return invalid("parameter \"timeout\" must be whole seconds from 1 to 300, not %q", clipString(v))
		}
		timeout = time.Duration(n) * time.Second
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 128*1024))
	if err != nil {
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "the method payload is larger than 128 KB (IoT Hub's limit); send a smaller payload"}
	}
	if len(strings.TrimSpace(string(payload))) == 0 {
		payload = []byte("null")
	} else if !json.Valid(payload) {
		return invalid("the method payload must be JSON (for example {\"speed\": 3}); send null for none")
	}
	if s.deps.Methods == nil {
		return &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "direct methods are not available on this hub"}
	}
	status, resp, err := s.deps.Methods.Invoke(r.Context(), orgOf(r), id, name, payload, timeout)
	if err != nil {
		return err
	}
	out := methodResult{Status: status, Payload: json.RawMessage("null")}
	switch {
	case len(strings.TrimSpace(string(resp))) == 0:
	case json.Valid(resp):
		out.Payload = resp
	default:
		b, _ := json.Marshal(string(resp))
		out.Payload = b
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) sendC2D(w http.ResponseWriter, r *http.Request) error {
	id, err := s.twinDevice(r)
	if err != nil {
		return err
	}
	var ttl time.Duration
	props := map[string]string{}
	for k, vs := range r.URL.Query() {
		switch k {
		case "org":
			continue
		case "ttl":
			v := vs[0]
			if d, err := time.ParseDuration(v); err == nil {
				ttl = d
			} else if n, err := strconv.Atoi(v); err == nil {
				ttl = time.Duration(n) * time.Second
			} else {
				return invalid("parameter \"ttl\" must be a duration such as 90s or 2h, or seconds, not %q", clipString(v))
			}
			if ttl < time.Second {
				return invalid("parameter \"ttl\" must be at least 1s")
			}
		default:
			props[k] = vs[0]
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64*1024))
	if err != nil {
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "the message is larger than 64 KB (IoT Hub's limit); send a smaller message"}
	}
	m, err := s.deps.Twins.Queue(r.Context(), orgOf(r), id, body, props, ttl)
	if err != nil {
		return err
	}
	m.Body = body
	writeJSON(w, http.StatusCreated, viewC2D(m))
	return nil
}

func (s *Server) listC2D(w http.ResponseWriter, r *http.Request) error {
	id, err := s.twinDevice(r)
	if err != nil {
		return err
	}
	ms, err := s.deps.Twins.List(r.Context(), orgOf(r), id, r.URL.Query().Get("state"))
	if err != nil {
		return err
	}
	out := make([]c2dView, len(ms))
	for i, m := range ms {
		out[i] = viewC2D(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
	return nil
}

func (s *Server) purgeC2D(w http.ResponseWriter, r *http.Request) error {
	id, err := s.twinDevice(r)
	if err != nil {
		return err
	}
	n, err := s.deps.Twins.Purge(r.Context(), orgOf(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
	return nil
}

// clipString shortens a value quoted back in an error message.
func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
