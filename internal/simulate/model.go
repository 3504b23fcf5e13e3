package simulate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Kind is a kind of simulated machine.
type Kind string

const (
	KindCNC        Kind = "cnc"
	KindCompressor Kind = "compressor"
	KindRobot      Kind = "robot"
	KindAGV        Kind = "agv"
)

// Kinds returns every kind of machine the simulator models.
func Kinds() []Kind { return []Kind{KindCNC, KindCompressor, KindRobot, KindAGV} }

// Template is the device template name a kind is provisioned with.
func (k Kind) Template() string {
	switch k {
	case KindCNC:
		return "cnc-machine"
	case KindCompressor:
		return "air-compressor"
	case KindRobot:
		return "industrial-robot"
	case KindAGV:
		return "agv"
	}
	return string(k)
}

// FaultKind is a kind of injected fault.
type FaultKind string

const (
	// FaultBearingWear makes vibration rise and temperatures drift up over
	// tens of minutes, until "maintenance" ends it.
	FaultBearingWear FaultKind = "bearing_wear"
	// FaultPressureLeak adds an air demand a compressor cannot keep up with:
	// pressure falls and the compressor runs loaded all the time.
	FaultPressureLeak FaultKind = "pressure_leak"
	// FaultStuckSensor freezes one analog field at its last value.
	FaultStuckSensor FaultKind = "stuck_sensor"
	// FaultSpike multiplies one analog field in a single sample.
	FaultSpike FaultKind = "spike"
)

// Errors returned by the model.
var (
	ErrUnknownKind       = errors.New("unknown machine kind")
	ErrFaultNotSupported = errors.New("fault not supported by this machine kind")
)

// Fault is one injected fault.
type Fault struct {
	Kind  FaultKind `json:"kind"`
	Field string    `json:"field,omitempty"` // the affected field of stuck_sensor and spike
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Model simulates one machine. It is not safe for concurrent use.
type Model struct {
	kind      Kind
	rng       *rand.Rand
	faultRate float64 // mean faults started per hour
	last      time.Time
	started   bool
	onFault   func(Fault)

	faults  []Fault
	frozen  map[string]float64 // stuck sensor values
	bearing float64            // bearing wear severity 0..1
	leak    float64            // leak severity 0..1

	cnc  *cnc
	comp *compressor
	rob  *robot
	agv  *agv
}

// maxStep bounds the integration step; maxGap bounds how much time one Next
// call fast-forwards, so a long pause costs bounded work.
const (
	maxStep = time.Second
	maxGap  = 10 * time.Minute
)

// NewModel returns a machine of the given kind whose behaviour is fully
// determined by seed and the timestamps passed to Next. faultRate is the mean
// number of faults started per simulated hour (0 disables random faults).
func NewModel(kind Kind, seed int64, faultRate float64) (*Model, error) {
	m := &Model{
		kind:      kind,
		rng:       rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
		faultRate: math.Max(0, faultRate),
		frozen:    map[string]float64{},
	}
	switch kind {
	case KindCNC:
		m.cnc = newCNC(m.rng)
	case KindCompressor:
		m.comp = newCompressor(m.rng)
	case KindRobot:
		m.rob = newRobot(m.rng)
	case KindAGV:
		m.agv = newAGV(m.rng)
	default:
		return nil, fmt.Errorf("machine kind %q (use cnc, compressor, robot or agv): %w", kind, ErrUnknownKind)
	}
	return m, nil
}

// Kind returns the machine's kind.
func (m *Model) Kind() Kind { return m.kind }

// OnFault sets a function called whenever a fault starts.
func (m *Model) OnFault(fn func(Fault)) { m.onFault = fn }

// ActiveFaults returns the faults in effect at the last Next.
func (m *Model) ActiveFaults() []Fault { return append([]Fault(nil), m.faults...) }

// Next advances the machine to t and returns its telemetry at t. Times
// before the previous call do not move the machine backwards.
func (m *Model) Next(t time.Time) map[string]any {
	if !m.started {
		m.warmUp(t)
	}
	gap := t.Sub(m.last)
	if gap > maxGap {
		m.last = t.Add(-maxGap)
		gap = maxGap
	}
	for gap > 0 {
		d := min(gap, maxStep)
		m.last = m.last.Add(d)
		gap -= d
		m.step(m.last, d.Seconds())
	}
	out := m.sample(t)
	m.applySensorFaults(out, t)
	return out
}

// warmUp runs the machine through the two hours before its first sample,
// without random faults, so that it starts in a plausible state (some
// machines running, temperatures settled) instead of cold and idle.
func (m *Model) warmUp(t time.Time) {
	const warm, step = 2 * time.Hour, 5 * time.Second
	m.started = true
	rate := m.faultRate
	m.faultRate = 0
	m.last = t.Add(-warm)
	m.step(m.last, 0)
	for m.last.Before(t) {
		m.last = m.last.Add(step)
		m.step(m.last, step.Seconds())
	}
	m.faultRate = rate
}

// Inject starts a fault now. Field selects the field for stuck_sensor and
// spike ("" picks one); duration 0 picks a typical one.
func (m *Model) Inject(kind FaultKind, field string, t time.Time, duration time.Duration) error {
	if !m.supports(kind) {
		return fmt.Errorf("%s on a %s machine: %w", kind, m.kind, ErrFaultNotSupported)
	}
	analog := m.analogFields()
	if kind == FaultStuckSensor || kind == FaultSpike {
		if field == "" {
			field = analog[m.rng.IntN(len(analog))]
		} else if !contains(analog, field) {
			return fmt.Errorf("%s on field %q of a %s machine (use one of %v): %w", kind, field, m.kind, analog, ErrFaultNotSupported)
		}
	} else {
		field = ""
	}
	if duration <= 0 {
		duration = m.typicalDuration(kind)
	}
	f := Fault{Kind: kind, Field: field, Start: t, End: t.Add(duration)}
	// A second fault of the same kind on the same field replaces the first.
	kept := m.faults[:0]
	for _, g := range m.faults {
		if g.Kind != f.Kind || g.Field != f.Field {
			kept = append(kept, g)
		}
	}
	m.faults = append(kept, f)
	if kind == FaultStuckSensor {
		delete(m.frozen, field)
	}
	if m.onFault != nil {
		m.onFault(f)
	}
	return nil
}

func (m *Model) supports(k FaultKind) bool {
	switch k {
	case FaultStuckSensor, FaultSpike:
		return true
	case FaultBearingWear:
		return m.kind != KindAGV
	case FaultPressureLeak:
		return m.kind == KindCompressor
	}
	return false
}

func (m *Model) typicalDuration(k FaultKind) time.Duration {
	minutes := func(lo, hi float64) time.Duration {
		return time.Duration((lo + m.rng.Float64()*(hi-lo)) * float64(time.Minute))
	}
	switch k {
	case FaultBearingWear:
		return minutes(20, 60)
	case FaultPressureLeak:
		return minutes(10, 40)
	case FaultStuckSensor:
		return minutes(2, 10)
	}
	return 0 // a spike affects the next sample only
}

// analogFields are the fields a sensor fault can hit: measured values, not
// counters or states.
func (m *Model) analogFields() []string {
	switch m.kind {
	case KindCNC:
		return []string{"spindle_speed", "spindle_load", "spindle_temp", "vibration"}
	case KindCompressor:
		return []string{"discharge_pressure", "motor_current", "oil_temp", "vibration_rms"}
	case KindRobot:
		return []string{"j1_torque", "j2_torque", "j3_torque", "j1_temp", "j2_temp", "j3_temp"}
	default:
		return []string{"battery", "speed"}
	}
}

func (m *Model) step(t time.Time, dt float64) {
	m.updateFaults(t, dt)
	env := environment(t)
	switch {
	case m.cnc != nil:
		m.cnc.step(m, env, dt)
	case m.comp != nil:
		m.comp.step(m, env, dt)
	case m.rob != nil:
		m.rob.step(m, env, dt)
	case m.agv != nil:
		m.agv.step(m, env, dt)
	}
}

func (m *Model) sample(t time.Time) map[string]any {
	switch {
	case m.cnc != nil:
		return m.cnc.sample(m)
	case m.comp != nil:
		return m.comp.sample(m)
	case m.rob != nil:
		return m.rob.sample(m)
	default:
		return m.agv.sample(m)
	}
}

// updateFaults starts random faults, ends expired ones and moves the
// severities of the progressive faults.
func (m *Model) updateFaults(t time.Time, dt float64) {
	if dt > 0 && m.faultRate > 0 && m.rng.Float64() < m.faultRate*dt/3600 {
		kinds := []FaultKind{FaultStuckSensor, FaultSpike}
		if m.supports(FaultBearingWear) {
			kinds = append(kinds, FaultBearingWear)
		}
		if m.supports(FaultPressureLeak) {
			kinds = append(kinds, FaultPressureLeak)
		}
		_ = m.Inject(kinds[m.rng.IntN(len(kinds))], "", t, 0) // only supported kinds are drawn
	}
	bearing, leak := false, false
	kept := m.faults[:0]
	for _, f := range m.faults {
		if f.Kind != FaultSpike && !t.Before(f.End) {
			if f.Kind == FaultStuckSensor {
				delete(m.frozen, f.Field)
			}
			continue
		}
		switch f.Kind {
		case FaultBearingWear:
			bearing = true
		case FaultPressureLeak:
			leak = true
		}
		kept = append(kept, f)
	}
	m.faults = kept
	// Bearing wear builds up over ~15 minutes; a leak opens within ~2.
	if bearing {
		m.bearing = math.Min(1, m.bearing+dt/900)
	} else {
		m.bearing = 0 // maintenance replaced the bearing
	}
	if leak {
		m.leak = math.Min(1, m.leak+dt/120)
	} else {
		m.leak = 0
	}
}

// applySensorFaults distorts what the sensors report (not the machine).
func (m *Model) applySensorFaults(out map[string]any, t time.Time) {
	kept := m.faults[:0]
	for _, f := range m.faults {
		switch f.Kind {
		case FaultStuckSensor:
			v, ok := m.frozen[f.Field]
			if !ok {
				v, _ = out[f.Field].(float64)
				m.frozen[f.Field] = v
			}
			out[f.Field] = v
		case FaultSpike:
			if v, ok := out[f.Field].(float64); ok {
				factor := 3 + 3*m.rng.Float64()
				if v == 0 {
					v = 1
				}
				out[f.Field] = round(v*factor, 2)
			}
			continue // a spike lasts one sample
		}
		kept = append(kept, f)
	}
	m.faults = kept
}

// env is the plant around a machine at one instant.
type env struct {
	ambient     float64 // hall temperature, °C
	utilization float64 // planned share of time machines work, 0..1
}

// environment returns the hall temperature and the shift plan at t, in the
// local time of the process (a plant runs on local time).
func environment(t time.Time) env {
	lt := t.Local()
	h := float64(lt.Hour()) + float64(lt.Minute())/60 + float64(lt.Second())/3600
	return env{
		ambient:     22 + 3*math.Sin(2*math.Pi*(h-9)/24),
		utilization: utilization(lt.Weekday(), h),
	}
}

// utilization is the planned load: two busy day shifts on weekdays, a thin
// night shift, a Saturday morning shift, breaks and shift handovers.
func utilization(wd time.Weekday, h float64) float64 {
	in := func(a, b float64) bool { return h >= a && h < b }
	switch wd {
	case time.Sunday:
		return 0.05
	case time.Saturday:
		if in(6, 14) {
			return 0.5
		}
		return 0.05
	}
	switch {
	case in(9.5, 9.75), in(12, 12.5), in(17.5, 17.75), in(20, 20.5):
		return 0.15 // breaks
	case in(13.8, 14.2), in(21.8, 22.2), in(5.8, 6.2):
		return 0.4 // handovers
	case in(6, 22):
		return 0.9
	}
	return 0.35
}

// lag moves x towards target as a first-order system with time constant tau.
func lag(x, target, dt, tau float64) float64 {
	return target + (x-target)*math.Exp(-dt/tau)
}

// chance is true with the probability that an event with the given mean
// interval (seconds) happens within dt.
func chance(rng *rand.Rand, dt, mean float64) bool {
	if mean <= 0 {
		return true
	}
	return rng.Float64() < 1-math.Exp(-dt/mean)
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dwell returns the mean time in the working and waiting states so that a
// machine works the planned share u of the time, working in stretches of
// mean run seconds.
func dwell(u, run float64) (work, wait float64) {
	u = clamp(u, 0.02, 0.98)
	return run, run * (1 - u) / u
}
