package synth

import (
	"math"
	"math/rand/v2"
)

// Fault is a kind of injected fault.
type Fault int

// Faults the generator can inject.
const (
	None     Fault = iota
	Spike          // one value far from the level
	Shift          // the level jumps and stays
	Drift          // the level ramps away linearly
	Variance       // the noise grows
	Stuck          // the value freezes
)

func (f Fault) String() string {
	return [...]string{"none", "spike", "shift", "drift", "variance", "stuck"}[f]
}

// Spec describes one series.
type Spec struct {
	N     int     // rows
	Level float64 // mean
	Noise float64 // noise standard deviation
	// Season adds a sine of this amplitude and period (rows); 0 for none.
	SeasonAmp    float64
	SeasonPeriod int
	Fault        Fault
	At           int     // first faulty row
	Size         float64 // fault size in noise standard deviations (spike, shift, drift over the rest of the series) or variance factor
	Seed         uint64
}

// Series generates the values and the per-row fault label (true from At
// onwards, or only at At for a spike).
func Series(s Spec) (values []float64, label []bool) {
	r := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	values = make([]float64, s.N)
	label = make([]bool, s.N)
	stuckAt := math.NaN()
	for i := 0; i < s.N; i++ {
		level := s.Level
		if s.SeasonAmp != 0 && s.SeasonPeriod > 0 {
			level += s.SeasonAmp * math.Sin(2*math.Pi*float64(i)/float64(s.SeasonPeriod))
		}
		noise := s.Noise * r.NormFloat64()
		faulty := s.Fault != None && i >= s.At
		if faulty {
			switch s.Fault {
			case Spike:
				if i == s.At {
					noise += s.Size * s.Noise
				}
				faulty = i == s.At
			case Shift:
				level += s.Size * s.Noise
			case Drift:
				if rest := s.N - s.At; rest > 0 {
					level += s.Size * s.Noise * float64(i-s.At+1) / float64(rest)
				}
			case Variance:
				noise *= s.Size
			}
		}
		v := level + noise
		if s.Fault == Stuck && i >= s.At {
			if math.IsNaN(stuckAt) {
				stuckAt = v
			}
			v = stuckAt
		}
		values[i] = v
		label[i] = faulty
	}
	return values, label
}

// Correlated generates d sensors driven by k < d hidden factors plus small
// independent noise, as correlated process sensors are. With Break > 0,
// from row At sensor Field stops following the factors (its loading is
// scaled by 1-Break and noise of the same spread replaces it), a fault that
// no single sensor's range reveals.
type Correlated struct {
	N, D, K int
	Noise   float64 // independent noise per sensor, relative to factor spread 1
	At      int
	Field   int
	Break   float64
	Seed    uint64
}

// Rows returns N rows of D values, and the fault label per row.
func (c Correlated) Rows() (rows [][]float64, label []bool) {
	r := rand.New(rand.NewPCG(c.Seed, c.Seed^0x632be59bd9b4e019))
	load := make([][]float64, c.D)
	for i := range load {
		load[i] = make([]float64, c.K)
		for j := range load[i] {
			load[i][j] = r.NormFloat64()
		}
	}
	f := make([]float64, c.K)
	rows = make([][]float64, c.N)
	label = make([]bool, c.N)
	for t := 0; t < c.N; t++ {
		for j := range f {
			f[j] = r.NormFloat64()
		}
		row := make([]float64, c.D)
		for i := 0; i < c.D; i++ {
			s := 0.0
			for j := range f {
				s += load[i][j] * f[j]
			}
			if c.Break > 0 && t >= c.At && i == c.Field {
				norm := 0.0
				for j := range f {
					norm += load[i][j] * load[i][j]
				}
				s = (1-c.Break)*s + c.Break*math.Sqrt(norm)*r.NormFloat64()
			}
			row[i] = 10*float64(i+1) + s + c.Noise*r.NormFloat64()
		}
		rows[t] = row
		label[t] = c.Break > 0 && t >= c.At
	}
	return rows, label
}
