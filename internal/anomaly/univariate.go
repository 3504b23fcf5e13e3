package anomaly

import (
	"fmt"
	"math"
)

// UnivariateConfig configures the single-series detector.
type UnivariateConfig struct {
	// Field names the series (used in explanations).
	Field string
	// Sensitivity in (0,1): an alert needs Score >= 1-Sensitivity. Default 0.5.
	Sensitivity float64
	// Warmup is the learning period in points: the first half fits, the
	// second half calibrates the limits. Default 400.
	Warmup int
	// Window is the span, in points, of the short exponential window whose
	// distribution is compared with the long-run one. Default 20.
	Window int
	// HalfLife of the long-run statistics after warm-up, in points.
	// Default 5 × Warmup. Alerting points are learned at a quarter of the rate.
	HalfLife int
	// Margin multiplies the largest statistic seen while calibrating.
	// Default 1. Each statistic's limit is the larger of this and a fixed
	// floor for well-behaved noise.
	Margin float64
}

func (c *UnivariateConfig) withDefaults() (UnivariateConfig, error) {
	o := *c
	if o.Field == "" {
		o.Field = "value"
	}
	if o.Sensitivity == 0 {
		o.Sensitivity = 0.5
	}
	if !(o.Sensitivity > 0 && o.Sensitivity < 1) {
		return o, fmt.Errorf("%w: sensitivity %v must be between 0 and 1 (0.5 is the default)", ErrConfig, o.Sensitivity)
	}
	if o.Warmup == 0 {
		o.Warmup = 400
	}
	if o.Window == 0 {
		o.Window = 20
	}
	if o.Warmup < 8 || o.Window < 2 {
		return o, fmt.Errorf("%w: warm-up must be at least 8 points and the window at least 2", ErrConfig)
	}
	if o.HalfLife == 0 {
		o.HalfLife = 5 * o.Warmup
	}
	if o.Margin == 0 {
		o.Margin = 1
	}
	if o.HalfLife < 1 || o.Margin < 0 {
		return o, fmt.Errorf("%w: half-life and margin must be positive", ErrConfig)
	}
	return o, nil
}

// The three statistics of the univariate ensemble.
const (
	statSpike = iota
	statShift
	statStuck
	nStats
)

// statFloor is the lowest limit of each statistic: roughly the value it
// exceeds with probability 1e-6 on independent Gaussian noise.
func statFloor(i int) float64 {
	switch i {
	case statSpike:
		return 5 // |z|
	case statShift:
		return 27.6 // 2·n·KL is about χ² with 2 degrees of freedom: -2·ln(1e-6)
	default:
		return 13.8 // surprise of a run, in nats: -ln(1e-6)
	}
}

func statReason(i int) Reason {
	switch i {
	case statSpike:
		return ReasonSpike
	case statShift:
		return ReasonShift
	default:
		return ReasonStuck
	}
}

// Univariate is an ensemble of three windowed statistics on one series
// (see doc.go): a robust z-score against the long-run level (spikes), the
// relative entropy between a short recent window and the long-run
// distribution (level shifts, drift, variance changes), and the surprise of
// the current run of identical values (stuck sensors).
type Univariate struct {
	cfg   UnivariateConfig
	fitN  int64
	alpha float64
	beta  float64

	n     int64
	calN  int64
	mean  float64
	vr    float64
	smean float64
	svar  float64
	prev  float64
	run   int64
	eq    float64 // probability that a value repeats the previous one
	cal   [nStats]tail
	limit [nStats]float64
}

// NewUnivariate builds a single-series detector.
func NewUnivariate(cfg UnivariateConfig) (*Univariate, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Univariate{
		cfg:   c,
		fitN:  int64(c.Warmup / 2),
		alpha: 1 - math.Exp2(-1/float64(c.HalfLife)),
		beta:  2 / (float64(c.Window) + 1),
		prev:  math.NaN(),
	}, nil
}

// Fields implements Detector.
func (u *Univariate) Fields() []string { return []string{u.cfg.Field} }

// MemoryBytes implements Detector.
func (u *Univariate) MemoryBytes() int { return 208 }

// Observe implements Detector; x must have one element.
func (u *Univariate) Observe(x []float64, res *Result) {
	u.observe(x[0], res)
}

// ObserveValue scores and learns one value; it is Observe without the slice.
func (u *Univariate) ObserveValue(v float64, res *Result) { u.observe(v, res) }

func (u *Univariate) sd() float64 {
	s := math.Sqrt(math.Max(u.vr, 0))
	if floor := 1e-9 + 1e-6*math.Abs(u.mean); s < floor {
		s = floor
	}
	return s
}

func (u *Univariate) observe(v float64, res *Result) {
	res.Contributions = res.Contributions[:0]
	res.Score, res.Alert = 0, false
	warm := u.n >= int64(u.cfg.Warmup)
	res.Warm = warm
	res.WarmupRemaining = 0
	if !warm {
		res.WarmupRemaining = u.cfg.Warmup - int(u.n)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return // a missing value says nothing and teaches nothing
	}

	// Run of identical values, and how often values repeat at all.
	repeat := v == u.prev
	if repeat {
		u.run++
	} else {
		u.run = 0
	}

	fitted := u.n >= u.fitN
	var stats [nStats]float64
	if fitted {
		sd := u.sd()
		z := (v - u.mean) / sd
		stats[statSpike] = math.Abs(z)

		// The short window sees values clipped at 4σ, so one spike does
		// not read as a lasting shift.
		cv := math.Max(math.Min(v, u.mean+4*sd), u.mean-4*sd)
		d := cv - u.smean
		u.smean += u.beta * d
		u.svar = (1 - u.beta) * (u.svar + u.beta*d*d)
		ss := math.Max(math.Sqrt(math.Max(u.svar, 0)), sd*1e-3)
		dm := u.smean - u.mean
		kl := math.Log(sd/ss) + (ss*ss+dm*dm)/(2*sd*sd) - 0.5
		stats[statShift] = 2 * float64(u.cfg.Window) * math.Max(kl, 0)

		p := math.Min(math.Max(u.eq, 1/float64(u.n+2)), 0.999)
		stats[statStuck] = -float64(u.run) * math.Log(p)

		if !warm {
			// Calibrate once the short window has filled with scored data.
			if u.calN >= int64(u.cfg.Window) {
				for i, s := range stats {
					u.cal[i].add(s)
				}
			}
			u.calN++
		} else {
			best, arg := 0.0, 0
			for i, s := range stats {
				if r := s / u.limit[i]; r > best {
					best, arg = r, i
				}
			}
			res.Score = scoreOf(best)
			res.Alert = res.Score >= alertLevel(u.cfg.Sensitivity)
			if best > 0 {
				res.Contributions = append(res.Contributions, Contribution{Field: u.cfg.Field, Share: 1, Reason: statReason(arg)})
			}
		}
	}

	// Learn. The rate is 1/n (exact running moments) until it falls to the
	// long-run rate; alerting points teach at a tenth of it.
	a := 1 / float64(u.n+1)
	if warm {
		a = math.Max(a, u.alpha)
		if res.Alert {
			a = u.alpha / 4
		}
	}
	lv := v
	if fitted {
		sd := u.sd()
		lv = math.Max(math.Min(v, u.mean+6*sd), u.mean-6*sd)
	}
	d := lv - u.mean
	u.mean += a * d
	u.vr = (1 - a) * (u.vr + a*d*d)
	if !math.IsNaN(u.prev) {
		r := 0.0
		if repeat {
			r = 1
		}
		u.eq += a * (r - u.eq)
	}
	u.prev = v
	u.n++
	if u.n == u.fitN {
		u.smean, u.svar = u.mean, u.vr
	}
	if u.n == int64(u.cfg.Warmup) {
		for i := range u.limit {
			// The shift statistic is smoothed and autocorrelated: use the
			// moment-matched tail. Spikes and runs: the largest seen.
			l := u.cal[i].max
			if i == statShift {
				l = u.cal[i].limit()
			}
			u.limit[i] = math.Max(statFloor(i), u.cfg.Margin*l)
		}
	}
}

const univariateVersion = 1

// MarshalBinary implements encoding.BinaryMarshaler.
func (u *Univariate) MarshalBinary() ([]byte, error) {
	e := encoder{b: make([]byte, 0, 256)}
	e.header("univariate", univariateVersion)
	e.str(u.cfg.Field)
	e.i64(int64(u.cfg.Warmup))
	e.i64(int64(u.cfg.Window))
	e.i64(int64(u.cfg.HalfLife))
	e.f64(u.cfg.Margin)
	e.i64(u.n)
	e.i64(u.calN)
	for _, v := range []float64{u.mean, u.vr, u.smean, u.svar, u.prev, u.eq} {
		e.f64(v)
	}
	e.i64(u.run)
	for i := 0; i < nStats; i++ {
		u.cal[i].encode(&e)
		e.f64(u.limit[i])
	}
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. The receiver must
// have the same field and model settings; sensitivity may differ.
func (u *Univariate) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	d.header("univariate", univariateVersion)
	field := d.str()
	warm, win, hl, margin := d.i64(), d.i64(), d.i64(), d.f64()
	if d.err != nil {
		return d.err
	}
	if field != u.cfg.Field || warm != int64(u.cfg.Warmup) || win != int64(u.cfg.Window) || hl != int64(u.cfg.HalfLife) || margin != u.cfg.Margin {
		return fmt.Errorf("%w: the snapshot was taken with a different field or model settings; the model will relearn", ErrSnapshot)
	}
	var t Univariate = *u
	t.n, t.calN = d.i64(), d.i64()
	t.mean, t.vr, t.smean, t.svar, t.prev, t.eq = d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64()
	t.run = d.i64()
	for i := 0; i < nStats; i++ {
		t.cal[i].decode(&d)
		t.limit[i] = d.f64()
	}
	if err := d.done(); err != nil {
		return err
	}
	if t.n < 0 || t.run < 0 {
		return fmt.Errorf("%w: negative counters", ErrSnapshot)
	}
	*u = t
	return nil
}

// Fieldwise runs one Univariate per field of a device. The device score is
// the largest field score, and every field scoring above half the alert
// level is named, with shares proportional to its score.
type Fieldwise struct {
	fields []string
	dets   []*Univariate
	sens   float64
	one    Result
	scores []float64
	reason []Reason
}

// NewFieldwise builds per-field univariate detectors; cfg.Field is ignored.
func NewFieldwise(fields []string, cfg UnivariateConfig) (*Fieldwise, error) {
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: a per-field model needs at least one field", ErrConfig)
	}
	f := &Fieldwise{
		fields: append([]string(nil), fields...),
		dets:   make([]*Univariate, len(fields)),
		scores: make([]float64, len(fields)),
		reason: make([]Reason, len(fields)),
	}
	for i, name := range f.fields {
		c := cfg
		c.Field = name
		u, err := NewUnivariate(c)
		if err != nil {
			return nil, err
		}
		f.dets[i] = u
		f.sens = u.cfg.Sensitivity
	}
	return f, nil
}

// Fields implements Detector.
func (f *Fieldwise) Fields() []string { return f.fields }

// MemoryBytes implements Detector.
func (f *Fieldwise) MemoryBytes() int { return len(f.dets)*(f.dets[0].MemoryBytes()+24) + 96 }

// Observe implements Detector.
func (f *Fieldwise) Observe(x []float64, res *Result) {
	res.Contributions = res.Contributions[:0]
	res.Score, res.Alert, res.Warm, res.WarmupRemaining = 0, false, true, 0
	total := 0.0
	for i, u := range f.dets {
		u.observe(x[i], &f.one)
		f.scores[i] = f.one.Score
		f.reason[i] = ReasonNone
		if len(f.one.Contributions) > 0 {
			f.reason[i] = f.one.Contributions[0].Reason
		}
		if !f.one.Warm {
			res.Warm = false
		}
		res.WarmupRemaining = max(res.WarmupRemaining, f.one.WarmupRemaining)
		if f.one.Score > res.Score {
			res.Score = f.one.Score
		}
	}
	if !res.Warm {
		res.Score = 0
		return
	}
	res.Alert = res.Score >= alertLevel(f.sens)
	cut := alertLevel(f.sens) / 2
	for _, s := range f.scores {
		if s >= cut {
			total += s
		}
	}
	for i, s := range f.scores {
		if s >= cut && total > 0 {
			res.Contributions = append(res.Contributions, Contribution{Field: f.fields[i], Share: s / total, Reason: f.reason[i]})
		}
	}
	sortContributions(res.Contributions)
}

const fieldwiseVersion = 1

// MarshalBinary implements encoding.BinaryMarshaler.
func (f *Fieldwise) MarshalBinary() ([]byte, error) {
	e := encoder{}
	e.header("fieldwise", fieldwiseVersion)
	e.strs(f.fields)
	for _, u := range f.dets {
		b, _ := u.MarshalBinary()
		e.str(string(b))
	}
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (f *Fieldwise) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	d.header("fieldwise", fieldwiseVersion)
	fields := d.strs()
	if d.err != nil {
		return d.err
	}
	if !equalStrings(fields, f.fields) {
		return fmt.Errorf("%w: the snapshot covers fields %v, the model %v; the model will relearn", ErrSnapshot, fields, f.fields)
	}
	parts := make([]string, len(f.dets))
	for i := range parts {
		parts[i] = d.str()
	}
	if err := d.done(); err != nil {
		return err
	}
	fresh := make([]Univariate, len(f.dets))
	for i, u := range f.dets {
		fresh[i] = *u
		if err := fresh[i].UnmarshalBinary([]byte(parts[i])); err != nil {
			return err
		}
	}
	for i := range f.dets {
		*f.dets[i] = fresh[i]
	}
	return nil
}
