package anomaly

import (
	"fmt"
	"math"
)

// PCAConfig configures the multivariate detector.
type PCAConfig struct {
	// Fields are the device's numeric fields the model covers (at least 1).
	Fields []string
	// Sensitivity in (0,1): an alert needs Score >= 1-Sensitivity.
	// Default 0.5, which alerts when the statistic passes the limit learned
	// during warm-up.
	Sensitivity float64
	// Warmup is the learning period in points. The first half fits the
	// model; the second half is scored (before each point is learned) to
	// set the alarm limit. Default 400, the SKAB training length.
	Warmup int
	// Variance is the share of variance the principal subspace keeps
	// (T² part); the rest is the residual subspace (Q part). Default 0.9.
	// 1 keeps every component, which is plain Hotelling T².
	Variance float64
	// Smoothing is the span, in points, of the exponential average applied
	// to the statistic. Default 20; 1 disables smoothing.
	Smoothing int
	// HalfLife is how many points it takes, after warm-up, for old data to
	// weigh half as much. Default 5 × Warmup. Points scored as alerts are
	// learned at a quarter of the rate, so a fault is absorbed slowly but a
	// lasting change of regime is accepted in the end.
	HalfLife int
	// Margin multiplies the limit found while calibrating. Default 1.
	Margin float64
	// RefitEvery re-diagonalises the covariance after this many learned
	// points. Default 16.
	RefitEvery int
}

func (c *PCAConfig) withDefaults() (PCAConfig, error) {
	o := *c
	o.Fields = append([]string(nil), c.Fields...)
	if len(o.Fields) == 0 {
		return o, fmt.Errorf("%w: a multivariate model needs at least one field", ErrConfig)
	}
	if len(o.Fields) > 256 {
		return o, fmt.Errorf("%w: %d fields is too many for one model (max 256); split the template", ErrConfig, len(o.Fields))
	}
	if err := baseDefaults(&o.Sensitivity, &o.Warmup); err != nil {
		return o, err
	}
	if o.Warmup < 2*len(o.Fields)+4 {
		return o, fmt.Errorf("%w: warm-up of %d points is too short for %d fields; use at least %d", ErrConfig, o.Warmup, len(o.Fields), 2*len(o.Fields)+4)
	}
	if o.Variance == 0 {
		o.Variance = 0.9
	}
	if !(o.Variance > 0 && o.Variance <= 1) {
		return o, fmt.Errorf("%w: variance share %v must be in (0,1]", ErrConfig, o.Variance)
	}
	if o.Smoothing == 0 {
		o.Smoothing = 20
	}
	if o.HalfLife == 0 {
		o.HalfLife = 5 * o.Warmup
	}
	if o.Margin == 0 {
		o.Margin = 1
	}
	if o.RefitEvery == 0 {
		o.RefitEvery = 16
	}
	if o.Smoothing < 1 || o.HalfLife < 1 || o.Margin < 0 || o.RefitEvery < 1 {
		return o, fmt.Errorf("%w: smoothing, half-life and refit interval must be positive", ErrConfig)
	}
	return o, nil
}

// PCA is a streaming principal-component detector (see doc.go). It keeps
// an exponentially weighted mean and covariance, diagonalises the
// correlation matrix every RefitEvery points, and scores each point with a
// combined index of Hotelling's T² in the principal subspace and the Q
// (squared prediction error) statistic in the residual subspace. The index
// is written as |M z|² with M = V diag(√g) Vᵀ, so each field's share of it
// is (M z)ᵢ², which sums exactly to the index: the explanation is a true
// decomposition, not a heuristic.
type PCA struct {
	cfg   PCAConfig
	d     int
	fitN  int64   // learned points after which the model is first fitted
	alpha float64 // post-warm-up learning rate
	beta  float64 // smoothing rate

	n        int64 // learned points
	calN     int64 // calibration points seen
	cal      tail
	limit    float64
	sinceFit int
	fitted   bool
	k        int

	mean []float64
	cov  []float64 // d×d
	sd   []float64 // standardisation used by the current fit
	m    []float64 // d×d scoring matrix
	sc   []float64 // smoothed per-field contributions

	// scratch, not state
	z, c, vals, vecs, work []float64
}

// NewPCA builds a multivariate detector.
func NewPCA(cfg PCAConfig) (*PCA, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := len(c.Fields)
	p := &PCA{
		cfg:   c,
		d:     d,
		fitN:  int64(c.Warmup / 2),
		alpha: 1 - math.Exp2(-1/float64(c.HalfLife)),
		beta:  2 / (float64(c.Smoothing) + 1),
		mean:  make([]float64, d),
		cov:   make([]float64, d*d),
		sd:    make([]float64, d),
		m:     make([]float64, d*d),
		sc:    make([]float64, d),
		z:     make([]float64, d),
		c:     make([]float64, d),
		vals:  make([]float64, d),
		vecs:  make([]float64, d*d),
		work:  make([]float64, d*d),
	}
	return p, nil
}

// Fields implements Detector.
func (p *PCA) Fields() []string { return p.cfg.Fields }

// MemoryBytes implements Detector: the float state and scratch, excluding
// the shared field names.
func (p *PCA) MemoryBytes() int {
	d := p.d
	return 8*(5*d*d+7*d) + 160
}

// Observe implements Detector.
func (p *PCA) Observe(x []float64, res *Result) {
	d := p.d
	res.Contributions = res.Contributions[:0]
	res.Score, res.Alert = 0, false
	warm := p.n >= int64(p.cfg.Warmup)
	res.Warm = warm
	res.WarmupRemaining = 0
	if !warm {
		res.WarmupRemaining = p.cfg.Warmup - int(p.n)
	}
	complete := true
	for i := 0; i < d; i++ {
		if math.IsNaN(x[i]) || math.IsInf(x[i], 0) {
			complete = false
		}
	}

	if p.fitted {
		// Score with the current model. Missing fields are reconstructed:
		// set to the values that fit the model best given the fields that
		// are present (Dunia & Qin 1998), so absence alone never alerts.
		for i := 0; i < d; i++ {
			v := x[i]
			if math.IsNaN(v) || math.IsInf(v, 0) {
				p.z[i] = 0
				continue
			}
			p.z[i] = (v - p.mean[i]) / p.sd[i]
		}
		if !complete {
			p.reconstruct(x)
		}
		phi := 0.0
		for i := 0; i < d; i++ {
			row := p.m[i*d : i*d+d]
			s := 0.0
			for j, zj := range p.z {
				s += row[j] * zj
			}
			ci := s * s
			p.sc[i] += p.beta * (ci - p.sc[i])
			phi += p.sc[i]
		}
		switch {
		case !warm:
			// Calibrate once the smoother has forgotten its start.
			if p.calN >= int64(p.cfg.Smoothing) {
				p.cal.add(phi)
			}
			p.calN++
		default:
			r := phi / p.limit
			res.Score = scoreOf(r)
			res.Alert = res.Score >= alertLevel(p.cfg.Sensitivity)
			if phi > 0 {
				for i := 0; i < d; i++ {
					if s := p.sc[i] / phi; s >= minShare {
						res.Contributions = append(res.Contributions, Contribution{Field: p.cfg.Fields[i], Share: s, Reason: ReasonJoint})
					}
				}
				sortContributions(res.Contributions)
			}
		}
	}

	if !complete {
		return
	}
	a := 1 / float64(p.n+1)
	if warm {
		a = math.Max(a, p.alpha)
		if res.Alert {
			a = p.alpha / 4
		}
	}
	p.learn(x, a)
	p.n++
	p.sinceFit++
	switch {
	case p.n == p.fitN:
		p.refit()
	case p.n == int64(p.cfg.Warmup):
		p.refit()
		p.limit = p.cfg.Margin * p.cal.limit()
		// Never below the index's null mean, so a calibration run that
		// happened to be unusually calm cannot make every point an alert.
		if p.limit < 1 {
			p.limit = 1
		}
	case p.fitted && p.sinceFit >= p.cfg.RefitEvery:
		p.refit()
	}
}

// reconstruct fills the standardised values of missing fields with those
// minimising the index given the present ones: the least-squares solution
// of M_m z_m = −M_o z_o, from the normal equations.
func (p *PCA) reconstruct(x []float64) {
	d := p.d
	miss := p.vals[:0] // scratch: indices of missing fields (as floats)
	for i := 0; i < d; i++ {
		if math.IsNaN(x[i]) || math.IsInf(x[i], 0) {
			miss = append(miss, float64(i))
		}
	}
	q := len(miss)
	if q == 0 || q == d {
		return
	}
	// r = M z with the missing entries at zero.
	r := p.c
	for i := 0; i < d; i++ {
		s := 0.0
		for j := 0; j < d; j++ {
			s += p.m[i*d+j] * p.z[j]
		}
		r[i] = s
	}
	// Augmented system A | b with A = M_mᵀ M_m (q×q), b = −M_mᵀ r.
	a := p.work[:q*(q+1)]
	for u := 0; u < q; u++ {
		cu := int(miss[u])
		for v := 0; v < q; v++ {
			cv := int(miss[v])
			s := 0.0
			for i := 0; i < d; i++ {
				s += p.m[i*d+cu] * p.m[i*d+cv]
			}
			a[u*(q+1)+v] = s
		}
		s := 0.0
		for i := 0; i < d; i++ {
			s += p.m[i*d+cu] * r[i]
		}
		a[u*(q+1)+q] = -s
	}
	// Gaussian elimination with partial pivoting; A is positive definite
	// up to rounding.
	for col := 0; col < q; col++ {
		piv := col
		for row := col + 1; row < q; row++ {
			if math.Abs(a[row*(q+1)+col]) > math.Abs(a[piv*(q+1)+col]) {
				piv = row
			}
		}
		if math.Abs(a[piv*(q+1)+col]) < 1e-12 {
			return // degenerate: leave the missing fields at their means
		}
		if piv != col {
			for k := 0; k <= q; k++ {
				a[col*(q+1)+k], a[piv*(q+1)+k] = a[piv*(q+1)+k], a[col*(q+1)+k]
			}
		}
		for row := col + 1; row < q; row++ {
			f := a[row*(q+1)+col] / a[col*(q+1)+col]
			for k := col; k <= q; k++ {
				a[row*(q+1)+k] -= f * a[col*(q+1)+k]
			}
		}
	}
	for row := q - 1; row >= 0; row-- {
		s := a[row*(q+1)+q]
		for k := row + 1; k < q; k++ {
			s -= a[row*(q+1)+k] * p.z[int(miss[k])]
		}
		p.z[int(miss[row])] = s / a[row*(q+1)+row]
	}
}

// learn folds x into the weighted mean and covariance with weight a. With
// a = 1/n this is Welford's exact running covariance.
func (p *PCA) learn(x []float64, a float64) {
	d := p.d
	for i := 0; i < d; i++ {
		p.c[i] = x[i] - p.mean[i]
		p.mean[i] += a * p.c[i]
	}
	for i := 0; i < d; i++ {
		for j := 0; j <= i; j++ {
			v := (1 - a) * (p.cov[i*d+j] + a*p.c[i]*p.c[j])
			p.cov[i*d+j] = v
			p.cov[j*d+i] = v
		}
	}
}

// refit rebuilds the scoring matrix from the current covariance.
func (p *PCA) refit() {
	d := p.d
	p.sinceFit = 0
	for i := 0; i < d; i++ {
		v := p.cov[i*d+i]
		// Floor the spread so a field that barely moved while learning
		// does not turn rounding noise into alarms.
		floor := 1e-9 + 1e-6*math.Abs(p.mean[i])
		s := math.Sqrt(math.Max(v, 0))
		if s < floor {
			s = floor
		}
		p.sd[i] = s
	}
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			p.work[i*d+j] = p.cov[i*d+j] / (p.sd[i] * p.sd[j])
		}
	}
	symEigen(p.work, d, p.vals, p.vecs)
	trace := 0.0
	for _, v := range p.vals {
		trace += math.Max(v, 0)
	}
	if trace <= 0 {
		trace = float64(d)
	}
	k := d
	if p.cfg.Variance < 1 && d > 1 {
		cum := 0.0
		for k = 0; k < d-1; {
			cum += math.Max(p.vals[k], 0)
			k++
			if cum >= p.cfg.Variance*trace {
				break
			}
		}
	}
	p.k = k
	floor := 1e-6 * trace
	theta := 0.0
	for j := k; j < d; j++ {
		theta += math.Max(p.vals[j], 0)
	}
	if theta < floor*float64(d-k) {
		theta = floor * float64(d-k)
	}
	// Weights g_j: T²/k and Q/θ1 each have mean 1 on normal data; with both
	// present they are averaged, so the index has mean 1.
	wT, wQ := 1.0, 0.0
	if k < d {
		wT, wQ = 0.5, 0.5
	}
	g := p.z // reuse scratch: per-component weight (root)
	for j := 0; j < d; j++ {
		var w float64
		if j < k {
			w = wT / (float64(k) * math.Max(p.vals[j], floor))
		} else {
			w = wQ / theta
		}
		g[j] = math.Sqrt(w)
	}
	for i := 0; i < d; i++ {
		for j := 0; j <= i; j++ {
			s := 0.0
			for c := 0; c < d; c++ {
				s += p.vecs[i*d+c] * g[c] * p.vecs[j*d+c]
			}
			p.m[i*d+j] = s
			p.m[j*d+i] = s
		}
	}
	p.fitted = true
}

const pcaVersion = 1

// MarshalBinary implements encoding.BinaryMarshaler.
func (p *PCA) MarshalBinary() ([]byte, error) {
	e := encoder{b: make([]byte, 0, 64+8*(3*p.d*p.d+4*p.d))}
	e.header("pca", pcaVersion)
	e.strs(p.cfg.Fields)
	e.i64(int64(p.cfg.Warmup))
	e.f64(p.cfg.Variance)
	e.i64(int64(p.cfg.Smoothing))
	e.i64(int64(p.cfg.HalfLife))
	e.f64(p.cfg.Margin)
	e.i64(int64(p.cfg.RefitEvery))
	e.i64(p.n)
	e.i64(p.calN)
	p.cal.encode(&e)
	e.f64(p.limit)
	e.i64(int64(p.sinceFit))
	fitted := int64(0)
	if p.fitted {
		fitted = 1
	}
	e.i64(fitted)
	e.i64(int64(p.k))
	e.f64s(p.mean)
	e.f64s(p.cov)
	e.f64s(p.sd)
	e.f64s(p.m)
	e.f64s(p.sc)
	return e.b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. The receiver must
// have been built with the same fields and model settings; sensitivity may
// differ.
func (p *PCA) UnmarshalBinary(b []byte) error {
	dec := decoder{b: b}
	dec.header("pca", pcaVersion)
	fields := dec.strs()
	warm, variance, smooth, hl, margin, refit := dec.i64(), dec.f64(), dec.i64(), dec.i64(), dec.f64(), dec.i64()
	if dec.err != nil {
		return dec.err
	}
	if !equalStrings(fields, p.cfg.Fields) || warm != int64(p.cfg.Warmup) || variance != p.cfg.Variance ||
		smooth != int64(p.cfg.Smoothing) || hl != int64(p.cfg.HalfLife) || margin != p.cfg.Margin || refit != int64(p.cfg.RefitEvery) {
		return fmt.Errorf("%w: the snapshot was taken with different fields or model settings; the model will relearn", ErrSnapshot)
	}
	n, calN := dec.i64(), dec.i64()
	var cal tail
	cal.decode(&dec)
	limit, since, fitted, k := dec.f64(), dec.i64(), dec.i64(), dec.i64()
	mean, cov, sd, m, sc := dec.f64s(), dec.f64s(), dec.f64s(), dec.f64s(), dec.f64s()
	if err := dec.done(); err != nil {
		return err
	}
	d := p.d
	if len(mean) != d || len(cov) != d*d || len(sd) != d || len(m) != d*d || len(sc) != d || n < 0 || k < 0 || k > int64(d) {
		return fmt.Errorf("%w: state sizes do not match %d fields", ErrSnapshot, d)
	}
	p.n, p.calN, p.cal, p.limit, p.sinceFit, p.fitted, p.k = n, calN, cal, limit, int(since), fitted == 1, int(k)
	copy(p.mean, mean)
	copy(p.cov, cov)
	copy(p.sd, sd)
	copy(p.m, m)
	copy(p.sc, sc)
	return nil
}
