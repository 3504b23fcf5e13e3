package anomaly

import (
	"fmt"
	"math"
	"unsafe"
)

// ChangepointConfig configures the changepoint detector.
type ChangepointConfig struct {
	// Fields are the numeric fields watched (at least 1).
	Fields []string
	// Sensitivity in (0,1): a change is reported when a cumulative sum
	// reaches −log2(Sensitivity) times its limit. Default 0.5: at the limit.
	Sensitivity float64
	// Warmup is the learning period in points: the first half estimates
	// each field's level and noise, the second half runs the sums against
	// that level to set the limits. Default 400.
	Warmup int
	// Drift is the CUSUM reference value k in noise standard deviations:
	// half the smallest level change worth reporting. Default 0.5.
	Drift float64
	// Floor is the lowest limit h of a cumulative sum, in noise standard
	// deviations. Default 10: on Gaussian noise a two-sided CUSUM with k = 0.5
	// and h = 10 runs about 70,000 points between false reports (Siegmund).
	Floor float64
	// Margin multiplies the largest sum seen while calibrating before it is
	// compared with Floor. Default 1.5 (chosen on SKAB valve1).
	Margin float64
	// Refractory is how many points after a reported change the device
	// reports no other, so one change seen by several fields, or a ramp,
	// is one report. Default 10 (chosen on SKAB valve1; see RESULTS.md).
	Refractory int
}

func (c *ChangepointConfig) withDefaults() (ChangepointConfig, error) {
	o := *c
	o.Fields = append([]string(nil), c.Fields...)
	if len(o.Fields) == 0 {
		return o, fmt.Errorf("%w: a changepoint model needs at least one field", ErrConfig)
	}
	if err := baseDefaults(&o.Sensitivity, &o.Warmup); err != nil {
		return o, err
	}
	if o.Warmup < 8 {
		return o, fmt.Errorf("%w: warm-up must be at least 8 points", ErrConfig)
	}
	if o.Drift == 0 {
		o.Drift = 0.5
	}
	if o.Floor == 0 {
		o.Floor = 10
	}
	if o.Refractory == 0 {
		o.Refractory = 10
	}
	if o.Margin == 0 {
		o.Margin = 1.5
	}
	if o.Drift < 0 || o.Floor <= 0 || o.Refractory < 0 || o.Margin < 0 {
		return o, fmt.Errorf("%w: drift, floor and refractory period must not be negative", ErrConfig)
	}
	return o, nil
}

// cusum is one field's two-sided CUSUM (Page 1954) with re-estimation of
// the level after each reported change.
type cusum struct {
	n        int64   // points learned
	mean, m2 float64 // Welford moments over the fitting half of warm-up
	mu, sd   float64 // reference level and noise scale
	hi, lo   float64 // upper and lower cumulative sums, in sd units
	cal      float64 // largest sum seen while calibrating
	limit    float64 // h
	relearn  int64   // points left in re-estimating the level after a change
	rsum     float64 // sum of the points since the change
	rn       int64   // their count
}

// relearnPoints is how many points after a reported change estimate the
// new level (their mean) before the sums run again. Page's one-step
// estimate from a sum's own run is too noisy after an abrupt change: a
// false report then shifts the level by a few σ and sets off another.
const relearnPoints = 20

// Changepoint reports changes of level, one field at a time, with a
// two-sided CUSUM per field (Page 1954): each sum accumulates standardised
// departures from the reference level beyond the drift k and a change is
// reported when one reaches its limit h. The reference level is then
// re-estimated as the mean of the next 20 points, so the return to normal
// is reported as a change too. Limits are the larger of Floor and Margin
// times the largest sum seen over the second half of warm-up, so a field
// that wanders in training is not reported for doing so later.
//
// Score is the largest sum over its limit (0.5 at the limit); Alert is true
// only at the point where a change is reported: it is an event, not a
// state.
type Changepoint struct {
	cfg   ChangepointConfig
	fitN  int64
	need  float64 // sum/limit ratio that reports a change
	f     []cusum
	quiet int64 // points left in the refractory period
}

// NewChangepoint builds a changepoint detector.
func NewChangepoint(cfg ChangepointConfig) (*Changepoint, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Changepoint{
		cfg:  c,
		fitN: int64(c.Warmup / 2),
		need: -math.Log2(c.Sensitivity),
		f:    make([]cusum, len(c.Fields)),
	}, nil
}

// Fields implements Detector.
func (p *Changepoint) Fields() []string { return p.cfg.Fields }

// MemoryBytes implements Detector: 96 bytes per field plus a 120-byte
// header (888 bytes for 8 fields).
func (p *Changepoint) MemoryBytes() int {
	return len(p.f)*int(unsafe.Sizeof(cusum{})) + int(unsafe.Sizeof(*p))
}

// Observe implements Detector.
func (p *Changepoint) Observe(x []float64, res *Result) {
	res.Contributions = res.Contributions[:0]
	res.Score, res.Alert = 0, false
	warm := true
	remaining := 0
	for i := range p.f {
		if p.f[i].n < int64(p.cfg.Warmup) {
			warm = false
			remaining = max(remaining, p.cfg.Warmup-int(p.f[i].n))
		}
	}
	res.Warm, res.WarmupRemaining = warm, remaining
	if p.quiet > 0 {
		p.quiet--
	}
	best := 0.0
	fired := false
	for i := range p.f {
		v := x[i]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		c := &p.f[i]
		switch {
		case c.n < p.fitN:
			// Fit: exact running mean and variance.
			c.n++
			d := v - c.mean
			c.mean += d / float64(c.n)
			c.m2 += d * (v - c.mean)
			if c.n == p.fitN {
				c.mu = c.mean
				c.sd = math.Sqrt(c.m2 / math.Max(float64(c.n-1), 1))
				if floor := 1e-9 + 1e-6*math.Abs(c.mean); c.sd < floor {
					c.sd = floor
				}
			}
			continue
		case c.n < int64(p.cfg.Warmup):
			// Calibrate: run the sums against the fitted level; the largest
			// value they reach on training data bounds the limit.
			c.n++
			c.step(v, p.cfg.Drift)
			c.cal = math.Max(c.cal, math.Max(c.hi, c.lo))
			if c.n == int64(p.cfg.Warmup) {
				c.limit = math.Max(p.cfg.Floor, p.cfg.Margin*c.cal)
				c.hi, c.lo = 0, 0
			}
			continue
		}
		c.n++
		if c.relearn > 0 {
			c.rn++
			c.rsum += v
			c.mu = c.rsum / float64(c.rn)
			c.relearn--
			continue
		}
		c.step(v, p.cfg.Drift)
		r := math.Max(c.hi, c.lo) / c.limit
		best = math.Max(best, r)
		if r >= p.need {
			// Restart: the new level is estimated from the points to come.
			c.hi, c.lo = 0, 0
			c.relearn, c.rsum, c.rn = relearnPoints, 0, 0
			fired = true
			res.Contributions = append(res.Contributions, Contribution{Field: p.cfg.Fields[i], Share: r, Reason: ReasonShift})
		}
	}
	if !warm {
		res.Contributions = res.Contributions[:0]
		return
	}
	res.Score = scoreOf(best)
	total := 0.0
	for _, c := range res.Contributions {
		total += c.Share
	}
	for i := range res.Contributions {
		res.Contributions[i].Share /= total
	}
	sortContributions(res.Contributions)
	if fired && p.quiet == 0 {
		res.Alert = true
		p.quiet = int64(p.cfg.Refractory)
	}
}

// step adds one value to both sums.
func (c *cusum) step(v, k float64) {
	z := (v - c.mu) / c.sd
	c.hi = math.Max(0, c.hi+z-k)
	c.lo = math.Max(0, c.lo-z-k)
}

const changepointVersion = 1

// MarshalBinary implements encoding.BinaryMarshaler.
func (p *Changepoint) MarshalBinary() ([]byte, error) {
	e := encoder{b: make([]byte, 0, 96+len(p.f)*128)}
	e.header("changepoint", changepointVersion)
	e.strs(p.cfg.Fields)
	e.i64(int64(p.cfg.Warmup))
	e.f64(p.cfg.Drift)
	e.f64(p.cfg.Floor)
	e.i64(int64(p.cfg.Refractory))
	e.f64(p.cfg.Margin)
	e.i64(p.quiet)
	for i := range p.f {
		c := &p.f[i]
		e.i64(c.n)
		for _, v := range []float64{c.mean, c.m2, c.mu, c.sd, c.hi, c.lo, c.cal, c.limit} {
			e.f64(v)
		}
		e.i64(c.relearn)
		e.f64(c.rsum)
		e.i64(c.rn)
	}
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. The receiver must
// have the same fields and model settings; sensitivity may differ.
func (p *Changepoint) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	d.header("changepoint", changepointVersion)
	fields := d.strs()
	warm, drift, floor, refr, margin := d.i64(), d.f64(), d.f64(), d.i64(), d.f64()
	if d.err != nil {
		return d.err
	}
	if !equalStrings(fields, p.cfg.Fields) || warm != int64(p.cfg.Warmup) || drift != p.cfg.Drift || floor != p.cfg.Floor || refr != int64(p.cfg.Refractory) || margin != p.cfg.Margin {
		return fmt.Errorf("%w: the snapshot was taken with different fields or model settings; the model will relearn", ErrSnapshot)
	}
	quiet := d.i64()
	f := make([]cusum, len(p.f))
	for i := range f {
		c := &f[i]
		c.n = d.i64()
		c.mean, c.m2, c.mu, c.sd, c.hi, c.lo, c.cal, c.limit = d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64()
		c.relearn, c.rsum, c.rn = d.i64(), d.f64(), d.i64()
		if c.n < 0 || c.relearn < 0 || c.rn < 0 {
			return fmt.Errorf("%w: negative counters", ErrSnapshot)
		}
	}
	if err := d.done(); err != nil {
		return err
	}
	if quiet < 0 {
		return fmt.Errorf("%w: negative counters", ErrSnapshot)
	}
	p.quiet = quiet
	copy(p.f, f)
	return nil
}
