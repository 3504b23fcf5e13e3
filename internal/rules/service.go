package rules

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/shopfloor/shopfloor/internal/bus"
)

// MaxDryRun is the longest history one dry run replays.
const MaxDryRun = 31 * 24 * time.Hour

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Store *Store // required
	// Engine, when set, is reloaded after every change, so a change takes
	// effect at once rather than at the engine's next poll.
	Engine *Engine
	// History and Directory replay stored telemetry in dry runs.
	History   History
	Directory DeviceDirectory
	// ScoreField, when set, is the stored field anomaly() reads in a dry
	// run (the device's anomaly score, stored with each update; per-field
	// scores are not stored, so anomaly(field) has no value there).
	ScoreField string
	Logger     *slog.Logger
}

// Service is the one place rules are read and changed: the REST API, the
// console and the CLI (through the API) call the same methods.
type Service struct {
	cfg ServiceConfig
}

// NewService returns the rules service.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: the rules service needs a store", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}, nil
}

// Check validates and compiles r without storing it.
func (s *Service) Check(r Rule) error { return s.cfg.Store.Check(r) }

// Get returns one rule of org.
func (s *Service) Get(ctx context.Context, org, id string) (Rule, error) {
	return s.cfg.Store.Get(ctx, org, id)
}

// List returns a page of org's rules.
func (s *Service) List(ctx context.Context, org string, f ListFilter) (RulePage, error) {
	return s.cfg.Store.List(ctx, org, f)
}

// Create stores a new rule of r.Org and makes it take effect.
func (s *Service) Create(ctx context.Context, r Rule) (Rule, error) {
	out, err := s.cfg.Store.Create(ctx, r)
	return s.reloaded(ctx, out, err)
}

// Update replaces rule r.ID of r.Org, its Disabled flag included, and
// makes the change take effect.
func (s *Service) Update(ctx context.Context, r Rule) (Rule, error) {
	old, err := s.cfg.Store.Get(ctx, r.Org, r.ID)
	if err != nil {
		return Rule{}, err
	}
	out, err := s.cfg.Store.Update(ctx, r)
	if err == nil && old.Disabled != r.Disabled {
		out, err = s.cfg.Store.setDisabled(ctx, r.Org, r.ID, r.Disabled)
	}
	return s.reloaded(ctx, out, err)
}

// SetDisabled stops (true) or resumes a rule.
func (s *Service) SetDisabled(ctx context.Context, org, id string, disabled bool) (Rule, error) {
	out, err := s.cfg.Store.setDisabled(ctx, org, id, disabled)
	return s.reloaded(ctx, out, err)
}

// Delete removes a rule; its open alerts stay as they are.
func (s *Service) Delete(ctx context.Context, org, id string) error {
	err := s.cfg.Store.Delete(ctx, org, id)
	_, err = s.reloaded(ctx, Rule{}, err)
	return err
}

func (s *Service) reloaded(ctx context.Context, r Rule, err error) (Rule, error) {
	if err == nil && s.cfg.Engine != nil {
		if rerr := s.cfg.Engine.Reload(ctx); rerr != nil {
			s.cfg.Logger.Warn("rule saved; the engine picks it up at its next poll", "err", rerr)
		}
	}
	return r, err
}

// DryRun replays stored history between from and to (at most MaxDryRun)
// through r and says how often it would have fired.
func (s *Service) DryRun(ctx context.Context, r Rule, from, to time.Time) (DryRunResult, error) {
	if to.Sub(from) > MaxDryRun {
		return DryRunResult{}, fmt.Errorf("%w: a dry run covers at most 31 days; narrow from and to", ErrInvalid)
	}
	if s.cfg.History == nil {
		return DryRunResult{}, fmt.Errorf("%w: this hub keeps no history to replay", ErrInvalid)
	}
	o := DryRunOptions{History: s.cfg.History, Directory: s.cfg.Directory, From: from, To: to}
	if s.cfg.ScoreField != "" {
		sc := &storedScore{field: s.cfg.ScoreField}
		o.Anomaly, o.Before = sc, sc.take
	}
	return DryRun(ctx, r, o)
}

// storedScore is anomaly() in a dry run: the score stored with the
// replayed update.
type storedScore struct {
	field string
	v     float64
	ok    bool
}

func (s *storedScore) take(_ context.Context, m *bus.Telemetry) { s.v, s.ok = m.Num[s.field] }

func (s *storedScore) AnomalyScore(_, _, field string) (float64, bool) {
	if field != "" {
		return 0, false
	}
	return s.v, s.ok
}
