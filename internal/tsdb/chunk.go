package tsdb

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// A stored chunk is one format byte followed by a chunkenc XOR chunk.
//
// Format 0: the XOR chunk holds the values as they are.
// Format k (1..maxDecimalScale): every value v of the chunk equals m/10^k for
// an integer m, and the XOR chunk holds m. Sensor readings arrive as decimals
// with a fixed resolution ("21.37"), whose binary mantissas look random to a
// plain XOR encoder (about 6.3 bytes/sample measured); scaled to integers the
// same XOR encoder needs about 1.4 bytes/sample. The scaling is lossless:
// m/10^k is checked bit for bit against v before it is chosen, and IEEE
// division is correctly rounded, so decoding returns exactly v.
const maxDecimalScale = 9

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

type sample struct {
	t int64
	v float64
}

// decimalScale returns the smallest k in 1..maxDecimalScale for which all
// values are exact decimals with k digits, or 0 when the values are all
// integers already or no k fits (then the values are stored as they are).
func decimalScale(ss []sample) int {
	k := 0
	for _, s := range ss {
		v := s.v
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0
		}
		for ; k <= maxDecimalScale; k++ {
			m := math.Round(v * pow10[k])
			if math.Abs(m) < 1<<53 && math.Float64bits(m/pow10[k]) == math.Float64bits(v) {
				break
			}
		}
		if k > maxDecimalScale {
			return 0
		}
	}
	if k == 0 {
		return 0
	}
	// A value that fitted a smaller k is checked again at the final k.
	p := pow10[k]
	for _, s := range ss {
		m := math.Round(s.v * p)
		if math.Float64bits(m/p) != math.Float64bits(s.v) {
			return 0
		}
	}
	return k
}

// encodeChunk encodes samples (sorted by time, unique timestamps).
func encodeChunk(ss []sample) []byte {
	k := decimalScale(ss)
	c := chunkenc.NewXORChunk()
	app, _ := c.Appender() // cannot fail on a fresh XOR chunk
	if k == 0 {
		for _, s := range ss {
			app.Append(0, s.t, s.v)
		}
	} else {
		p := pow10[k]
		for _, s := range ss {
			app.Append(0, s.t, math.Round(s.v*p))
		}
	}
	b := c.Bytes()
	out := make([]byte, 1+len(b))
	out[0] = byte(k)
	copy(out[1:], b)
	return out
}

// decodeChunk appends the samples of an encoded chunk with mint <= t <= maxt
// to dst.
func decodeChunk(dst []sample, data []byte, mint, maxt int64) ([]sample, error) {
	if len(data) < 3 || data[0] > maxDecimalScale {
		return dst, fmt.Errorf("decode chunk: unknown format or truncated chunk (%d bytes); the database row is damaged", len(data))
	}
	k := data[0]
	c := chunkenc.NewXORChunk()
	c.Reset(data[1:])
	it := c.Iterator(nil)
	if it.Seek(mint) == chunkenc.ValNone {
		return dst, it.Err()
	}
	p := pow10[k]
	for {
		t, v := it.At()
		if t > maxt {
			break
		}
		if k != 0 {
			v /= p
		}
		dst = append(dst, sample{t, v})
		if it.Next() == chunkenc.ValNone {
			break
		}
	}
	return dst, it.Err()
}

// decodeXOR appends all samples of a plain (format-less) XOR chunk to dst.
func decodeXOR(dst []sample, c *chunkenc.XORChunk) []sample {
	it := c.Iterator(nil)
	for it.Next() != chunkenc.ValNone {
		t, v := it.At()
		dst = append(dst, sample{t, v})
	}
	return dst
}
