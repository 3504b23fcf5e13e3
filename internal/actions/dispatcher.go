package actions

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/egress"
)

// Source gives a rule's actions; *rules.Store implements it. An error
// wrapping a not-found error of the source means the rule is gone: nothing
// runs.
type Source interface {
	RuleActions(ctx context.Context, org, rule string) ([]Spec, error)
}

// Recorder records an action's outcome on its alert; *alerts.Service
// implements it.
type Recorder interface {
	RecordAction(ctx context.Context, org, id string, o alerts.ActionOutcome) error
}

// Devices reaches devices; the lead implements it over the bus subjects for
// methods, twin patches and cloud-to-device messages. Wrap ErrPermanent in
// errors that retrying cannot fix (unknown device, unknown method).
type Devices interface {
	// InvokeMethod calls a direct method and returns the device's status.
	InvokeMethod(ctx context.Context, org, device, method string, payload []byte, timeout time.Duration) (status int, response []byte, err error)
	PatchDesired(ctx context.Context, org, device string, patch []byte) error
	SendC2D(ctx context.Context, org, device string, payload []byte) error
}

// BusPublisher publishes to a NATS subject for integrators.
type BusPublisher interface {
	Publish(ctx context.Context, subject string, data []byte) error
}

// SubjectPolicy says whether an organization may publish on a subject: an
// error (naming where it may publish) refuses it. bus.Subjects implements
// it.
type SubjectPolicy interface {
	CheckOrgSubject(org, subject string) error
}

// Config builds a Dispatcher.
type Config struct {
	DB *sql.DB
	// Driver is the database/sql driver name: "sqlite" or "pgx".
	Driver   string
	Source   Source   // required for PublishAlert
	Recorder Recorder // optional: outcomes onto alerts
	Devices  Devices  // optional: device actions fail permanently without it
	Bus      BusPublisher
	// Subjects walls bus actions into their organization's subject space;
	// required with Bus. Every publication is checked against it.
	Subjects SubjectPolicy
	// Egress is the policy every webhook connection is checked against;
	// nil refuses internal addresses and allows the rest.
	Egress *egress.Policy
	Logger *slog.Logger
	Now    func() time.Time

	Workers     int           // parallel deliveries; default 4
	MaxAttempts int           // attempts before the dead letters; default 8
	BaseBackoff time.Duration // first retry delay, doubled each time; default 1s
	MaxBackoff  time.Duration // default 5m
	PollEvery   time.Duration // outbox poll when idle; default 1s
	Lease       time.Duration // a claimed delivery is retried after this if its worker vanished; default 2m
	Retention   time.Duration // delivered rows are kept this long; default 7 days
}

// Dispatcher runs the actions of alerts from a persistent outbox (table
// actions_outbox): each delivery is stored before it is attempted, is
// attempted until it succeeds or MaxAttempts is reached (then it is a dead
// letter), and keeps one key across attempts for the receiver to dedupe.
type Dispatcher struct {
	cfg    Config
	db     *sql.DB
	pg     bool
	log    *slog.Logger
	now    func() time.Time
	client *http.Client
	wake   chan struct{}

	mu        sync.Mutex
	lastPrune time.Time
}

// Delivery is one action run for one alert event.
type Delivery struct {
	ID        string           `json:"id"` // also the Idempotency-Key
	Org       string           `json:"org"`
	Alert     string           `json:"alert"`
	Rule      string           `json:"rule"`
	Event     alerts.EventType `json:"event"`
	Action    string           `json:"action"` // a label such as "webhook https://host/path"
	Type      Type             `json:"type"`
	State     string           `json:"state"` // pending, done, dead
	Attempts  int              `json:"attempts"`
	LastError string           `json:"lastError,omitempty"`
	NextAt    time.Time        `json:"nextAt"`
	CreatedAt time.Time        `json:"createdAt"`
	UpdatedAt time.Time        `json:"updatedAt"`
}

// Delivery states.
const (
	StatePending = "pending"
	StateDone    = "done"
	StateDead    = "dead"
)

// New creates the actions_ tables if they do not exist.
func New(ctx context.Context, cfg Config) (*Dispatcher, error) {
	if cfg.DB == nil {
		return nil, errors.New("actions: a database is required")
	}
	d := &Dispatcher{cfg: cfg, db: cfg.DB, log: cfg.Logger, now: cfg.Now, wake: make(chan struct{}, 1)}
	switch cfg.Driver {
	case "sqlite":
	case "pgx", "postgres":
		d.pg = true
	default:
		return nil, fmt.Errorf("actions: database driver %q is not supported; use sqlite or pgx", cfg.Driver)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	def := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&d.cfg.BaseBackoff, time.Second)
	def(&d.cfg.MaxBackoff, 5*time.Minute)
	def(&d.cfg.PollEvery, time.Second)
	def(&d.cfg.Lease, 2*time.Minute)
	def(&d.cfg.Retention, 7*24*time.Hour)
	if d.cfg.Workers <= 0 {
		d.cfg.Workers = 4
	}
	if d.cfg.MaxAttempts <= 0 {
		d.cfg.MaxAttempts = 8
	}
	if cfg.Bus != nil && cfg.Subjects == nil {
		return nil, errors.New("actions: bus actions need a subject policy (Config.Subjects)")
	}
	d.client = cfg.Egress.Client()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS actions_outbox (
			id TEXT PRIMARY KEY,
			org TEXT NOT NULL,
			alert_id TEXT NOT NULL,
			rule TEXT NOT NULL,
			event TEXT NOT NULL,
			idx INTEGER NOT NULL,
			spec TEXT NOT NULL,
			body TEXT NOT NULL,
			state TEXT NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0,
			next_at BIGINT NOT NULL,
			lease_until BIGINT NOT NULL DEFAULT 0,
			last_error TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS actions_outbox_due ON actions_outbox (state, next_at)`,
		`CREATE INDEX IF NOT EXISTS actions_outbox_org ON actions_outbox (org, state, id)`,
	}
	for _, q := range stmts {
		if _, err := d.db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("actions: create tables: %w", err)
		}
	}
	return d, nil
}

func (d *Dispatcher) q(query string) string {
	return sqldb.Rebind(d.pg, query)
}

// PublishAlert implements alerts.Publisher: it stores the deliveries of
// the rule's actions that run for this event. A repeated or re-fired event
// adds nothing (deliveries are keyed by alert, event and action).
func (d *Dispatcher) PublishAlert(ctx context.Context, ev alerts.AlertEvent) error {
	switch ev.Type {
	case alerts.EventRefired:
		// A re-fire of an open alert: make sure its opening ran (it may
		// have been cut short); the key makes this a no-op otherwise.
		ev.Type = alerts.EventOpened
	case alerts.EventOpened, alerts.EventAcknowledged, alerts.EventResolved:
	default:
		return nil
	}
	if d.cfg.Source == nil {
		return errors.New("actions: no rule source configured")
	}
	specs, err := d.cfg.Source.RuleActions(ctx, ev.Alert.Org, ev.Alert.Rule)
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return nil // the rule was deleted; its alerts run nothing
		}
		return fmt.Errorf("actions: actions of rule %s: %w", ev.Alert.Rule, err)
	}
	_, err = d.Enqueue(ctx, ev, specs)
	return err
}

// payload is the JSON body of webhooks and bus messages.
type payload struct {
	Delivery string           `json:"delivery"`
	Event    alerts.EventType `json:"event"`
	At       time.Time        `json:"at"`
	Alert    alerts.Alert     `json:"alert"`
}

// Enqueue stores the deliveries of specs that run for ev and returns how
// many were new.
func (d *Dispatcher) Enqueue(ctx context.Context, ev alerts.AlertEvent, specs []Spec) (int, error) {
	now := d.now()
	added := 0
	for i, s := range specs {
		if !s.Runs(ev.Type) {
			continue
		}
		if err := s.Validate(); err != nil {
			d.log.Warn("actions: skipping an invalid action", "rule", ev.Alert.Rule, "action", i+1, "err", err)
			continue
		}
		id := fmt.Sprintf("%s:%s:%d", ev.Alert.ID, ev.Type, i)
		a := ev.Alert
		a.History, a.Notes = nil, nil
		body, err := json.Marshal(payload{Delivery: id, Event: ev.Type, At: ev.At.UTC(), Alert: a})
		if err != nil {
			return added, fmt.Errorf("actions: encode delivery: %w", err)
		}
		spec, err := json.Marshal(s)
		if err != nil {
			return added, fmt.Errorf("actions: encode action: %w", err)
		}
		res, err := d.db.ExecContext(ctx, d.q(`INSERT INTO actions_outbox
			(id, org, alert_id, rule, event, idx, spec, body, state, attempts, next_at, lease_until, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?, ?) ON CONFLICT (id) DO NOTHING`),
			id, a.Org, a.ID, a.Rule, string(ev.Type), i, string(spec), string(body), now.UnixMilli(), now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return added, fmt.Errorf("actions: store delivery %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			added++
		}
	}
	if added > 0 {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	return added, nil
}

type row struct {
	id, org, alert, rule, event string
	spec                        Spec
	body                        []byte
	attempts                    int
}

// Run delivers due deliveries until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-timer.C:
		}
		for {
			n, err := d.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("actions: outbox", "err", err)
			}
			if n < d.cfg.Workers || err != nil || ctx.Err() != nil {
				break
			}
		}
		d.prune(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d.cfg.PollEvery)
	}
}

// RunOnce claims up to Workers due deliveries, attempts them in parallel
// and returns how many it attempted.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	now := d.now().UnixMilli()
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT id FROM actions_outbox WHERE state = 'pending' AND next_at <= ? AND lease_until <= ?
		ORDER BY next_at LIMIT ?`), now, now, d.cfg.Workers)
	if err != nil {
		return 0, fmt.Errorf("actions: find due deliveries: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("actions: find due deliveries: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	var claimed []row
	for _, id := range ids {
		r, ok, err := d.claim(ctx, id, now)
		if err != nil {
			return 0, err
		}
		if ok {
			claimed = append(claimed, r)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range claimed {
		g.Go(func() error {
			d.attempt(gctx, r)
			return nil
		})
	}
	_ = g.Wait()
	return len(claimed), nil
}

// claim leases a delivery so no other worker or process attempts it.
func (d *Dispatcher) claim(ctx context.Context, id string, now int64) (row, bool, error) {
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE actions_outbox SET lease_until = ? WHERE id = ? AND state = 'pending' AND lease_until <= ?`),
		now+d.cfg.Lease.Milliseconds(), id, now)
	if err != nil {
		return row{}, false, fmt.Errorf("actions: claim %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return row{}, false, nil
	}
	var r row
	var spec, body string
	err = d.db.QueryRowContext(ctx, d.q(`SELECT id, org, alert_id, rule, event, spec, body, attempts FROM actions_outbox WHERE id = ?`), id).
		Scan(&r.id, &r.org, &r.alert, &r.rule, &r.event, &spec, &body, &r.attempts)
	if err != nil {
		return row{}, false, fmt.Errorf("actions: load %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(spec), &r.spec); err != nil {
		return row{}, false, fmt.Errorf("actions: decode %s: %w", id, err)
	}
	r.body = []byte(body)
	return r, true, nil
}

func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.cfg.BaseBackoff
	for i := 1; i < attempt && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	// Up to 20% jitter spreads retries of many deliveries to one receiver.
	return b + time.Duration(rand.Int64N(int64(b)/5+1))
}

func (d *Dispatcher) attempt(ctx context.Context, r row) {
	n := r.attempts + 1
	detail, err := d.deliver(ctx, r, n)
	now := d.now()
	state, nextAt, lastErr := StateDone, now.UnixMilli(), ""
	if err != nil {
		lastErr = err.Error()
		state, nextAt = StatePending, now.Add(d.backoff(n)).UnixMilli()
		if errors.Is(err, ErrPermanent) || n >= d.cfg.MaxAttempts {
			state = StateDead
		}
	}
	// The outcome is stored with a fresh context: a delivery that happened
	// must be recorded even while shutting down.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, uerr := d.db.ExecContext(sctx, d.q(`UPDATE actions_outbox SET state = ?, attempts = ?, next_at = ?, lease_until = 0, last_error = ?, updated_at = ?
		WHERE id = ?`), state, n, nextAt, lastErr, now.UnixMilli(), r.id)
	if uerr != nil {
		d.log.Error("actions: cannot store a delivery outcome; it will be attempted again", "delivery", r.id, "err", uerr)
		return
	}
	switch state {
	case StatePending:
		d.log.Info("actions: delivery failed; will retry", "delivery", r.id, "action", r.spec.Label(), "attempt", n, "err", err)
		return
	case StateDead:
		d.log.Warn("actions: delivery failed for good; see the dead letters", "delivery", r.id, "action", r.spec.Label(), "attempts", n, "err", err)
	}
	if d.cfg.Recorder != nil {
		o := alerts.ActionOutcome{Action: r.spec.Label(), Delivery: r.id, OK: state == StateDone, Attempts: n, Detail: detail, At: now}
		if err != nil {
			o.Detail = err.Error()
		}
		if rerr := d.cfg.Recorder.RecordAction(sctx, r.org, r.alert, o); rerr != nil {
			d.log.Warn("actions: cannot record the outcome on the alert", "alert", r.alert, "delivery", r.id, "err", rerr)
		}
	}
}

// deliver performs one attempt and returns a short detail on success.
func (d *Dispatcher) deliver(ctx context.Context, r row, attempt int) (string, error) {
	s := r.spec
	switch s.Type {
	case TypeWebhook:
		return d.webhook(ctx, r, attempt)
	case TypeDevice:
		if d.cfg.Devices == nil {
			return "", fmt.Errorf("%w: device actions are not available on this hub", ErrPermanent)
		}
		var a struct {
			Alert alerts.Alert `json:"alert"`
		}
		if err := json.Unmarshal(r.body, &a); err != nil {
			return "", fmt.Errorf("%w: decode delivery: %v", ErrPermanent, err)
		}
		target := s.Device
		if target == "" {
			target = a.Alert.Device
		}
		cctx, cancel := context.WithTimeout(ctx, s.timeout())
		defer cancel()
		switch s.Op {
		case OpMethod:
			status, _, err := d.cfg.Devices.InvokeMethod(cctx, r.org, target, s.Method, s.Payload, s.timeout())
			if err != nil {
				return "", err
			}
			if status >= 400 && status < 500 {
				return "", fmt.Errorf("%w: method %s on %s answered %d", ErrPermanent, s.Method, target, status)
			}
			if status >= 500 {
				return "", fmt.Errorf("method %s on %s answered %d", s.Method, target, status)
			}
			return fmt.Sprintf("method %s on %s answered %d", s.Method, target, status), nil
		case OpDesired:
			return "desired properties of " + target + " patched", d.cfg.Devices.PatchDesired(cctx, r.org, target, s.Payload)
		case OpC2D:
			return "message sent to " + target, d.cfg.Devices.SendC2D(cctx, r.org, target, s.Payload)
		}
		return "", fmt.Errorf("%w: unknown device op %q", ErrPermanent, s.Op)
	case TypeBus:
		if d.cfg.Bus == nil {
			return "", fmt.Errorf("%w: bus actions are not available on this hub", ErrPermanent)
		}
		var a struct {
			Alert alerts.Alert `json:"alert"`
		}
		_ = json.Unmarshal(r.body, &a)
		subject := expandSubject(s.Subject, a.Alert, r.event)
		// Checked again here, not only when the rule was saved: a rule
		// stored before the wall existed, or written to the database by
		// other means, must not reach past its organization either.
		if err := d.cfg.Subjects.CheckOrgSubject(r.org, subject); err != nil {
			return "", fmt.Errorf("%w: bus action: %w", ErrPermanent, err)
		}
		cctx, cancel := context.WithTimeout(ctx, s.timeout())
		defer cancel()
		if err := d.cfg.Bus.Publish(cctx, subject, r.body); err != nil {
			return "", err
		}
		return "published on " + subject, nil
	}
	return "", fmt.Errorf("%w: unknown action type %q", ErrPermanent, s.Type)
}

// token makes a value safe as one NATS subject token.
func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' {
			return '_'
		}
		return r
	}, s)
}

func expandSubject(subject string, a alerts.Alert, event string) string {
	return strings.NewReplacer("{org}", token(a.Org), "{device}", token(a.Device), "{rule}", token(a.Rule),
		"{severity}", token(string(a.Severity)), "{event}", token(event)).Replace(subject)
}

// Sign returns the X-Shopfloor-Signature value for body: "sha256=" and the
// hex HMAC-SHA256 of the body keyed with secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (d *Dispatcher) webhook(ctx context.Context, r row, attempt int) (string, error) {
	s := r.spec
	cctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, s.URL, bytes.NewReader(r.body))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	for k, v := range s.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Shopfloor-Webhook/1")
	req.Header.Set("Idempotency-Key", r.id)
	req.Header.Set("X-Shopfloor-Delivery", r.id)
	req.Header.Set("X-Shopfloor-Event", r.event)
	req.Header.Set("X-Shopfloor-Attempt", strconv.Itoa(attempt))
	if s.Secret != "" {
		req.Header.Set("X-Shopfloor-Signature", Sign(s.Secret, r.body))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		// The alert's history and the dead letters show this text to the
		// tenant: Describe keeps resolved addresses and ports out of it.
		if errors.Is(err, egress.ErrNotAllowed) {
			return "", fmt.Errorf("%w: POST %s: %w; use a public address, or ask the hub's operator to allow this one", ErrPermanent, req.URL.Redacted(), egress.Describe(err))
		}
		return "", fmt.Errorf("POST %s: %w", req.URL.Redacted(), egress.Describe(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return "HTTP " + strconv.Itoa(resp.StatusCode), nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "", fmt.Errorf("POST %s answered %s", req.URL.Redacted(), resp.Status)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return "", fmt.Errorf("%w: POST %s answered %s (redirect to %q); configure the final address", ErrPermanent, req.URL.Redacted(), resp.Status, resp.Header.Get("Location"))
	default:
		return "", fmt.Errorf("%w: POST %s answered %s; fix the receiver or the action", ErrPermanent, req.URL.Redacted(), resp.Status)
	}
}

func (d *Dispatcher) prune(ctx context.Context) {
	d.mu.Lock()
	due := d.now().Sub(d.lastPrune) > time.Hour
	if due {
		d.lastPrune = d.now()
	}
	d.mu.Unlock()
	if !due {
		return
	}
	cut := d.now().Add(-d.cfg.Retention).UnixMilli()
	if _, err := d.db.ExecContext(ctx, d.q(`DELETE FROM actions_outbox WHERE state = 'done' AND updated_at < ?`), cut); err != nil && ctx.Err() == nil {
		d.log.Warn("actions: prune delivered rows", "err", err)
	}
}

// ListFilter narrows Deliveries.
type ListFilter struct {
	State string // pending, done or dead; "" = all
	Alert string
	Limit int    // default 100, at most 1000
	After string // cursor: the Next of the previous page
}

// DeliveryPage is one page of deliveries.
type DeliveryPage struct {
	Items []Delivery `json:"items"`
	Next  string     `json:"next,omitempty"`
}

// Deliveries lists the deliveries of org; DeadLetters is the dead ones.
func (d *Dispatcher) Deliveries(ctx context.Context, org string, f ListFilter) (DeliveryPage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	where, args := []string{"org = ?", "id > ?"}, []any{org, f.After}
	switch f.State {
	case "":
	case StatePending, StateDone, StateDead:
		where, args = append(where, "state = ?"), append(args, f.State)
	default:
		return DeliveryPage{}, fmt.Errorf("%w: state %q is not known; use pending, done or dead", ErrInvalid, f.State)
	}
	if f.Alert != "" {
		where, args = append(where, "alert_id = ?"), append(args, f.Alert)
	}
	args = append(args, f.Limit+1)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT id, org, alert_id, rule, event, spec, state, attempts, last_error, next_at, created_at, updated_at
		FROM actions_outbox WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return DeliveryPage{}, fmt.Errorf("actions: list deliveries: %w", err)
	}
	defer rows.Close()
	p := DeliveryPage{Items: []Delivery{}}
	for rows.Next() {
		var x Delivery
		var spec string
		var next, created, updated int64
		if err := rows.Scan(&x.ID, &x.Org, &x.Alert, &x.Rule, &x.Event, &spec, &x.State, &x.Attempts, &x.LastError, &next, &created, &updated); err != nil {
			return DeliveryPage{}, fmt.Errorf("actions: list deliveries: %w", err)
		}
		var s Spec
		if json.Unmarshal([]byte(spec), &s) == nil {
			x.Action, x.Type = s.Label(), s.Type
		}
		x.NextAt, x.CreatedAt, x.UpdatedAt = time.UnixMilli(next).UTC(), time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		p.Items = append(p.Items, x)
	}
	if err := rows.Err(); err != nil {
		return DeliveryPage{}, fmt.Errorf("actions: list deliveries: %w", err)
	}
	if len(p.Items) > f.Limit {
		p.Items = p.Items[:f.Limit]
		p.Next = p.Items[f.Limit-1].ID
	}
	return p, nil
}

// DeadLetters lists the deliveries of org that failed after their last
// attempt.
func (d *Dispatcher) DeadLetters(ctx context.Context, org string, limit int, after string) (DeliveryPage, error) {
	return d.Deliveries(ctx, org, ListFilter{State: StateDead, Limit: limit, After: after})
}

// Retry puts a dead letter back in the outbox with fresh attempts; it
// keeps its key, so receivers still recognise it.
func (d *Dispatcher) Retry(ctx context.Context, org, id string) error {
	now := d.now().UnixMilli()
	res, err := d.db.ExecContext(ctx, d.q(`UPDATE actions_outbox SET state = 'pending', attempts = 0, next_at = ?, lease_until = 0, updated_at = ?
		WHERE org = ? AND id = ? AND state = 'dead'`), now, now, org, id)
	if err != nil {
		return fmt.Errorf("actions: retry %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: no dead letter %s", ErrNotFound, id)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}
