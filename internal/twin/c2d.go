package twin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Message states. Pending messages wait for delivery; the others are the
// feedback a sender can read.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateExpired   = "expired"
	StateRejected  = "rejected"
)

// Message is a cloud-to-device message.
type Message struct {
	ID         string            `json:"id"`
	DeviceID   string            `json:"deviceId"`
	Body       []byte            `json:"-"`
	Properties map[string]string `json:"properties"`
	Created    time.Time         `json:"createdAt"`
	Expires    time.Time         `json:"expiresAt"`
	Attempts   int               `json:"deliveryCount"`
	State      string            `json:"state"`
}

// Send queues a message for a device. ttl 0 takes the default; a longer
// ttl than MaxTTL is refused. A full queue refuses the message with
// ErrQueueFull.
func (s *Service) Send(ctx context.Context, org, device string, body []byte, props map[string]string, ttl time.Duration) (Message, error) {
	switch {
	case ttl < 0 || ttl > s.cfg.MaxTTL:
		return Message{}, fmt.Errorf("%w: ttl %s is outside 1s..%s", ErrInvalid, ttl, s.cfg.MaxTTL)
	case ttl == 0:
		ttl = s.cfg.DefaultTTL
	}
	if len(body) > s.cfg.MaxBody {
		return Message{}, fmt.Errorf("%w: the message is %d bytes; the limit is %d bytes", ErrTooLarge, len(body), s.cfg.MaxBody)
	}
	for k := range props {
		if k == "" || k[0] == '$' || len(k) > 128 {
			return Message{}, fmt.Errorf("%w: property name %q: names must be 1 to 128 characters and not start with $", ErrInvalid, clip(k))
		}
	}
	now := s.cfg.Now()
	if _, err := s.expire(ctx, org, device, now); err != nil {
		return Message{}, err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, s.d.q(`SELECT COUNT(*) FROM twin_c2d WHERE org = ? AND device = ? AND state = ?`),
		org, device, StatePending).Scan(&n); err != nil {
		return Message{}, fmt.Errorf("count the queue of %s: %w", device, err)
	}
	if n >= s.cfg.MaxQueue {
		return Message{}, fmt.Errorf("%w: %s already has %d messages waiting (the limit is %d); wait until it takes them or purge its queue", ErrQueueFull, device, n, s.cfg.MaxQueue)
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	if props == nil {
		props = map[string]string{}
	}
	m := Message{ID: hex.EncodeToString(rnd[:]), DeviceID: device, Body: body, Properties: props,
		Created: now, Expires: now.Add(ttl), State: StatePending}
	pj, err := json.Marshal(props)
	if err != nil {
		return Message{}, fmt.Errorf("encode message properties: %w", err)
	}
	if body == nil {
		body = []byte{}
	}
	if _, err := s.db.ExecContext(ctx, s.d.q(`INSERT INTO twin_c2d (id, org, device, seq, body, props, created_ms, expires_ms, attempts, state, state_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`), m.ID, org, device, s.seq(), body, string(pj), now.UnixMilli(), m.Expires.UnixMilli(), StatePending, now.UnixMilli()); err != nil {
		return Message{}, fmt.Errorf("queue a message for %s: %w", device, err)
	}
	return m, nil
}

// seq orders messages in a queue: the wall clock in nanoseconds (not the
// configurable Now), made strictly rising within this process.
func (s *Service) seq() int64 {
	for {
		last, now := s.lastSeq.Load(), time.Now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if s.lastSeq.CompareAndSwap(last, now) {
			return now
		}
	}
}

// expire marks pending messages past their TTL expired.
func (s *Service) expire(ctx context.Context, org, device string, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE twin_c2d SET state = ?, state_ms = ? WHERE org = ? AND device = ? AND state = ? AND expires_ms <= ?`),
		StateExpired, now.UnixMilli(), org, device, StatePending, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("expire messages of %s: %w", device, err)
	}
	return res.RowsAffected()
}

// List returns a device's messages in the given state (pending when
// empty), oldest first; messages past their TTL are expired first.
func (s *Service) List(ctx context.Context, org, device, state string) ([]Message, error) {
	if state == "" {
		state = StatePending
	}
	switch state {
	case StatePending, StateDelivered, StateExpired, StateRejected:
	default:
		return nil, fmt.Errorf("%w: state must be pending, delivered, expired or rejected, not %q", ErrInvalid, clip(state))
	}
	if _, err := s.expire(ctx, org, device, s.cfg.Now()); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT id, body, props, created_ms, expires_ms, attempts, state FROM twin_c2d
		WHERE org = ? AND device = ? AND state = ? ORDER BY seq LIMIT 1000`), org, device, state)
	if err != nil {
		return nil, fmt.Errorf("list messages of %s: %w", device, err)
	}
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		m := Message{DeviceID: device}
		var props string
		var created, expires int64
		if err := rows.Scan(&m.ID, &m.Body, &props, &created, &expires, &m.Attempts, &m.State); err != nil {
			return nil, fmt.Errorf("list messages of %s: %w", device, err)
		}
		if err := json.Unmarshal([]byte(props), &m.Properties); err != nil {
			return nil, fmt.Errorf("list messages of %s: damaged properties: %w", device, err)
		}
		m.Created, m.Expires = time.UnixMilli(created), time.UnixMilli(expires)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Purge drops a device's pending messages and returns how many.
func (s *Service) Purge(ctx context.Context, org, device string) (int, error) {
	res, err := s.db.ExecContext(ctx, s.d.q(`DELETE FROM twin_c2d WHERE org = ? AND device = ? AND state = ?`), org, device, StatePending)
	if err != nil {
		return 0, fmt.Errorf("purge the queue of %s: %w", device, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Attempt counts a delivery of a pending message. It reports false when
// the message must not be sent: it is no longer pending, or it has been
// sent MaxDeliveries times already and is now rejected.
func (s *Service) Attempt(ctx context.Context, org, device, id string) (bool, error) {
	now := s.cfg.Now().UnixMilli()
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE twin_c2d SET attempts = attempts + 1 WHERE id = ? AND org = ? AND device = ? AND state = ? AND attempts < ? AND expires_ms > ?`),
		id, org, device, StatePending, s.cfg.MaxDeliveries, now)
	if err != nil {
		return false, fmt.Errorf("count a delivery to %s: %w", device, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	if _, err := s.db.ExecContext(ctx, s.d.q(`UPDATE twin_c2d SET state = ?, state_ms = ? WHERE id = ? AND org = ? AND device = ? AND state = ? AND attempts >= ?`),
		StateRejected, now, id, org, device, StatePending, s.cfg.MaxDeliveries); err != nil {
		return false, fmt.Errorf("reject a message to %s: %w", device, err)
	}
	return false, nil
}

// Complete records that the device acknowledged a message.
func (s *Service) Complete(ctx context.Context, org, device, id string) error {
	res, err := s.db.ExecContext(ctx, s.d.q(`UPDATE twin_c2d SET state = ?, state_ms = ? WHERE id = ? AND org = ? AND device = ? AND state = ?`),
		StateDelivered, s.cfg.Now().UnixMilli(), id, org, device, StatePending)
	if err != nil {
		return fmt.Errorf("record the delivery of %s to %s: %w", id, device, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: no pending message %s for %s", ErrNotFound, id, device)
	}
	return nil
}

// Forget deletes feedback (delivered, expired, rejected) older than age.
func (s *Service) Forget(ctx context.Context, age time.Duration) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.d.q(`DELETE FROM twin_c2d WHERE state <> ? AND state_ms < ?`),
		StatePending, s.cfg.Now().Add(-age).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("forget old message feedback: %w", err)
	}
	return res.RowsAffected()
}
