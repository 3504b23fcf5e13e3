package tsdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shopfloor/shopfloor/internal/sqldb"

	"github.com/prometheus/prometheus/model/labels"
)

// ChunkStore persists full chunks, series definitions and string events in
// the registry database. Writes are idempotent: a chunk is identified by
// (series, kind, seq) and writing it again is a no-op, which is what makes
// WAL replay after a crash safe.
type ChunkStore interface {
	// LoadSeries calls fn for every stored series.
	LoadSeries(ctx context.Context, fn func(SeriesInfo) error) error
	// PutChunks stores new series and chunks in one transaction.
	PutChunks(ctx context.Context, series []SeriesRecord, chunks []ChunkRecord) error
	// Chunks returns the chunks of a series overlapping [mint, maxt],
	// ordered by kind, then seq.
	Chunks(ctx context.Context, seriesID uint64, mint, maxt int64) ([]ChunkRecord, error)
	// DeleteChunks deletes the chunks of org's series whose newest sample is
	// older than before and returns how many were deleted.
	DeleteChunks(ctx context.Context, org string, before int64) (int64, error)

	// PutStringEvents stores change events (existing (key, t) rows are kept)
	// and upserts the latest value rows, in one transaction.
	PutStringEvents(ctx context.Context, events []StringEventRecord, latest []StringEventRecord) error
	// StringEvents returns the events of one field in [from, to], oldest first.
	StringEvents(ctx context.Context, org, device, field string, from, to int64) ([]StringEvent, error)
	// StringEventAtOrBefore returns the newest event of one field at or before t.
	StringEventAtOrBefore(ctx context.Context, org, device, field string, t int64) (StringEvent, bool, error)
	// LoadStringLatest calls fn for every latest-value row.
	LoadStringLatest(ctx context.Context, fn func(StringEventRecord) error) error
	// DeleteStringEvents deletes org's events older than before.
	DeleteStringEvents(ctx context.Context, org string, before int64) (int64, error)
}

// SeriesInfo is a stored series with what recovery needs to know about it.
type SeriesInfo struct {
	ID         uint64
	Labels     labels.Labels
	MaxT       int64  // newest in-order sample, math.MinInt64 when none
	NextSeq    uint64 // next in-order chunk seq
	NextOOOSeq uint64 // next out-of-order chunk seq
}

// SeriesRecord is a series definition to store.
type SeriesRecord struct {
	ID     uint64
	Org    string
	Labels labels.Labels
}

// ChunkRecord is one stored chunk.
type ChunkRecord struct {
	SeriesID uint64
	Kind     uint8 // 0 in-order, 1 out-of-order
	Seq      uint64
	MinT     int64
	MaxT     int64
	Data     []byte
}

// StringEventRecord is one string event with its key.
type StringEventRecord struct {
	Org, Device, Field string
	T                  int64
	Value              string
}

// StringEvent is one change of a string field.
type StringEvent struct {
	T     int64  `json:"t"`
	Value string `json:"value"`
}

type dialect struct {
	name     string
	blob     string
	postgres bool
	tableOpt string
}

type sqlStore struct {
	db *sql.DB
	d  dialect
}

// NewSQLiteChunkStore returns a ChunkStore in a SQLite database opened with
// the "sqlite" driver (modernc.org/sqlite). Its tables are prefixed tsdb_
// and created if missing.
func NewSQLiteChunkStore(ctx context.Context, db *sql.DB) (ChunkStore, error) {
	return newSQLStore(ctx, db, dialect{name: "SQLite", blob: "BLOB", tableOpt: " WITHOUT ROWID"})
}

// NewPostgresChunkStore returns a ChunkStore in a PostgreSQL database opened
// with the "pgx" driver. Its tables are prefixed tsdb_ and created if
// missing.
func NewPostgresChunkStore(ctx context.Context, db *sql.DB) (ChunkStore, error) {
	return newSQLStore(ctx, db, dialect{name: "PostgreSQL", blob: "BYTEA", postgres: true})
}

func newSQLStore(ctx context.Context, db *sql.DB, d dialect) (*sqlStore, error) {
	if db == nil {
		return nil, fmt.Errorf("create %s chunk store: no database handle given: %w", d.name, ErrInvalid)
	}
	s := &sqlStore{db: db, d: d}
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS tsdb_series (
			id BIGINT PRIMARY KEY,
			org TEXT NOT NULL,
			labels TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS tsdb_series_org ON tsdb_series (org)`,
		`CREATE TABLE IF NOT EXISTS tsdb_chunks (
			series_id BIGINT NOT NULL,
			kind SMALLINT NOT NULL,
			seq BIGINT NOT NULL,
			mint BIGINT NOT NULL,
			maxt BIGINT NOT NULL,
			data ` + d.blob + ` NOT NULL,
			PRIMARY KEY (series_id, kind, seq))` + d.tableOpt,
		`CREATE INDEX IF NOT EXISTS tsdb_chunks_series_maxt ON tsdb_chunks (series_id, maxt)`,
		`CREATE TABLE IF NOT EXISTS tsdb_string_events (
			org TEXT NOT NULL,
			device TEXT NOT NULL,
			field TEXT NOT NULL,
			t BIGINT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (org, device, field, t))` + d.tableOpt,
		`CREATE TABLE IF NOT EXISTS tsdb_string_latest (
			org TEXT NOT NULL,
			device TEXT NOT NULL,
			field TEXT NOT NULL,
			t BIGINT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (org, device, field))` + d.tableOpt,
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("create %s time-series tables (does the database user have CREATE rights?): %w", d.name, err)
		}
	}
	return s, nil
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *sqlStore) q(query string) string {
	return sqldb.Rebind(s.d.postgres, query)
}

func (s *sqlStore) LoadSeries(ctx context.Context, fn func(SeriesInfo) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT s.id, s.labels,
		(SELECT c.maxt FROM tsdb_chunks c WHERE c.series_id = s.id AND c.kind = 0 ORDER BY c.seq DESC LIMIT 1),
		(SELECT MAX(c.seq) FROM tsdb_chunks c WHERE c.series_id = s.id AND c.kind = 0),
		(SELECT MAX(c.seq) FROM tsdb_chunks c WHERE c.series_id = s.id AND c.kind = 1)
		FROM tsdb_series s ORDER BY s.id`)
	if err != nil {
		return fmt.Errorf("read series from %s: %w", s.d.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id           int64
			lj           string
			maxt, s0, s1 sql.NullInt64
		)
		if err := rows.Scan(&id, &lj, &maxt, &s0, &s1); err != nil {
			return fmt.Errorf("read series from %s: %w", s.d.name, err)
		}
		var lset labels.Labels
		if err := json.Unmarshal([]byte(lj), &lset); err != nil {
			return fmt.Errorf("series %d in %s has damaged labels %q: %w", id, s.d.name, lj, err)
		}
		si := SeriesInfo{ID: uint64(id), Labels: lset, MaxT: minInt64}
		if maxt.Valid {
			si.MaxT = maxt.Int64
		}
		if s0.Valid {
			si.NextSeq = uint64(s0.Int64) + 1
		}
		if s1.Valid {
			si.NextOOOSeq = uint64(s1.Int64) + 1
		}
		if err := fn(si); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqlStore) PutChunks(ctx context.Context, series []SeriesRecord, chunks []ChunkRecord) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store chunks in %s: begin transaction: %w", s.d.name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if len(series) > 0 {
		st, err := tx.PrepareContext(ctx, s.q(`INSERT INTO tsdb_series (id, org, labels) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`))
		if err != nil {
			return fmt.Errorf("store series in %s: %w", s.d.name, err)
		}
		defer st.Close()
		for _, sr := range series {
			lj, err := json.Marshal(sr.Labels)
			if err != nil {
				return fmt.Errorf("encode labels of series %d: %w", sr.ID, err)
			}
			if _, err := st.ExecContext(ctx, int64(sr.ID), sr.Org, string(lj)); err != nil {
				return fmt.Errorf("store series %d in %s: %w", sr.ID, s.d.name, err)
			}
		}
	}
	if len(chunks) > 0 {
		st, err := tx.PrepareContext(ctx, s.q(`INSERT INTO tsdb_chunks (series_id, kind, seq, mint, maxt, data) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`))
		if err != nil {
			return fmt.Errorf("store chunks in %s: %w", s.d.name, err)
		}
		defer st.Close()
		for _, c := range chunks {
			if _, err := st.ExecContext(ctx, int64(c.SeriesID), int(c.Kind), int64(c.Seq), c.MinT, c.MaxT, c.Data); err != nil {
				return fmt.Errorf("store chunk %d/%d/%d in %s: %w", c.SeriesID, c.Kind, c.Seq, s.d.name, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store chunks in %s: commit: %w", s.d.name, err)
	}
	return nil
}

func (s *sqlStore) Chunks(ctx context.Context, seriesID uint64, mint, maxt int64) ([]ChunkRecord, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT kind, seq, mint, maxt, data FROM tsdb_chunks
		WHERE series_id = ? AND maxt >= ? AND mint <= ? ORDER BY kind, seq`), int64(seriesID), mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("read chunks of series %d from %s: %w", seriesID, s.d.name, err)
	}
	defer rows.Close()
	var out []ChunkRecord
	for rows.Next() {
		c := ChunkRecord{SeriesID: seriesID}
		var kind int
		var seq int64
		if err := rows.Scan(&kind, &seq, &c.MinT, &c.MaxT, &c.Data); err != nil {
			return nil, fmt.Errorf("read chunks of series %d from %s: %w", seriesID, s.d.name, err)
		}
		c.Kind, c.Seq = uint8(kind), uint64(seq)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *sqlStore) DeleteChunks(ctx context.Context, org string, before int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM tsdb_chunks WHERE maxt < ?
		AND series_id IN (SELECT id FROM tsdb_series WHERE org = ?)`), before, org)
	if err != nil {
		return 0, fmt.Errorf("delete expired chunks of org %q in %s: %w", org, s.d.name, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

func (s *sqlStore) PutStringEvents(ctx context.Context, events, latest []StringEventRecord) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store string events in %s: begin transaction: %w", s.d.name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tsdb_string_events (org, device, field, t, value)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), e.Org, e.Device, e.Field, e.T, e.Value); err != nil {
			return fmt.Errorf("store string event of %s/%s in %s: %w", e.Device, e.Field, s.d.name, err)
		}
	}
	for _, e := range latest {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tsdb_string_latest (org, device, field, t, value)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (org, device, field) DO UPDATE SET t = excluded.t, value = excluded.value
			WHERE excluded.t >= tsdb_string_latest.t`), e.Org, e.Device, e.Field, e.T, e.Value); err != nil {
			return fmt.Errorf("store latest string of %s/%s in %s: %w", e.Device, e.Field, s.d.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store string events in %s: commit: %w", s.d.name, err)
	}
	return nil
}

func (s *sqlStore) StringEvents(ctx context.Context, org, device, field string, from, to int64) ([]StringEvent, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT t, value FROM tsdb_string_events
		WHERE org = ? AND device = ? AND field = ? AND t >= ? AND t <= ? ORDER BY t`), org, device, field, from, to)
	if err != nil {
		return nil, fmt.Errorf("read string events of %s/%s from %s: %w", device, field, s.d.name, err)
	}
	defer rows.Close()
	out := []StringEvent{}
	for rows.Next() {
		var e StringEvent
		if err := rows.Scan(&e.T, &e.Value); err != nil {
			return nil, fmt.Errorf("read string events of %s/%s from %s: %w", device, field, s.d.name, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *sqlStore) StringEventAtOrBefore(ctx context.Context, org, device, field string, t int64) (StringEvent, bool, error) {
	var e StringEvent
	err := s.db.QueryRowContext(ctx, s.q(`SELECT t, value FROM tsdb_string_events
		WHERE org = ? AND device = ? AND field = ? AND t <= ? ORDER BY t DESC LIMIT 1`), org, device, field, t).Scan(&e.T, &e.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("read string event of %s/%s from %s: %w", device, field, s.d.name, err)
	}
	return e, true, nil
}

func (s *sqlStore) LoadStringLatest(ctx context.Context, fn func(StringEventRecord) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT org, device, field, t, value FROM tsdb_string_latest`)
	if err != nil {
		return fmt.Errorf("read latest string values from %s: %w", s.d.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e StringEventRecord
		if err := rows.Scan(&e.Org, &e.Device, &e.Field, &e.T, &e.Value); err != nil {
			return fmt.Errorf("read latest string values from %s: %w", s.d.name, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqlStore) DeleteStringEvents(ctx context.Context, org string, before int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM tsdb_string_events WHERE org = ? AND t < ?`), org, before)
	if err != nil {
		return 0, fmt.Errorf("delete expired string events of org %q in %s: %w", org, s.d.name, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
