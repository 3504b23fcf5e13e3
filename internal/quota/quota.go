package quota

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
)

// ErrLimit marks a message refused by a limit; the message says which.
var ErrLimit = errors.New("limit exceeded")

// Limits are the hub's cardinality limits; zero values take the defaults.
type Limits struct {
	FieldsPerDevice int `json:"fieldsPerDevice"` // distinct field names one device may use; default 1,000
	SeriesPerOrg    int `json:"seriesPerOrg"`    // fields summed over an organization's devices; default 5,000,000
	FieldNameLength int `json:"fieldNameLength"` // longest flattened field name, in bytes; default 256
}

// Defaults are far above what a plant needs: a machine with a thousand
// signals, five thousand such machines, and paths such as
// "robot.joint6.torque.actual" of a few dozen characters.
func (l Limits) withDefaults() Limits {
	if l.FieldsPerDevice <= 0 {
		l.FieldsPerDevice = 1000
	}
	if l.SeriesPerOrg <= 0 {
		l.SeriesPerOrg = 5_000_000
	}
	if l.FieldNameLength <= 0 {
		l.FieldNameLength = 256
	}
	return l
}

// Usage is an organization's use of its limits.
type Usage struct {
	Series          int           `json:"series"`
	Limits          Limits        `json:"limits"`
	Devices         int           `json:"devices"`                  // devices with at least one field
	LargestDevices  []DeviceUsage `json:"largestDevices,omitempty"` // the ten with most fields
	RefusedMessages uint64        `json:"refusedMessages"`          // since the hub started
}

// DeviceUsage is one device's field count.
type DeviceUsage struct {
	Device string `json:"device"`
	Fields int    `json:"fields"`
}

// Tracker checks messages against the limits and counts what is used.
type Tracker struct {
	limits Limits
	seed   maphash.Seed

	mu      sync.RWMutex
	devices map[string]*device // device id -> fields
	orgs    map[string]*org
}

type device struct {
	org    string
	hashes []uint32 // sorted hashes of the field names
}

type org struct {
	series  int
	devices int
	refused uint64
}

// New returns a tracker with no fields known; Seed it from the store.
func New(l Limits) *Tracker {
	return &Tracker{limits: l.withDefaults(), seed: maphash.MakeSeed(), devices: map[string]*device{}, orgs: map[string]*org{}}
}

// Limits returns the limits in force.
func (t *Tracker) Limits() Limits { return t.limits }

func (t *Tracker) hash(name string) uint32 {
	return uint32(maphash.String(t.seed, name))
}

// Seed records a field the store already holds; call it for every stored
// (organization, device, field) at start, before devices connect.
func (t *Tracker) Seed(orgID, deviceID, field string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(orgID, deviceID, []uint32{t.hash(field)})
}

// addLocked adds hashes not yet known for the device; t.mu is held.
func (t *Tracker) addLocked(orgID, deviceID string, hs []uint32) {
	d := t.devices[deviceID]
	o := t.orgs[orgID]
	if o == nil {
		o = &org{}
		t.orgs[orgID] = o
	}
	if d == nil {
		d = &device{org: orgID}
		t.devices[deviceID] = d
		o.devices++
	}
	for _, h := range hs {
		i, found := slices.BinarySearch(d.hashes, h)
		if !found {
			d.hashes = slices.Insert(d.hashes, i, h)
			o.series++
		}
	}
}

// Admit decides whether a message of a device with these field names may be
// stored, and if so records names it has not used before. A refused
// message records nothing. The common case, a device sending fields it
// sent before, takes a read lock and allocates nothing.
func (t *Tracker) Admit(orgID, deviceID string, names []string) error {
	for _, n := range names {
		if len(n) > t.limits.FieldNameLength {
			t.refused(orgID)
			return fmt.Errorf("%w: field name of %d bytes (%.40q…): the limit is %d bytes (--max-field-name)", ErrLimit, len(n), n, t.limits.FieldNameLength)
		}
	}
	t.mu.RLock()
	d := t.devices[deviceID]
	known := d != nil
	if known {
		for _, n := range names {
			if _, ok := slices.BinarySearch(d.hashes, t.hash(n)); !ok {
				known = false
				break
			}
		}
	}
	t.mu.RUnlock()
	if known {
		return nil
	}
	var fresh []uint32
	t.mu.Lock()
	defer t.mu.Unlock()
	d = t.devices[deviceID]
	have := 0
	if d != nil {
		have = len(d.hashes)
	}
	for _, n := range names {
		h := t.hash(n)
		if d != nil {
			if _, ok := slices.BinarySearch(d.hashes, h); ok {
				continue
			}
		}
		if !slices.Contains(fresh, h) {
			fresh = append(fresh, h)
		}
	}
	if have+len(fresh) > t.limits.FieldsPerDevice {
		t.refusedLocked(orgID)
		return fmt.Errorf("%w: this message would give the device %d fields; the limit is %d per device (--max-device-fields)", ErrLimit, have+len(fresh), t.limits.FieldsPerDevice)
	}
	series := 0
	if o := t.orgs[orgID]; o != nil {
		series = o.series
	}
	if series+len(fresh) > t.limits.SeriesPerOrg {
		t.refusedLocked(orgID)
		return fmt.Errorf("%w: the organization holds %d series; the limit is %d (--max-org-series)", ErrLimit, series, t.limits.SeriesPerOrg)
	}
	slices.Sort(fresh)
	t.addLocked(orgID, deviceID, fresh)
	return nil
}

func (t *Tracker) refused(orgID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refusedLocked(orgID)
}

func (t *Tracker) refusedLocked(orgID string) {
	o := t.orgs[orgID]
	if o == nil {
		o = &org{}
		t.orgs[orgID] = o
	}
	o.refused++
}

// Forget drops a deleted device's fields from its organization's count.
func (t *Tracker) Forget(deviceID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[deviceID]
	if d == nil {
		return
	}
	delete(t.devices, deviceID)
	if o := t.orgs[d.org]; o != nil {
		o.series -= len(d.hashes)
		o.devices--
	}
}

// Usage reports an organization's use of the limits.
func (t *Tracker) Usage(orgID string) Usage {
	t.mu.RLock()
	defer t.mu.RUnlock()
	u := Usage{Limits: t.limits}
	if o := t.orgs[orgID]; o != nil {
		u.Series, u.Devices, u.RefusedMessages = o.series, o.devices, o.refused
	}
	for id, d := range t.devices {
		if d.org != orgID {
			continue
		}
		u.LargestDevices = append(u.LargestDevices, DeviceUsage{Device: id, Fields: len(d.hashes)})
	}
	sort.Slice(u.LargestDevices, func(i, j int) bool {
		a, b := u.LargestDevices[i], u.LargestDevices[j]
		return a.Fields > b.Fields || a.Fields == b.Fields && a.Device < b.Device
	})
	if len(u.LargestDevices) > 10 {
		u.LargestDevices = u.LargestDevices[:10]
	}
	return u
}
