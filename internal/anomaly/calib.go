package anomaly

import "math"

// tailZ is the standard normal quantile for an upper tail of 1e-5, the
// per-point false-alarm probability limits are set for.
const tailZ = 4.265

// tail summarises a non-negative statistic seen while calibrating: running
// mean, variance and maximum.
type tail struct {
	n, mean, m2, max float64
}

func (t *tail) add(v float64) {
	t.n++
	d := v - t.mean
	t.mean += d / t.n
	t.m2 += d * (v - t.mean)
	t.max = math.Max(t.max, v)
}

// limit is the statistic's alarm limit: the 1−1e-5 quantile of a scaled
// chi-square g·χ²_h matched to the calibration mean and variance (Box
// 1954), using the Wilson–Hilferty (1931) approximation of the chi-square
// quantile; never below the largest value seen. Matching moments of the
// smoothed statistic itself accounts for its autocorrelation, which the
// maximum of a short calibration run badly underestimates.
func (t *tail) limit() float64 {
	if t.n < 2 || t.mean <= 0 {
		return t.max
	}
	v := t.m2 / (t.n - 1)
	if v <= 0 {
		return t.max
	}
	g := v / (2 * t.mean)
	h := 2 * t.mean * t.mean / v
	c := 2 / (9 * h)
	w := 1 - c + tailZ*math.Sqrt(c)
	return math.Max(g*h*w*w*w, t.max)
}

func (t *tail) encode(e *encoder) {
	e.f64(t.n)
	e.f64(t.mean)
	e.f64(t.m2)
	e.f64(t.max)
}

func (t *tail) decode(d *decoder) {
	t.n, t.mean, t.m2, t.max = d.f64(), d.f64(), d.f64(), d.f64()
}
