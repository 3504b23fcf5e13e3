package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/anomaly"
	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/bus"
	"github.com/shopfloor/shopfloor/internal/ingest"
	"github.com/shopfloor/shopfloor/internal/rules"
	"github.com/shopfloor/shopfloor/internal/template"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// ScoreField is the telemetry field under which a device's anomaly score is
// stored, so it charts beside the raw signals (metric anomaly_score).
const ScoreField = "anomaly.score"

// anomalySet runs the streaming detectors on the hub: the rules consumer
// scores every device update just before evaluating it, the score goes to
// the tsdb, and the latest score per device answers the rules engine's
// anomaly(...).
type anomalySet struct {
	mgr      *anomaly.Manager
	tsdb     *tsdb.DB
	snapshot string

	mu     sync.RWMutex
	scores map[anomaly.Key]deviceAnomaly

	// lookup reads a device template (cached by the template service);
	// nil when templates are off. applied is the anomaly setting last
	// given to the manager per template.
	lookup  func(ctx context.Context, org, id string) (*template.Template, bool, error)
	log     *slog.Logger
	tmu     sync.Mutex
	applied map[anomaly.Key]template.Anomaly // Key{Org, Device: template id}
	pending []byte                           // snapshot read at open, restored at run

	// ds and samples belong to the one consumer goroutine that scores.
	ds      anomaly.DeviceScore
	samples []tsdb.Sample
}

type deviceAnomaly struct {
	score  float64
	fields map[string]float64 // per-field score: the device score times the field's share of the top share
	last   anomaly.DeviceScore
}

func (h *Hub) openAnomaly() error {
	mgr, err := anomaly.NewManager(anomaly.ManagerConfig{Default: anomaly.Template{Kind: anomaly.KindUnivariate}, MaxDevices: 100_000, Logger: h.log})
	if err != nil {
		return fmt.Errorf("anomaly detection: %w", err)
	}
	a := &anomalySet{mgr: mgr, tsdb: h.TSDB, snapshot: filepath.Join(h.cfg.Data, "anomaly.snapshot"), scores: map[anomaly.Key]deviceAnomaly{},
		log: h.log, applied: map[anomaly.Key]template.Anomaly{}}
	// What the detectors learned survives a restart; it is restored in
	// runAnomaly, once the templates' anomaly settings can be read.
	if b, err := os.ReadFile(a.snapshot); err == nil {
		a.pending = b
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read anomaly snapshot: %w", err)
	}
	h.anomaly = a
	return nil
}

// restore applies the saved snapshot after configuring the templates its
// devices use, so devices on a configured template keep what they learned.
func (a *anomalySet) restore(ctx context.Context) {
	b := a.pending
	a.pending = nil
	if b == nil {
		return
	}
	refs, err := anomaly.SnapshotTemplates(b)
	if err == nil {
		for _, r := range refs {
			a.syncTemplate(ctx, r.Org, r.Template)
		}
		var skipped int
		if skipped, err = a.mgr.Restore(bytes.NewReader(b)); err == nil && skipped > 0 {
			a.log.Info("anomaly snapshot restored", "skipped", skipped)
		}
	}
	if err != nil {
		a.log.Warn("anomaly snapshot not restored; detectors learn again", "err", err)
	}
}

func (h *Hub) runAnomaly(ctx context.Context, g *errgroup.Group) {
	a := h.anomaly
	if h.tmpl != nil {
		a.lookup = h.tmpl.svc.Lookup
	}
	a.restore(ctx)
	// Earlier versions read the stream with a consumer of their own.
	if err := h.Bus.DeleteConsumer(ctx, "anomaly"); err != nil {
		h.log.Warn("remove the unused anomaly consumer", "err", err)
	}
	// The rules consumer scores each message just before it evaluates it
	// (anomalyBefore); here the learned state is saved.
	g.Go(func() error {
		// Saved periodically as well as at the end, so a crash loses at
		// most one period of learning.
		var tick <-chan time.Time
		if every := h.cfg.AnomalySnapshot; every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-tick:
				if err := a.save(); err != nil {
					h.log.Warn("save anomaly snapshot; retried next period", "err", err)
				}
			case <-ctx.Done():
				if err := a.save(); err != nil {
					h.log.Error("save anomaly snapshot", "err", err)
				}
				return nil
			}
		}
	})
}

// anomalyBefore is the rules engine's Before hook: it scores each message
// just before the rules see it. nil when detection is off.
func (h *Hub) anomalyBefore() func(context.Context, *bus.Telemetry) {
	a := h.anomaly
	if a == nil {
		return nil
	}
	return func(ctx context.Context, t *bus.Telemetry) {
		if err := a.score(ctx, t); err != nil {
			a.log.Warn("anomaly: update not scored", "device", t.Device, "err", err)
		}
	}
}

// score observes one update and keeps its score for flush.
func (a *anomalySet) score(ctx context.Context, t *bus.Telemetry) error {
	if len(t.Num) == 0 {
		return nil
	}
	a.syncTemplate(ctx, t.Org, t.Template)
	if err := a.mgr.Observe(anomaly.Update{Org: t.Org, Device: t.Device, Template: t.Template, Time: time.UnixMilli(t.TS), Values: t.Num}, &a.ds); err != nil {
		if errors.Is(err, anomaly.ErrTooManyDevices) {
			return nil
		}
		return fmt.Errorf("score %s: %w", t.Device, err)
	}
	if a.ds.Late {
		return nil
	}
	a.remember(a.ds)
	if a.ds.Warm { // no score while learning
		a.samples = append(a.samples, tsdb.Sample{Labels: scoreLabels(t), T: t.TS, V: a.ds.Score})
	}
	return nil
}

// flush stores the scores kept since the last flush.
func (a *anomalySet) flush(ctx context.Context) error {
	if len(a.samples) == 0 {
		return nil
	}
	err := a.tsdb.Append(ctx, a.samples)
	a.samples = a.samples[:0]
	return err
}

// syncTemplate gives the manager a template's anomaly setting (fields,
// kind, sensitivity, warm-up) when it differs from the one last given; the
// setting is stored with the template, so it survives restarts. A setting
// the detectors refuse is logged and the default used.
func (a *anomalySet) syncTemplate(ctx context.Context, org, id string) {
	if a.lookup == nil || id == "" {
		return
	}
	t, ok, err := a.lookup(ctx, org, id)
	if err != nil {
		return // keep the last setting; the next message retries
	}
	var want template.Anomaly
	if ok && t.Anomaly != nil {
		want = *t.Anomaly
	}
	k := anomaly.Key{Org: org, Device: id}
	a.tmu.Lock()
	defer a.tmu.Unlock()
	if cur, seen := a.applied[k]; seen && sameAnomaly(cur, want) {
		return
	}
	a.applied[k] = want
	if sameAnomaly(want, template.Anomaly{}) {
		a.mgr.RemoveTemplate(org, id)
		return
	}
	cfg := anomaly.Template{Fields: want.Fields, Kind: want.Kind, Sensitivity: want.Sensitivity, Warmup: want.Warmup}
	if cfg.Kind == "" {
		cfg.Kind = anomaly.KindUnivariate // the hub's default kind
	}
	if err := a.mgr.SetTemplate(org, id, cfg); err != nil {
		a.log.Warn("template anomaly setting refused; its devices use the default", "org", org, "template", id, "err", err)
		a.mgr.RemoveTemplate(org, id)
	}
}

func sameAnomaly(x, y template.Anomaly) bool {
	return x.Kind == y.Kind && x.Sensitivity == y.Sensitivity && x.Warmup == y.Warmup && slices.Equal(x.Fields, y.Fields)
}

func scoreLabels(t *bus.Telemetry) labels.Labels {
	return ingest.SeriesLabels(t.Org, t.Device, t.Site, t.Template, ScoreField)
}

func (a *anomalySet) remember(ds anomaly.DeviceScore) {
	top := 0.0
	for _, c := range ds.Contributions {
		top = max(top, c.Share)
	}
	fields := make(map[string]float64, len(ds.Contributions))
	for _, c := range ds.Contributions {
		if top > 0 {
			fields[c.Field] = ds.Score * c.Share / top
		}
	}
	last := ds
	last.Contributions = append([]anomaly.Contribution(nil), ds.Contributions...)
	a.mu.Lock()
	a.scores[ds.Key] = deviceAnomaly{score: ds.Score, fields: fields, last: last}
	a.mu.Unlock()
}

// AnomalyScore is the rules engine's anomaly(...): the device's latest
// score, or one field's part of it. ok is false until the device's
// detectors have warmed up.
func (a *anomalySet) AnomalyScore(org, device, field string) (float64, bool) {
	a.mu.RLock()
	d, ok := a.scores[anomaly.Key{Org: org, Device: device}]
	a.mu.RUnlock()
	if !ok || !d.last.Warm {
		return 0, false
	}
	if field == "" {
		return d.score, true
	}
	return d.fields[field], true
}

// save writes the snapshot beside the old one and then replaces it, so a
// crash while writing leaves the previous snapshot whole. It streams: 10,000
// devices of 8 fields are about 50 MB.
func (a *anomalySet) save() error {
	tmp := a.snapshot + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = a.mgr.Snapshot(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, a.snapshot)
}

// anomalyScorer is the rules engine's view; nil when detection is off.
func (h *Hub) anomalyScorer() rules.AnomalyScorer {
	if h.anomaly == nil {
		return nil
	}
	return h.anomaly
}

// DeviceAnomaly is the API's view of a device's detector.
func (a *anomalySet) DeviceAnomaly(_ context.Context, org, device string) (api.AnomalyStatus, error) {
	a.mu.RLock()
	d, ok := a.scores[anomaly.Key{Org: org, Device: device}]
	a.mu.RUnlock()
	st := api.AnomalyStatus{Device: device, Contributions: []api.AnomalyContribution{}}
	if info, found := a.mgr.Device(anomaly.Key{Org: org, Device: device}); found {
		st.Kind, st.Fields, st.Warmup = info.Kind, info.Fields, info.Warmup
	}
	if !ok {
		return st, nil // no update seen since the hub started
	}
	st.Seen = true
	st.Time = d.last.Time.UTC()
	st.Warm, st.WarmupRemaining = d.last.Warm, d.last.WarmupRemaining
	st.Score, st.Alert = d.last.Score, d.last.Alert
	for _, c := range d.last.Contributions {
		st.Contributions = append(st.Contributions, api.AnomalyContribution{Field: c.Field, Share: c.Share, Reason: string(c.Reason)})
	}
	return st, nil
}
