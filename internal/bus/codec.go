package bus

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// Batches use a compact binary layout rather than JSON: the encoder and
// decoder sit on the ingest hot path, once per message each way.
const (
	batchMagic0   = 'S'
	batchMagic1   = 'F'
	batchVersion1 = 1
)

// AppendTelemetry appends t's binary encoding to dst.
func AppendTelemetry(dst []byte, t *Telemetry) []byte {
	dst = appendString(dst, t.Org)
	dst = appendString(dst, t.Device)
	dst = appendString(dst, t.Site)
	dst = appendString(dst, t.Template)
	dst = binary.AppendVarint(dst, t.TS)
	dst = binary.AppendVarint(dst, t.Received)
	dst = binary.AppendUvarint(dst, uint64(len(t.Num)))
	for _, k := range sortedKeys(t.Num) {
		dst = appendString(dst, k)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(t.Num[k]))
	}
	dst = appendStringMap(dst, t.Str)
	dst = appendStringMap(dst, t.Props)
	return dst
}

// sortedKeys keeps the encoding deterministic, which makes batches
// comparable in tests and dedupable by content.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func appendStringMap(dst []byte, m map[string]string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m)))
	for _, k := range sortedKeys(m) {
		dst = appendString(dst, k)
		dst = appendString(dst, m[k])
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// EncodeBatch encodes already-encoded telemetry records as one bus message.
func EncodeBatch(dst []byte, records [][]byte) []byte {
	dst = append(dst, batchMagic0, batchMagic1, batchVersion1)
	dst = binary.AppendUvarint(dst, uint64(len(records)))
	for _, r := range records {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

// DecodeBatch decodes a bus message into telemetry, appending to out.
func DecodeBatch(data []byte, out []*Telemetry) ([]*Telemetry, error) {
	if len(data) < 3 || data[0] != batchMagic0 || data[1] != batchMagic1 {
		return out, fmt.Errorf("bad batch header: %w", ErrDecode)
	}
	if data[2] != batchVersion1 {
		return out, fmt.Errorf("batch version %d unsupported: %w", data[2], ErrDecode)
	}
	d := decoder{buf: data[3:]}
	n := d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		l := d.uvarint()
		rec := d.bytes(l)
		if d.err != nil {
			break
		}
		t, err := DecodeTelemetry(rec)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	if d.err != nil {
		return out, d.err
	}
	return out, nil
}

// DecodeTelemetry decodes one record written by AppendTelemetry.
func DecodeTelemetry(rec []byte) (*Telemetry, error) {
	d := decoder{buf: rec}
	t := &Telemetry{}
	t.Org = d.string()
	t.Device = d.string()
	t.Site = d.string()
	t.Template = d.string()
	t.TS = d.varint()
	t.Received = d.varint()
	if n := d.count(); n > 0 {
		t.Num = make(map[string]float64, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.string()
			b := d.bytes(8)
			if d.err == nil {
				t.Num[k] = math.Float64frombits(binary.LittleEndian.Uint64(b))
			}
		}
	}
	t.Str = d.stringMap()
	t.Props = d.stringMap()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.buf) != 0 {
		return nil, fmt.Errorf("%d trailing bytes in telemetry record: %w", len(d.buf), ErrDecode)
	}
	return t, nil
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s: %w", what, ErrDecode)
	}
	d.buf = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// count reads a map size, bounded by the bytes left so a corrupt length
// cannot make us allocate a huge map.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail("map")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("field")
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) string() string { return string(d.bytes(d.uvarint())) }

func (d *decoder) stringMap() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.string()
		m[k] = d.string()
	}
	return m
}
