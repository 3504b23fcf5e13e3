package alerts

import (
	"context"
	"encoding/json"
	"testing"
)

type sent struct{ subject, data string }

type sendLog []sent

func (r *sendLog) Publish(_ context.Context, subject string, data []byte) error {
	*r = append(*r, sent{subject, string(data)})
	return nil
}

// Each alert event goes out as JSON on its own organization's subject.
func TestLiveFeed(t *testing.T) {
	var r sendLog
	f := NewLiveFeed(&r, func(org string) string { return "shopfloor.alerts." + org })
	ev := AlertEvent{Type: EventOpened, Alert: Alert{ID: "a1", Org: "acme", Device: "press-1", State: StateOpen}}
	if err := f.PublishAlert(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if len(r) != 1 || r[0].subject != "shopfloor.alerts.acme" {
		t.Fatalf("sent %+v", r)
	}
	var back AlertEvent
	if err := json.Unmarshal([]byte(r[0].data), &back); err != nil || back.Alert.ID != "a1" || back.Type != EventOpened {
		t.Fatalf("payload %s: %v", r[0].data, err)
	}
}
