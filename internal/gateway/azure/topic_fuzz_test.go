package azure

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseTopic: any topic name a device sends parses or fails with
// ErrTopic, without panicking, and what it returns lies inside the name.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"devices/press-7/messages/events/",
		"devices/press-7/messages/events/%24.ct=application%2Fjson&line=A%201",
		"devices/press.7/messages/devicebound/%24.mid=abc&%24.to=%2Fdevices%2Fpress.7%2FmessageDeviceBound",
		"$iothub/twin/GET/?$rid=1",
		"$iothub/twin/PATCH/properties/reported/?$rid=2&$version=5",
		"$iothub/twin/PATCH/properties/desired/?$version=9",
		"$iothub/twin/res/204/?$rid=2&$version=5",
		"$iothub/methods/POST/reboot/?$rid=a1",
		"$iothub/methods/res/200/?$rid=a1",
		"$iothub/methods/res/abc/?$rid=%zz",
		"$iothub/twin/res/99999999999999999999/",
		"$iothub/twin/GET/?$rid=%",
		"$iothub/methods/POST//?$rid=1",
		"devices//messages/events",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		tp, err := ParseTopic(topic)
		if err != nil {
			if !errors.Is(err, ErrTopic) {
				t.Fatalf("%q: error %v does not wrap ErrTopic", topic, err)
			}
			return
		}
		if tp.Kind == TopicUnknown {
			t.Fatalf("%q parsed without a kind", topic)
		}
		for _, part := range []string{tp.DeviceID, tp.Bag, tp.Method} {
			if !strings.Contains(topic, part) {
				t.Fatalf("%q: part %q is not in the topic", topic, part)
			}
		}
		if (tp.Kind == TopicTwinResponse || tp.Kind == TopicMethodResponse) && (tp.Status < 100 || tp.Status > 999) {
			t.Fatalf("%q: status %d", topic, tp.Status)
		}
		if tp.Kind == TopicMethodRequest && (tp.Method == "" || strings.Contains(tp.Method, "/")) {
			t.Fatalf("%q: method %q", topic, tp.Method)
		}
	})
}
