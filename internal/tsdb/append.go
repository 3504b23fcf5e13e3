package tsdb

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

const minInt64 = math.MinInt64

// SanitizeMetricName turns a telemetry field path into a metric name: every
// character outside [a-zA-Z0-9_:] becomes '_', and a leading digit gets a
// '_' prefix so the result is a valid PromQL name.
func SanitizeMetricName(field string) string {
	b := []byte(field)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || (b[0] >= '0' && b[0] <= '9') {
		return "_" + string(b)
	}
	return string(b)
}

// TelemetryLabels builds the label set of a device's telemetry field.
func TelemetryLabels(org, site, device, template, field string) labels.Labels {
	return labels.FromStrings(
		labels.MetricName, SanitizeMetricName(field),
		LabelDevice, device,
		LabelField, field,
		LabelOrg, org,
		LabelSite, site,
		LabelTemplate, template,
	)
}

func validateLabels(lset labels.Labels) error {
	if lset.Get(LabelOrg) == "" {
		return fmt.Errorf("series %s has no %q label; every series must name its organization: %w", lset, LabelOrg, ErrInvalid)
	}
	if name, dup := lset.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("series %s has label %q twice: %w", lset, name, ErrInvalid)
	}
	var err error
	lset.Range(func(l labels.Label) {
		if err == nil && (l.Name == "" || l.Value == "") {
			err = fmt.Errorf("series %s has an empty label name or value; drop empty labels before writing: %w", lset, ErrInvalid)
		}
	})
	return err
}

// SeriesRef returns the ref of the series with lset, creating the series
// (and logging it to the WAL) the first time.
func (db *DB) SeriesRef(ctx context.Context, lset labels.Labels) (SeriesRef, error) {
	h := lset.Hash()
	if s := db.idx.lookup(lset, h); s != nil {
		return SeriesRef(s.ref), nil
	}
	if err := validateLabels(lset); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	db.appendMu.Lock()
	defer db.appendMu.Unlock()
	if err := db.checkOpen(); err != nil {
		return 0, err
	}
	if s := db.idx.lookup(lset, h); s != nil {
		return SeriesRef(s.ref), nil
	}
	db.idx.mu.RLock()
	ref := db.idx.nextRef
	db.idx.mu.RUnlock()
	// The series record reaches the WAL before the series can be used, so
	// every sample record in the WAL refers to a known series.
	buf, start := beginRecord(db.encBuf[:0], recSeries)
	buf = binary.AppendUvarint(buf, ref)
	buf = appendLabels(buf, lset)
	buf = endRecord(buf, start)
	db.encBuf = buf
	if err := db.wal.write(buf); err != nil {
		return 0, err
	}
	s := db.idx.create(lset)
	return SeriesRef(s.ref), nil
}

// SeriesRefFor is the writer's fast path: it maps a caller-chosen key (for
// example "org/device/field") to a series ref without building or hashing
// labels; build is called only the first time a key is seen. A key must
// always describe the same label set.
func (db *DB) SeriesRefFor(ctx context.Context, key string, build func() labels.Labels) (SeriesRef, error) {
	db.keyMu.RLock()
	ref, ok := db.keyCache[key]
	db.keyMu.RUnlock()
	if ok {
		return ref, nil
	}
	ref, err := db.SeriesRef(ctx, build())
	if err != nil {
		return 0, err
	}
	db.keyMu.Lock()
	db.keyCache[key] = ref
	db.keyMu.Unlock()
	return ref, nil
}

// Append writes samples identified by labels. When it returns nil the
// samples are in the WAL. A (series, timestamp) already stored keeps its
// first value; later writes of it are dropped. Samples older than
// OutOfOrderWindow behind the newest sample of their series, or stamped more
// than MaxFutureSkew ahead of the clock, reject the whole batch with
// ErrOutOfBounds.
func (db *DB) Append(ctx context.Context, samples []Sample) error {
	if len(samples) == 0 {
		return nil
	}
	refs := make([]RefSample, len(samples))
	for i, s := range samples {
		ref, err := db.SeriesRef(ctx, s.Labels)
		if err != nil {
			return err
		}
		refs[i] = RefSample{Ref: ref, T: s.T, V: s.V}
	}
	return db.AppendRefs(ctx, refs)
}

// AppendRefs is Append for samples whose series were resolved with
// SeriesRef or SeriesRefFor.
func (db *DB) AppendRefs(ctx context.Context, samples []RefSample) error {
	if len(samples) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	db.appendMu.Lock()
	defer db.appendMu.Unlock()
	if err := db.checkOpen(); err != nil {
		return err
	}
	series, err := db.validateBatch(samples)
	if err != nil {
		return err
	}
	buf, start := beginRecord(db.encBuf[:0], recSamples)
	buf = binary.AppendUvarint(buf, uint64(len(samples)))
	base := samples[0].T
	buf = binary.AppendVarint(buf, base)
	for _, rs := range samples {
		buf = binary.AppendUvarint(buf, uint64(rs.Ref))
		buf = binary.AppendVarint(buf, rs.T-base)
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(rs.V))
	}
	buf = endRecord(buf, start)
	db.encBuf = buf
	if err := db.wal.write(buf); err != nil {
		return err
	}
	scratch := db.cutScratch
	for i, rs := range samples {
		s := series[i]
		s.mu.Lock()
		scratch = s.append(rs.T, rs.V, &db.opts, scratch)
		s.mu.Unlock()
	}
	db.cutScratch = scratch
	return nil
}

// validateBatch resolves refs and checks timestamps; db.appendMu is held.
func (db *DB) validateBatch(samples []RefSample) ([]*memSeries, error) {
	series := db.seriesScratch[:0]
	db.idx.mu.RLock()
	for _, rs := range samples {
		s := db.idx.byRef[uint64(rs.Ref)]
		if s == nil {
			db.idx.mu.RUnlock()
			return nil, fmt.Errorf("series ref %d is unknown to this store; resolve it with SeriesRef first: %w", rs.Ref, ErrInvalid)
		}
		series = append(series, s)
	}
	db.idx.mu.RUnlock()
	db.seriesScratch = series

	db.batchGen++
	gen := db.batchGen
	maxT := int64(math.MaxInt64)
	if db.opts.MaxFutureSkew > 0 {
		maxT = db.opts.Now().Add(db.opts.MaxFutureSkew).UnixMilli()
	}
	window := db.opts.OutOfOrderWindow.Milliseconds()
	for i, rs := range samples {
		s := series[i]
		if rs.T > maxT {
			return nil, fmt.Errorf("sample of %s at %s is more than %s in the future; check the device clock (NTP): %w",
				s.lset, fmtMillis(rs.T), db.opts.MaxFutureSkew, ErrOutOfBounds)
		}
		// lastT only changes under appendMu, which is held.
		if s.scratchGen != gen {
			s.scratchGen, s.scratchLastT = gen, s.lastT
		}
		if rs.T > s.scratchLastT {
			s.scratchLastT = rs.T
		} else if s.scratchLastT-rs.T > window {
			return nil, fmt.Errorf("sample of %s at %s is %s older than the newest sample of the series (%s); the out-of-order window is %s: %w",
				s.lset, fmtMillis(rs.T), time.Duration(s.scratchLastT-rs.T)*time.Millisecond, fmtMillis(s.scratchLastT),
				db.opts.OutOfOrderWindow, ErrOutOfBounds)
		}
	}
	return series, nil
}

func fmtMillis(t int64) string {
	return time.UnixMilli(t).UTC().Format(time.RFC3339Nano)
}
