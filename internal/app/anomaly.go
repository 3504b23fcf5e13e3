package app

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/anomaly"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/ingest"
	"github.com/shopfloor/shopfloor/internal/rules"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// ScoreField is the telemetry field under which a device's anomaly score is
// stored (anomaly.ScoreField).
const ScoreField = anomaly.ScoreField

// openAnomaly builds the detectors: scores go to the tsdb, template
// settings come from the template service (set by openTemplates later, so
// read through h.tmpl when asked), learned state to a snapshot file.
func (h *Hub) openAnomaly() error {
	a, err := anomaly.NewService(anomaly.ServiceConfig{
		Settings:      h.anomalySetting,
		Write:         scoreWriter(h.TSDB),
		SnapshotPath:  filepath.Join(h.cfg.Data, "anomaly.snapshot"),
		SnapshotEvery: h.cfg.AnomalySnapshot,
		Logger:        h.log.With("module", "anomaly"),
	})
	if err != nil {
		return fmt.Errorf("anomaly detection: %w", err)
	}
	h.anomaly = a
	return nil
}

// anomalySetting is a template's anomaly setting as the detectors take it.
func (h *Hub) anomalySetting(ctx context.Context, org, id string) (anomaly.Template, bool, error) {
	if h.tmpl == nil {
		return anomaly.Template{}, false, nil
	}
	t, ok, err := h.tmpl.svc.Lookup(ctx, org, id)
	if err != nil || !ok || t.Anomaly == nil {
		return anomaly.Template{}, false, err
	}
	a := t.Anomaly
	return anomaly.Template{Fields: a.Fields, Kind: a.Kind, Sensitivity: a.Sensitivity, Warmup: a.Warmup}, true, nil
}

// scoreWriter stores scores as the series anomaly.score of each device.
func scoreWriter(db *tsdb.DB) func(context.Context, []anomaly.Scored) error {
	var samples []tsdb.Sample
	return func(ctx context.Context, scores []anomaly.Scored) error {
		samples = samples[:0]
		for _, s := range scores {
			samples = append(samples, tsdb.Sample{Labels: ingest.SeriesLabels(s.Org, s.Device, s.Site, s.Template, anomaly.ScoreField), T: s.T, V: s.Score})
		}
		return db.Append(ctx, samples)
	}
}

func (h *Hub) runAnomaly(ctx context.Context, g *errgroup.Group) {
	// Earlier versions read the stream with a consumer of their own.
	if err := h.Bus.DeleteConsumer(ctx, "anomaly"); err != nil {
		h.log.Warn("remove the unused anomaly consumer", "err", err)
	}
	g.Go(func() error { return h.anomaly.Run(ctx) })
}

// anomalyBefore is the rules engine's Before hook: it scores each message
// just before the rules see it. nil when detection is off.
func (h *Hub) anomalyBefore() func(context.Context, *bus.Telemetry) {
	a := h.anomaly
	if a == nil {
		return nil
	}
	return func(ctx context.Context, t *bus.Telemetry) {
		u := anomaly.Update{Org: t.Org, Device: t.Device, Template: t.Template, Time: time.UnixMilli(t.TS), Values: t.Num}
		if err := a.Observe(ctx, u, t.Site); err != nil {
			h.log.Warn("anomaly: update not scored", "device", t.Device, "err", err)
		}
	}
}

// anomalyScorer is the rules engine's view; nil when detection is off.
func (h *Hub) anomalyScorer() rules.AnomalyScorer {
	if h.anomaly == nil {
		return nil
	}
	return h.anomaly
}
