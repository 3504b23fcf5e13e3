package rules

import (
	"strings"
	"time"
)

// ruleSnap is a ruleState's persisted form.
type ruleSnap struct {
	V          int64        `json:"v"`
	Firing     bool         `json:"f,omitempty"`
	Pending    bool         `json:"p,omitempty"`
	PendSince  int64        `json:"ps,omitempty"`
	FalseN     int          `json:"fn,omitempty"`
	HasFalse   bool         `json:"hf,omitempty"`
	FalseSince int64        `json:"fs,omitempty"`
	W          []windowSnap `json:"w,omitempty"` // windows, in snapshots from before they were shared
}

func (rs *ruleState) snap() ruleSnap {
	s := ruleSnap{V: rs.version, Firing: rs.firing, Pending: rs.pending, PendSince: rs.pendingSince,
		FalseN: rs.falseN, HasFalse: rs.hasFalse, FalseSince: rs.falseSince}
	return s
}

// restore rebuilds the state for c, or nil when the snapshot was taken for
// another version of the rule.
func (s ruleSnap) restore(c *compiled) *ruleState {
	if s.V != c.rule.Version {
		return nil
	}
	return &ruleState{version: s.V, firing: s.Firing, pending: s.Pending, pendingSince: s.PendSince,
		falseN: s.FalseN, hasFalse: s.HasFalse, falseSince: s.FalseSince}
}

// winSnap is a shared window's persisted form with its spec.
type winSnap struct {
	Field    string     `json:"f"`
	Dur      int64      `json:"d"` // ms
	Tumbling bool       `json:"t,omitempty"`
	W        windowSnap `json:"w"`
}

// devSnap is a deviceState's persisted form.
type devSnap struct {
	Seen      bool                `json:"seen,omitempty"`
	LastTS    int64               `json:"ts,omitempty"`
	LastRecv  int64               `json:"recv,omitempty"`
	FirstRecv int64               `json:"first,omitempty"`
	Site      string              `json:"site,omitempty"`
	Template  string              `json:"tpl,omitempty"`
	Num       map[string]float64  `json:"num,omitempty"`
	Str       map[string]string   `json:"str,omitempty"`
	FieldRecv map[string]int64    `json:"frecv,omitempty"`
	ConnKnown bool                `json:"ck,omitempty"`
	Connected bool                `json:"conn,omitempty"`
	ConnAt    int64               `json:"cat,omitempty"`
	Rules     map[string]ruleSnap `json:"rules,omitempty"`
	Wins      []winSnap           `json:"wins,omitempty"`
}

func isFieldKey(k string) bool { return !reserved[k] && !strings.HasPrefix(k, "__") }

func (d *deviceState) snap() devSnap {
	s := devSnap{Seen: d.seen, LastTS: d.lastTS, LastRecv: d.lastRecv, FirstRecv: d.firstRecv, Site: d.site, Template: d.template,
		ConnKnown: d.connKnown, Connected: d.connected, ConnAt: d.connAt, Rules: map[string]ruleSnap{}}
	for k, v := range d.env {
		if !isFieldKey(k) {
			continue
		}
		switch x := v.(type) {
		case float64:
			if s.Num == nil {
				s.Num = map[string]float64{}
			}
			s.Num[k] = x
		case string:
			if s.Str == nil {
				s.Str = map[string]string{}
			}
			s.Str[k] = x
		}
	}
	for i, name := range d.fnames { // the values of fields only fast conditions read
		if i < len(d.isNum) && d.isNum[i] {
			if s.Num == nil {
				s.Num = map[string]float64{}
			}
			s.Num[name] = d.num[i]
			delete(s.Str, name)
		}
	}
	if len(d.fieldRecv) > 0 {
		s.FieldRecv = d.fieldRecv
	}
	for id, rs := range d.restored {
		s.Rules[id] = rs
	}
	for id, rs := range d.rules {
		s.Rules[id] = rs.snap()
	}
	for j, w := range d.wins {
		if w != nil {
			spec := d.wkeys[j]
			s.Wins = append(s.Wins, winSnap{Field: spec.Field, Dur: spec.Dur.Milliseconds(), Tumbling: spec.Tumbling, W: w.snap()})
		}
	}
	for spec, w := range d.restWins {
		s.Wins = append(s.Wins, winSnap{Field: spec.Field, Dur: spec.Dur.Milliseconds(), Tumbling: spec.Tumbling, W: w})
	}
	return s
}

func restoreDevice(id string, s devSnap) *deviceState {
	d := newDeviceState(id, s.FirstRecv)
	d.seen, d.lastTS, d.lastRecv = s.Seen, s.LastTS, s.LastRecv
	d.setSite(s.Site, s.Template)
	d.connKnown, d.connected, d.connAt = s.ConnKnown, s.Connected, s.ConnAt
	for k, v := range s.Num {
		d.env[k] = v
	}
	for k, v := range s.Str {
		d.env[k] = v
	}
	for k, v := range s.FieldRecv {
		d.fieldRecv[k] = v
	}
	d.restored = s.Rules
	if len(s.Wins) > 0 {
		d.restWins = make(map[windowSpec]windowSnap, len(s.Wins))
		for _, w := range s.Wins {
			d.restWins[windowSpec{Field: w.Field, Dur: time.Duration(w.Dur) * time.Millisecond, Tumbling: w.Tumbling}] = w.W
		}
	}
	return d
}
