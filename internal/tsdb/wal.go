package tsdb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// WAL layout: Dir/wal/NNNNNNNN segment files, written append-only, one
// write(2) per Append call, never fsynced per call (the contract is "in the
// OS", which survives kill -9). A checkpoint Dir/checkpoint.NNNNNNNN holds
// the complete in-memory state as of the moment segment NNNNNNNN was
// started; recovery loads it and replays segments >= NNNNNNNN.
//
// Every record is framed as type(1) len(4, LE) payload crc32c(4) so that a
// torn tail is detected and cut off.

const (
	recSeries  byte = 1 // ref, labels
	recSamples byte = 2 // n, baseT, n * (ref, t-baseT, v)
	recCkpt    byte = 3 // one series' full state, in checkpoints only

	recHeaderSize  = 5
	recTrailerSize = 4
	maxRecordSize  = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type wal struct {
	dir  string
	f    *os.File
	seg  int
	size int64
}

func segmentPath(dir string, n int) string { return filepath.Join(dir, fmt.Sprintf("%08d", n)) }

func createSegment(dir string, n int) (*wal, error) {
	f, err := os.OpenFile(segmentPath(dir, n), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create WAL segment in %q (is the directory writable and the disk not full?): %w", dir, err)
	}
	return &wal{dir: dir, f: f, seg: n}, nil
}

func (w *wal) write(b []byte) error {
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write WAL segment %s (is the disk full?): %w", w.f.Name(), err)
	}
	return nil
}

// rotate closes the current segment and starts the next one.
func (w *wal) rotate() error {
	next, err := createSegment(w.dir, w.seg+1)
	if err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		_ = next.f.Close()
		return fmt.Errorf("close WAL segment: %w", err)
	}
	*w = *next
	return nil
}

func (w *wal) close() error {
	if w == nil || w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// numberedFiles lists files in dir named prefix+<number>, sorted by number.
func numberedFiles(dir, prefix string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// beginRecord appends a record header with a placeholder length.
func beginRecord(b []byte, typ byte) ([]byte, int) {
	start := len(b)
	return append(b, typ, 0, 0, 0, 0), start
}

// endRecord fills in the length and appends the checksum.
func endRecord(b []byte, start int) []byte {
	payload := b[start+recHeaderSize:]
	binary.LittleEndian.PutUint32(b[start+1:], uint32(len(payload)))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func appendLabels(b []byte, lset labels.Labels) []byte {
	b = binary.AppendUvarint(b, uint64(lset.Len()))
	lset.Range(func(l labels.Label) {
		b = binary.AppendUvarint(b, uint64(len(l.Name)))
		b = append(b, l.Name...)
		b = binary.AppendUvarint(b, uint64(len(l.Value)))
		b = append(b, l.Value...)
	})
	return b
}

// decoder reads the fields of one record payload; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errShortRecord = errors.New("record shorter than its fields")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) float() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errShortRecord
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShortRecord
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errShortRecord
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) labels() labels.Labels {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errShortRecord
		return labels.EmptyLabels()
	}
	sb := labels.NewScratchBuilder(int(n))
	for range n {
		name := d.bytes()
		value := d.bytes()
		sb.Add(string(name), string(value))
	}
	sb.Sort()
	return sb.Labels()
}

// readRecords calls fn for every intact record of the file at path. It
// returns the offset just past the last intact record and whether the file
// continues with a damaged or torn record after it.
func readRecords(path string, fn func(typ byte, payload []byte) error) (good int64, torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [recHeaderSize]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return good, false, nil
			}
			return good, true, nil
		}
		n := binary.LittleEndian.Uint32(hdr[1:])
		if n > maxRecordSize {
			return good, true, nil
		}
		need := recHeaderSize + int(n) + recTrailerSize
		if cap(buf) < need {
			buf = make([]byte, need)
		}
		buf = buf[:need]
		copy(buf, hdr[:])
		if _, err := io.ReadFull(r, buf[recHeaderSize:]); err != nil {
			return good, true, nil
		}
		body := buf[:recHeaderSize+int(n)]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[recHeaderSize+int(n):]) {
			return good, true, nil
		}
		if err := fn(hdr[0], body[recHeaderSize:]); err != nil {
			return good, false, err
		}
		good += int64(need)
	}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
