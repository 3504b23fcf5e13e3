package tsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// Sentinel errors. Every error returned by this package that is caused by the
// caller's input wraps one of them.
var (
	// ErrInvalid marks bad input: missing org label, unknown aggregation,
	// from after to, and the like. Nothing was changed.
	ErrInvalid = errors.New("invalid time-series request")
	// ErrOutOfBounds marks samples whose timestamp cannot be accepted: older
	// than the out-of-order window behind the newest sample of their series,
	// or too far in the future. The whole batch is rejected.
	ErrOutOfBounds = errors.New("sample timestamp out of bounds")
	// ErrClosed is returned by calls on a closed DB.
	ErrClosed = errors.New("time-series store is closed")
)

// Label names the telemetry writer uses.
const (
	LabelOrg      = "org"
	LabelDevice   = "device"
	LabelSite     = "site"
	LabelTemplate = "template"
	LabelField    = "field"
)

// Options configures a DB. Zero values take the documented defaults.
type Options struct {
	// Dir holds the write-ahead log and its checkpoints. Required.
	Dir string
	// Retention is the default per-organization retention (default 30 days).
	Retention time.Duration
	// OutOfOrderWindow is how far behind the newest sample of a series a
	// sample may arrive and still be accepted (default 7 days).
	OutOfOrderWindow time.Duration
	// MaxFutureSkew rejects samples stamped further in the future than this
	// (default 1h). Negative disables the check.
	MaxFutureSkew time.Duration
	// ChunkSamples is the number of samples after which a chunk is cut
	// (default 240; measured: larger XOR chunks compress slightly worse and
	// smaller ones pay more per-row overhead in the database).
	ChunkSamples int
	// ChunkSpan is the longest time span of one chunk (default 2h).
	ChunkSpan time.Duration
	// FlushInterval is how often Run persists full chunks, writes a WAL
	// checkpoint and truncates the WAL (default 5m).
	FlushInterval time.Duration
	// RetentionInterval is how often Run deletes data past retention
	// (default 10m).
	RetentionInterval time.Duration
	// MaxWALSize triggers an early flush when the current WAL segment grows
	// beyond it (default 256 MiB).
	MaxWALSize int64
	// Now returns the wall clock; tests override it. Default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.OutOfOrderWindow <= 0 {
		o.OutOfOrderWindow = 7 * 24 * time.Hour
	}
	if o.MaxFutureSkew == 0 {
		o.MaxFutureSkew = time.Hour
	}
	if o.ChunkSamples <= 0 {
		o.ChunkSamples = 240
	}
	if o.ChunkSamples > 60000 {
		o.ChunkSamples = 60000 // the XOR chunk header counts samples in 16 bits
	}
	if o.ChunkSpan <= 0 {
		o.ChunkSpan = 2 * time.Hour
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Minute
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = 10 * time.Minute
	}
	if o.MaxWALSize <= 0 {
		o.MaxWALSize = 256 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Sample is one float sample of the series identified by Labels, which must
// include a non-empty org label.
type Sample struct {
	Labels labels.Labels
	T      int64 // unix milliseconds
	V      float64
}

// SeriesRef identifies a series inside one DB; it is stable across restarts.
type SeriesRef uint64

// RefSample is the fast-path sample: the series is already resolved with
// SeriesRef or SeriesRefFor, so no labels are hashed on append.
type RefSample struct {
	Ref SeriesRef
	T   int64
	V   float64
}

// Point is one (aggregated) value of a field.
type Point struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

// FieldSeries is the points of one field of a device.
type FieldSeries struct {
	Field  string  `json:"field"`
	Points []Point `json:"points"`
}

// LatestValue is the newest value of one field of a device.
type LatestValue struct {
	Field string `json:"field"`
	T     int64  `json:"t"`
	Value any    `json:"value"` // float64 or string
}

// DB is the time-series store. All methods are safe for concurrent use.
type DB struct {
	opts   Options
	store  ChunkStore
	logger *slog.Logger

	// appendMu serialises appends so the WAL order equals the order in which
	// samples reach the in-memory series; replay is then deterministic. A
	// checkpoint holds it while it snapshots the heads.
	appendMu sync.Mutex
	wal      *wal
	// Guarded by appendMu.
	batchGen      uint64
	encBuf        []byte
	cutScratch    []sample
	seriesScratch []*memSeries

	idx *index

	keyMu    sync.RWMutex
	keyCache map[string]SeriesRef

	retMu     sync.RWMutex
	retention map[string]time.Duration

	strMu      sync.Mutex
	strLatest  map[deviceKey]map[string]*stringLatest
	flushMu    sync.Mutex // one flush or retention pass at a time
	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
	lastFlushT atomic.Int64
}

// Open opens (or creates) the store: it loads the series known to the chunk
// store, the newest WAL checkpoint, and replays the WAL written after it.
func Open(ctx context.Context, opts Options, store ChunkStore, logger *slog.Logger) (*DB, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("open time-series store: Options.Dir is empty; set it to a writable directory for the WAL: %w", ErrInvalid)
	}
	if store == nil {
		return nil, fmt.Errorf("open time-series store: no chunk store given; pass NewSQLiteChunkStore or NewPostgresChunkStore: %w", ErrInvalid)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts.setDefaults()
	if err := os.MkdirAll(filepath.Join(opts.Dir, "wal"), 0o755); err != nil {
		return nil, fmt.Errorf("open time-series store: create WAL directory in %q: %w", opts.Dir, err)
	}
	db := &DB{
		opts:      opts,
		store:     store,
		logger:    logger,
		idx:       newIndex(),
		keyCache:  map[string]SeriesRef{},
		retention: map[string]time.Duration{},
		strLatest: map[deviceKey]map[string]*stringLatest{},
	}
	start := time.Now()
	if err := store.LoadSeries(ctx, func(si SeriesInfo) error {
		s := db.idx.getOrCreate(si.ID, si.Labels)
		s.inDB = true
		s.lastT = si.MaxT
		s.lastKnown = false
		if si.NextSeq > s.nextSeq[kindInOrder] {
			s.nextSeq[kindInOrder] = si.NextSeq
		}
		if si.NextOOOSeq > s.nextSeq[kindOOO] {
			s.nextSeq[kindOOO] = si.NextOOOSeq
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("open time-series store: load series from database: %w", err)
	}
	w, replayed, err := db.recoverWAL(ctx)
	if err != nil {
		return nil, err
	}
	db.wal = w
	if err := db.loadStringLatest(ctx); err != nil {
		_ = w.close()
		return nil, err
	}
	// Every WAL segment must follow a checkpoint that records the exact
	// state replay starts from (including what was loaded from the
	// database), so write one now; it also bounds the next replay.
	if err := db.checkpoint(ctx); err != nil {
		_ = w.close()
		return nil, fmt.Errorf("open time-series store: %w", err)
	}
	db.lastFlushT.Store(opts.Now().UnixMilli())
	logger.Info("time-series store opened", "dir", opts.Dir, "series", db.idx.count(),
		"walRecordsReplayed", replayed, "took", time.Since(start).Round(time.Millisecond))
	return db, nil
}

// SetRetention sets how long the data of org is kept; d <= 0 restores the
// default from Options.
func (db *DB) SetRetention(org string, d time.Duration) {
	db.retMu.Lock()
	defer db.retMu.Unlock()
	if d <= 0 {
		delete(db.retention, org)
		return
	}
	db.retention[org] = d
}

func (db *DB) retentionOf(org string) time.Duration {
	db.retMu.RLock()
	defer db.retMu.RUnlock()
	if d, ok := db.retention[org]; ok {
		return d
	}
	return db.opts.Retention
}

// Run flushes full chunks, checkpoints and truncates the WAL every
// FlushInterval (or earlier when the WAL grows past MaxWALSize) and applies
// retention every RetentionInterval, until ctx is done.
func (db *DB) Run(ctx context.Context) error {
	check := time.NewTicker(min(db.opts.FlushInterval, 10*time.Second))
	defer check.Stop()
	retention := time.NewTicker(db.opts.RetentionInterval)
	defer retention.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
			due := db.opts.Now().UnixMilli()-db.lastFlushT.Load() >= db.opts.FlushInterval.Milliseconds()
			if due || db.walSize() > db.opts.MaxWALSize {
				if err := db.Flush(ctx); err != nil && ctx.Err() == nil {
					db.logger.Error("time-series flush failed; will retry", "err", err)
				}
			}
		case <-retention.C:
			if err := db.ApplyRetention(ctx); err != nil && ctx.Err() == nil {
				db.logger.Error("time-series retention pass failed; will retry", "err", err)
			}
		}
	}
}

func (db *DB) walSize() int64 {
	db.appendMu.Lock()
	defer db.appendMu.Unlock()
	if db.wal == nil {
		return 0
	}
	return db.wal.size
}

// Close writes a final checkpoint, persists full chunks and closes the WAL.
// Partially filled head chunks stay in the checkpoint and are reloaded by the
// next Open.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := db.Flush(ctx)
		db.closed.Store(true)
		db.appendMu.Lock()
		cerr := db.wal.close()
		db.appendMu.Unlock()
		db.closeErr = errors.Join(err, cerr)
	})
	return db.closeErr
}

func (db *DB) checkOpen() error {
	if db.closed.Load() {
		return ErrClosed
	}
	return nil
}
