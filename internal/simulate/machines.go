package simulate

import (
	"math"
	"math/rand/v2"
)

// cnc is a machining centre: it runs jobs (spindle speed and cycle time per
// job), wears its tool, counts parts and heats with load.
type cnc struct {
	state      string
	speed      float64 // rpm
	load       float64 // % of rated spindle power
	temp       float64 // °C
	vib        float64 // mm/s RMS
	wear       float64 // tool wear %
	parts      int64
	jobRPM     float64
	jobLoad    float64
	cycle      float64 // seconds per part
	cycleTime  float64 // seconds into the current part
	setupLeft  float64
	toolLife   float64 // seconds of cutting until 100 % wear
	alarmSince float64
}

func newCNC(rng *rand.Rand) *cnc {
	c := &cnc{state: "IDLE", temp: 24, vib: 0.1, wear: rng.Float64() * 60, parts: int64(rng.IntN(5000)),
		toolLife: (4 + 4*rng.Float64()) * 3600}
	c.newJob(rng)
	return c
}

func (c *cnc) newJob(rng *rand.Rand) {
	c.jobRPM = []float64{6000, 8000, 10000, 12000, 15000, 18000}[rng.IntN(6)]
	c.jobLoad = 30 + 35*rng.Float64()
	c.cycle = 45 + 135*rng.Float64()
}

func (c *cnc) step(m *Model, e env, dt float64) {
	rng := m.rng
	work, wait := dwell(e.utilization, 40*60)
	switch c.state {
	case "RUNNING":
		c.cycleTime += dt
		if c.cycleTime >= c.cycle {
			c.cycleTime -= c.cycle
			c.parts++
		}
		c.wear += 100 * dt / c.toolLife * (0.5 + c.load/100)
		switch {
		case m.bearing > 0.85:
			c.state, c.alarmSince = "ALARM", 0 // vibration monitor trips the spindle
		case c.wear >= 92:
			c.state, c.setupLeft = "SETUP", 180 // tool change
		case chance(rng, dt, work):
			if chance(rng, 1, 3) { // now and then the next job needs a set-up
				c.state, c.setupLeft = "SETUP", 300+600*rng.Float64()
			} else {
				c.state = "IDLE"
			}
		}
	case "SETUP":
		c.setupLeft -= dt
		if c.setupLeft <= 0 {
			if c.wear >= 92 {
				c.wear = 0
			}
			c.newJob(rng)
			c.state, c.cycleTime = "RUNNING", 0
		}
	case "ALARM":
		c.alarmSince += dt
		if m.bearing < 0.85 && c.alarmSince > 60 {
			c.state = "IDLE" // reset after maintenance
		}
	default: // IDLE
		if m.bearing <= 0.85 && chance(rng, dt, wait) {
			c.state, c.cycleTime = "RUNNING", 0
		}
	}

	targetRPM, targetLoad := 0.0, 1.5
	if c.state == "RUNNING" {
		// Cutting and rapid moves alternate within a part.
		phase := math.Sin(2 * math.Pi * c.cycleTime / math.Max(c.cycle/4, 1))
		targetRPM = c.jobRPM
		targetLoad = c.jobLoad*(1+0.4*c.wear/100)*(0.85+0.15*phase) + 10*m.bearing
	}
	c.speed = lag(c.speed, targetRPM, dt, 2)
	c.load = lag(c.load, targetLoad, dt, 3)
	rpmShare := c.speed / 24000
	c.temp = lag(c.temp, e.ambient+4+30*rpmShare+12*c.load/100+25*m.bearing, dt, 600)
	vib := 0.1
	if c.speed > 100 {
		vib = 0.6 + 1.6*rpmShare + 0.6*c.wear/100
	}
	vib += 9 * m.bearing * m.bearing * (0.3 + rpmShare)
	c.vib = lag(c.vib, vib, dt, 5)
}

func (c *cnc) sample(m *Model) map[string]any {
	n := m.rng.NormFloat64
	return map[string]any{
		"state":         c.state,
		"spindle_speed": round(clamp(c.speed*(1+0.002*n()), 0, 24000), 0),
		"spindle_load":  round(clamp(c.load+0.8*n(), 0, 120), 1),
		"spindle_temp":  round(clamp(c.temp+0.15*n(), 0, 120), 2),
		"vibration":     round(clamp(c.vib*(1+0.06*n()), 0, 50), 3),
		"tool_wear":     round(clamp(c.wear, 0, 100), 2),
		"part_count":    c.parts,
	}
}

// compressor is a rotary screw compressor feeding an air net: it loads
// below the cut-in pressure, unloads above the cut-out pressure and stops
// after idling for a while.
type compressor struct {
	pressure float64 // bar
	loaded   bool
	running  bool
	idleFor  float64
	current  float64 // A
	oil      float64 // °C
	vib      float64 // mm/s RMS
	supply   float64 // bar/s when loaded
	demand   float64 // bar/s at full plant demand
}

func newCompressor(rng *rand.Rand) *compressor {
	return &compressor{pressure: 6.6 + rng.Float64()*0.8, oil: 30, supply: 0.045 + 0.01*rng.Float64(), demand: 0.03 + 0.008*rng.Float64()}
}

func (c *compressor) step(m *Model, e env, dt float64) {
	const cutIn, cutOut, runOn = 6.5, 7.5, 180.0
	draw := c.demand*(0.1+0.9*e.utilization) + 0.045*m.leak
	flow := 0.0
	if c.loaded {
		flow = c.supply
	}
	c.pressure = clamp(c.pressure+(flow-draw)*dt, 0, 9)
	switch {
	case c.pressure <= cutIn:
		c.running, c.loaded, c.idleFor = true, true, 0
	case c.pressure >= cutOut && c.loaded:
		c.loaded, c.idleFor = false, 0
	case c.running && !c.loaded:
		c.idleFor += dt
		if c.idleFor > runOn {
			c.running = false
		}
	}
	current, oil, vib := 0.0, e.ambient+3, 0.05
	switch {
	case c.loaded:
		current, oil, vib = 86+4*m.bearing, 78, 2.2
	case c.running:
		current, oil, vib = 33, 68, 1.4
	}
	if c.running {
		oil += 15 * m.bearing
		vib += 7 * m.bearing * m.bearing
	}
	c.current = lag(c.current, current, dt, 1.5)
	c.oil = lag(c.oil, oil, dt, 420)
	c.vib = lag(c.vib, vib, dt, 3)
}

func (c *compressor) sample(m *Model) map[string]any {
	n := m.rng.NormFloat64
	return map[string]any{
		"running":            c.running,
		"discharge_pressure": round(clamp(c.pressure+0.015*n(), 0, 10), 3),
		"motor_current":      round(clamp(c.current*(1+0.01*n()), 0, 150), 1),
		"oil_temp":           round(clamp(c.oil+0.2*n(), 0, 120), 2),
		"vibration_rms":      round(clamp(c.vib*(1+0.05*n()), 0, 50), 3),
	}
}

// robot is a six-axis arm running a program in cycles; joint torques follow
// the motion and joint temperatures follow the torque.
type robot struct {
	state    string
	program  string
	nominal  float64 // nominal cycle time, s
	phase    float64 // 0..1 within the cycle
	elapsed  float64
	lastTime float64
	cycles   int64
	torque   [6]float64
	temp     [6]float64
	stopLeft float64
	base     [6]float64
}

func newRobot(rng *rand.Rand) *robot {
	// Gravity load and motion amplitude per joint (Nm): the shoulder and
	// elbow carry most of it.
	r := &robot{state: "IDLE", cycles: int64(rng.IntN(20000)), base: [6]float64{35, 140, 90, 22, 14, 8}}
	for i := range r.temp {
		r.temp[i] = 25
	}
	r.newProgram(rng)
	r.lastTime = r.nominal
	return r
}

func (r *robot) newProgram(rng *rand.Rand) {
	programs := []string{"WELD_A12", "PICK_PLACE_3", "PALLETIZE_7", "GLUE_B4", "DEBURR_2"}
	r.program = programs[rng.IntN(len(programs))]
	r.nominal = 20 + 40*rng.Float64()
}

func (r *robot) step(m *Model, e env, dt float64) {
	rng := m.rng
	work, wait := dwell(e.utilization, 30*60)
	switch r.state {
	case "RUNNING":
		// A worn bearing in the elbow adds friction and slows the cycle.
		r.elapsed += dt
		r.phase += dt / (r.nominal * (1 + 0.08*m.bearing))
		if r.phase >= 1 {
			r.phase -= math.Floor(r.phase)
			r.cycles++
			r.lastTime = r.elapsed
			r.elapsed = 0
		}
		switch {
		case chance(rng, dt, 6*3600):
			r.state, r.stopLeft = "STOPPED", 60+240*rng.Float64() // light curtain, operator reset
		case chance(rng, dt, work):
			r.state = "IDLE"
		}
	case "STOPPED":
		r.stopLeft -= dt
		if r.stopLeft <= 0 {
			r.state = "IDLE"
		}
	default:
		if chance(rng, dt, wait) {
			if chance(rng, 1, 4) {
				r.newProgram(rng)
			}
			r.state, r.phase, r.elapsed = "RUNNING", 0, 0
		}
	}
	for j := range r.torque {
		target := 0.55 * r.base[j] // servo holding against gravity
		if r.state == "RUNNING" {
			target = r.base[j] * (0.7 + 0.5*math.Sin(2*math.Pi*r.phase+float64(j)*0.9))
		}
		if j == 2 {
			target += 18 * m.bearing
		}
		r.torque[j] = lag(r.torque[j], target, dt, 0.3)
		// Wrist motors are smaller and run cooler than the base axes.
		heat := 6 + [6]float64{24, 28, 26, 16, 13, 10}[j]*math.Abs(r.torque[j])/r.base[j]
		if r.state != "RUNNING" {
			heat *= 0.5
		}
		if j == 2 {
			heat += 22 * m.bearing
		}
		r.temp[j] = lag(r.temp[j], e.ambient+heat, dt, 900)
	}
}

func (r *robot) sample(m *Model) map[string]any {
	n := m.rng.NormFloat64
	out := make(map[string]any, 16)
	out["state"] = r.state
	out["program"] = r.program
	out["cycle_time"] = round(clamp(r.lastTime*(1+0.01*n()), 0, 600), 2)
	out["cycles"] = r.cycles
	torque := [6]string{"j1_torque", "j2_torque", "j3_torque", "j4_torque", "j5_torque", "j6_torque"}
	temp := [6]string{"j1_temp", "j2_temp", "j3_temp", "j4_temp", "j5_temp", "j6_temp"}
	for j := range torque {
		out[torque[j]] = round(clamp(r.torque[j]+0.02*r.base[j]*n(), -400, 400), 2)
		out[temp[j]] = round(clamp(r.temp[j]+0.1*n(), 0, 120), 2)
	}
	return out
}

// agv drives between stations in a 120 m × 60 m hall, loads and unloads,
// and goes to its charger when the battery runs low.
type agv struct {
	state    string
	x, y     float64
	speed    float64
	battery  float64
	stations [][2]float64
	target   int // index into stations; -1 is the charger
	waitLeft float64
}

func newAGV(rng *rand.Rand) *agv {
	a := &agv{state: "IDLE", battery: 40 + 55*rng.Float64()}
	for range 5 {
		a.stations = append(a.stations, [2]float64{10 + 100*rng.Float64(), 8 + 44*rng.Float64()})
	}
	start := a.stations[rng.IntN(len(a.stations))]
	a.x, a.y = start[0], start[1]
	a.target = rng.IntN(len(a.stations))
	return a
}

func (a *agv) goal() [2]float64 {
	if a.target < 0 {
		return [2]float64{4, 4} // the charger
	}
	return a.stations[a.target]
}

func (a *agv) step(m *Model, e env, dt float64) {
	rng := m.rng
	const vmax, accel = 1.5, 0.5
	drain := 0.0008 // %/s standing with electronics on
	switch a.state {
	case "MOVING", "BLOCKED":
		g := a.goal()
		dx, dy := g[0]-a.x, g[1]-a.y
		dist := math.Hypot(dx, dy)
		if a.state == "BLOCKED" {
			a.waitLeft -= dt
			a.speed = math.Max(0, a.speed-2*accel*dt)
			if a.waitLeft <= 0 {
				a.state = "MOVING"
			}
		} else {
			// Accelerate, cruise, and brake to stop at the goal.
			want := math.Min(vmax, math.Sqrt(2*accel*dist))
			if a.speed < want {
				a.speed = math.Min(want, a.speed+accel*dt)
			} else {
				a.speed = want
			}
			if chance(rng, dt, 15*60) {
				a.state, a.waitLeft = "BLOCKED", 5+20*rng.Float64() // someone in the aisle
			}
		}
		step := a.speed * dt
		if dist <= math.Max(step, 0.05) {
			a.x, a.y, a.speed = g[0], g[1], 0
			if a.target < 0 {
				a.state = "CHARGING"
			} else {
				a.state, a.waitLeft = "LOADING", 30+60*rng.Float64()
			}
		} else {
			a.x += dx / dist * step
			a.y += dy / dist * step
		}
		drain = 0.004 + 0.003*a.speed/vmax
	case "LOADING":
		a.waitLeft -= dt
		if a.waitLeft <= 0 {
			a.state = "IDLE"
		}
	case "CHARGING":
		a.battery += 0.055 * dt
		drain = 0
		if a.battery >= 98 {
			a.state = "IDLE"
		}
	default: // IDLE
		switch {
		case a.battery < 25:
			a.target, a.state = -1, "MOVING"
		case chance(rng, dt, 600*(1.05-e.utilization)):
			next := rng.IntN(len(a.stations))
			if next == a.target {
				next = (next + 1) % len(a.stations)
			}
			a.target, a.state = next, "MOVING"
		}
	}
	a.battery = clamp(a.battery-drain*dt, 0, 100)
}

func (a *agv) sample(m *Model) map[string]any {
	n := m.rng.NormFloat64
	return map[string]any{
		"state":   a.state,
		"battery": round(clamp(a.battery+0.05*n(), 0, 100), 2),
		"speed":   round(clamp(a.speed+0.01*n()*math.Min(a.speed, 1), 0, 2), 3),
		"position": map[string]any{
			"x": round(clamp(a.x+0.02*n(), 0, 120), 2),
			"y": round(clamp(a.y+0.02*n(), 0, 60), 2),
		},
	}
}
