package rules

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/shopfloor/shopfloor/internal/bus"
)

// compiled is an enabled rule ready to evaluate.
type compiled struct {
	rule       Rule
	prog       *Program
	forMs      int64
	clearForMs int64
	clearAfter int
	win        []int // prog.windows[i] is the organization's shared window win[i]
	// Indices into the organization's field table (orgState.fnames).
	trigI  []int // prog.triggers
	fieldI []int // prog.fields
	fastI  []int // prog.fast.cmps' fields (-1 for aggregates)
	// A condition that is one comparison is kept here, next to the rule,
	// so evaluating it chases no pointers.
	one  bool
	cmp  fastCmp
	cmpI int
	// Likewise a condition with one window aggregate.
	oneAgg bool
	aggWin int
	aggFn  aggFunc
}

func compileRule(r Rule, opts CompileOptions) (*compiled, error) {
	p, err := Compile(r.Condition, opts)
	if err != nil {
		return nil, err
	}
	c := &compiled{rule: r, prog: p, forMs: time.Duration(r.For).Milliseconds(), clearForMs: time.Duration(r.ClearFor).Milliseconds(), clearAfter: r.ClearAfter}
	if c.clearAfter < 1 {
		c.clearAfter = 1
	}
	return c, nil
}

func (c *compiled) inScope(d *deviceState) bool {
	s := &c.rule.Scope
	if s.Device != "" && s.Device != d.id {
		return false
	}
	if s.Site != "" && s.Site != d.site {
		return false
	}
	if s.Template != "" && s.Template != d.template {
		return false
	}
	if len(s.Tags) == 0 {
		return true
	}
	for k, v := range s.Tags {
		if d.info.Tags[k] != v {
			return false
		}
	}
	return true
}

// triggered reports whether the message being processed carries a field
// the condition reads (present is indexed like the organization's fields);
// a condition that reads no field is evaluated on every message.
func (c *compiled) triggered(present []bool) bool {
	if len(c.trigI) == 0 {
		return true
	}
	for _, i := range c.trigI {
		if present[i] {
			return true
		}
	}
	return false
}

// orgState holds the rules and device states of one organization.
type orgState struct {
	rules []*compiled
	// The fields the rules read, directly or through windows, or watch
	// with nodata(field, …): fidx[name] indexes fnames, direct and recv.
	fidx      map[string]int
	fnames    []string
	direct    []bool // read directly: kept in the device's values
	vm        []bool // read by a condition the expression VM evaluates: also kept in the env
	recv      []bool // watched by nodata(field, …)
	maxWindow time.Duration
	devices   map[string]*deviceState
	// Windows are shared by every rule of the organization that asks for
	// the same (field, duration, kind): one window per device and spec,
	// however many rules read it.
	wspecs []windowSpec
}

// deviceState is everything the engine keeps per device.
type deviceState struct {
	id        string
	site      string
	template  string
	env       map[string]any // the evaluation environment, reused across evaluations
	seen      bool
	lastTS    int64 // newest message time evaluated (device time)
	lastRecv  int64 // wall time that message arrived
	firstRecv int64
	fieldRecv map[string]int64
	connKnown bool
	connected bool
	connAt    int64
	info      DeviceInfo
	infoAt    int64
	rules     map[string]*ruleState
	restored  map[string]ruleSnap // rule states from a snapshot, applied on first use
	// wins[j] is the window for the organization's wspecs[j], nil until a
	// rule in scope needs it; wkeys are the specs wins was built for.
	wins   []window
	wkeys  []windowSpec
	wgen   int
	wcache []winStat
	// Per organization field (orgState.fnames): the latest value, whether
	// it is a number, and whether any value was seen.
	fnames   []string
	num      []float64
	isNum    []bool
	known    []bool
	strEnv   []bool                    // the env holds a string for the field
	restWins map[windowSpec]windowSnap // windows from a snapshot, applied on first use
	// states[i] is the state of o.rules[i], laid out together so the
	// per-message loop over the rules stays in a few cache lines; rules
	// maps rule ids to them.
	states []ruleState
	filled bool // history backfill done in this process
	dirty  bool
}

func newDeviceState(id string, wall int64) *deviceState {
	d := &deviceState{id: id, firstRecv: wall, env: map[string]any{
		"device": id, "site": "", "template": "", "tags": map[string]any{}, "props": map[string]any{},
		"hour": 0, "minute": 0, "weekday": 0,
	}, rules: map[string]*ruleState{}, fieldRecv: map[string]int64{}}
	return d
}

func (d *deviceState) setSite(site, template string) {
	if site != "" && site != d.site {
		d.site = site
		d.env["site"] = site
	}
	if template != "" && template != d.template {
		d.template = template
		d.env["template"] = template
	}
}

func (d *deviceState) setInfo(info DeviceInfo) {
	d.info = info
	tags := make(map[string]any, len(info.Tags))
	for k, v := range info.Tags {
		tags[k] = v
	}
	d.env["tags"] = tags
	if info.Props != nil {
		d.env["props"] = info.Props
	} else {
		d.env["props"] = map[string]any{}
	}
	d.setSite(info.Site, info.Template)
}

// setNum stores a field value, reusing the boxed value when it did not
// change so steady signals cost no allocation.
func (d *deviceState) setNum(name string, v float64) {
	if old, ok := d.env[name].(float64); ok && old == v {
		return
	}
	d.env[name] = v
}

func (d *deviceState) setStr(name, v string) {
	if old, ok := d.env[name].(string); ok && old == v {
		return
	}
	d.env[name] = v
}

// winStat caches a window's summary for one evaluation time.
type winStat struct {
	gen   uint64
	st    stats
	known bool
}

// layout lays the device's state out for the organization's current rule
// set: field values, windows (keeping those whose spec is still used) and
// rule states.
func (d *deviceState) layout(o *orgState, gen int) {
	if d.wgen == gen && len(d.wins) == len(o.wspecs) && len(d.known) == len(o.fnames) && len(d.states) == len(o.rules) {
		return
	}
	// Numbers only fast conditions read live in num, not the env: carry
	// them over by name, and put them in the env for the VM where a
	// condition it evaluates reads them now.
	last := make(map[string]float64, len(d.fnames))
	for i, f := range d.fnames {
		if d.isNum[i] {
			last[f] = d.num[i]
		}
	}
	n := len(o.fnames)
	d.fnames, d.num, d.isNum, d.known, d.strEnv = o.fnames, make([]float64, n), make([]bool, n), make([]bool, n), make([]bool, n)
	for i, f := range o.fnames {
		if v, ok := last[f]; ok {
			d.num[i], d.isNum[i], d.known[i] = v, true, true
			if o.vm[i] {
				d.setNum(f, v)
			}
			continue
		}
		switch v := d.env[f].(type) {
		case float64:
			d.num[i], d.isNum[i], d.known[i] = v, true, true
		case string:
			d.known[i], d.strEnv[i] = true, true
		}
	}
	old, oldKeys := d.wins, d.wkeys
	d.wins, d.wkeys = make([]window, len(o.wspecs)), o.wspecs
	d.wcache = make([]winStat, len(o.wspecs))
	for j, spec := range o.wspecs {
		for i, k := range oldKeys {
			if k == spec && old[i] != nil {
				d.wins[j] = old[i]
				break
			}
		}
		if d.wins[j] == nil {
			if ws, ok := d.restWins[spec]; ok {
				d.wins[j] = ws.restore(spec)
				delete(d.restWins, spec)
			}
		}
	}
	d.states = make([]ruleState, len(o.rules))
	for i, c := range o.rules {
		if rs := d.rules[c.rule.ID]; rs != nil {
			d.states[i] = *rs
			d.rules[c.rule.ID] = &d.states[i]
		}
	}
	d.wgen = gen
}

// slot returns the state of o.rules[i] (c), creating or renewing it when
// the rule is new to the device or was edited.
func (d *deviceState) slot(i int, c *compiled) *ruleState {
	rs := &d.states[i]
	if rs.live && rs.version == c.rule.Version {
		return rs
	}
	*rs = d.state(c)
	d.rules[c.rule.ID] = rs
	return rs
}

// window returns the device's window j, creating it (and giving it the
// current message's sample) when a rule needs it for the first time.
func (d *deviceState) window(o *orgState, j, buckets int, m *bus.Telemetry) window {
	if w := d.wins[j]; w != nil {
		return w
	}
	spec := o.wspecs[j]
	w := newWindow(spec, buckets)
	if m != nil {
		if v, ok := m.Num[spec.Field]; ok && finite(v) {
			w.add(m.TS, v)
		}
	}
	d.wins[j] = w
	return w
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// ruleState is the per-(rule, device) state machine.
type ruleState struct {
	live         bool // set up for the rule's version
	version      int64
	pending      bool // condition true, waiting for the rule's "for"
	pendingSince int64
	firing       bool
	falseN       int // consecutive false evaluations while firing
	hasFalse     bool
	falseSince   int64
}

// state builds the state of c for this device: from a snapshot, from the
// previous version of the rule, or new.
func (d *deviceState) state(c *compiled) ruleState {
	prev := d.rules[c.rule.ID]
	if prev != nil && prev.version == c.rule.Version {
		r := *prev
		r.live = true
		return r
	}
	firing := prev != nil && prev.firing
	if snap, ok := d.restored[c.rule.ID]; ok {
		delete(d.restored, c.rule.ID)
		d.adoptRuleWindows(c, snap)
		if r := snap.restore(c); r != nil {
			r.live = true
			return *r
		}
		firing = snap.Firing
	}
	// New, or the rule was edited: the state machine starts over, but an
	// alert the rule has open stays known so it can still clear.
	return ruleState{live: true, version: c.rule.Version, firing: firing}
}

// adoptRuleWindows takes the windows a snapshot from before shared windows
// kept per rule, for specs the device does not hold yet.
func (d *deviceState) adoptRuleWindows(c *compiled, snap ruleSnap) {
	if len(snap.W) != len(c.prog.windows) || len(c.win) != len(c.prog.windows) {
		return
	}
	for i, ws := range snap.W {
		j := c.win[i]
		if j >= len(d.wins) || d.wins[j] != nil {
			continue
		}
		if w := ws.restore(c.prog.windows[i]); w != nil {
			d.wins[j] = w
		}
	}
}

type intentKind uint8

const (
	intentFire intentKind = iota
	intentClear
)

// intent is an alert call the evaluation decided on.
type intent struct {
	kind    intentKind
	c       *compiled
	org     string
	device  string
	at      time.Time
	values  map[string]float64
	message string
}

func (in *intent) key() string { return in.org + "\x00" + in.c.rule.ID + "\x00" + in.device }

// counters are the engine's statistics.
type counters struct {
	messages    atomic.Int64
	duplicates  atomic.Int64
	evaluations atomic.Int64
	skipped     atomic.Int64
	errors      atomic.Int64
	fired       atomic.Int64
	cleared     atomic.Int64
}

// evaluator is the engine without I/O to the alerts: it turns messages and
// timer sweeps into intents. It is not safe for concurrent use.
type evaluator struct {
	orgs     map[string]*orgState
	buckets  int
	dir      DeviceDirectory
	anomaly  AnomalyScorer
	history  History
	infoTTL  int64 // ms
	log      *slog.Logger
	machine  vm.VM
	st       *counters
	lastWarn map[string]int64
	gen      int    // bumped by setRules: invalidates every device's slots and windows
	statGen  uint64 // bumped per evaluation time: invalidates cached window summaries
	aggVals  []float64
	present  []bool // per organization field: carried by the message being processed
	// Counts not yet added to st: one atomic add per message, not per rule.
	evals, skipped int64
}

func newEvaluator(buckets int, log *slog.Logger) *evaluator {
	if buckets <= 0 {
		buckets = 30
	}
	return &evaluator{orgs: map[string]*orgState{}, buckets: buckets, log: log, st: &counters{}, lastWarn: map[string]int64{}, infoTTL: 60_000}
}

// setRules replaces the rule set, keeping device state.
func (ev *evaluator) setRules(rs []*compiled) {
	ev.gen++
	for _, o := range ev.orgs {
		o.rules, o.fidx, o.fnames, o.direct, o.vm, o.recv, o.maxWindow, o.wspecs = nil, map[string]int{}, nil, nil, nil, nil, 0, nil
	}
	for _, c := range rs {
		o := ev.org(c.rule.Org)
		o.rules = append(o.rules, c)
		c.win = make([]int, len(c.prog.windows))
		for i, spec := range c.prog.windows {
			j := slices.Index(o.wspecs, spec)
			if j < 0 {
				j = len(o.wspecs)
				o.wspecs = append(o.wspecs, spec)
			}
			c.win[i] = j
		}
		c.fieldI = c.fieldI[:0]
		for _, f := range c.prog.fields {
			i := o.field(f)
			o.direct[i] = true
			if c.prog.fast == nil {
				o.vm[i] = true
			}
			c.fieldI = append(c.fieldI, i)
		}
		c.trigI = c.trigI[:0]
		for _, f := range c.prog.triggers {
			c.trigI = append(c.trigI, o.field(f))
		}
		c.fastI, c.one = nil, false
		if c.prog.fast != nil {
			for _, fc := range c.prog.fast.cmps {
				i := -1
				if fc.agg < 0 {
					i = o.field(fc.field)
				}
				c.fastI = append(c.fastI, i)
			}
			if len(c.prog.fast.cmps) == 1 {
				c.one, c.cmp, c.cmpI = true, c.prog.fast.cmps[0], c.fastI[0]
			}
		}
		c.oneAgg = len(c.prog.aggs) == 1
		if c.oneAgg {
			c.aggWin, c.aggFn = c.win[c.prog.aggs[0].win], c.prog.aggs[0].fn
		}
		for _, a := range c.prog.absences {
			if a.field != "" {
				o.recv[o.field(a.field)] = true
			}
		}
		if c.prog.maxWindow > o.maxWindow {
			o.maxWindow = c.prog.maxWindow
		}
	}
	// Forget the state of rules that no longer exist.
	for _, o := range ev.orgs {
		live := make(map[string]bool, len(o.rules))
		for _, c := range o.rules {
			live[c.rule.ID] = true
		}
		for _, d := range o.devices {
			for id := range d.rules {
				if !live[id] {
					delete(d.rules, id)
					d.dirty = true
				}
			}
		}
	}
}

func (ev *evaluator) org(id string) *orgState {
	o := ev.orgs[id]
	if o == nil {
		o = &orgState{fidx: map[string]int{}, devices: map[string]*deviceState{}}
		ev.orgs[id] = o
	}
	return o
}

// field returns the index of a field in the organization's table.
func (o *orgState) field(name string) int {
	if i, ok := o.fidx[name]; ok {
		return i
	}
	i := len(o.fnames)
	o.fidx[name] = i
	o.fnames = append(o.fnames, name)
	o.direct = append(o.direct, false)
	o.vm = append(o.vm, false)
	o.recv = append(o.recv, false)
	return i
}

func (o *orgState) device(id string, wall int64) *deviceState {
	d := o.devices[id]
	if d == nil {
		d = newDeviceState(id, wall)
		// Sized for every rule of the organization so the first message
		// does not regrow the map once per rule.
		d.rules = make(map[string]*ruleState, len(o.rules))
		o.devices[id] = d
	}
	return d
}

func (ev *evaluator) warn(key string, wall int64, msg string, args ...any) {
	if last, ok := ev.lastWarn[key]; ok && wall-last < 60_000 {
		return
	}
	if len(ev.lastWarn) > 10000 {
		clear(ev.lastWarn)
	}
	ev.lastWarn[key] = wall
	ev.log.Warn(msg, args...)
}

func (ev *evaluator) refreshInfo(ctx context.Context, org string, d *deviceState, wall int64) {
	if ev.dir == nil || (d.infoAt != 0 && wall-d.infoAt < ev.infoTTL) {
		return
	}
	d.infoAt = wall
	info, err := ev.dir.DeviceInfo(ctx, org, d.id)
	if err != nil {
		ev.warn("info/"+org, wall, "rules: device lookup failed; using what is known", "org", org, "device", d.id, "err", err)
		return
	}
	d.setInfo(info)
}

// process takes one message in and, when eval is set, evaluates the rules
// it concerns; wall is the current wall-clock time in ms.
func (ev *evaluator) process(ctx context.Context, m *bus.Telemetry, wall int64, out *[]intent, eval bool) {
	o := ev.orgs[m.Org]
	if o == nil || len(o.rules) == 0 || m.Device == "" {
		return
	}
	ev.st.messages.Add(1)
	d := o.device(m.Device, wall)
	if d.seen && m.TS <= d.lastTS {
		// A redelivered batch, or data older than what was evaluated:
		// evaluating it again would count samples twice.
		ev.st.duplicates.Add(1)
		return
	}
	ev.refreshInfo(ctx, m.Org, d, wall)
	d.setSite(m.Site, m.Template)
	if !d.filled {
		ev.backfill(ctx, m.Org, o, d, m.TS)
	}
	recv := m.Received
	if recv == 0 {
		recv = m.TS
	}
	d.seen, d.lastTS, d.lastRecv, d.dirty = true, m.TS, recv, true
	d.layout(o, ev.gen)
	if cap(ev.present) < len(o.fnames) {
		ev.present = make([]bool, len(o.fnames))
	}
	present := ev.present[:len(o.fnames)]
	clear(present)
	for name, v := range m.Num {
		i, ok := o.fidx[name]
		if !ok {
			continue
		}
		present[i] = true
		if o.direct[i] {
			d.num[i], d.isNum[i], d.known[i] = v, true, true
			if o.vm[i] {
				d.setNum(name, v)
				d.strEnv[i] = false
			} else if d.strEnv[i] {
				delete(d.env, name) // the value lives in num now
				d.strEnv[i] = false
			}
		}
		if o.recv[i] {
			d.fieldRecv[name] = recv
		}
	}
	for name, v := range m.Str {
		i, ok := o.fidx[name]
		if !ok {
			continue
		}
		present[i] = true
		if o.direct[i] {
			d.setStr(name, v)
			d.isNum[i], d.known[i], d.strEnv[i] = false, true, true
		}
		if o.recv[i] {
			d.fieldRecv[name] = recv
		}
	}
	for j, w := range d.wins {
		if w == nil {
			continue
		}
		if v, ok := m.Num[o.wspecs[j].Field]; ok && finite(v) {
			w.add(m.TS, v)
		}
	}
	ev.statGen++
	for i, c := range o.rules {
		if !c.inScope(d) || !c.triggered(present) {
			continue
		}
		for _, j := range c.win {
			d.window(o, j, ev.buckets, m)
		}
		rs := d.slot(i, c)
		if eval {
			ev.evaluate(m.Org, c, d, rs, m.TS, recv, out)
		}
	}
	ev.count()
}

// count publishes the evaluation counts to the engine's statistics.
func (ev *evaluator) count() {
	if ev.evals != 0 {
		ev.st.evaluations.Add(ev.evals)
		ev.evals = 0
	}
	if ev.skipped != 0 {
		ev.st.skipped.Add(ev.skipped)
		ev.skipped = 0
	}
}

// backfill fills the windows of a device seen for the first time in this
// process from stored history: the gap since its snapshot, or one window
// length when there is none. Nothing is evaluated or fired.
func (ev *evaluator) backfill(ctx context.Context, org string, o *orgState, d *deviceState, upTo int64) {
	d.filled = true
	if ev.history == nil || o.maxWindow == 0 {
		return
	}
	from := upTo - o.maxWindow.Milliseconds()
	if d.seen && d.lastTS+1 > from {
		from = d.lastTS + 1
	}
	if from >= upTo {
		return
	}
	d.layout(o, ev.gen)
	var wins []int
	fieldSet := map[string]bool{}
	for _, c := range o.rules {
		if len(c.win) == 0 || !c.inScope(d) {
			continue
		}
		for _, j := range c.win {
			if !slices.Contains(wins, j) {
				d.window(o, j, ev.buckets, nil)
				wins = append(wins, j)
				fieldSet[o.wspecs[j].Field] = true
			}
		}
	}
	if len(wins) == 0 {
		return
	}
	fields := make([]string, 0, len(fieldSet))
	for f := range fieldSet {
		fields = append(fields, f)
	}
	err := ev.history.Scan(ctx, org, d.id, fields, time.UnixMilli(from), time.UnixMilli(upTo), func(m *bus.Telemetry) error {
		for _, j := range wins {
			if v, ok := m.Num[o.wspecs[j].Field]; ok && finite(v) {
				d.wins[j].add(m.TS, v)
			}
		}
		return nil
	})
	if err != nil {
		ev.warn("history/"+org, upTo, "rules: could not rebuild windows from history; they start from the snapshot", "org", org, "device", d.id, "err", err)
	}
}

// sweep evaluates the rules that watch for absence at wall time now.
func (ev *evaluator) sweep(now int64, out *[]intent) {
	ev.statGen++
	defer ev.count()
	for org, o := range ev.orgs {
		for i, c := range o.rules {
			if !c.prog.Absence() {
				continue
			}
			for _, d := range o.devices {
				if !c.inScope(d) {
					continue
				}
				d.layout(o, ev.gen)
				rs := d.slot(i, c)
				ev.evaluate(org, c, d, rs, now, now, out)
			}
		}
	}
}

// evaluate runs the condition for one device at time t (wall: the wall
// clock, for absence) and advances the rule's state machine.
func (ev *evaluator) evaluate(org string, c *compiled, d *deviceState, rs *ruleState, t, wall int64, out *[]intent) {
	res, ok := ev.run(org, c, d, rs, t, wall)
	if !ok {
		ev.skipped++
		return
	}
	ev.evals++
	d.dirty = true
	if res {
		rs.falseN, rs.hasFalse = 0, false
		if rs.firing {
			return
		}
		if !rs.pending {
			rs.pending, rs.pendingSince = true, t
		}
		if t-rs.pendingSince < c.forMs {
			return
		}
		rs.pending, rs.firing = false, true
		*out = append(*out, intent{kind: intentFire, c: c, org: org, device: d.id, at: time.UnixMilli(t).UTC(),
			values: ev.values(c, d), message: c.rule.Name + ": " + c.rule.Condition})
		return
	}
	rs.pending = false
	if !rs.firing {
		return
	}
	if !rs.hasFalse {
		rs.hasFalse, rs.falseSince = true, t
	}
	rs.falseN++
	if rs.falseN < c.clearAfter || t-rs.falseSince < c.clearForMs {
		return
	}
	rs.firing, rs.falseN, rs.hasFalse = false, 0, false
	if !c.rule.ManualResolve {
		*out = append(*out, intent{kind: intentClear, c: c, org: org, device: d.id, at: time.UnixMilli(t).UTC()})
	}
}

// run evaluates the condition; ok is false when it cannot be evaluated
// yet (a field never seen, an empty window, no anomaly score). The
// aggregates it computed stay in ev.aggVals for values.
func (ev *evaluator) run(org string, c *compiled, d *deviceState, rs *ruleState, t, wall int64) (res, ok bool) {
	p := c.prog
	env := d.env
	for _, i := range c.fieldI {
		if !d.known[i] {
			return false, false
		}
	}
	ev.aggVals = ev.aggVals[:0]
	if c.oneAgg {
		st := d.winStats(c.aggWin, t, ev.statGen)
		if st == nil {
			return false, false
		}
		v, ok := st.value(c.aggFn)
		if !ok {
			return false, false
		}
		ev.aggVals = append(ev.aggVals, v)
	} else {
		for i := range p.aggs {
			a := &p.aggs[i]
			st := d.winStats(c.win[a.win], t, ev.statGen)
			if st == nil {
				return false, false
			}
			v, ok := st.value(a.fn)
			if !ok {
				return false, false
			}
			ev.aggVals = append(ev.aggVals, v)
		}
	}
	if c.one {
		if c.cmp.agg >= 0 {
			return c.cmp.test(ev.aggVals[c.cmp.agg]), true
		}
		if d.isNum[c.cmpI] {
			return c.cmp.test(d.num[c.cmpI]), true
		}
	} else if p.fast != nil {
		if res, ok := p.fast.eval(d.num, d.isNum, c.fastI, ev.aggVals); ok {
			return res, true
		}
	}
	if p.fast != nil {
		// A fast condition fell back (a field holds text): its number
		// fields live in num only, so give them to the VM's env.
		for k, i := range c.fieldI {
			if d.isNum[i] && !d.strEnv[i] {
				d.setNum(p.fields[k], d.num[i])
			}
		}
	}
	for i := range p.aggs {
		env[p.aggs[i].name] = ev.aggVals[i]
	}
	for _, a := range p.anomalies {
		if ev.anomaly == nil {
			return false, false
		}
		v, ok := ev.anomaly.AnomalyScore(org, d.id, a.field)
		if !ok {
			return false, false
		}
		env[a.name] = v
	}
	for _, a := range p.absences {
		dur := a.dur.Milliseconds()
		if a.disconnected {
			env[a.name] = d.connKnown && !d.connected && wall-d.connAt >= dur
			continue
		}
		last := d.lastRecv
		if !d.seen {
			last = d.firstRecv
		}
		if a.field != "" {
			if fr, ok := d.fieldRecv[a.field]; ok {
				last = fr
			} else {
				last = d.firstRecv
			}
		}
		env[a.name] = wall-last >= dur
	}
	if p.usesTime {
		loc := d.info.Location
		if loc == nil {
			loc = time.UTC
		}
		tm := time.UnixMilli(t).In(loc)
		env["hour"], env["minute"], env["weekday"] = tm.Hour(), tm.Minute(), int(tm.Weekday())
	}
	out, err := ev.machine.Run(p.prog, env)
	if err != nil {
		ev.st.errors.Add(1)
		ev.warn("eval/"+c.rule.ID, wall, "rules: condition failed on a device's data; fix the condition or the data", "org", org, "rule", c.rule.ID, "name", c.rule.Name, "device", d.id, "err", err)
		return false, false
	}
	b, isBool := out.(bool)
	if !isBool {
		ev.st.errors.Add(1)
		ev.warn("eval/"+c.rule.ID, wall, "rules: condition did not give true or false", "org", org, "rule", c.rule.ID, "device", d.id, "result", fmt.Sprint(out))
		return false, false
	}
	return b, true
}

// winStats summarises window j at time t, once per evaluation time however
// many rules read it; nil when the window knows nothing yet.
func (d *deviceState) winStats(j int, t int64, gen uint64) *stats {
	if j >= len(d.wins) || d.wins[j] == nil {
		return nil
	}
	c := &d.wcache[j]
	if c.gen != gen {
		c.st, c.known = d.wins[j].stats(t)
		c.gen = gen
	}
	if !c.known {
		return nil
	}
	return &c.st
}

// values records what made a rule fire, for the alert.
func (ev *evaluator) values(c *compiled, d *deviceState) map[string]float64 {
	vals := make(map[string]float64, len(c.prog.fields)+len(c.prog.aggs))
	for k, f := range c.prog.fields {
		if i := c.fieldI[k]; d.isNum[i] {
			vals[f] = d.num[i]
		}
	}
	for i, a := range c.prog.aggs {
		if i < len(ev.aggVals) {
			vals[a.label] = ev.aggVals[i]
		}
	}
	for _, a := range c.prog.anomalies {
		if v, ok := d.env[a.name].(float64); ok {
			label := "anomaly()"
			if a.field != "" {
				label = "anomaly(" + a.field + ")"
			}
			vals[label] = v
		}
	}
	return vals
}
