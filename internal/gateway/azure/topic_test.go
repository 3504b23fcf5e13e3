package azure

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseTopic(t *testing.T) {
	cases := []struct {
		in   string
		want Topic
	}{
		{"devices/d1/messages/events/", Topic{Kind: TopicTelemetry, DeviceID: "d1"}},
		{"devices/d1/messages/events", Topic{Kind: TopicTelemetry, DeviceID: "d1"}},
		{"devices/press:1.a/messages/events/a=1&b=2", Topic{Kind: TopicTelemetry, DeviceID: "press:1.a", Bag: "a=1&b=2"}},
		{"devices/d1/messages/devicebound/%24.to=x", Topic{Kind: TopicCloudToDevice, DeviceID: "d1", Bag: "%24.to=x"}},
		{"$iothub/twin/GET/?$rid=42", Topic{Kind: TopicTwinGet, Bag: "$rid=42", RequestID: "42"}},
		{"$iothub/twin/PATCH/properties/reported/?$rid=7&$version=3", Topic{Kind: TopicTwinReported, Bag: "$rid=7&$version=3", RequestID: "7", Version: "3"}},
		{"$iothub/twin/res/200/?$rid=a%20b&$version=5", Topic{Kind: TopicTwinResponse, Status: 200, Bag: "$rid=a%20b&$version=5", RequestID: "a b", Version: "5"}},
		{"$iothub/twin/PATCH/properties/desired/?$version=9", Topic{Kind: TopicTwinDesired, Bag: "$version=9", Version: "9"}},
		{"$iothub/methods/POST/reboot/?$rid=1", Topic{Kind: TopicMethodRequest, Method: "reboot", Bag: "$rid=1", RequestID: "1"}},
		{"$iothub/methods/res/404/?$rid=1", Topic{Kind: TopicMethodResponse, Status: 404, Bag: "$rid=1", RequestID: "1"}},
	}
	for _, c := range cases {
		got, err := ParseTopic(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{
		"", "devices/", "devices//messages/events/", "devices/d1/messages/other",
		"devices/d1/messages/eventsX", "telemetry/d1", "$iothub/twin/res/abc/?$rid=1",
		"$iothub/twin/DELETE/", "$iothub/methods/POST/", "$iothub/methods/POST/a/b", "$iothub/twin/GET/?$rid=%zz",
	} {
		if _, err := ParseTopic(bad); !errors.Is(err, ErrTopic) {
			t.Errorf("ParseTopic(%q) = %v, want ErrTopic", bad, err)
		}
	}
}

func TestPropertyBag(t *testing.T) {
	m, err := DecodeBag("%24.ct=application%2Fjson&$.ce=utf-8&line=A%201&flag&x=a+b")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"$.ct": "application/json", "$.ce": "utf-8", "line": "A 1", "flag": "", "x": "a b"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v", m)
	}
	enc := EncodeBag(want)
	if enc != "$.ce=utf-8&$.ct=application%2Fjson&flag=&line=A+1&x=a+b" {
		t.Fatalf("encoded %q", enc)
	}
	back, err := DecodeBag(enc)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Fatalf("round trip %v %v", back, err)
	}
	if m, err := DecodeBag(""); m != nil || err != nil {
		t.Fatal(m, err)
	}
	for _, bad := range []string{"a=%zz", "%zz=1", "=1"} {
		if _, err := DecodeBag(bad); err == nil {
			t.Errorf("DecodeBag(%q) accepted", bad)
		}
	}
	if got := TelemetryTopic("d1", map[string]string{"a": "1"}); got != "devices/d1/messages/events/a=1" {
		t.Fatal(got)
	}
}

func TestParseUsername(t *testing.T) {
	cases := []struct{ in, host, dev, mod string }{
		{"localhost/d1/?api-version=2021-04-12", "localhost", "d1", ""},
		{"hub.example.com/press-1/api-version=2018-06-30", "hub.example.com", "press-1", ""},
		{"hub/d1/?api-version=2021-04-12&DeviceClientType=c%2F1.0", "hub", "d1", ""},
		{"hub/d1", "hub", "d1", ""},
		{"hub/d1/m1/?api-version=2021-04-12", "hub", "d1", "m1"},
	}
	for _, c := range cases {
		h, d, m, err := ParseUsername(c.in)
		if err != nil || h != c.host || d != c.dev || m != c.mod {
			t.Errorf("%s: %s %s %s %v", c.in, h, d, m, err)
		}
	}
	for _, bad := range []string{"", "d1", "/d1/?api-version=1", "hub//?api-version=1", "a/b/c/d"} {
		if _, _, _, err := ParseUsername(bad); err == nil {
			t.Errorf("ParseUsername(%q) accepted", bad)
		}
	}
	if _, d, err := DeviceFromResource("hub/devices/d1"); err != nil || d != "d1" {
		t.Fatal(d, err)
	}
	for _, bad := range []string{"hub", "hub/devices/", "/devices/d1", "hub/devices/d1/modules/m"} {
		if _, _, err := DeviceFromResource(bad); !errors.Is(err, ErrWrongResource) {
			t.Errorf("DeviceFromResource(%q) = %v", bad, err)
		}
	}
}

func BenchmarkParseTopic(b *testing.B) {
	topics := []string{
		"devices/press-1/messages/events/",
		"devices/press-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8",
		"$iothub/twin/PATCH/properties/reported/?$rid=17&$version=4",
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, tp := range topics {
			if _, err := ParseTopic(tp); err != nil {
				b.Fatal(err)
			}
		}
	}
}
