package anomaly

import (
	"math/rand/v2"
	"testing"
	"time"
)

func BenchmarkUnivariate(b *testing.B) {
	u, _ := NewUnivariate(UnivariateConfig{})
	r := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 4096)
	for i := range vals {
		vals[i] = 10 + r.NormFloat64()
	}
	var res Result
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u.ObserveValue(vals[i&4095], &res)
	}
}

// BenchmarkUnivariateTimed is the default univariate path as the hub runs
// it, with timestamps (one a minute), so the likelihood score's daily
// profile and gap check are in the cost.
func BenchmarkUnivariateTimed(b *testing.B) {
	u, _ := NewUnivariate(UnivariateConfig{})
	r := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 4096)
	for i := range vals {
		vals[i] = 10 + r.NormFloat64()
	}
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	var res Result
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u.ObserveValueAt(t0.Add(time.Duration(i)*time.Minute), vals[i&4095], &res)
	}
}

func benchRows(d int) [][]float64 {
	r := rand.New(rand.NewPCG(2, 2))
	rows := make([][]float64, 4096)
	for i := range rows {
		f := r.NormFloat64()
		rows[i] = make([]float64, d)
		for j := range rows[i] {
			rows[i][j] = float64(j) + f*float64(j%3+1) + 0.3*r.NormFloat64()
		}
	}
	return rows
}

// benchObserve measures det.Observe on rows of benchRows, after feeding
// it warm rows untimed.
func benchObserve(b *testing.B, det Detector, warm int) {
	rows := benchRows(len(det.Fields()))
	var res Result
	for i := 0; i < warm; i++ {
		det.Observe(rows[i&4095], &res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		det.Observe(rows[i&4095], &res)
	}
}

func BenchmarkPCA8(b *testing.B) {
	p, _ := NewPCA(PCAConfig{Fields: []string{"a", "b", "c", "d", "e", "f", "g", "h"}})
	benchObserve(b, p, 0)
}

// BenchmarkManagerPCA8 is the hub's path: a map update through the
// manager into an 8-field multivariate model.
func BenchmarkManagerPCA8(b *testing.B) {
	fields := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	m, _ := NewManager(ManagerConfig{Default: Template{Fields: fields}})
	rows := benchRows(8)
	maps := make([]map[string]float64, len(rows))
	for i, row := range rows {
		maps[i] = map[string]float64{}
		for j, f := range fields {
			maps[i][f] = row[j]
		}
	}
	var ds DeviceScore
	t0 := time.Unix(1e9, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Observe(Update{Org: "o", Device: "d", Time: t0.Add(time.Duration(i)), Values: maps[i&4095]}, &ds); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFieldwise8 is the per-field ensemble on an 8-field device.
func BenchmarkFieldwise8(b *testing.B) {
	f, _ := NewFieldwise([]string{"a", "b", "c", "d", "e", "f", "g", "h"}, UnivariateConfig{})
	benchObserve(b, f, 0)
}

func BenchmarkChangepoint8(b *testing.B) {
	p, _ := NewChangepoint(ChangepointConfig{Fields: []string{"a", "b", "c", "d", "e", "f", "g", "h"}})
	benchObserve(b, p, 0)
}
