package anomaly

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var likeT0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) // a Monday

// TestLikelihoodCalibratedOnNoise: on Gaussian noise, a score of 0.5
// means an estimated probability of 10⁻⁵, so it should be reached about
// that often (declustering only lowers it), and an 8 σ spike must reach it.
func TestLikelihoodCalibratedOnNoise(t *testing.T) {
	u, err := NewUnivariate(UnivariateConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	const n = 200_000
	var res Result
	high, top := 0, 0.0
	for i := 0; i < n; i++ {
		u.ObserveValueAt(likeT0.Add(time.Duration(i)*time.Minute), 10+r.NormFloat64(), &res)
		if res.Likelihood >= 0.5 {
			high++
		}
		top = math.Max(top, res.Likelihood)
	}
	// 10⁻⁵ of 200,000 is 2; the tail is estimated from a few hundred
	// excesses, so allow an order of magnitude.
	if high > 20 {
		t.Errorf("%d of %d noise points scored ≥ 0.5 (≈ %.0e each); want about 2", high, n, float64(high)/n)
	}
	if top <= 0.1 {
		t.Errorf("largest noise score %.3f: the score is degenerate", top)
	}
	u.ObserveValueAt(likeT0.Add(n*time.Minute), 18, &res)
	if res.Likelihood < 0.5 {
		t.Errorf("an 8 σ spike scored %.3f, want ≥ 0.5", res.Likelihood)
	}
	t.Logf("noise: %d of %d points ≥ 0.5, largest %.3f; 8 σ spike %.3f", high, n, top, res.Likelihood)
}

// dailySquare is 20 at night and 80 from 09:00 to 18:00, noise sd 1, every
// 5 minutes: the shape of NAB's artificial daily files.
func dailySquare(r *rand.Rand, t time.Time) float64 {
	v := 20.0
	if h := t.Hour(); h >= 9 && h < 18 {
		v = 80
	}
	return v + r.NormFloat64()
}

// TestLikelihoodSeasonal: a value normal at 10:00 is anomalous at 03:00,
// and the night level is anomalous when the day should have begun (NAB's
// art_daily_nojump): no step and no departure from the long-run range,
// so only the time of day tells.
func TestLikelihoodSeasonal(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	days := make([]float64, 12*288)
	for i := range days {
		days[i] = dailySquare(r, likeT0.Add(time.Duration(i)*5*time.Minute))
	}
	learn := func() (*Univariate, float64) {
		u, _ := NewUnivariate(UnivariateConfig{Warmup: 600})
		var res Result
		top := 0.0
		for i, v := range days {
			u.ObserveValueAt(likeT0.Add(time.Duration(i)*5*time.Minute), v, &res)
			if i >= 3*288 {
				top = math.Max(top, res.Likelihood)
			}
		}
		return u, top
	}
	u, top := learn()
	if top >= 0.5 {
		t.Errorf("the normal daily cycle scored up to %.3f after 3 days, want < 0.5", top)
	}
	day13 := likeT0.Add(12 * 24 * time.Hour)
	var res Result
	u.ObserveValueAt(day13.Add(3*time.Hour), 80, &res)
	if res.Likelihood < 0.5 {
		t.Errorf("80 at 03:00 scored %.3f, want ≥ 0.5 (the night level is 20)", res.Likelihood)
	}
	at3 := res.Likelihood

	// Day 13 without its day: 20 from midnight to 11:00.
	u, _ = learn()
	first, reason := time.Duration(-1), ReasonNone
	for ts := day13; ts.Before(day13.Add(11 * time.Hour)); ts = ts.Add(5 * time.Minute) {
		u.ObserveValueAt(ts, 20+r.NormFloat64(), &res)
		if ts.Hour() < 9 && res.Likelihood >= 0.5 {
			t.Errorf("the night of day 13 scored %.3f at %s", res.Likelihood, ts.Format("15:04"))
		}
		if first < 0 && res.Likelihood >= 0.5 {
			first = ts.Sub(day13)
			if len(res.Contributions) > 0 {
				reason = res.Contributions[0].Reason
			}
		}
	}
	if first < 0 || first > 10*time.Hour {
		t.Errorf("a missing day first scored ≥ 0.5 at %v after midnight, want by 10:00", first)
	}
	if reason != ReasonSeasonal {
		t.Errorf("a missing day was explained as %q, want %q", reason, ReasonSeasonal)
	}
	t.Logf("daily cycle: largest score over days 4–12 %.3f; 80 at 03:00 scored %.3f; a missing day first ≥ 0.5 at %v (%s)", top, at3, first, reason)
}

// TestLikelihoodMarksOnsets: a lasting level shift scores high where it
// starts, not for as long as it lasts (the alert state machine is what
// holds an alert).
func TestLikelihoodMarksOnsets(t *testing.T) {
	u, _ := NewUnivariate(UnivariateConfig{})
	r := rand.New(rand.NewPCG(5, 5))
	var res Result
	i := 0
	next := func(v float64) {
		u.ObserveValueAt(likeT0.Add(time.Duration(i)*time.Minute), v, &res)
		i++
	}
	for i < 20_000 {
		next(10 + r.NormFloat64())
	}
	first, high := -1, 0
	for k := 0; k < 2000; k++ {
		next(18 + r.NormFloat64())
		if res.Likelihood >= 0.5 {
			high++
			if first < 0 {
				first = k
			}
		}
	}
	if first < 0 || first > 5 {
		t.Errorf("an 8 σ shift first scored ≥ 0.5 at point %d of it, want within 5", first)
	}
	if high > 100 {
		t.Errorf("%d of the shift's 2,000 points scored ≥ 0.5, want its start only (≤ 100)", high)
	}
	t.Logf("8 σ shift: first ≥ 0.5 at point %d, %d of 2,000 points ≥ 0.5", first, high)
}

// TestUnivariateGapIsABreak: across a gap of 4 days and 6 hours a daily
// cycle resumes at another phase. Read as continuity, that is a step of
// 20 (many times the usual step) and alerts; read as a break, nothing
// alerts and the likelihood stays low, since the value is normal for its
// time of day.
func TestUnivariateGapIsABreak(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	sine := func(ts time.Time) float64 {
		h := float64(ts.Hour()) + float64(ts.Minute())/60
		return 10*math.Sin(2*math.Pi*h/24) + 0.5*r.NormFloat64()
	}
	var times []time.Time
	for i := 0; i < 10*288; i++ {
		times = append(times, likeT0.Add(time.Duration(i)*5*time.Minute))
	}
	// The last point before the gap is at 18:00 (trough), the first after
	// it at 06:00 four days later... plus 6 h: 00:00 is the cycle's zero
	// crossing, so resume at 06:00 (peak).
	last := times[len(times)-1]
	for last.Hour() != 18 || last.Minute() != 0 {
		times = times[:len(times)-1]
		last = times[len(times)-1]
	}
	resume := last.Add(4*24*time.Hour + 12*time.Hour)
	for i := 0; i < 2*288; i++ {
		times = append(times, resume.Add(time.Duration(i)*5*time.Minute))
	}
	vals := make([]float64, len(times))
	for i, ts := range times {
		vals[i] = sine(ts)
	}
	gapAt := len(times) - 2*288

	run := func(timed bool) (alerts, high int) {
		u, _ := NewUnivariate(UnivariateConfig{Warmup: 600})
		var res Result
		for i, v := range vals {
			if timed {
				u.ObserveValueAt(times[i], v, &res)
			} else {
				u.ObserveValue(v, &res)
			}
			if i >= gapAt && i < gapAt+288 {
				if res.Alert {
					alerts++
				}
				if res.Likelihood >= 0.5 {
					high++
				}
			}
		}
		return alerts, high
	}
	untimedAlerts, _ := run(false)
	alerts, high := run(true)
	if untimedAlerts == 0 {
		t.Fatalf("without timestamps the step across the gap raised no alert: the test no longer shows what the break prevents")
	}
	if alerts != 0 || high != 0 {
		t.Errorf("with timestamps, the day after the gap had %d alert points and %d points scoring ≥ 0.5, want none", alerts, high)
	}
	t.Logf("day after the gap: %d alert points without timestamps, %d with (likelihood ≥ 0.5 on %d)", untimedAlerts, alerts, high)
}

// TestLikelihoodSnapshot: a restored detector continues the likelihood
// bit for bit.
func TestLikelihoodSnapshot(t *testing.T) {
	a, _ := NewUnivariate(UnivariateConfig{})
	r := rand.New(rand.NewPCG(11, 11))
	var ra, rb Result
	for i := 0; i < 3000; i++ {
		ts := likeT0.Add(time.Duration(i) * 5 * time.Minute)
		a.ObserveValueAt(ts, dailySquare(r, ts), &ra)
	}
	snap, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewUnivariate(UnivariateConfig{})
	if err := b.UnmarshalBinary(snap); err != nil {
		t.Fatal(err)
	}
	for i := 3000; i < 4000; i++ {
		ts := likeT0.Add(time.Duration(i) * 5 * time.Minute)
		v := dailySquare(r, ts)
		if i == 3500 {
			v += 40
		}
		a.ObserveValueAt(ts, v, &ra)
		b.ObserveValueAt(ts, v, &rb)
		if ra.Likelihood != rb.Likelihood || ra.Score != rb.Score {
			t.Fatalf("point %d: original %v/%v, restored %v/%v", i, ra.Likelihood, ra.Score, rb.Likelihood, rb.Score)
		}
	}
}

// TestMemoryPerSeries: the budget is under 4 KB per series.
func TestMemoryPerSeries(t *testing.T) {
	u, _ := NewUnivariate(UnivariateConfig{})
	f, _ := NewFieldwise([]string{"a", "b", "c", "d", "e", "f", "g", "h"}, UnivariateConfig{})
	g := Guarded(f, 400)
	per := g.MemoryBytes() / 8
	f1, _ := NewFieldwise([]string{"a"}, UnivariateConfig{})
	one := Guarded(f1, 400).MemoryBytes() // a one-field device as the Manager holds it
	if u.MemoryBytes() >= 4096 || per >= 4096 || one >= 4096 {
		t.Errorf("Univariate %d bytes, guarded one-field Fieldwise %d, guarded 8-field Fieldwise %d bytes per field; want < 4,096", u.MemoryBytes(), one, per)
	}
	t.Logf("Univariate %d bytes; guarded one-field Fieldwise %d bytes; guarded 8-field Fieldwise %d bytes (%d per field)", u.MemoryBytes(), one, g.MemoryBytes(), per)
}

// TestManagerPassesTime: the hub's path (Manager, warm-up guard,
// Fieldwise) hands each update's time to the model, so the likelihood
// sees the daily cycle: a day that does not come is found, and named.
func TestManagerPassesTime(t *testing.T) {
	m, err := NewManager(ManagerConfig{Default: Template{Kind: KindUnivariate, Warmup: 600}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(13, 13))
	var ds DeviceScore
	obs := func(ts time.Time, v float64) {
		if err := m.Observe(Update{Org: "o", Device: "d", Time: ts, Values: map[string]float64{"load": v}}, &ds); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12*288; i++ {
		ts := likeT0.Add(time.Duration(i) * 5 * time.Minute)
		obs(ts, dailySquare(r, ts))
	}
	day13 := likeT0.Add(12 * 24 * time.Hour)
	found := false
	for ts := day13; ts.Before(day13.Add(11 * time.Hour)); ts = ts.Add(5 * time.Minute) {
		obs(ts, 20+r.NormFloat64())
		if ds.Likelihood >= 0.5 {
			if len(ds.Contributions) == 0 || ds.Contributions[0].Field != "load" || ds.Contributions[0].Reason != ReasonSeasonal {
				t.Fatalf("at %s the likelihood is %.3f but the explanation is %+v, want load/%s", ts.Format("15:04"), ds.Likelihood, ds.Contributions, ReasonSeasonal)
			}
			found = true
			break
		}
	}
	if !found {
		t.Errorf("through the Manager, a missing day never scored ≥ 0.5: the model did not get the updates' time")
	}
}

// TestLikelihoodAfterAHugeSpike: a spike is surprising once. It must not
// drag the time-of-day profile along (the profile's updates are
// winsorised), and it must not silence the score for long (declustering
// remembers at most p = 10⁻¹⁰, and the tail model counts an excess at
// most 10 times the mean excess): the daytime value at 03:00 the next
// night, 17 hours later, still scores far above the noise. It scores 0.94
// without the spike and about 0.5–0.57 after it (seeds 17–21); without
// the two caps, 0.000.
func TestLikelihoodAfterAHugeSpike(t *testing.T) {
	u, _ := NewUnivariate(UnivariateConfig{Warmup: 600})
	r := rand.New(rand.NewPCG(17, 17))
	var res Result
	spikeAt := 8*288 + 10*12 // day 9, 10:00
	nightAt := spikeAt + 17*12
	var spike, night float64
	for i := 0; i <= nightAt; i++ {
		ts := likeT0.Add(time.Duration(i) * 5 * time.Minute)
		v := dailySquare(r, ts)
		switch i {
		case spikeAt:
			v += 1000
		case nightAt:
			v = 80
		}
		u.ObserveValueAt(ts, v, &res)
		switch i {
		case spikeAt:
			spike = res.Likelihood
			if p := u.lk.prof[binOf(unixNano(ts))]; math.Abs(p-80) > 2 {
				t.Errorf("after the spike the 10:00 profile is %.1f, want within 2 of 80", p)
			}
		case nightAt:
			night = res.Likelihood
		}
	}
	if spike < 0.5 {
		t.Errorf("a spike of 1,000 on a noise of 1 scored %.3f, want ≥ 0.5", spike)
	}
	if night < 0.4 {
		t.Errorf("80 at 03:00, 17 hours after the spike, scored %.3f, want ≥ 0.4 (p ≤ 10⁻³·³)", night)
	}
	t.Logf("spike %.3f; 80 at 03:00 17 hours later %.3f", spike, night)
}

// TestLikelihoodConstantSeries: a setpoint that has not moved for three
// days then moves. Its residuals are all zero, so there is no tail to
// extrapolate; the score must still rank the move far above the flat
// stretch (about one in the points seen: p ≈ 10⁻³, score ≈ 0.37).
func TestLikelihoodConstantSeries(t *testing.T) {
	u, _ := NewUnivariate(UnivariateConfig{})
	var res Result
	flat := 0.0
	n := 3 * 1440
	for i := 0; i < n; i++ {
		u.ObserveValueAt(likeT0.Add(time.Duration(i)*time.Minute), 5, &res)
		flat = math.Max(flat, res.Likelihood)
	}
	u.ObserveValueAt(likeT0.Add(time.Duration(n)*time.Minute), 6, &res)
	if flat != 0 || res.Likelihood < 0.3 {
		t.Errorf("constant series: flat stretch up to %.3f, the move %.3f; want 0 and ≥ 0.3", flat, res.Likelihood)
	}
	if !res.Alert {
		t.Errorf("the move off a constant value raised no alert")
	}
	t.Logf("constant series: the move scores %.3f (alert %v)", res.Likelihood, res.Alert)
}

// TestUnivariateReadsVersion7: a snapshot written before the likelihood
// score (version 7: the same layout without the likelihood's state) is
// restored, alerts and all, with the likelihood learning afresh, so a hub
// upgrade does not make every device relearn.
func TestUnivariateReadsVersion7(t *testing.T) {
	a, _ := NewUnivariate(UnivariateConfig{})
	r := rand.New(rand.NewPCG(19, 19))
	var ra, rb Result
	for i := 0; i < 2000; i++ {
		a.ObserveValue(10+r.NormFloat64(), &ra)
	}
	v8, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var e encoder
	a.lk.encode(&e)
	tag := 8 + len("univariate") // the tag's length prefix and bytes, then the version
	v7 := append([]byte(nil), v8[:len(v8)-len(e.b)]...)
	v7[tag] = 7
	b, _ := NewUnivariate(UnivariateConfig{})
	if err := b.UnmarshalBinary(v7); err != nil {
		t.Fatalf("version 7 snapshot refused: %v", err)
	}
	if b.lk.n != 0 || b.n != a.n || b.mean != a.mean {
		t.Fatalf("restored from version 7: n %d mean %v likelihood n %v; want n %d mean %v and an empty likelihood", b.n, b.mean, b.lk.n, a.n, a.mean)
	}
	for i := 0; i < 100; i++ {
		v := 10 + r.NormFloat64()
		a.ObserveValue(v, &ra)
		b.ObserveValue(v, &rb)
		if ra.Score != rb.Score || ra.Alert != rb.Alert {
			t.Fatalf("point %d: alert statistics differ after a version 7 restore: %v/%v against %v/%v", i, rb.Score, rb.Alert, ra.Score, ra.Alert)
		}
	}
	v7[tag] = 6
	if err := b.UnmarshalBinary(v7); err == nil {
		t.Errorf("a version 6 snapshot was accepted")
	}
}

// TestServiceStatusShowsLikelihood: the hub's service (what the API
// returns) carries the likelihood and its explanation.
func TestServiceStatusShowsLikelihood(t *testing.T) {
	ctx := t.Context()
	s, err := NewService(ServiceConfig{Default: Template{Warmup: 600}, Write: func(context.Context, []Scored) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(23, 23))
	obs := func(ts time.Time, v float64) {
		if err := s.Observe(ctx, Update{Org: "o", Device: "d", Time: ts, Values: map[string]float64{"load": v}}, "site"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12*288; i++ {
		ts := likeT0.Add(time.Duration(i) * 5 * time.Minute)
		obs(ts, dailySquare(r, ts))
	}
	day13 := likeT0.Add(12 * 24 * time.Hour)
	for ts := day13; ts.Before(day13.Add(11 * time.Hour)); ts = ts.Add(5 * time.Minute) {
		obs(ts, 20+r.NormFloat64())
		if st := s.Status("o", "d"); st.Likelihood >= 0.5 {
			if len(st.Contributions) == 0 || st.Contributions[0].Reason != ReasonSeasonal {
				t.Fatalf("status at %s: likelihood %.3f, contributions %+v; want the reason %q", ts.Format("15:04"), st.Likelihood, st.Contributions, ReasonSeasonal)
			}
			return
		}
	}
	t.Errorf("a missing day never showed a likelihood ≥ 0.5 in the service's status")
}
