package tsdb

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// StringSample is one value of a string (or boolean rendered as string)
// field. Only changes are stored; see AppendStrings.
type StringSample struct {
	Org, Device, Field string
	T                  int64 // unix milliseconds
	Value              string
	// Labels are optional extra labels; a string field is identified by
	// (Org, Device, Field) alone and Labels are not stored.
	Labels labels.Labels
}

type stringKey struct{ org, device, field string }

type deviceKey struct{ org, device string }

type stringLatest struct {
	t     int64 // newest sample seen (the last change after a restart)
	value string
}

func (db *DB) loadStringLatest(ctx context.Context) error {
	err := db.store.LoadStringLatest(ctx, func(e StringEventRecord) error {
		db.setStringLatest(stringKey{e.Org, e.Device, e.Field}, stringLatest{t: e.T, value: e.Value})
		return nil
	})
	if err != nil {
		return fmt.Errorf("open time-series store: %w", err)
	}
	return nil
}

// AppendStrings stores string samples as change events: a sample newer than
// the latest value of its field is stored only when its value differs; a
// late sample is stored when it differs from the event before it. The latest
// value is kept in memory and in the database. Events go straight to the
// database in one transaction, so when AppendStrings returns nil they are
// durable. A repeated (field, timestamp) keeps its first value.
func (db *DB) AppendStrings(ctx context.Context, samples []StringSample) error {
	if err := db.checkOpen(); err != nil {
		return err
	}
	for _, s := range samples {
		if s.Org == "" || s.Device == "" || s.Field == "" {
			return fmt.Errorf("string sample needs org, device and field (got org=%q device=%q field=%q): %w", s.Org, s.Device, s.Field, ErrInvalid)
		}
	}
	db.strMu.Lock()
	defer db.strMu.Unlock()
	overlay := map[stringKey]stringLatest{}
	changed := map[stringKey]bool{}
	var events []StringEventRecord
	for _, s := range samples {
		k := stringKey{s.Org, s.Device, s.Field}
		cur, ok := overlay[k]
		if !ok {
			if l := db.strLatest[deviceKey{k.org, k.device}][k.field]; l != nil {
				cur, ok = *l, true
			}
		}
		ev := StringEventRecord{Org: s.Org, Device: s.Device, Field: s.Field, T: s.T, Value: s.Value}
		switch {
		case !ok:
			events = append(events, ev)
			overlay[k], changed[k] = stringLatest{s.T, s.Value}, true
		case s.T > cur.t:
			if s.Value != cur.value {
				events = append(events, ev)
				changed[k] = true
			}
			overlay[k] = stringLatest{s.T, s.Value}
		case s.T == cur.t:
			// Same timestamp as the latest: first write wins.
		default:
			prev, found, err := db.store.StringEventAtOrBefore(ctx, s.Org, s.Device, s.Field, s.T)
			if err != nil {
				return err
			}
			if !found || (prev.T != s.T && prev.Value != s.Value) {
				events = append(events, ev)
			}
		}
	}
	var latest []StringEventRecord
	for k := range changed {
		l := overlay[k]
		latest = append(latest, StringEventRecord{Org: k.org, Device: k.device, Field: k.field, T: l.t, Value: l.value})
	}
	if len(events) > 0 || len(latest) > 0 {
		if err := db.store.PutStringEvents(ctx, events, latest); err != nil {
			return err
		}
	}
	for k, l := range overlay {
		db.setStringLatest(k, l)
	}
	return nil
}

// setStringLatest records the latest value of a field; db.strMu is held
// (or the DB is not shared yet).
func (db *DB) setStringLatest(k stringKey, l stringLatest) {
	dk := deviceKey{k.org, k.device}
	m := db.strLatest[dk]
	if m == nil {
		m = map[string]*stringLatest{}
		db.strLatest[dk] = m
	}
	m[k.field] = &l
}

// StringEvents returns the changes of one string field in [from, to].
func (db *DB) StringEvents(ctx context.Context, org, device, field string, from, to time.Time) ([]StringEvent, error) {
	if org == "" || device == "" || field == "" {
		return nil, fmt.Errorf("string events need org, device and field: %w", ErrInvalid)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("time range ends (%s) before it starts (%s): %w", to.Format(time.RFC3339), from.Format(time.RFC3339), ErrInvalid)
	}
	return db.store.StringEvents(ctx, org, device, field, from.UnixMilli(), to.UnixMilli())
}
