package azure

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrTopic is returned for topic names outside the Azure IoT Hub dialect.
var ErrTopic = errors.New("not an IoT Hub device topic")

// TopicKind says what a topic name is for.
type TopicKind uint8

const (
	TopicUnknown        TopicKind = iota
	TopicTelemetry                // devices/{id}/messages/events/{bag}
	TopicCloudToDevice            // devices/{id}/messages/devicebound/{bag}
	TopicTwinGet                  // $iothub/twin/GET/?$rid={rid}
	TopicTwinReported             // $iothub/twin/PATCH/properties/reported/?$rid={rid}[&$version=]
	TopicTwinResponse             // $iothub/twin/res/{status}/?$rid={rid}[&$version=]
	TopicTwinDesired              // $iothub/twin/PATCH/properties/desired/?$version={version}
	TopicMethodRequest            // $iothub/methods/POST/{method}/?$rid={rid}
	TopicMethodResponse           // $iothub/methods/res/{status}/?$rid={rid}
)

// Topic is a parsed topic name. Strings point into the topic name given to
// ParseTopic, so parsing does not allocate.
type Topic struct {
	Kind      TopicKind
	DeviceID  string // devices/{id}/... topics
	Bag       string // URL-encoded property bag (devices/ topics) or query ($iothub/ topics), without '?'
	Method    string // direct method name
	Status    int    // twin and method responses
	RequestID string // $rid
	Version   string // $version
}

const (
	devicesPrefix = "devices/"
	eventsPart    = "/messages/events"
	boundPart     = "/messages/devicebound"
	twinPrefix    = "$iothub/twin/"
	methodsPrefix = "$iothub/methods/"
)

// ParseTopic parses a topic name of the IoT Hub device dialect.
func ParseTopic(topic string) (Topic, error) {
	var t Topic
	switch {
	case strings.HasPrefix(topic, devicesPrefix):
		rest := topic[len(devicesPrefix):]
		slash := strings.IndexByte(rest, '/')
		if slash <= 0 {
			return t, fmt.Errorf("%w: %q has no device id", ErrTopic, clip(topic))
		}
		t.DeviceID, rest = rest[:slash], rest[slash:]
		switch {
		case strings.HasPrefix(rest, eventsPart):
			t.Kind, rest = TopicTelemetry, rest[len(eventsPart):]
		case strings.HasPrefix(rest, boundPart):
			t.Kind, rest = TopicCloudToDevice, rest[len(boundPart):]
		default:
			return t, fmt.Errorf("%w: %q: expected devices/{id}/messages/events/", ErrTopic, clip(topic))
		}
		if rest == "" {
			return t, nil
		}
		if rest[0] != '/' {
			return t, fmt.Errorf("%w: %q: expected devices/{id}/messages/events/", ErrTopic, clip(topic))
		}
		t.Bag = rest[1:]
		return t, nil
	case strings.HasPrefix(topic, twinPrefix):
		path, query, _ := strings.Cut(topic[len(twinPrefix):], "?")
		path = strings.TrimSuffix(path, "/")
		switch {
		case path == "GET":
			t.Kind = TopicTwinGet
		case path == "PATCH/properties/reported":
			t.Kind = TopicTwinReported
		case path == "PATCH/properties/desired":
			t.Kind = TopicTwinDesired
		case strings.HasPrefix(path, "res/"):
			n, err := strconv.Atoi(path[len("res/"):])
			if err != nil || n < 100 || n > 999 {
				return t, fmt.Errorf("%w: %q: bad status", ErrTopic, clip(topic))
			}
			t.Kind, t.Status = TopicTwinResponse, n
		default:
			return t, fmt.Errorf("%w: %q: unknown twin operation", ErrTopic, clip(topic))
		}
		return t, t.parseQuery(query)
	case strings.HasPrefix(topic, methodsPrefix):
		path, query, _ := strings.Cut(topic[len(methodsPrefix):], "?")
		path = strings.TrimSuffix(path, "/")
		switch {
		case strings.HasPrefix(path, "POST/") && len(path) > len("POST/") && !strings.Contains(path[len("POST/"):], "/"):
			t.Kind, t.Method = TopicMethodRequest, path[len("POST/"):]
		case strings.HasPrefix(path, "res/"):
			n, err := strconv.Atoi(path[len("res/"):])
			if err != nil || n < 100 || n > 999 {
				return t, fmt.Errorf("%w: %q: bad status", ErrTopic, clip(topic))
			}
			t.Kind, t.Status = TopicMethodResponse, n
		default:
			return t, fmt.Errorf("%w: %q: unknown method operation", ErrTopic, clip(topic))
		}
		return t, t.parseQuery(query)
	}
	return t, fmt.Errorf("%w: %q", ErrTopic, clip(topic))
}

// parseQuery picks $rid and $version out of a $iothub topic's query.
func (t *Topic) parseQuery(q string) error {
	t.Bag = q
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "$rid":
			t.RequestID = v
		case "$version":
			t.Version = v
		default:
			continue
		}
		if strings.ContainsAny(v, "%+") {
			d, err := url.QueryUnescape(v)
			if err != nil {
				return fmt.Errorf("%w: %s is not valid URL encoding", ErrTopic, k)
			}
			if k == "$rid" {
				t.RequestID = d
			} else {
				t.Version = d
			}
		}
	}
	return nil
}

// TelemetryTopic is the topic a device publishes telemetry on, with an
// optional property bag.
func TelemetryTopic(deviceID string, props map[string]string) string {
	return devicesPrefix + deviceID + eventsPart + "/" + EncodeBag(props)
}

// CloudToDeviceFilter is the filter a device subscribes to for
// cloud-to-device messages.
func CloudToDeviceFilter(deviceID string) string {
	return devicesPrefix + deviceID + boundPart + "/#"
}

// DecodeBag decodes a URL-encoded property bag such as
// "$.ct=application%2Fjson&line=A%201". A key without '=' gets an empty
// value. The result is nil for an empty bag.
func DecodeBag(bag string) (map[string]string, error) {
	if bag == "" {
		return nil, nil
	}
	m := make(map[string]string, strings.Count(bag, "&")+1)
	return m, DecodeBagInto(bag, m)
}

// DecodeBagInto decodes a property bag into m.
func DecodeBagInto(bag string, m map[string]string) error {
	for bag != "" {
		var kv string
		kv, bag, _ = strings.Cut(bag, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		dk, err := unescape(k)
		if err != nil {
			return fmt.Errorf("property bag key %q is not valid URL encoding", clip(k))
		}
		dv, err := unescape(v)
		if err != nil {
			return fmt.Errorf("property bag value of %q is not valid URL encoding", clip(dk))
		}
		if dk == "" {
			return fmt.Errorf("property bag has an empty key")
		}
		m[dk] = dv
	}
	return nil
}

func unescape(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// EncodeBag URL-encodes properties in key order, keeping '$' readable as
// the Azure SDKs do for system properties ($.ct, $.ce).
func EncodeBag(props map[string]string) string {
	if len(props) == 0 {
		return ""
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ReplaceAll(url.QueryEscape(k), "%24", "$"))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(props[k]))
	}
	return b.String()
}

// ParseUsername reads the MQTT user name of an IoT Hub device,
// "{host}/{deviceId}/?api-version=...", and returns the host, the device id
// and, for a module identity "{host}/{deviceId}/{moduleId}/?...", the module
// id. The api-version and other parameters are not checked.
func ParseUsername(u string) (host, deviceID, moduleID string, err error) {
	path, _, _ := strings.Cut(u, "?")
	parts := strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(parts) > 1 && strings.HasPrefix(parts[len(parts)-1], "api-version=") {
		parts = parts[:len(parts)-1]
	}
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], "", nil
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != "":
		return parts[0], parts[1], parts[2], nil
	}
	return "", "", "", fmt.Errorf("%w: user name %q: expected {host}/{deviceId}/?api-version=2021-04-12", ErrMalformed, clip(u))
}

// DeviceFromResource reads "{host}/devices/{deviceId}" as found in the sr of
// a device SAS token.
func DeviceFromResource(resource string) (host, deviceID string, err error) {
	host, rest, ok := strings.Cut(strings.TrimSuffix(resource, "/"), "/devices/")
	if !ok || host == "" || rest == "" || strings.Contains(rest, "/") {
		return "", "", fmt.Errorf("%w: sr %q: expected {host}/devices/{deviceId}", ErrWrongResource, clip(resource))
	}
	return host, rest, nil
}
