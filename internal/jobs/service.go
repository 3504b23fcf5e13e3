package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"
	"log/slog"
	"sync"
	"time"
)

// Config configures a Service. DB, Driver and Exec are required.
type Config struct {
	DB *sql.DB
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver string
	Exec   Executor
	Logger *slog.Logger
	Now    func() time.Time
}

// Service creates, runs, persists and cancels jobs.
type Service struct {
	db   *sql.DB
	d    dialect
	exec Executor
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	base    context.Context // set by Run; nil before and after
	runners map[string]*runner
	wg      sync.WaitGroup
}

// maxInFlight bounds a job's device calls at once.
const maxInFlight = 64

// catchUp is how far behind its schedule a job may start devices faster
// than its rate to catch up.
const catchUp = 250 * time.Millisecond

// grain is how long a device may wait past its time in the schedule so
// that it starts together with the next ones.
const grain = 50 * time.Millisecond

type runner struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

type dialect struct{ dollar bool }

func (d dialect) q(s string) string {
	return sqldb.Rebind(d.dollar, s)
}

// New creates the tables if needed. Jobs run once Run is called.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Exec == nil {
		return nil, fmt.Errorf("%w: a database and an executor are required", ErrConfig)
	}
	var d dialect
	switch cfg.Driver {
	case "sqlite":
	case "pgx":
		d.dollar = true
	default:
		return nil, fmt.Errorf("%w: database driver %q is not supported; use sqlite or pgx", ErrConfig, cfg.Driver)
	}
	s := &Service{db: cfg.DB, d: d, exec: cfg.Exec, log: cfg.Logger, now: cfg.Now, runners: map[string]*runner{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS jobs_jobs (
			id TEXT PRIMARY KEY,
			org TEXT NOT NULL,
			spec TEXT NOT NULL,
			state TEXT NOT NULL,
			created_ms BIGINT NOT NULL,
			ended_ms BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS jobs_jobs_org ON jobs_jobs (org, created_ms)`,
		`CREATE TABLE IF NOT EXISTS jobs_devices (
			job TEXT NOT NULL,
			seq INTEGER NOT NULL,
			device TEXT NOT NULL,
			state TEXT NOT NULL,
			status INTEGER NOT NULL,
			response TEXT NOT NULL,
			error TEXT NOT NULL,
			at_ms BIGINT NOT NULL,
			PRIMARY KEY (job, device))`,
		`CREATE INDEX IF NOT EXISTS jobs_devices_seq ON jobs_devices (job, state, seq)`,
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("create job tables: %w", err)
		}
	}
	return s, nil
}

// Create selects the devices, persists the job and starts it (at once when
// Run is running, else when Run starts).
func (s *Service) Create(ctx context.Context, org string, sp Spec) (Job, error) {
	sp, err := sp.normalize()
	if err != nil {
		return Job{}, err
	}
	devices, err := s.exec.Devices(ctx, org, sp.Query)
	if err != nil {
		return Job{}, fmt.Errorf("select the job's devices: %w", err)
	}
	if len(devices) > MaxDevices {
		return Job{}, fmt.Errorf("%w: the query selects %d devices; a job may cover at most %d: narrow it by site, template or tags", ErrInvalid, len(devices), MaxDevices)
	}
	spec, err := json.Marshal(sp)
	if err != nil {
		return Job{}, fmt.Errorf("encode the job: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	j := Job{ID: newID(), Org: org, Spec: sp, State: StateRunning, CreatedAt: now}
	if len(devices) == 0 {
		j.State, j.EndedAt = StateCompleted, &now
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Job{}, fmt.Errorf("store the job: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ended := int64(0)
	if j.EndedAt != nil {
		ended = now.UnixMilli()
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO jobs_jobs (id, org, spec, state, created_ms, ended_ms) VALUES (?, ?, ?, ?, ?, ?)`),
		j.ID, org, string(spec), j.State, now.UnixMilli(), ended); err != nil {
		return Job{}, fmt.Errorf("store the job: %w", err)
	}
	stmt, err := tx.PrepareContext(ctx, s.d.q(`INSERT INTO jobs_devices (job, seq, device, state, status, response, error, at_ms) VALUES (?, ?, ?, ?, 0, '', '', 0)`))
	if err != nil {
		return Job{}, fmt.Errorf("store the job's devices: %w", err)
	}
	defer stmt.Close()
	for i, d := range devices {
		if _, err := stmt.ExecContext(ctx, j.ID, i, d, DevicePending); err != nil {
			return Job{}, fmt.Errorf("store the job's devices: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Job{}, fmt.Errorf("store the job: %w", err)
	}
	j.Progress = Progress{Total: len(devices), Pending: len(devices)}
	if j.State == StateRunning {
		s.start(j)
	}
	return j, nil
}

// start runs a job in the background if Run is running and it is not
// running already.
func (s *Service) start(j Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil || s.runners[j.ID] != nil {
		return
	}
	ctx, cancel := context.WithCancelCause(s.base)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	s.runners[j.ID] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		defer cancel(nil)
		s.run(ctx, j)
		s.mu.Lock()
		delete(s.runners, j.ID)
		s.mu.Unlock()
	}()
}

// Run resumes the jobs that were running and runs new ones until ctx ends;
// then it waits for the runners to stop. Devices a stopped runner did not
// reach stay pending for the next start.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	s.base = ctx
	s.mu.Unlock()
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT id, org, spec, created_ms FROM jobs_jobs WHERE state = ? ORDER BY created_ms`), StateRunning)
	if err != nil {
		s.stop()
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("find running jobs to resume: %w", err)
	}
	var resume []Job
	for rows.Next() {
		var j Job
		var spec string
		var created int64
		if err := rows.Scan(&j.ID, &j.Org, &spec, &created); err != nil {
			rows.Close()
			s.stop()
			return fmt.Errorf("find running jobs to resume: %w", err)
		}
		if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
			s.log.Error("a stored job is damaged and is not resumed", "job", j.ID, "error", err)
			continue
		}
		j.State, j.CreatedAt = StateRunning, time.UnixMilli(created).UTC()
		resume = append(resume, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil && ctx.Err() == nil {
		s.stop()
		return fmt.Errorf("find running jobs to resume: %w", err)
	}
	for _, j := range resume {
		s.log.Info("resuming job", "job", j.ID, "org", j.Org, "type", j.Type)
		s.start(j)
	}
	<-ctx.Done()
	s.stop()
	return nil
}

func (s *Service) stop() {
	s.mu.Lock()
	s.base = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// run works through a job's pending devices at its rate.
func (s *Service) run(ctx context.Context, j Job) {
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT device FROM jobs_devices WHERE job = ? AND state = ? ORDER BY seq`), j.ID, DevicePending)
	if err != nil {
		s.log.Error("job cannot read its devices; it resumes at the next start", "job", j.ID, "error", err)
		return
	}
	var devices []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			s.log.Error("job cannot read its devices; it resumes at the next start", "job", j.ID, "error", err)
			return
		}
		devices = append(devices, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.log.Error("job cannot read its devices; it resumes at the next start", "job", j.ID, "error", err)
		return
	}
	interval := time.Duration(float64(time.Second) / j.Rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Devices are started at the job's rate; a slow device (a method
	// waiting for its timeout) does not hold up the next ones, up to
	// maxInFlight calls at once.
	sem := make(chan struct{}, maxInFlight)
	var inflight sync.WaitGroup
	results := make(chan DeviceResult, maxInFlight)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		s.recordLoop(context.WithoutCancel(ctx), j.ID, results)
	}()
	// finish waits for the calls in flight and their results' storage.
	finish := sync.OnceFunc(func() {
		inflight.Wait()
		close(results)
		<-recorded
	})
	defer finish()
	// A device is never started before its time in the schedule, but the
	// devices due within one grain start together: their twin writes then
	// share a database commit (twin.Service batches concurrent writes),
	// where one commit each cost most of a desired job's CPU.
	lag := max(grain-interval, 0)
	for _, dev := range devices {
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait + lag)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		next = next.Add(interval)
		// Waking late (a busy machine) is made up within catchUp, so the
		// job keeps its rate; a longer stall does not earn a burst.
		if behind := time.Now().Add(-max(interval, catchUp)); next.Before(behind) {
			next = behind
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			res := s.do(ctx, j, dev)
			if ctx.Err() != nil {
				return // cancelled or shutting down: the device stays pending
			}
			results <- res
		}()
	}
	finish()
	if ctx.Err() != nil {
		return
	}
	if _, err := s.db.ExecContext(context.WithoutCancel(ctx), s.d.q(`UPDATE jobs_jobs SET state = ?, ended_ms = ? WHERE id = ? AND state = ?`),
		StateCompleted, s.now().UnixMilli(), j.ID, StateRunning); err != nil {
		s.log.Error("job completion not stored", "job", j.ID, "error", err)
	}
}

func (s *Service) do(ctx context.Context, j Job, dev string) DeviceResult {
	res := DeviceResult{Device: dev, State: DeviceSucceeded}
	switch j.Type {
	case TypeDesired:
		if err := s.exec.Desired(ctx, j.Org, dev, j.Desired); err != nil {
			res.State, res.Error = DeviceFailed, err.Error()
		}
	case TypeMethod:
		st, body, err := s.exec.Method(ctx, j.Org, dev, *j.Method)
		res.Status = st
		if len(body) > 0 {
			if json.Valid(body) {
				res.Response = json.RawMessage(body)
			} else {
				b, _ := json.Marshal(string(body))
				res.Response = b
			}
		}
		switch {
		case err != nil:
			res.State, res.Error = DeviceFailed, err.Error()
		case st < 200 || st > 299:
			res.State, res.Error = DeviceFailed, fmt.Sprintf("the device answered with status %d", st)
		}
	}
	return res
}

// recordLoop stores results as they come, many in one transaction: one
// commit (and, on SQLite, one fsync) per batch rather than per device, so a
// fast job does not crowd out the database's other writers. A result not
// yet stored when the hub stops leaves its device pending, to be done
// again at the next start.
func (s *Service) recordLoop(ctx context.Context, job string, in <-chan DeviceResult) {
	const maxBatch, maxWait = 256, 50 * time.Millisecond
	var batch []DeviceResult
	tick := time.NewTicker(maxWait)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-in:
			if !ok {
				s.recordBatch(ctx, job, batch)
				return
			}
			if batch = append(batch, r); len(batch) >= maxBatch {
				s.recordBatch(ctx, job, batch)
				batch = batch[:0]
			}
		case <-tick.C:
			s.recordBatch(ctx, job, batch)
			batch = batch[:0]
		}
	}
}

// recordBatch stores results in one transaction, or one by one when that
// fails.
func (s *Service) recordBatch(ctx context.Context, job string, rs []DeviceResult) {
	if len(rs) == 0 {
		return
	}
	err := func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st, err := tx.PrepareContext(ctx, s.d.q(recordSQL))
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rs {
			if _, err := st.ExecContext(ctx, r.State, r.Status, string(r.Response), r.Error, s.now().UnixMilli(), job, r.Device, DevicePending); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err == nil {
		return
	}
	for _, r := range rs {
		if err := s.record(ctx, job, r); err != nil {
			s.log.Error("job result not stored; the device is retried at the next start", "job", job, "device", r.Device, "error", err)
		}
	}
}

const recordSQL = `UPDATE jobs_devices SET state = ?, status = ?, response = ?, error = ?, at_ms = ?
		WHERE job = ? AND device = ? AND state = ?`

func (s *Service) record(ctx context.Context, job string, r DeviceResult) error {
	_, err := s.db.ExecContext(ctx, s.d.q(recordSQL),
		r.State, r.Status, string(r.Response), r.Error, s.now().UnixMilli(), job, r.Device, DevicePending)
	return err
}

// Get returns a job of org with its progress.
func (s *Service) Get(ctx context.Context, org, id string) (Job, error) {
	var j Job
	var spec string
	var created, ended int64
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT id, org, spec, state, created_ms, ended_ms FROM jobs_jobs WHERE id = ? AND org = ?`), id, org).
		Scan(&j.ID, &j.Org, &spec, &j.State, &created, &ended)
	if errors.Is(err, sql.ErrNoRows) {
		return Job{}, fmt.Errorf("%w: no job %q in this organization", ErrNotFound, id)
	}
	if err != nil {
		return Job{}, fmt.Errorf("read job %s: %w", id, err)
	}
	if err := fill(&j, spec, created, ended); err != nil {
		return Job{}, err
	}
	if j.Progress, err = s.progress(ctx, j.ID); err != nil {
		return Job{}, err
	}
	return j, nil
}

func fill(j *Job, spec string, created, ended int64) error {
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return fmt.Errorf("read job %s: stored document is damaged: %w", j.ID, err)
	}
	j.CreatedAt = time.UnixMilli(created).UTC()
	if ended > 0 {
		t := time.UnixMilli(ended).UTC()
		j.EndedAt = &t
	}
	return nil
}

func (s *Service) progress(ctx context.Context, id string) (Progress, error) {
	var p Progress
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT state, COUNT(*) FROM jobs_devices WHERE job = ? GROUP BY state`), id)
	if err != nil {
		return p, fmt.Errorf("read the progress of job %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return p, fmt.Errorf("read the progress of job %s: %w", id, err)
		}
		p.Total += n
		switch st {
		case DevicePending:
			p.Pending = n
		case DeviceSucceeded:
			p.Succeeded = n
		case DeviceFailed:
			p.Failed = n
		case DeviceCancelled:
			p.Cancelled = n
		}
	}
	return p, rows.Err()
}

// List returns org's jobs, newest first (at most 200).
func (s *Service) List(ctx context.Context, org string) ([]Job, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT id, org, spec, state, created_ms, ended_ms FROM jobs_jobs WHERE org = ?
		ORDER BY created_ms DESC, id LIMIT 200`), org)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := []Job{}
	for rows.Next() {
		var j Job
		var spec string
		var created, ended int64
		if err := rows.Scan(&j.ID, &j.Org, &spec, &j.State, &created, &ended); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		if err := fill(&j, spec, created, ended); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	for i := range out {
		p, err := s.progress(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Progress = p
	}
	return out, nil
}

// Devices returns a job's per-device results in the order they were
// selected; state filters when not empty.
func (s *Service) Devices(ctx context.Context, org, id, state string) ([]DeviceResult, error) {
	if _, err := s.Get(ctx, org, id); err != nil {
		return nil, err
	}
	q := `SELECT device, state, status, response, error, at_ms FROM jobs_devices WHERE job = ?`
	args := []any{id}
	if state != "" {
		q += ` AND state = ?`
		args = append(args, state)
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(q+` ORDER BY seq`), args...)
	if err != nil {
		return nil, fmt.Errorf("read the devices of job %s: %w", id, err)
	}
	defer rows.Close()
	out := []DeviceResult{}
	for rows.Next() {
		var r DeviceResult
		var resp string
		var at int64
		if err := rows.Scan(&r.Device, &r.State, &r.Status, &resp, &r.Error, &at); err != nil {
			return nil, fmt.Errorf("read the devices of job %s: %w", id, err)
		}
		if resp != "" {
			r.Response = json.RawMessage(resp)
		}
		if at > 0 {
			t := time.UnixMilli(at).UTC()
			r.At = &t
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Cancel stops a running job: devices not yet reached end cancelled.
func (s *Service) Cancel(ctx context.Context, org, id string) (Job, error) {
	j, err := s.Get(ctx, org, id)
	if err != nil {
		return Job{}, err
	}
	if j.State != StateRunning {
		return Job{}, fmt.Errorf("%w: job %s is %s", ErrFinished, id, j.State)
	}
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE jobs_jobs SET state = ?, ended_ms = ? WHERE id = ? AND state = ?`),
		StateCancelled, s.now().UnixMilli(), id, StateRunning)
	if err != nil {
		return Job{}, fmt.Errorf("cancel job %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return Job{}, fmt.Errorf("%w: job %s finished before it could be cancelled", ErrFinished, id)
	}
	s.mu.Lock()
	r := s.runners[id]
	s.mu.Unlock()
	if r != nil {
		r.cancel(errCancelled)
		select {
		case <-r.done:
		case <-ctx.Done():
			return Job{}, ctx.Err()
		}
	}
	if _, err := s.db.ExecContext(ctx, s.d.q(`UPDATE jobs_devices SET state = ?, at_ms = ? WHERE job = ? AND state = ?`),
		DeviceCancelled, s.now().UnixMilli(), id, DevicePending); err != nil {
		return Job{}, fmt.Errorf("cancel job %s: %w", id, err)
	}
	return s.Get(ctx, org, id)
}
