package rules

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/egress"
)

// TestRuleToWebhook wires the packages the way the hub will: engine →
// alerts service → actions dispatcher (rules store as its source) → a real
// HTTP receiver.
func TestRuleToWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Get("X-Shopfloor-Event")+" "+actions.Sign("k", b)+" "+r.Header.Get("X-Shopfloor-Signature"))
		mu.Unlock()
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := sqliteDB(t)
	// The receiver is on loopback: open it as an operator would a site's range.
	loopback := egress.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	store, err := NewStore(ctx, StoreConfig{DB: db, Driver: "sqlite", Egress: loopback})
	if err != nil {
		t.Fatal(err)
	}
	var disp *actions.Dispatcher
	svc, err := alerts.New(ctx, alerts.Config{DB: db, Driver: "sqlite", Publisher: publisherFunc(func(ctx context.Context, ev alerts.AlertEvent) error {
		return disp.PublishAlert(ctx, ev)
	})})
	if err != nil {
		t.Fatal(err)
	}
	disp, err = actions.New(ctx, actions.Config{DB: db, Driver: "sqlite", Source: store, Recorder: svc, Egress: loopback, PollEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = disp.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if _, err := store.Create(ctx, Rule{Org: "o1", Name: "hot", Condition: "temperature > 80", Severity: alerts.SeverityCritical,
		Actions: []actions.Spec{{Type: actions.TypeWebhook, URL: srv.URL, Secret: "k", On: []alerts.EventType{alerts.EventOpened, alerts.EventResolved}}}}); err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(ctx, Config{Store: store, Alerts: svc})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Handle(ctx, []*bus.Telemetry{msg("m1", t0, "temperature", 90), msg("m1", t0.Add(time.Second), "temperature", 20)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks received: %v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	events := map[string]bool{}
	for _, g := range got {
		f := strings.Fields(g)
		if len(f) != 3 || f[1] != f[2] {
			t.Fatalf("bad signature: %q", g)
		}
		events[f[0]] = true
	}
	if !events["opened"] || !events["resolved"] {
		t.Fatalf("events: %v", got)
	}
}

type publisherFunc func(ctx context.Context, ev alerts.AlertEvent) error

func (f publisherFunc) PublishAlert(ctx context.Context, ev alerts.AlertEvent) error {
	return f(ctx, ev)
}
