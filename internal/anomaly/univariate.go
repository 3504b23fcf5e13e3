package anomaly

import (
	"fmt"
	"math"
	"time"
	"unsafe"
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
	// Default Warmup: short enough that the baseline follows slow drift
	// (a drift of 2·10⁻⁴ σ per point leaves it about 0.1 σ behind).
	HalfLife int
	// AlertHalfLife is the half-life used instead while the point is in
	// alert: slower, so a fault is not absorbed while it lasts, but finite,
	// so a lasting change of regime (slow drift included) is accepted in
	// the end and its alert clears. Default 4 × HalfLife.
	AlertHalfLife int
	// Margin multiplies the largest statistic seen while calibrating.
	// Default 1. Each statistic's limit is the larger of this and a fixed
	// floor for well-behaved noise.
	Margin float64
	// Wander is how fast the detector learns how far the short-window level
	// normally strays from the long-run level, as a fraction of the level's
	// own learning rate. Real machines wander more slowly than their point
	// noise suggests (a pump's vibration moves by several noise sd over an
	// hour of normal running); the shift statistic divides by point noise
	// plus this learned wander, so a field that wanders needs a larger move
	// to alert. Alerting points do not teach it. Default 0.25; negative
	// turns it off (the statistic then assumes independent noise).
	Wander float64
	// Persist is how many points in a row must be above the alert level
	// before an alert starts, unless one is twice above it. Default 30;
	// 1 alerts on the first point.
	Persist int
	// Hysteresis is the fraction of the alert level below which an alert
	// ends. Default 0.1: a fault is one alert from start to end rather
	// than one that drops out while the fault eases; after a step or a
	// change of spread ends the alert clears within about 15 points, after
	// a single spike within about 35. Chosen on SKAB's valve1 (RESULTS.md).
	Hysteresis float64
}

func (c *UnivariateConfig) withDefaults() (UnivariateConfig, error) {
	o := *c
	if o.Field == "" {
		o.Field = "value"
	}
	if err := baseDefaults(&o.Sensitivity, &o.Warmup); err != nil {
		return o, err
	}
	if o.Window == 0 {
		o.Window = 20
	}
	if o.Warmup < 8 || o.Window < 2 {
		return o, fmt.Errorf("%w: warm-up must be at least 8 points and the window at least 2", ErrConfig)
	}
	if o.HalfLife == 0 {
		o.HalfLife = o.Warmup
	}
	if o.AlertHalfLife == 0 {
		o.AlertHalfLife = 4 * o.HalfLife
	}
	if o.Margin == 0 {
		o.Margin = 1
	}
	if o.Wander == 0 {
		o.Wander = 0.25
	}
	if o.Wander < 0 {
		o.Wander = -1
	}
	if o.Persist == 0 {
		o.Persist = 30
	}
	if o.Persist < 1 {
		return o, fmt.Errorf("%w: persist must be at least 1 point", ErrConfig)
	}
	if o.Hysteresis == 0 {
		o.Hysteresis = 0.1
	}
	if !(o.Hysteresis > 0 && o.Hysteresis <= 1) {
		return o, fmt.Errorf("%w: hysteresis %v must be in (0,1]", ErrConfig, o.Hysteresis)
	}
	if o.HalfLife < 1 || o.AlertHalfLife < 1 || o.Margin < 0 {
		return o, fmt.Errorf("%w: half-life and margin must be positive", ErrConfig)
	}
	return o, nil
}

// The statistics of the univariate ensemble.
const (
	statSpike = iota
	statShift
	statSpread
	statStuck
	statJump
	nStats
)

// statFloor is the lowest limit of each statistic: roughly the value it
// exceeds with probability 1e-6 on independent Gaussian noise.
func statFloor(i int) float64 {
	switch i {
	case statSpike:
		return 5 // |z|
	case statShift:
		return 23.9 // n·Δ²/σ² is about χ² with 1 degree of freedom: P ≈ 10⁻⁶
	case statSpread:
		// n·(r − 1 − ln r), r the variance ratio, is about χ²₁ for small
		// changes, but successive differences overlap, so the window holds
		// about half as many independent terms and the tail is heavier.
		// At 34, 2·10⁶ points of simulated Gaussian noise gave 0.1
		// spread-alarm points per 10,000.
		return 34
	case statJump:
		// |Δ|/σ_Δ. Differences of real sensors have heavier tails than
		// Gaussian noise: SKAB's anomaly-free pump steps by 10–11 σ_Δ in
		// normal running, which alerted at 5, and at 6 with sensitivity 0.55
		// (twice the floor alerts at once).
		return 7
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
	case statSpread:
		return ReasonSpread
	case statJump:
		return ReasonJump
	default:
		return ReasonStuck
	}
}

// Univariate is an ensemble of statistics on one series (see doc.go): a
// robust z-score against the long-run level (spikes), the relative entropy
// between a short recent window and the long-run distribution (level
// shifts, drift, variance changes), the step from the previous value
// (sudden jumps on a swinging series) and the surprise of the current run
// of identical values (stuck sensors).
type Univariate struct {
	cfg    UnivariateConfig
	fitN   int64
	alpha  float64
	alphaA float64 // learning rate while in alert
	beta   float64

	n     int64
	calN  int64
	mean  float64
	vr    float64
	smean float64
	svar  float64 // short-window mean of half the squared successive difference
	dvar  float64 // its long-run mean
	prev  float64
	run   int64
	alert bool    // the previous scored point was in alert (hysteresis)
	above int64   // points in a row above the alert level
	eq    float64 // probability that a value repeats the previous one
	dm    float64 // short-window level minus long-run level at the last scored point
	w2    float64 // learned wander: variance of dm beyond what point noise explains
	cal   [nStats]tail
	limit [nStats]float64

	lk       likelihood
	surprise float64 // the likelihood's log10 surprise at the last point
}

// NewUnivariate builds a single-series detector.
func NewUnivariate(cfg UnivariateConfig) (*Univariate, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Univariate{
		cfg:    c,
		fitN:   int64(c.Warmup / 2),
		alpha:  1 - math.Exp2(-1/float64(c.HalfLife)),
		alphaA: 1 - math.Exp2(-1/float64(c.AlertHalfLife)),
		beta:   2 / (float64(c.Window) + 1),
		prev:   math.NaN(),
	}, nil
}

// Fields implements Detector.
func (u *Univariate) Fields() []string { return []string{u.cfg.Field} }

// MemoryBytes implements Detector.
func (u *Univariate) MemoryBytes() int { return int(unsafe.Sizeof(*u)) }

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

func (u *Univariate) observe(v float64, res *Result) { u.observeAt(0, v, res) }

// ObserveAt implements TimedDetector: with timestamps the likelihood score
// learns the daily cycle, and a gap in time breaks the short-term
// statistics instead of reading as one large step.
func (u *Univariate) ObserveAt(t time.Time, x []float64, res *Result) {
	u.observeAt(unixNano(t), x[0], res)
}

// ObserveValueAt is ObserveAt without the slice.
func (u *Univariate) ObserveValueAt(t time.Time, v float64, res *Result) {
	u.observeAt(unixNano(t), v, res)
}

// unixNano is t in unix nanoseconds, 0 for the zero time (no time).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (u *Univariate) observeAt(t int64, v float64, res *Result) {
	res.Likelihood, u.surprise = 0, 0
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
	if t != 0 && u.lk.lastT != 0 && u.lk.dt > 0 && float64(t-u.lk.lastT)/1e9 > gapFactor*u.lk.dt {
		// A gap (the machine or its link was off): the next value is not
		// a step from the last one, and the short window starts again
		// from the learned level rather than carrying the old one across.
		u.prev = math.NaN()
		u.run = 0
		if u.n > u.fitN {
			u.smean, u.svar = u.mean, u.dvar
		}
	}
	sur, seasonal := u.lk.observe(t, v, u.alpha)
	if warm {
		u.surprise = sur
		res.Likelihood = likelihoodScore(sur)
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
		u.smean += u.beta * (cv - u.smean)
		dm := u.smean - u.mean
		u.dm = dm
		nw := float64(u.cfg.Window)
		stats[statShift] = dm * dm / (sd*sd/nw + u.w2)

		// Spread compares the short-window and long-run mean of half the
		// squared successive difference, a variance estimate that a step
		// or a slow drift hardly moves, so it answers only to changes of
		// spread. nw·(r−1−ln r) is the variance part of the windowed
		// relative entropy (Wang et al. 2011).
		if !math.IsNaN(u.prev) {
			lim := 4 * math.Sqrt(2*math.Max(u.dvar, 0))
			dd := math.Max(math.Min(v-u.prev, lim), -lim)
			u.svar += u.beta * (dd*dd/2 - u.svar)
		}
		dv := math.Max(u.dvar, sd*sd*1e-6)
		r := math.Max(u.svar, dv*1e-3) / dv
		stats[statSpread] = nw * math.Max(r-1-math.Log(r), 0)

		// Jump: the step from the previous value against the learned
		// successive difference. Seasonality and drift hardly move
		// differences, so a sudden step shows on a series whose level
		// swings widely (where spike and shift are blunted).
		if !math.IsNaN(u.prev) {
			stats[statJump] = math.Abs(v-u.prev) / math.Sqrt(2*math.Max(u.dvar, sd*sd*1e-6))
		}

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
			// Hysteresis: an alert, once raised, lasts while the
			// statistic stays above a fraction of the limit, so a fault
			// hovering near the limit is one episode, not a flurry.
			need := -math.Log2(u.cfg.Sensitivity)
			if u.alert {
				need *= u.cfg.Hysteresis
			}
			if best >= need {
				u.above++
			} else {
				u.above = 0
			}
			// Like the run rules of control charts: a point far beyond the
			// level alerts at once, a moderate excess must persist.
			res.Alert = u.above > 0 && (u.alert || u.above >= int64(u.cfg.Persist) || best >= immediate*need)
			u.alert = res.Alert
			reason := statReason(arg)
			if seasonal && res.Likelihood >= 0.5 && res.Score < alertLevel(u.cfg.Sensitivity) {
				// The likelihood, not the alert statistics, finds the
				// value unusual: it is far from this time of day's.
				reason = ReasonSeasonal
			}
			if best > 0 || reason == ReasonSeasonal {
				res.Contributions = append(res.Contributions, Contribution{Field: u.cfg.Field, Share: 1, Reason: reason})
			}
		}
	}

	// Learn. The rate is 1/n (exact running moments) until it falls to the
	// long-run rate; alerting points teach at the slower alert rate.
	a := 1 / float64(u.n+1)
	if warm {
		a = math.Max(a, u.alpha)
		if res.Alert {
			a = u.alphaA
		}
	}
	if fitted && u.cfg.Wander > 0 && u.calN > int64(u.cfg.Window) && !res.Alert {
		// Wander is learned from calibration on (exact mean), then at a
		// fraction of the level's rate, never from alerting points, so a
		// fault does not widen its own band.
		sd := u.sd()
		ex := math.Max(u.dm*u.dm-sd*sd/float64(u.cfg.Window), 0)
		wa := a * u.cfg.Wander
		if !warm {
			wa = 1 / float64(u.calN)
		}
		u.w2 += wa * (ex - u.w2)
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
		dd := v - u.prev
		if fitted {
			lim := 6 * math.Sqrt(2*math.Max(u.dvar, 0))
			dd = math.Max(math.Min(dd, lim), -lim)
		}
		// Exact running mean until the long-run rate takes over.
		ad := math.Max(a, 1/float64(u.n))
		u.dvar += ad * (dd*dd/2 - u.dvar)
		r := 0.0
		if repeat {
			r = 1
		}
		u.eq += a * (r - u.eq)
	}
	u.prev = v
	u.n++
	if u.n == u.fitN {
		u.smean, u.svar = u.mean, u.dvar
	}
	if u.n == int64(u.cfg.Warmup) {
		for i := range u.limit {
			// The windowed statistics are smoothed and autocorrelated: use
			// the moment-matched tail. Spikes and runs: the largest seen.
			l := u.cal[i].max
			if i == statShift || i == statSpread {
				l = u.cal[i].limit()
			}
			u.limit[i] = math.Max(statFloor(i), u.cfg.Margin*l)
		}
	}
}

// immediate is how many times the alert level a statistic must reach to
// alert without waiting for Persist points in a row.
const immediate = 2

// univariateVersion 8 added the likelihood score's state; version 7
// snapshots are read with that state empty.
const univariateVersion = 8

// MarshalBinary implements encoding.BinaryMarshaler.
func (u *Univariate) MarshalBinary() ([]byte, error) {
	e := encoder{b: make([]byte, 0, 256)}
	e.header("univariate", univariateVersion)
	e.str(u.cfg.Field)
	e.i64(int64(u.cfg.Warmup))
	e.i64(int64(u.cfg.Window))
	e.i64(int64(u.cfg.HalfLife))
	e.i64(int64(u.cfg.AlertHalfLife))
	e.f64(u.cfg.Margin)
	e.f64(u.cfg.Wander)
	e.i64(int64(u.cfg.Persist))
	e.f64(u.cfg.Hysteresis)
	e.i64(u.n)
	e.i64(u.calN)
	for _, v := range []float64{u.mean, u.vr, u.smean, u.svar, u.dvar, u.prev, u.eq, u.dm, u.w2} {
		e.f64(v)
	}
	e.i64(u.run)
	e.i64(u.above)
	if u.alert {
		e.i64(1)
	} else {
		e.i64(0)
	}
	for i := 0; i < nStats; i++ {
		u.cal[i].encode(&e)
		e.f64(u.limit[i])
	}
	u.lk.encode(&e)
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. The receiver must
// have the same field and model settings; sensitivity may differ.
func (u *Univariate) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	ver := d.headerOf("univariate", 7, univariateVersion)
	field := d.str()
	warm, win, hl, ahl, margin, wander, persist, hyst := d.i64(), d.i64(), d.i64(), d.i64(), d.f64(), d.f64(), d.i64(), d.f64()
	if d.err != nil {
		return d.err
	}
	if field != u.cfg.Field || warm != int64(u.cfg.Warmup) || win != int64(u.cfg.Window) || hl != int64(u.cfg.HalfLife) || ahl != int64(u.cfg.AlertHalfLife) || margin != u.cfg.Margin || wander != u.cfg.Wander || persist != int64(u.cfg.Persist) || hyst != u.cfg.Hysteresis {
		return fmt.Errorf("%w: the snapshot was taken with a different field or model settings; the model will relearn", ErrSnapshot)
	}
	var t Univariate = *u
	t.n, t.calN = d.i64(), d.i64()
	t.mean, t.vr, t.smean, t.svar, t.dvar, t.prev, t.eq, t.dm, t.w2 = d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64()
	t.run = d.i64()
	t.above = d.i64()
	t.alert = d.i64() == 1
	for i := 0; i < nStats; i++ {
		t.cal[i].decode(&d)
		t.limit[i] = d.f64()
	}
	t.lk = likelihood{}
	if ver >= 8 {
		t.lk.decode(&d)
	}
	if err := d.done(); err != nil {
		return err
	}
	if t.n < 0 || t.run < 0 || t.above < 0 || t.w2 < 0 {
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
func (f *Fieldwise) Observe(x []float64, res *Result) { f.observeAt(0, x, res) }

// ObserveAt implements TimedDetector.
func (f *Fieldwise) ObserveAt(t time.Time, x []float64, res *Result) {
	f.observeAt(unixNano(t), x, res)
}

func (f *Fieldwise) observeAt(t int64, x []float64, res *Result) {
	res.Contributions = res.Contributions[:0]
	res.Score, res.Alert, res.Warm, res.WarmupRemaining, res.Likelihood = 0, false, true, 0, 0
	total, sur, top := 0.0, 0.0, -1
	for i, u := range f.dets {
		u.observeAt(t, x[i], &f.one)
		if u.surprise > sur {
			sur, top = u.surprise, i
		}
		f.scores[i] = f.one.Score
		f.reason[i] = ReasonNone
		if len(f.one.Contributions) > 0 {
			f.reason[i] = f.one.Contributions[0].Reason
		}
		if !f.one.Warm {
			res.Warm = false
		}
		res.WarmupRemaining = max(res.WarmupRemaining, f.one.WarmupRemaining)
		res.Alert = res.Alert || f.one.Alert
		if f.one.Score > res.Score {
			res.Score = f.one.Score
		}
	}
	if !res.Warm {
		res.Score, res.Alert = 0, false
		return
	}
	// The most surprising field, at the probability that any of the d
	// fields is that surprising (Bonferroni), so a device with many fields
	// is not more often "improbable" than one with a single field.
	res.Likelihood = likelihoodScore(sur - math.Log10(float64(len(f.dets))))
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
	if len(res.Contributions) == 0 && res.Likelihood >= 0.5 && top >= 0 {
		// Only the likelihood finds the point unusual: name its field.
		res.Contributions = append(res.Contributions, Contribution{Field: f.fields[top], Share: 1, Reason: f.reason[top]})
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
