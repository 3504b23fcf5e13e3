package anomaly

import "math"

// The likelihood score (Result.Likelihood) answers "how improbable is the
// latest value, given this series' recent history?", as a calibrated tail
// probability, for threshold sweeps and ranking; the alert state machine
// (limits, persistence, hysteresis) is separate and unaffected. Three parts,
// each O(1) in memory and time:
//
//  1. A residual. With timestamps: the distance of the value from what the
//     series did at the same time of day over about the last
//     likeProfileDays days (seasonBins bins of the day, in UTC: the bins
//     are labels, so any time zone's cycle falls into them, and a
//     daylight-saving shift is relearnt in a few days). Updates of the
//     profile are winsorised, so a spike does not drag it along. Without
//     timestamps: the distance from the long-run level.
//  2. Its tail probability p under a generalised Pareto fitted, by the
//     method of moments, to the residuals' excesses over their tracked
//     likeQuantile-quantile, forgotten with half-life likeHalfLife points
//     (peaks over threshold, as in Siffer et al., "Anomaly detection in
//     streams with extreme value theory", KDD 2017). Each excess counts at
//     most likeExcessCap times the mean excess, and a series whose
//     residuals are mostly exactly zero (constant, quantised) has its tail
//     over zero.
//  3. Declustering: surprises come in clusters (a level shift is surprising
//     for as long as the profile has not caught up), and only the first
//     should read as new. The reported surprise is −log10 p minus
//     likeDecluster × the largest recent surprise (at most
//     likeClusterCap), which decays with half-life likeClusterHalfLife
//     points.
//
// The score is s/(s+likeHalf) for the reported surprise s = −log10 p: 0.5 at
// p = 10⁻⁵, rising towards 1. The constants were chosen on the NAB
// development files (RESULTS.md).
const (
	seasonBins          = 48     // half-hour bins of the day
	likeProfileDays     = 5      // days of history each time-of-day bin remembers
	likeQuantile        = 0.98   // the threshold above which the tail is fitted
	likeQuantileStep    = 0.01   // quantile tracking step, in units of the mean residual
	likeHalfLife        = 2000.0 // forgetting of the tail model, in points
	likeMinExcess       = 5      // excesses needed before the tail is trusted
	likeDecluster       = 0.5    // the share of the largest recent surprise a new one must exceed
	likeClusterHalfLife = 400.0  // how fast that memory fades, in points
	likeClusterCap      = 10     // the largest surprise the declustering remembers
	likeExcessCap       = 10     // an excess counts at most this many times the mean excess
	likeHalf            = 5.0    // −log10 p at which the score is 0.5
	likeGammaMax        = 0.9    // caps the Pareto shape (its variance diverges at 0.5, its mean at 1)
	likeWarm            = 20     // points before the threshold is tracked
	likeClamp           = 3      // profile updates are winsorised at this many times the tail threshold
)

// tailModel is the peaks-over-threshold estimate of a non-negative
// statistic's upper tail: the threshold t (its likeQuantile-quantile,
// tracked by stochastic approximation), the rate of exceedances and the
// first two moments of the excess over t.
type tailModel struct {
	n, mean, t, rate, e1, e2, ne float64
}

// log10p is the log10 of the estimated probability of a value at least x.
func (m *tailModel) log10p(x float64) float64 {
	if m.n < likeWarm {
		return 0
	}
	if m.t <= 0 {
		// More than 2% of the residuals are exactly zero: a constant or
		// quantised series. Model the non-zero ones as the excesses over
		// 0; before there are enough, a move is rare, but no rarer than
		// about one in the points seen (the rule of three).
		if x <= 0 {
			return 0
		}
		if m.ne < likeMinExcess {
			return math.Log10(math.Max(m.rate, 3*math.Max(1/m.n, likeRate)))
		}
	} else if m.ne < likeMinExcess {
		return 0
	}
	if x <= m.t {
		// Below the threshold the tail is not modelled; interpolate so that
		// the score stays monotone in x.
		return math.Log10(1 - (1-m.rate)*x/m.t)
	}
	v := math.Max(m.e2-m.e1*m.e1, 1e-300)
	// Method of moments for the generalised Pareto: shape ξ = ½(1−μ²/σ²),
	// scale = μ(1−ξ). ξ < 0 (a bounded tail) is taken as 0, so a value
	// beyond the largest seen stays finitely improbable and scores rank it.
	xi := math.Min(math.Max(0.5*(1-m.e1*m.e1/v), 0), likeGammaMax)
	y := (x - m.t) / (m.e1 * (1 - xi))
	lp := math.Log10(math.Max(m.rate, 1e-300))
	if xi < 1e-6 {
		return lp - y/math.Ln10
	}
	return lp - math.Log10(1+xi*y)/xi
}

// likeRate is the tail model's forgetting rate per point, 1−2^(−1/likeHalfLife).
const likeRate = 3.4651354e-4

// likeDecay is the per-point decay of the recent surprise, 2^(−1/likeClusterHalfLife).
const likeDecay = 0.99826863

func (m *tailModel) learn(x float64) {
	m.n++
	a := math.Max(1/m.n, likeRate)
	m.mean += a * (x - m.mean)
	if m.n < likeWarm {
		m.t = math.Max(m.t, x) * 0.999 // start high, so the tracker comes down to the quantile
		return
	}
	over := 0.0
	if x > m.t {
		over = 1
		ex := x - m.t
		if m.ne >= likeMinExcess {
			// One enormous excess would otherwise fatten the fitted
			// tail, and hide everything after it, for thousands of
			// points; a tail that is really heavier still raises the
			// mean excess step by step.
			ex = math.Min(ex, likeExcessCap*m.e1)
		}
		m.ne++
		b := math.Max(1/m.ne, a/(1-likeQuantile)) // the same memory in time as the rate
		m.e1 += b * (ex - m.e1)
		m.e2 += b * (ex*ex - m.e2)
	}
	m.rate += a * (over - m.rate)
	m.t = math.Max(m.t+likeQuantileStep*m.mean*(over-(1-likeQuantile)), 0)
}

// likelihood is the per-series state of the likelihood score.
type likelihood struct {
	n      float64
	level  float64 // long-run level, the reference without timestamps
	dt     float64 // typical interval between points, seconds
	lastT  int64   // unix nanoseconds of the last point, 0 before any
	prof   [seasonBins]float64
	profN  [seasonBins]float64
	tail   tailModel
	recent float64 // largest recent surprise, decaying (declustering)
}

// binOf is the half-hour of the day (UTC) of t, in unix nanoseconds.
func binOf(t int64) int {
	sec := (t / 1e9) % 86400
	if sec < 0 {
		sec += 86400
	}
	return int(sec * seasonBins / 86400)
}

// observe returns the log10 surprise to report for v at time t (0: no
// time) and learns v. It is 0 until the tail model has seen enough.
func (l *likelihood) observe(t int64, v float64, rate float64) (surprise float64, seasonal bool) {
	resid := math.NaN()
	b := -1
	switch {
	case t != 0:
		// With time, the reference is the time of day's profile, once
		// its bin holds two points; until then nothing is scored.
		b = binOf(t)
		if l.profN[b] >= 2 {
			resid, seasonal = math.Abs(v-l.prof[b]), true
		}
	case l.n > 0:
		resid = math.Abs(v - l.level)
	}
	if !math.IsNaN(resid) {
		s := math.Max(-l.tail.log10p(resid), 0)
		surprise = math.Max(s-likeDecluster*l.recent, 0)
		// Capped, so one enormous value does not silence the score
		// for thousands of points: beyond p = 10⁻¹⁰ a surprise says
		// nothing more about which cluster a later point belongs to.
		l.recent = math.Max(l.recent*likeDecay, math.Min(s, likeClusterCap))
		l.tail.learn(resid)
	}

	l.n++
	l.level += math.Max(1/l.n, rate) * (v - l.level)
	if b >= 0 {
		if l.lastT != 0 {
			if d := float64(t-l.lastT) / 1e9; d > 0 {
				if l.dt == 0 {
					l.dt = d
				} else if d < gapFactor*l.dt {
					l.dt += 0.01 * (d - l.dt)
				}
			}
		}
		l.lastT = t
		// Each bin averages about likeProfileDays visits, whatever the
		// sampling rate: a visit is one bin width of points.
		perVisit := 1.0
		if l.dt > 0 {
			perVisit = math.Max(1, 86400/seasonBins/l.dt)
		}
		l.profN[b]++
		d := v - l.prof[b]
		if l.profN[b] > 2 && l.tail.ne >= likeMinExcess && l.tail.t > 0 {
			// Winsorised: a spike moves the profile no more than a
			// value likeClamp times the residuals' 98th percentile
			// away would, so the normal values after it are not read
			// as surprising.
			c := likeClamp * l.tail.t
			d = math.Max(math.Min(d, c), -c)
		}
		l.prof[b] += d / math.Min(l.profN[b], likeProfileDays*perVisit)
	}
	return surprise, seasonal
}

// likelihoodScore maps a log10 surprise to [0,1): 0.5 at p = 10⁻⁵.
func likelihoodScore(s float64) float64 {
	if !(s > 0) {
		return 0
	}
	return s / (s + likeHalf)
}

// gapFactor: an interval this many times the typical one is a gap, after
// which a series is not treated as continuing where it stopped.
const gapFactor = 10

func (l *likelihood) encode(e *encoder) {
	for _, v := range []float64{l.n, l.level, l.dt, l.recent} {
		e.f64(v)
	}
	e.i64(l.lastT)
	for i := range l.prof {
		e.f64(l.prof[i])
		e.f64(l.profN[i])
	}
	m := &l.tail
	for _, v := range []float64{m.n, m.mean, m.t, m.rate, m.e1, m.e2, m.ne} {
		e.f64(v)
	}
}

func (l *likelihood) decode(d *decoder) {
	l.n, l.level, l.dt, l.recent = d.f64(), d.f64(), d.f64(), d.f64()
	l.lastT = d.i64()
	for i := range l.prof {
		l.prof[i], l.profN[i] = d.f64(), d.f64()
	}
	m := &l.tail
	m.n, m.mean, m.t, m.rate, m.e1, m.e2, m.ne = d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64(), d.f64()
}
