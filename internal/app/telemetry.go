package app

import (
	"context"
	"time"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/tsdb"
)

// telemetry adapts the tsdb to the API's reader interface.
type telemetry struct{ db *tsdb.DB }

func (t telemetry) Range(ctx context.Context, org, device string, fields []string, from, to time.Time, step time.Duration, agg string) ([]api.FieldSeries, error) {
	rs, err := t.db.Range(ctx, org, device, fields, from, to, step, agg)
	if err != nil {
		return nil, err
	}
	out := make([]api.FieldSeries, len(rs))
	for i, r := range rs {
		pts := make([]api.Point, len(r.Points))
		for j, p := range r.Points {
			pts[j] = api.Point{T: p.T, V: p.V}
		}
		out[i] = api.FieldSeries{Field: r.Field, Points: pts}
	}
	return out, nil
}

func (t telemetry) StringEvents(ctx context.Context, org, device, field string, from, to time.Time) ([]api.StringEvent, error) {
	evs, err := t.db.StringEvents(ctx, org, device, field, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]api.StringEvent, len(evs))
	for i, e := range evs {
		out[i] = api.StringEvent{T: e.T, Value: e.Value}
	}
	return out, nil
}

func (t telemetry) Latest(ctx context.Context, org, device string) ([]api.LatestValue, error) {
	ls, err := t.db.Latest(ctx, org, device)
	if err != nil {
		return nil, err
	}
	out := make([]api.LatestValue, len(ls))
	for i, l := range ls {
		out[i] = api.LatestValue{Field: l.Field, T: l.T, Value: l.Value}
	}
	return out, nil
}
