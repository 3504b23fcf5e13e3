package rules

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/expr-lang/expr/vm"
)

// TestFastPathMatchesVM checks the VM-free path against the expression VM
// on random values, including NaN, infinities, equal values and strings.
func TestFastPathMatchesVM(t *testing.T) {
	conds := []string{
		"temperature > 80", "temperature >= 80", "80 < temperature", "temperature == 80", "temperature != 80",
		"-5 >= temperature", "temperature <= 80.5", "temperature > 80 && pressure < 2",
		"temperature > 80 || pressure < 2 || vibration >= 0.5", "avg(temperature, 5m) > 80",
		"max(pressure, 1m) > 3 and temperature < 10", "spindle.rpm > 1000",
	}
	notFast := []string{"temperature > 80 && pressure < 2 || vibration > 1", "temperature + 1 > 80", `device == "a"`, "nodata(5m)"}
	vals := []any{80.0, 79.9, 80.5, -5.0, 0.0, 1.9, 2.0, 3.5, 1000.0, 1001.0, math.NaN(), math.Inf(1), math.Inf(-1), "80", "hot"}
	rng := rand.New(rand.NewPCG(1, 2))
	var machine vm.VM
	for _, src := range conds {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.fast == nil {
			t.Fatalf("%s: expected the fast path", src)
		}
		for range 2000 {
			env := map[string]any{"device": "d", "site": "", "template": "", "tags": map[string]any{}, "props": map[string]any{}, "hour": 0, "minute": 0, "weekday": 0}
			for _, f := range p.fields {
				env[f] = vals[rng.IntN(len(vals))]
			}
			aggs := make([]float64, len(p.aggs))
			for i := range p.aggs {
				aggs[i] = vals[rng.IntN(len(vals)-2)].(float64)
				env[p.aggs[i].name] = aggs[i]
			}
			num, isNum, idx := fastInputs(p, env)
			got, ok := p.fast.eval(num, isNum, idx, aggs)
			out, err := machine.Run(p.prog, env)
			if !ok {
				// Only a non-number field may send it to the VM.
				nonNum := false
				for _, f := range p.fields {
					if _, isNum := env[f].(float64); !isNum {
						nonNum = true
					}
				}
				if !nonNum {
					t.Fatalf("%s: fast path declined numbers %v", src, env)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: fast path answered %v where the VM failed: %v (env %v)", src, got, err, env)
			}
			if out != got {
				t.Fatalf("%s: fast path %v, VM %v, env %v aggs %v", src, got, out, env, aggs)
			}
		}
	}
	for _, src := range notFast {
		p, err := Compile(src, CompileOptions{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.fast != nil {
			t.Errorf("%s: took the fast path, which cannot express it", src)
		}
	}
}

// fastInputs lays env out as the engine does: one slot per field.
func fastInputs(p *Program, env map[string]any) ([]float64, []bool, []int) {
	num := make([]float64, len(p.fields))
	isNum := make([]bool, len(p.fields))
	for i, f := range p.fields {
		num[i], isNum[i] = env[f].(float64)
	}
	idx := make([]int, len(p.fast.cmps))
	for i, c := range p.fast.cmps {
		idx[i] = -1
		for j, f := range p.fields {
			if f == c.field && c.agg < 0 {
				idx[i] = j
			}
		}
	}
	return num, isNum, idx
}
