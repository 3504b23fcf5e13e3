package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// Consumer is the durable consumer's name on the bus.
const Consumer = "tsdb-writer"

// Store is what the writer needs of the tsdb.
type Store interface {
	SeriesRefFor(ctx context.Context, key string, build func() labels.Labels) (tsdb.SeriesRef, error)
	AppendRefs(ctx context.Context, samples []tsdb.RefSample) error
	AppendStrings(ctx context.Context, samples []tsdb.StringSample) error
}

// Source is what the writer needs of the bus.
type Source interface {
	Consume(ctx context.Context, name string, opts bus.ConsumeOptions, h bus.Handler) error
}

// Rejects records why a device's samples were not stored.
type Rejects interface {
	RecordDeviceError(ctx context.Context, id, msg string, at time.Time) error
}

// Writer copies telemetry from the bus into the tsdb.
type Writer struct {
	src     Source
	store   Store
	rejects Rejects
	log     *slog.Logger
	now     func() time.Time

	samples  prometheus.Counter
	messages prometheus.Counter
	dropped  prometheus.Counter
	lag      prometheus.Gauge
}

// New builds a writer; reg and rejects may be nil.
func New(src Source, store Store, rejects Rejects, reg prometheus.Registerer, logger *slog.Logger) *Writer {
	w := &Writer{
		src: src, store: store, rejects: rejects, log: logger, now: time.Now,
		samples:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shopfloor_ingest_samples_total", Help: "Numeric samples written to the time-series store."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "shopfloor_ingest_messages_total", Help: "Telemetry messages written to the time-series store."}),
		dropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shopfloor_ingest_out_of_bounds_total", Help: "Messages not stored because their timestamp was more than 7 days old or 1 hour ahead."}),
		lag:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "shopfloor_ingest_lag_milliseconds", Help: "Receive-to-write delay of the last written message."}),
	}
	if reg != nil {
		reg.MustRegister(w.samples, w.messages, w.dropped, w.lag)
	}
	return w
}

// Run consumes until ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	return w.src.Consume(ctx, Consumer, bus.ConsumeOptions{MaxBatch: 8192}, w.Handle)
}

// Handle writes one batch; it is the bus handler and is idempotent: the
// tsdb keeps the first value of a (series, timestamp) it already has.
func (w *Writer) Handle(ctx context.Context, batch []*bus.Telemetry) error {
	now := w.now()
	n := 0
	for _, t := range batch {
		n += len(t.Num)
	}
	samples := make([]tsdb.RefSample, 0, n)
	var strs []tsdb.StringSample
	for _, t := range batch {
		// The gateway refuses messages out of these bounds, relative to
		// their receive time, so that a backlog in the stream cannot push
		// an acknowledged message out of them; this is the last guard, for
		// envelopes from elsewhere, and never blocks the stream.
		if !t.InBounds(now) {
			w.reject(ctx, t, now)
			continue
		}
		for field, v := range t.Num {
			ref, err := w.store.SeriesRefFor(ctx, seriesKey(t, field), func() labels.Labels { return SeriesLabels(t.Org, t.Device, t.Site, t.Template, field) })
			if err != nil {
				return fmt.Errorf("series of %s/%s: %w", t.Device, field, err)
			}
			samples = append(samples, tsdb.RefSample{Ref: ref, T: t.TS, V: v})
		}
		for field, v := range t.Str {
			strs = append(strs, tsdb.StringSample{Org: t.Org, Device: t.Device, Field: field, T: t.TS, Value: v})
		}
	}
	if err := w.store.AppendRefs(ctx, samples); err != nil {
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
		w.lag.Set(float64(now.UnixMilli() - batch[len(batch)-1].Received))
	}
	return nil
}

func (w *Writer) reject(ctx context.Context, t *bus.Telemetry, now time.Time) {
	w.dropped.Inc()
	if w.rejects == nil {
		return
	}
	msg := fmt.Sprintf("message stamped %s not stored: timestamps may be at most 7 days old and 1 hour ahead of the hub's clock; check the device clock (NTP)",
		time.UnixMilli(t.TS).UTC().Format(time.RFC3339))
	if err := w.rejects.RecordDeviceError(ctx, t.Device, msg, now); err != nil {
		w.log.Warn("record device error", "device", t.Device, "err", err)
	}
}

// seriesKey identifies one fixed label set.
func seriesKey(t *bus.Telemetry, field string) string {
	return t.Org + "\x00" + t.Site + "\x00" + t.Template + "\x00" + t.Device + "\x00" + field
}

// SeriesLabels are the labels of a telemetry field's series, as the
// Prometheus-compatible API shows them (org is hidden there).
func SeriesLabels(org, device, site, template, field string) labels.Labels {
	b := labels.NewScratchBuilder(6)
	for _, kv := range [...][2]string{
		{labels.MetricName, tsdb.SanitizeMetricName(field)}, {"device", device}, {"field", field},
		{"org", org}, {"site", site}, {"template", template},
	} {
		// Prometheus treats an empty label as absent, and the tsdb refuses it.
		if kv[1] != "" {
			b.Add(kv[0], kv[1])
		}
	}
	b.Sort()
	return b.Labels()
}
