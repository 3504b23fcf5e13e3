package anomaly

import (
	"errors"
	"testing"

	"github.com/shopfloor/shopfloor/internal/anomaly/synth"
)

// cpRun streams one series through a changepoint detector and returns the
// rows where a change was reported.
func cpRun(t *testing.T, vals []float64) []int {
	t.Helper()
	p, err := NewChangepoint(ChangepointConfig{Fields: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	var at []int
	for i, v := range vals {
		p.Observe([]float64{v}, &res)
		if res.Alert {
			if !res.Warm {
				t.Fatalf("row %d: change reported while warming up", i)
			}
			if len(res.Contributions) == 0 || res.Contributions[0].Field != "v" || res.Contributions[0].Reason != ReasonShift {
				t.Fatalf("row %d: explanation %+v", i, res.Contributions)
			}
			at = append(at, i)
		}
	}
	return at
}

func TestChangepointReportsShiftAndReturn(t *testing.T) {
	// A level shift of 3 sd at row 1000 that ends at row 1400: both changes
	// must be reported within 30 rows, and nothing else of note.
	vals, _ := synth.Series(synth.Spec{N: 2000, Level: 10, Noise: 1, Fault: synth.Shift, At: 1000, Size: 3, Seed: 7})
	for i := 1400; i < len(vals); i++ {
		vals[i] -= 3
	}
	at := cpRun(t, vals)
	near := func(row int) bool {
		for _, a := range at {
			if a >= row && a < row+30 {
				return true
			}
		}
		return false
	}
	if !near(1000) || !near(1400) {
		t.Fatalf("changes reported at %v; want one within 30 rows of 1000 and of 1400", at)
	}
	if len(at) > 6 {
		t.Errorf("%d reports for two changes: %v", len(at), at)
	}
}

func TestChangepointQuietOnNoise(t *testing.T) {
	vals, _ := synth.Series(synth.Spec{N: 20000, Level: 3, Noise: 0.5, Seed: 11})
	// With k = 0.5 and h = 10 a two-sided CUSUM runs about 70,000 points
	// between false reports on Gaussian noise; h = 4 would report every
	// ~170 points (59 per 10,000).
	at := cpRun(t, vals)
	if per10k := 1e4 * float64(len(at)) / float64(len(vals)-400); per10k > 1 {
		t.Errorf("%d change reports on 20,000 points of noise (%.1f per 10,000)", len(at), per10k)
	}
}

func TestChangepointSnapshot(t *testing.T) {
	vals, _ := synth.Series(synth.Spec{N: 1500, Level: 5, Noise: 1, Fault: synth.Shift, At: 1100, Size: 5, Seed: 3})
	x := make([][]float64, len(vals))
	for i, v := range vals {
		x[i] = []float64{v, 2 * v}
	}
	a, _ := NewChangepoint(ChangepointConfig{Fields: []string{"a", "b"}})
	b, _ := NewChangepoint(ChangepointConfig{Fields: []string{"a", "b"}})
	snapshotCase(t, a, b, x)
	c, _ := NewChangepoint(ChangepointConfig{Fields: []string{"a", "b"}, Drift: 1})
	blob, _ := a.MarshalBinary()
	if err := c.UnmarshalBinary(blob); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("other drift: err %v, want ErrSnapshot", err)
	}
	if _, err := NewChangepoint(ChangepointConfig{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no fields: err %v, want ErrConfig", err)
	}
}

func TestChangepointMemory(t *testing.T) {
	p, _ := NewChangepoint(ChangepointConfig{Fields: []string{"a", "b", "c", "d", "e", "f", "g", "h"}})
	if got := p.MemoryBytes(); got != 888 {
		t.Errorf("8 fields take %d bytes; doc.go and RESULTS.md state 888", got)
	}
}
