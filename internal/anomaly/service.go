package anomaly

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// ScoreField is the telemetry field under which a device's anomaly score is
// stored, so it charts beside the raw signals (metric anomaly_score).
const ScoreField = "anomaly.score"

// Scored is one warm device score, to be stored as ScoreField.
type Scored struct {
	Org, Device, Site, Template string
	T                           int64 // unix ms of the scored update
	Score                       float64
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	// Default applies to devices whose template sets nothing; its Kind
	// defaults to KindUnivariate.
	Default    Template
	MaxDevices int // default 100,000
	// Settings reads a template's anomaly setting; ok is false when the
	// template sets none (or does not exist). Nil: every device uses
	// Default.
	Settings func(ctx context.Context, org, template string) (t Template, ok bool, err error)
	// Write stores scores (required); the hub writes them to the tsdb.
	Write func(ctx context.Context, scores []Scored) error
	// SnapshotPath, when set, keeps what the detectors learned across
	// restarts: read at start, written every SnapshotEvery (0: only at the
	// end) and when Run ends.
	SnapshotPath  string
	SnapshotEvery time.Duration
	Logger        *slog.Logger
}

// Service runs the streaming detectors on a hub or an edge: the rules
// consumer passes every device update to Observe just before its rules see
// it, Flush stores the scores of a batch, and AnomalyScore answers the
// rules' anomaly(...). Observe and Flush belong to one goroutine;
// AnomalyScore and Status may be called from any.
type Service struct {
	cfg ServiceConfig
	mgr *Manager
	log *slog.Logger

	mu     sync.RWMutex
	scores map[Key]deviceAnomaly

	tmu     sync.Mutex
	applied map[Key]Template // Key{Org, Device: template id}: the setting last given to mgr
	pending []byte           // snapshot read at start, restored by Run

	// ds and out belong to the goroutine that calls Observe and Flush.
	ds  DeviceScore
	out []Scored
}

type deviceAnomaly struct {
	score  float64
	fields map[string]float64 // per-field score: the device score times the field's share of the top share
	last   DeviceScore
}

// NewService builds the detectors and reads the snapshot, if there is one.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Write == nil {
		return nil, fmt.Errorf("%w: the anomaly service needs somewhere to write scores", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Default.Kind == "" {
		cfg.Default.Kind = KindUnivariate
	}
	if cfg.MaxDevices == 0 {
		cfg.MaxDevices = 100_000
	}
	mgr, err := NewManager(ManagerConfig{Default: cfg.Default, MaxDevices: cfg.MaxDevices, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("anomaly detection: %w", err)
	}
	s := &Service{cfg: cfg, mgr: mgr, log: cfg.Logger, scores: map[Key]deviceAnomaly{}, applied: map[Key]Template{}}
	if cfg.SnapshotPath != "" {
		b, err := os.ReadFile(cfg.SnapshotPath)
		switch {
		case err == nil:
			s.pending = b
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("read anomaly snapshot: %w", err)
		}
	}
	return s, nil
}

// Run restores the snapshot read at start (once the templates' settings
// can be read, so devices on a configured template keep what they learned)
// and saves what the detectors learn, periodically and when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.restore(ctx)
	if s.cfg.SnapshotPath == "" {
		<-ctx.Done()
		return nil
	}
	var tick <-chan time.Time
	if s.cfg.SnapshotEvery > 0 {
		t := time.NewTicker(s.cfg.SnapshotEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			if err := s.save(); err != nil {
				s.log.Warn("save anomaly snapshot; retried next period", "err", err)
			}
		case <-ctx.Done():
			if err := s.save(); err != nil {
				s.log.Error("save anomaly snapshot", "err", err)
			}
			return nil
		}
	}
}

func (s *Service) restore(ctx context.Context) {
	b := s.pending
	s.pending = nil
	if b == nil {
		return
	}
	refs, err := SnapshotTemplates(b)
	if err == nil {
		for _, r := range refs {
			s.syncTemplate(ctx, r.Org, r.Template)
		}
		var skipped int
		if skipped, err = s.mgr.Restore(bytes.NewReader(b)); err == nil && skipped > 0 {
			s.log.Info("anomaly snapshot restored", "skipped", skipped)
		}
	}
	if err != nil {
		s.log.Warn("anomaly snapshot not restored; detectors learn again", "err", err)
	}
}

// Observe scores one update of a device of site and keeps the score for
// Flush. An update older than the device's last is neither scored nor
// learned; a hub at MaxDevices scores no new device.
func (s *Service) Observe(ctx context.Context, u Update, site string) error {
	if len(u.Values) == 0 {
		return nil
	}
	s.syncTemplate(ctx, u.Org, u.Template)
	if err := s.mgr.Observe(u, &s.ds); err != nil {
		if errors.Is(err, ErrTooManyDevices) {
			return nil
		}
		return fmt.Errorf("score %s: %w", u.Device, err)
	}
	if s.ds.Late {
		return nil
	}
	s.remember(s.ds)
	if s.ds.Warm { // no score while learning
		s.out = append(s.out, Scored{Org: u.Org, Device: u.Device, Site: site, Template: u.Template, T: u.Time.UnixMilli(), Score: s.ds.Score})
	}
	return nil
}

// Flush stores the scores kept since the last Flush.
func (s *Service) Flush(ctx context.Context) error {
	if len(s.out) == 0 {
		return nil
	}
	err := s.cfg.Write(ctx, s.out)
	s.out = s.out[:0]
	return err
}

// syncTemplate gives the manager a template's anomaly setting when it
// differs from the one last given; a setting the detectors refuse is
// logged and the default used.
func (s *Service) syncTemplate(ctx context.Context, org, id string) {
	if s.cfg.Settings == nil || id == "" {
		return
	}
	want, ok, err := s.cfg.Settings(ctx, org, id)
	if err != nil {
		return // keep the last setting; the next message retries
	}
	if !ok {
		want = Template{}
	}
	k := Key{Org: org, Device: id}
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if cur, seen := s.applied[k]; seen && sameTemplate(cur, want) {
		return
	}
	s.applied[k] = want
	if sameTemplate(want, Template{}) {
		s.mgr.RemoveTemplate(org, id)
		return
	}
	if want.Kind == "" {
		want.Kind = s.cfg.Default.Kind
	}
	if err := s.mgr.SetTemplate(org, id, want); err != nil {
		s.log.Warn("template anomaly setting refused; its devices use the default", "org", org, "template", id, "err", err)
		s.mgr.RemoveTemplate(org, id)
	}
}

func sameTemplate(x, y Template) bool {
	return x.Kind == y.Kind && x.Sensitivity == y.Sensitivity && x.Warmup == y.Warmup && slices.Equal(x.Fields, y.Fields)
}

func (s *Service) remember(ds DeviceScore) {
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
	last.Contributions = append([]Contribution(nil), ds.Contributions...)
	s.mu.Lock()
	s.scores[ds.Key] = deviceAnomaly{score: ds.Score, fields: fields, last: last}
	s.mu.Unlock()
}

// AnomalyScore is the rules' anomaly(...): the device's latest score, or
// one field's part of it. ok is false until the device's detectors have
// warmed up.
func (s *Service) AnomalyScore(org, device, field string) (float64, bool) {
	s.mu.RLock()
	d, ok := s.scores[Key{Org: org, Device: device}]
	s.mu.RUnlock()
	if !ok || !d.last.Warm {
		return 0, false
	}
	if field == "" {
		return d.score, true
	}
	return d.fields[field], true
}

// Status is a device's detector as the API and the console show it.
type Status struct {
	Device string `json:"device"`
	// Seen is false until the detector has scored an update from the device.
	Seen bool      `json:"seen"`
	Time time.Time `json:"time,omitempty"`
	Kind string    `json:"kind,omitempty"`
	// Fields the detector models.
	Fields []string `json:"fields,omitempty"`
	// Warmup is how many updates the learning period lasts.
	Warmup int `json:"warmup,omitempty"`
	// Warm is false during the learning period: no score, no alerts.
	Warm            bool    `json:"warm"`
	WarmupRemaining int     `json:"warmupRemaining"`
	Score           float64 `json:"score"`
	Alert           bool    `json:"alert"`
	// Likelihood is the latest update's likelihood score (Result.Likelihood):
	// 0.5 at an estimated probability of 10⁻⁵ given the device's recent
	// history, high where an unusual episode starts.
	Likelihood    float64        `json:"likelihood"`
	Contributions []Contribution `json:"contributions"`
}

// Status reports a device's detector.
func (s *Service) Status(org, device string) Status {
	s.mu.RLock()
	d, ok := s.scores[Key{Org: org, Device: device}]
	s.mu.RUnlock()
	st := Status{Device: device, Contributions: []Contribution{}}
	if info, found := s.mgr.Device(Key{Org: org, Device: device}); found {
		st.Kind, st.Fields, st.Warmup = info.Kind, info.Fields, info.Warmup
	}
	if !ok {
		return st // no update seen since the hub started
	}
	st.Seen = true
	st.Time = d.last.Time.UTC()
	st.Warm, st.WarmupRemaining = d.last.Warm, d.last.WarmupRemaining
	st.Score, st.Alert, st.Likelihood = d.last.Score, d.last.Alert, d.last.Likelihood
	st.Contributions = append(st.Contributions, d.last.Contributions...)
	return st
}

// save writes the snapshot beside the old one and then replaces it, so a
// crash while writing leaves the previous snapshot whole. It streams:
// 10,000 devices of 8 fields are about 50 MB.
func (s *Service) save() error {
	tmp := s.cfg.SnapshotPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = s.mgr.Snapshot(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, s.cfg.SnapshotPath)
}
