package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// Consumer is the durable consumer's name on the bus.
const Consumer = "tsdb-writer"

// Store is what the writer needs of the tsdb.
type Store interface {
	Append(ctx context.Context, samples []tsdb.Sample) error
	AppendStrings(ctx context.Context, samples []tsdb.StringSample) error
}

// Source is what the writer needs of the bus.
type Source interface {
	Consume(ctx context.Context, name string, opts bus.ConsumeOptions, h bus.Handler) error
}

// Writer copies telemetry from the bus into the tsdb.
type Writer struct {
	src   Source
	store Store
	log   *slog.Logger

	mu     sync.Mutex
	series map[string]labels.Labels // org\x00device\x00site\x00template\x00field -> labels

	samples  prometheus.Counter
	messages prometheus.Counter
	lag      prometheus.Gauge
}

// New builds a writer; reg may be nil.
func New(src Source, store Store, reg prometheus.Registerer, logger *slog.Logger) *Writer {
	w := &Writer{
		src: src, store: store, log: logger,
		series:   map[string]labels.Labels{},
		samples:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shopfloor_ingest_samples_total", Help: "Numeric samples written to the time-series store."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "shopfloor_ingest_messages_total", Help: "Telemetry messages written to the time-series store."}),
		lag:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "shopfloor_ingest_lag_milliseconds", Help: "Receive-to-write delay of the last written message."}),
	}
	if reg != nil {
		reg.MustRegister(w.samples, w.messages, w.lag)
	}
	return w
}

// Run consumes until ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	return w.src.Consume(ctx, Consumer, bus.ConsumeOptions{MaxBatch: 8192}, w.Handle)
}

// Handle writes one batch; it is the bus handler and is idempotent.
func (w *Writer) Handle(ctx context.Context, batch []*bus.Telemetry) error {
	n := 0
	for _, t := range batch {
		n += len(t.Num)
	}
	samples := make([]tsdb.Sample, 0, n)
	var strs []tsdb.StringSample
	w.mu.Lock()
	for _, t := range batch {
		for field, v := range t.Num {
			samples = append(samples, tsdb.Sample{Labels: w.labelsFor(t, field), T: t.TS, V: v})
		}
		for field, v := range t.Str {
			strs = append(strs, tsdb.StringSample{Org: t.Org, Device: t.Device, Field: field, T: t.TS, Value: v})
		}
	}
	w.mu.Unlock()
	if err := w.store.Append(ctx, samples); err != nil {
		return fmt.Errorf("write %d samples: %w", len(samples), err)
	}
	if len(strs) > 0 {
		if err := w.store.AppendStrings(ctx, strs); err != nil {
			return fmt.Errorf("write %d string values: %w", len(strs), err)
		}
	}
	w.samples.Add(float64(len(samples)))
	w.messages.Add(float64(len(batch)))
	if len(batch) > 0 {
		last := batch[len(batch)-1]
		w.lag.Set(float64(nowMillis() - last.Received))
	}
	return nil
}

func (w *Writer) labelsFor(t *bus.Telemetry, field string) labels.Labels {
	key := t.Org + "\x00" + t.Device + "\x00" + t.Site + "\x00" + t.Template + "\x00" + field
	if ls, ok := w.series[key]; ok {
		return ls
	}
	ls := SeriesLabels(t.Org, t.Device, t.Site, t.Template, field)
	w.series[key] = ls
	return ls
}

// SeriesLabels are the labels of a telemetry field's series, as the
// Prometheus-compatible API shows them (org is hidden there).
func SeriesLabels(org, device, site, template, field string) labels.Labels {
	b := labels.NewScratchBuilder(6)
	for _, kv := range [...][2]string{
		{labels.MetricName, MetricName(field)}, {"device", device}, {"field", field},
		{"org", org}, {"site", site}, {"template", template},
	} {
		// Prometheus treats an empty label as absent; keep it out.
		if kv[1] != "" {
			b.Add(kv[0], kv[1])
		}
	}
	b.Sort()
	return b.Labels()
}

// MetricName maps a flattened field path to a metric name: every character
// outside [a-zA-Z0-9_:] becomes '_' and a leading digit gets a '_' prefix.
func MetricName(field string) string {
	var b strings.Builder
	b.Grow(len(field) + 1)
	for i, r := range field {
		ok := r == '_' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9' && i > 0)
		switch {
		case ok:
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			b.WriteByte('_')
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
