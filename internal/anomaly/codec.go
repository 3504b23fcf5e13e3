package anomaly

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Snapshots are little-endian: a magic tag and version, then the
// configuration (so a snapshot restored under a different configuration is
// refused rather than misread), then the learned state.

type encoder struct{ b []byte }

func (e *encoder) u64(v uint64)  { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)   { e.u64(uint64(v)) }
func (e *encoder) f64(v float64) { e.u64(math.Float64bits(v)) }
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) f64s(v []float64) {
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.f64(x)
	}
}
func (e *encoder) strs(v []string) {
	e.u64(uint64(len(v)))
	for _, s := range v {
		e.str(s)
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or corrupt at %s", ErrSnapshot, what)
	}
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("integer")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}
func (d *decoder) i64() int64   { return int64(d.u64()) }
func (d *decoder) f64() float64 { return math.Float64frombits(d.u64()) }

// length reads a count and checks it against what is left, so a corrupt
// snapshot cannot make us allocate gigabytes.
func (d *decoder) length(unit int) int {
	n := d.u64()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/unit) {
		d.fail("length")
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.length(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) f64s() []float64 {
	n := d.length(8)
	if d.err != nil {
		return nil
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = d.f64()
	}
	return v
}

func (d *decoder) strs() []string {
	n := d.length(8)
	if d.err != nil {
		return nil
	}
	v := make([]string, n)
	for i := range v {
		v[i] = d.str()
	}
	return v
}

// header writes/checks the magic tag and version of a snapshot.
func (e *encoder) header(tag string, version uint64) {
	e.str(tag)
	e.u64(version)
}

func (d *decoder) header(tag string, version uint64) {
	if got := d.str(); d.err == nil && got != tag {
		d.err = fmt.Errorf("%w: snapshot is for a %q detector, not %q", ErrSnapshot, got, tag)
		return
	}
	if got := d.u64(); d.err == nil && got != version {
		d.err = fmt.Errorf("%w: snapshot version %d, this build reads version %d", ErrSnapshot, got, version)
	}
}

// headerOf is header for a reader of versions oldest..newest; it returns
// the snapshot's version.
func (d *decoder) headerOf(tag string, oldest, newest uint64) uint64 {
	if got := d.str(); d.err == nil && got != tag {
		d.err = fmt.Errorf("%w: snapshot is for a %q detector, not %q", ErrSnapshot, got, tag)
		return 0
	}
	got := d.u64()
	if d.err == nil && (got < oldest || got > newest) {
		d.err = fmt.Errorf("%w: snapshot version %d, this build reads versions %d to %d", ErrSnapshot, got, oldest, newest)
	}
	return got
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d unexpected trailing bytes", ErrSnapshot, len(d.b))
	}
	return d.err
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
