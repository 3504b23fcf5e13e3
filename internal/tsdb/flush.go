package tsdb

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Crash safety, in short:
//
//   - Chunk cuts during appends depend only on the data (sample count and
//     span), so replaying the same checkpoint and WAL yields the same chunks
//     with the same (series, kind, seq) keys. Storing a chunk twice is a
//     no-op in the ChunkStore, so a crash between "chunk stored" and "WAL
//     truncated" neither loses nor duplicates data.
//   - Cuts that depend on the wall clock (idle heads, out-of-order heads)
//     happen only inside a checkpoint, under the append lock, and those
//     chunks are stored only after the checkpoint that records them is
//     durable.
//   - A checkpoint is written to a temporary file, fsynced and renamed; only
//     then are older segments and checkpoints removed.

const checkpointPrefix = "checkpoint."

// recoverWAL loads the newest checkpoint, replays the segments after it and
// opens a fresh segment for writing.
func (db *DB) recoverWAL(ctx context.Context) (*wal, int, error) {
	dir := db.opts.Dir
	walDir := filepath.Join(dir, "wal")
	_ = os.Remove(filepath.Join(dir, checkpointPrefix+"tmp"))
	cks, err := numberedFiles(dir, checkpointPrefix)
	if err != nil {
		return nil, 0, fmt.Errorf("open time-series store: list checkpoints in %q: %w", dir, err)
	}
	first := 0
	replayed := 0
	if len(cks) > 0 {
		first = cks[len(cks)-1]
		path := filepath.Join(dir, fmt.Sprintf("%s%08d", checkpointPrefix, first))
		_, torn, err := readRecords(path, func(typ byte, payload []byte) error {
			if typ != recCkpt {
				return fmt.Errorf("unexpected record type %d", typ)
			}
			replayed++
			return db.loadCheckpointRecord(payload)
		})
		if err != nil || torn {
			return nil, 0, fmt.Errorf("open time-series store: checkpoint %s is damaged (%v); restore the directory from a backup or move it away to start with the data in the database only", path, err)
		}
	}
	segs, err := numberedFiles(walDir, "")
	if err != nil {
		return nil, 0, fmt.Errorf("open time-series store: list WAL segments in %q: %w", walDir, err)
	}
	next := first
	for i, n := range segs {
		if n < first {
			_ = os.Remove(segmentPath(walDir, n)) // left over from an interrupted truncation
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		path := segmentPath(walDir, n)
		good, torn, err := readRecords(path, func(typ byte, payload []byte) error {
			replayed++
			return db.replayRecord(typ, payload)
		})
		if err != nil {
			return nil, 0, fmt.Errorf("open time-series store: replay WAL segment %s: %w", path, err)
		}
		if torn {
			if i == len(segs)-1 {
				db.logger.Warn("WAL segment ends with a torn record, probably from a crash during a write; cutting it off", "segment", path, "keptBytes", good)
				if err := os.Truncate(path, good); err != nil {
					return nil, 0, fmt.Errorf("open time-series store: cut torn tail of %s: %w", path, err)
				}
			} else {
				db.logger.Error("WAL segment is damaged in the middle; the samples after the damage in this segment are lost", "segment", path, "keptBytes", good)
			}
		}
		next = n + 1
	}
	w, err := createSegment(walDir, next)
	if err != nil {
		return nil, 0, fmt.Errorf("open time-series store: %w", err)
	}
	return w, replayed, nil
}

func (db *DB) replayRecord(typ byte, payload []byte) error {
	d := decoder{b: payload}
	switch typ {
	case recSeries:
		ref := d.uvarint()
		lset := d.labels()
		if d.err != nil {
			return fmt.Errorf("series record: %w", d.err)
		}
		// The series was new when this record was written, so it starts
		// from an empty state even if the database already holds chunks
		// that were cut from this very WAL before a crash: replay then cuts
		// the same chunks with the same keys again.
		s := db.idx.getOrCreate(ref, lset)
		s.mu.Lock()
		s.head, s.app, s.pending, s.ooo = nil, nil, nil, nil
		s.lastT, s.lastV, s.lastKnown = minInt64, 0, false
		s.nextSeq = [2]uint64{}
		s.mu.Unlock()
	case recSamples:
		n := d.uvarint()
		base := d.varint()
		var s *memSeries
		for range n {
			ref := d.uvarint()
			t := base + d.varint()
			v := d.float()
			if d.err != nil {
				return fmt.Errorf("samples record: %w", d.err)
			}
			if s == nil || s.ref != ref {
				s = db.idx.get(ref)
			}
			if s == nil {
				return fmt.Errorf("samples record refers to series %d that the WAL never defined", ref)
			}
			s.mu.Lock()
			db.cutScratch = s.append(t, v, &db.opts, db.cutScratch)
			s.mu.Unlock()
		}
	default:
		return fmt.Errorf("unknown WAL record type %d", typ)
	}
	return nil
}

func (db *DB) loadCheckpointRecord(payload []byte) error {
	d := decoder{b: payload}
	ref := d.uvarint()
	lset := d.labels()
	lastT := d.varint()
	lastKnown := d.byte1() == 1
	lastV := d.float()
	seq0, seq1 := d.uvarint(), d.uvarint()
	inDB := d.byte1() == 1
	headBytes := d.bytes()
	var pending []*memChunk
	np := d.uvarint()
	for range np {
		if d.err != nil {
			break
		}
		c := &memChunk{kind: d.byte1(), seq: d.uvarint(), mint: d.varint(), maxt: d.varint()}
		c.data = slices.Clone(d.bytes())
		pending = append(pending, c)
	}
	no := d.uvarint()
	var ooo []sample
	for range no {
		if d.err != nil {
			break
		}
		ooo = append(ooo, sample{t: d.varint(), v: d.float()})
	}
	if d.err != nil {
		return fmt.Errorf("checkpoint record: %w", d.err)
	}
	s := db.idx.getOrCreate(ref, lset)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastT, s.lastKnown, s.lastV = lastT, lastKnown, lastV
	s.nextSeq = [2]uint64{seq0, seq1}
	s.inDB = s.inDB || inDB
	s.pending = pending
	s.ooo = ooo
	s.head, s.app = nil, nil
	if len(headBytes) > 0 {
		// Rebuild the head by appending: an XOR chunk cannot be appended to
		// after being reset from bytes.
		c := chunkenc.NewXORChunk()
		c.Reset(headBytes)
		ss := decodeXOR(nil, c)
		if len(ss) > 0 {
			s.head = chunkenc.NewXORChunk()
			s.app, _ = s.head.Appender()
			for _, x := range ss {
				s.app.Append(0, x.t, x.v)
			}
			s.headMinT, s.headMaxT = ss[0].t, ss[len(ss)-1].t
		}
	}
	return nil
}

// Flush writes a checkpoint of the in-memory state, truncates the WAL
// before it, and stores every cut chunk in the ChunkStore. Run calls it
// periodically; Close calls it once.
func (db *DB) Flush(ctx context.Context) error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	if err := db.checkpoint(ctx); err != nil {
		return err
	}
	db.lastFlushT.Store(db.opts.Now().UnixMilli())
	return db.persistPending(ctx)
}

func (db *DB) checkpoint(ctx context.Context) error {
	db.appendMu.Lock()
	if err := db.checkOpen(); err != nil {
		db.appendMu.Unlock()
		return err
	}
	if err := db.wal.rotate(); err != nil {
		db.appendMu.Unlock()
		return fmt.Errorf("checkpoint: %w", err)
	}
	seg := db.wal.seg
	now := db.opts.Now().UnixMilli()
	idle := db.opts.ChunkSpan.Milliseconds()
	all := db.idx.all()
	cutoffs := map[string]int64{}
	buf := make([]byte, 0, 64<<10)
	path := filepath.Join(db.opts.Dir, checkpointPrefix+"tmp")
	f, err := os.Create(path)
	if err != nil {
		db.appendMu.Unlock()
		return fmt.Errorf("checkpoint: create %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	var werr error
	for _, s := range all {
		cutoff, ok := cutoffs[s.org]
		if !ok {
			cutoff = now - db.retentionOf(s.org).Milliseconds()
			cutoffs[s.org] = cutoff
		}
		s.mu.Lock()
		// Wall-clock decisions (expiry, idle cuts) happen only here, so they
		// are recorded by the checkpoint; see the comment at the top.
		if s.head != nil && s.headMaxT < cutoff {
			s.head, s.app = nil, nil
		}
		s.ooo = slices.DeleteFunc(s.ooo, func(x sample) bool { return x.t < cutoff })
		if s.head != nil && now-s.headMaxT >= idle {
			db.cutScratch = s.cutHead(db.cutScratch)
		}
		if len(s.ooo) > 0 {
			s.cutOOO()
		}
		buf = appendCheckpointRecord(buf[:0], s)
		s.mu.Unlock()
		if werr == nil {
			_, werr = bw.Write(buf)
		}
	}
	db.appendMu.Unlock()
	if werr == nil {
		werr = bw.Flush()
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	final := filepath.Join(db.opts.Dir, fmt.Sprintf("%s%08d", checkpointPrefix, seg))
	if werr == nil {
		werr = os.Rename(path, final)
	}
	if werr == nil {
		werr = syncDir(db.opts.Dir)
	}
	if werr != nil {
		_ = os.Remove(path)
		return fmt.Errorf("checkpoint: write %s (is the disk full?): %w", final, werr)
	}
	// The new checkpoint is durable: older checkpoints and segments go.
	if cks, err := numberedFiles(db.opts.Dir, checkpointPrefix); err == nil {
		for _, n := range cks {
			if n < seg {
				_ = os.Remove(filepath.Join(db.opts.Dir, fmt.Sprintf("%s%08d", checkpointPrefix, n)))
			}
		}
	}
	walDir := filepath.Join(db.opts.Dir, "wal")
	if segs, err := numberedFiles(walDir, ""); err == nil {
		for _, n := range segs {
			if n < seg {
				_ = os.Remove(segmentPath(walDir, n))
			}
		}
	}
	return ctx.Err()
}

// appendCheckpointRecord encodes the state of s; s.mu is held.
func appendCheckpointRecord(b []byte, s *memSeries) []byte {
	b, start := beginRecord(b, recCkpt)
	b = binary.AppendUvarint(b, s.ref)
	b = appendLabels(b, s.lset)
	b = binary.AppendVarint(b, s.lastT)
	b = append(b, boolByte(s.lastKnown))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.lastV))
	b = binary.AppendUvarint(b, s.nextSeq[0])
	b = binary.AppendUvarint(b, s.nextSeq[1])
	b = append(b, boolByte(s.inDB))
	var head []byte
	if s.head != nil {
		head = s.head.Bytes()
	}
	b = binary.AppendUvarint(b, uint64(len(head)))
	b = append(b, head...)
	b = binary.AppendUvarint(b, uint64(len(s.pending)))
	for _, c := range s.pending {
		b = append(b, c.kind)
		b = binary.AppendUvarint(b, c.seq)
		b = binary.AppendVarint(b, c.mint)
		b = binary.AppendVarint(b, c.maxt)
		b = binary.AppendUvarint(b, uint64(len(c.data)))
		b = append(b, c.data...)
	}
	b = binary.AppendUvarint(b, uint64(len(s.ooo)))
	for _, x := range s.ooo {
		b = binary.AppendVarint(b, x.t)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x.v))
	}
	return endRecord(b, start)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// persistPending stores all cut chunks, in transactions of bounded size.
func (db *DB) persistPending(ctx context.Context) error {
	const maxBatch = 2000
	type item struct {
		s      *memSeries
		chunks []*memChunk
	}
	var (
		batch   []item
		nchunks int
		errs    []error
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		var srs []SeriesRecord
		var crs []ChunkRecord
		for _, it := range batch {
			it.s.mu.Lock()
			inDB := it.s.inDB
			it.s.mu.Unlock()
			if !inDB {
				srs = append(srs, SeriesRecord{ID: it.s.ref, Org: it.s.org, Labels: it.s.lset})
			}
			for _, c := range it.chunks {
				crs = append(crs, ChunkRecord{SeriesID: it.s.ref, Kind: c.kind, Seq: c.seq, MinT: c.mint, MaxT: c.maxt, Data: c.data})
			}
		}
		if err := db.store.PutChunks(ctx, srs, crs); err != nil {
			errs = append(errs, err)
		} else {
			for _, it := range batch {
				it.s.mu.Lock()
				it.s.inDB = true
				it.s.pending = slices.DeleteFunc(it.s.pending, func(c *memChunk) bool {
					return slices.Contains(it.chunks, c)
				})
				it.s.mu.Unlock()
			}
		}
		batch, nchunks = batch[:0], 0
	}
	for _, s := range db.idx.all() {
		s.mu.Lock()
		cs := slices.Clone(s.pending)
		s.mu.Unlock()
		if len(cs) == 0 {
			continue
		}
		batch = append(batch, item{s, cs})
		nchunks += len(cs)
		if nchunks >= maxBatch {
			flush()
			if ctx.Err() != nil {
				break
			}
		}
	}
	flush()
	if len(errs) > 0 {
		return fmt.Errorf("persist chunks (they stay in memory and the checkpoint and are retried): %w", errors.Join(errs...))
	}
	return nil
}

// ApplyRetention deletes, per organization, every stored chunk and string
// event older than its retention, and expired chunks waiting in memory.
// Expired head data is dropped by the next checkpoint (Flush).
func (db *DB) ApplyRetention(ctx context.Context) error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	now := db.opts.Now()
	var errs []error
	for _, org := range db.idx.labelValues(LabelOrg) {
		cutoff := now.Add(-db.retentionOf(org)).UnixMilli()
		n, err := db.store.DeleteChunks(ctx, org, cutoff)
		if err != nil {
			errs = append(errs, err)
		}
		ns, err := db.store.DeleteStringEvents(ctx, org, cutoff)
		if err != nil {
			errs = append(errs, err)
		}
		for _, ref := range db.idx.postingsFor(LabelOrg, org) {
			s := db.idx.get(ref)
			if s == nil {
				continue
			}
			s.mu.Lock()
			// Dropping cut chunks does not change later cuts; expired heads
			// are dropped by the next checkpoint, which records it.
			s.pending = slices.DeleteFunc(s.pending, func(c *memChunk) bool { return c.maxt < cutoff })
			s.mu.Unlock()
		}
		if n > 0 || ns > 0 {
			db.logger.Info("time-series retention applied", "org", org, "cutoff", fmtMillis(cutoff), "chunksDeleted", n, "stringEventsDeleted", ns)
		}
	}
	return errors.Join(errs...)
}
