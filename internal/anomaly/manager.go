package anomaly

import (
	"bufio"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Detector kinds a template can choose.
const (
	KindPCA        = "pca"        // one multivariate model over the template's fields
	KindUnivariate = "univariate" // one univariate model per field
	KindRCF        = "rcf"        // one random cut forest over the template's fields (about 0.4–2 MB per device)
)

// Template is the anomaly configuration of a device template.
type Template struct {
	// Fields lists the numeric fields to model. Empty means every numeric
	// field of the device's first update (sorted, at most MaxAutoFields).
	Fields []string `json:"fields,omitempty"`
	// Kind is KindPCA (default), KindUnivariate or KindRCF.
	Kind string `json:"kind,omitempty"`
	// Sensitivity in (0,1), default 0.5: an alert needs Score >= 1-Sensitivity.
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// Warmup is the learning period in updates (default 400).
	Warmup int `json:"warmup,omitempty"`
}

// MaxAutoFields caps the fields picked when a template names none.
const MaxAutoFields = 32

func (t Template) normalized() (Template, error) {
	o := t
	o.Fields = append([]string(nil), t.Fields...)
	if o.Kind == "" {
		o.Kind = KindPCA
	}
	if o.Kind != KindPCA && o.Kind != KindUnivariate && o.Kind != KindRCF {
		return o, fmt.Errorf("%w: unknown detector kind %q; use %q, %q or %q", ErrConfig, o.Kind, KindPCA, KindUnivariate, KindRCF)
	}
	if err := baseDefaults(&o.Sensitivity, &o.Warmup); err != nil {
		return o, err
	}
	seen := make(map[string]bool, len(o.Fields))
	for _, f := range o.Fields {
		if f == "" || seen[f] {
			return o, fmt.Errorf("%w: field list has an empty or repeated name %q", ErrConfig, f)
		}
		seen[f] = true
	}
	// Validate the numbers once by building a throw-away detector.
	probe := o.Fields
	if len(probe) == 0 {
		probe = []string{"probe"}
	}
	if _, err := o.build(probe); err != nil {
		return o, err
	}
	return o, nil
}

func (t Template) build(fields []string) (Detector, error) {
	var det Detector
	var err error
	switch t.Kind {
	case KindUnivariate:
		det, err = NewFieldwise(fields, UnivariateConfig{Sensitivity: t.Sensitivity, Warmup: t.Warmup})
	case KindRCF:
		det, err = NewRCF(RCFConfig{Fields: fields, Sensitivity: t.Sensitivity, Warmup: t.Warmup})
	default:
		det, err = NewPCA(PCAConfig{Fields: fields, Sensitivity: t.Sensitivity, Warmup: t.Warmup})
	}
	if err != nil {
		return nil, err
	}
	return Guarded(det, t.Warmup), nil
}

// fingerprint identifies what a learned state depends on; sensitivity is
// not part of it, so it can change without relearning.
func fingerprint(kind string, warmup int, fields []string) string {
	return fmt.Sprintf("%s|%d|%s", kind, warmup, strings.Join(fields, "\x00"))
}

// Key identifies a device.
type Key struct {
	Org    string `json:"org"`
	Device string `json:"device"`
}

// Update is one device message's numeric fields.
type Update struct {
	Org, Device string
	// Template names the device's template; templates not configured with
	// SetTemplate use the manager's default.
	Template string
	Time     time.Time
	Values   map[string]float64
}

// DeviceScore is the manager's answer for one update. Reuse it across
// calls: its Contributions slice is recycled.
type DeviceScore struct {
	Key
	Time time.Time `json:"time"`
	// Late is set when the update is older than the last one seen for the
	// device: detectors need order, so it was neither scored nor learned.
	Late bool `json:"late,omitempty"`
	Result
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Default applies to devices whose template has no configuration.
	Default Template
	// MaxDevices bounds memory; 0 means no limit.
	MaxDevices int
	Logger     *slog.Logger
}

type templateKey struct{ org, name string }

type templateEntry struct {
	t       Template
	version uint64
}

type device struct {
	mu       sync.Mutex
	tmplName string
	version  uint64
	fp       string
	t        Template
	fields   []string
	det      Detector
	hold     bool      // multivariate models see the last value of a field that is absent from an update
	held     []float64 // last value per field
	x        []float64
	last     time.Time
}

const shards = 64

type shard struct {
	mu      sync.RWMutex
	devices map[Key]*device
}

// Manager keeps one detector per device, keyed by organisation and device.
// It is safe for concurrent use: updates to different devices run in
// parallel, updates to one device are serialised.
type Manager struct {
	log    *slog.Logger
	def    Template
	max    int
	seed   maphash.Seed
	shards [shards]shard

	tmu       sync.RWMutex
	templates map[templateKey]templateEntry
	version   uint64

	count sync.Mutex // guards n
	n     int
}

// NewManager builds a manager.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	def, err := cfg.Default.normalized()
	if err != nil {
		return nil, fmt.Errorf("default template: %w", err)
	}
	if cfg.MaxDevices < 0 {
		return nil, fmt.Errorf("%w: device limit %d must not be negative", ErrConfig, cfg.MaxDevices)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log, def: def, max: cfg.MaxDevices, seed: maphash.MakeSeed(), templates: map[templateKey]templateEntry{}}
	for i := range m.shards {
		m.shards[i].devices = map[Key]*device{}
	}
	return m, nil
}

// SetTemplate configures anomaly detection for one template of an
// organisation. Devices on it pick the change up at their next update: a
// new sensitivity keeps what they learned, new fields, kind or warm-up
// start learning again.
func (m *Manager) SetTemplate(org, name string, t Template) error {
	n, err := t.normalized()
	if err != nil {
		return fmt.Errorf("template %q: %w", name, err)
	}
	m.tmu.Lock()
	m.version++
	m.templates[templateKey{org, name}] = templateEntry{t: n, version: m.version}
	m.tmu.Unlock()
	return nil
}

// RemoveTemplate returns a template to the default configuration.
func (m *Manager) RemoveTemplate(org, name string) {
	m.tmu.Lock()
	delete(m.templates, templateKey{org, name})
	m.version++
	m.tmu.Unlock()
}

func (m *Manager) template(org, name string) (Template, uint64) {
	m.tmu.RLock()
	defer m.tmu.RUnlock()
	if e, ok := m.templates[templateKey{org, name}]; ok {
		return e.t, e.version
	}
	return m.def, 0
}

func (m *Manager) shard(k Key) *shard {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(k.Org)
	h.WriteByte(0)
	h.WriteString(k.Device)
	return &m.shards[h.Sum64()%shards]
}

func (m *Manager) lookup(k Key, create bool) (*device, error) {
	s := m.shard(k)
	s.mu.RLock()
	d := s.devices[k]
	s.mu.RUnlock()
	if d != nil || !create {
		return d, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d = s.devices[k]; d != nil {
		return d, nil
	}
	m.count.Lock()
	if m.max > 0 && m.n >= m.max {
		m.count.Unlock()
		return nil, fmt.Errorf("%w: %d devices are being modelled; raise the limit or remove devices", ErrTooManyDevices, m.max)
	}
	m.n++
	m.count.Unlock()
	d = &device{}
	s.devices[k] = d
	return d, nil
}

// Observe scores one update of a device and learns from it.
func (m *Manager) Observe(u Update, dst *DeviceScore) error {
	k := Key{Org: u.Org, Device: u.Device}
	d, err := m.lookup(k, true)
	if err != nil {
		return err
	}
	t, ver := m.template(u.Org, u.Template)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det == nil || d.tmplName != u.Template || d.version != ver {
		if err := m.configure(d, u, t, ver); err != nil {
			return err
		}
	}
	dst.Key, dst.Time, dst.Late = k, u.Time, false
	if !d.last.IsZero() && u.Time.Before(d.last) {
		dst.Late = true
		dst.Score, dst.Alert = 0, false
		dst.Contributions = dst.Contributions[:0]
		return nil
	}
	d.last = u.Time
	for i, f := range d.fields {
		v, ok := u.Values[f]
		switch {
		case ok && !math.IsNaN(v) && !math.IsInf(v, 0):
			d.held[i] = v
			d.x[i] = v
		case d.hold:
			d.x[i] = d.held[i]
		default:
			d.x[i] = math.NaN()
		}
	}
	if td, ok := d.det.(TimedDetector); ok {
		// The update's time lets the model see gaps and the daily cycle.
		td.ObserveAt(u.Time, d.x, &dst.Result)
	} else {
		d.det.Observe(d.x, &dst.Result)
	}
	return nil
}

// configure (re)builds a device's detector for its template, keeping the
// learned state when only the sensitivity changed.
func (m *Manager) configure(d *device, u Update, t Template, ver uint64) error {
	fields := t.Fields
	if len(fields) == 0 {
		if d.det != nil && d.tmplName == u.Template && len(d.t.Fields) == 0 {
			fields = d.fields // keep the fields picked automatically
		} else {
			fields = autoFields(u.Values)
		}
	}
	if len(fields) == 0 {
		return fmt.Errorf("%w: device %s/%s sent no numeric fields and its template names none", ErrConfig, u.Org, u.Device)
	}
	det, err := t.build(fields)
	if err != nil {
		return fmt.Errorf("device %s/%s: %w", u.Org, u.Device, err)
	}
	fp := fingerprint(t.Kind, t.Warmup, fields)
	if d.det != nil && d.fp == fp {
		if b, err := d.det.MarshalBinary(); err == nil {
			if err := det.UnmarshalBinary(b); err != nil {
				m.log.Warn("anomaly model could not carry its state over; relearning", "org", u.Org, "device", u.Device, "err", err)
			}
		}
	}
	d.tmplName, d.version, d.fp, d.t, d.det = u.Template, ver, fp, t, det
	if !equalStrings(d.fields, fields) {
		d.fields = fields
		d.held = make([]float64, len(fields))
		for i := range d.held {
			d.held[i] = math.NaN()
		}
		d.x = make([]float64, len(fields))
	}
	d.hold = t.Kind != KindUnivariate
	return nil
}

func autoFields(v map[string]float64) []string {
	out := make([]string, 0, len(v))
	for k := range v {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) > MaxAutoFields {
		out = out[:MaxAutoFields]
	}
	return out
}

// Forget drops a device's model (for example when the device is deleted).
func (m *Manager) Forget(k Key) {
	s := m.shard(k)
	s.mu.Lock()
	if _, ok := s.devices[k]; ok {
		delete(s.devices, k)
		m.count.Lock()
		m.n--
		m.count.Unlock()
	}
	s.mu.Unlock()
}

// Len is the number of devices modelled.
func (m *Manager) Len() int {
	m.count.Lock()
	defer m.count.Unlock()
	return m.n
}

// DeviceInfo describes one device's model.
type DeviceInfo struct {
	Key
	Template    string   `json:"template"`
	Kind        string   `json:"kind"`
	Fields      []string `json:"fields"`
	Warmup      int      `json:"warmup"` // updates the warm-up lasts
	MemoryBytes int      `json:"memory_bytes"`
}

// Device reports a device's model, if it has one.
func (m *Manager) Device(k Key) (DeviceInfo, bool) {
	d, _ := m.lookup(k, false)
	if d == nil {
		return DeviceInfo{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.det == nil {
		return DeviceInfo{}, false
	}
	return DeviceInfo{Key: k, Template: d.tmplName, Kind: d.t.Kind, Fields: append([]string(nil), d.fields...), Warmup: d.t.Warmup, MemoryBytes: d.det.MemoryBytes()}, true
}

const (
	snapshotMagic   = "shopfloor-anomaly"
	snapshotVersion = 1
)

// Snapshot writes every device's learned state to w, so a restarted hub
// resumes instead of relearning. Devices keep running while it is taken;
// each device is captured consistently.
func (m *Manager) Snapshot(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var e encoder
	e.header(snapshotMagic, snapshotVersion)
	if _, err := bw.Write(e.b); err != nil {
		return fmt.Errorf("write anomaly snapshot: %w", err)
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		keys := make([]Key, 0, len(s.devices))
		devs := make([]*device, 0, len(s.devices))
		for k, d := range s.devices {
			keys = append(keys, k)
			devs = append(devs, d)
		}
		s.mu.RUnlock()
		for j, d := range devs {
			d.mu.Lock()
			if d.det == nil {
				d.mu.Unlock()
				continue
			}
			state, err := d.det.MarshalBinary()
			e = encoder{b: e.b[:0]}
			e.u64(1) // a device record follows
			e.str(keys[j].Org)
			e.str(keys[j].Device)
			e.str(d.tmplName)
			e.str(d.fp)
			e.strs(d.fields)
			var last int64
			if !d.last.IsZero() {
				last = d.last.UnixNano()
			}
			e.i64(last)
			e.f64s(d.held)
			e.str(string(state))
			d.mu.Unlock()
			if err != nil {
				return fmt.Errorf("snapshot device %s/%s: %w", keys[j].Org, keys[j].Device, err)
			}
			if _, err := bw.Write(e.b); err != nil {
				return fmt.Errorf("write anomaly snapshot: %w", err)
			}
		}
	}
	e = encoder{b: e.b[:0]}
	e.u64(0) // end
	if _, err := bw.Write(e.b); err != nil {
		return fmt.Errorf("write anomaly snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write anomaly snapshot: %w", err)
	}
	return nil
}

// Restore loads a snapshot written by Snapshot, replacing the state of the
// devices it holds. Devices whose template has since changed fields, kind
// or warm-up are skipped and will relearn; the count of skipped devices is
// returned. A corrupt snapshot changes nothing. Configure templates
// (SetTemplate) first: SnapshotTemplates lists the ones it needs.
func (m *Manager) Restore(r io.Reader) (skipped int, err error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("read anomaly snapshot: %w", err)
	}
	type rec struct {
		k Key
		d *device
	}
	var recs []rec
	err = readSnapshot(b, func(sr snapRecord) error {
		t, ver := m.template(sr.k.Org, sr.tmplName)
		if fingerprint(t.Kind, t.Warmup, sr.fields) != sr.fp || len(sr.held) != len(sr.fields) || (len(t.Fields) > 0 && !equalStrings(t.Fields, sr.fields)) {
			skipped++
			return nil
		}
		det, err := t.build(sr.fields)
		if err == nil {
			err = det.UnmarshalBinary([]byte(sr.state))
		}
		if err != nil {
			if errors.Is(err, ErrSnapshot) {
				skipped++
				return nil
			}
			return err
		}
		d := &device{tmplName: sr.tmplName, version: ver, fp: sr.fp, t: t, fields: sr.fields, det: det, hold: t.Kind != KindUnivariate, held: sr.held, x: make([]float64, len(sr.fields))}
		if sr.last != 0 {
			d.last = time.Unix(0, sr.last)
		}
		recs = append(recs, rec{sr.k, d})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("restore anomaly models: %w", err)
	}
	for _, rc := range recs {
		s := m.shard(rc.k)
		s.mu.Lock()
		if _, ok := s.devices[rc.k]; !ok {
			m.count.Lock()
			m.n++
			m.count.Unlock()
		}
		s.devices[rc.k] = rc.d
		s.mu.Unlock()
	}
	if skipped > 0 {
		m.log.Info("anomaly models skipped on restore because their templates changed; they will relearn", "devices", skipped)
	}
	return skipped, nil
}

// TemplateRef names a template of an organisation.
type TemplateRef struct {
	Org, Template string
}

// SnapshotTemplates lists, in first-seen order, the templates whose devices
// a snapshot holds (the empty name is the default), so a hub can configure
// them before Restore instead of letting their devices relearn.
func SnapshotTemplates(b []byte) ([]TemplateRef, error) {
	var out []TemplateRef
	seen := map[TemplateRef]bool{}
	err := readSnapshot(b, func(sr snapRecord) error {
		ref := TemplateRef{sr.k.Org, sr.tmplName}
		if !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read anomaly snapshot: %w", err)
	}
	return out, nil
}

// snapRecord is one device record of a snapshot.
type snapRecord struct {
	k            Key
	tmplName, fp string
	fields       []string
	last         int64
	held         []float64
	state        string
}

// readSnapshot decodes a snapshot, calling fn for each device record; it
// stops at fn's first error.
func readSnapshot(b []byte, fn func(snapRecord) error) error {
	dec := decoder{b: b}
	dec.header(snapshotMagic, snapshotVersion)
	for dec.err == nil {
		if dec.u64() != 1 {
			break
		}
		sr := snapRecord{k: Key{Org: dec.str(), Device: dec.str()}}
		sr.tmplName, sr.fp, sr.fields = dec.str(), dec.str(), dec.strs()
		sr.last = dec.i64()
		sr.held = dec.f64s()
		sr.state = dec.str()
		if dec.err != nil {
			break
		}
		if err := fn(sr); err != nil {
			return err
		}
	}
	return dec.done()
}
