package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/bus"
)

// Sentinel errors; the hub maps them to HTTP status codes.
var (
	ErrNotFound = errors.New("not found") // also another organization's destination
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("already exists")
)

// Type of destination.
type Type string

const (
	TypeWebhook     Type = "webhook"      // batched, signed HTTP POST of JSON records
	TypeNATS        Type = "nats"         // one JSON message per record on a NATS subject (or JetStream stream)
	TypeRemoteWrite Type = "remote_write" // Prometheus remote write 1.0 (protobuf + snappy)
	TypeFile        Type = "file"         // NDJSON files with size rotation
)

// Destination is one export of an organization. Its JSON form is the body
// of POST /api/v1/exports.
type Destination struct {
	ID   string `json:"id"`
	Org  string `json:"org"`
	Name string `json:"name"`
	Type Type   `json:"type"`

	// Webhook and remote write.
	URL     string            `json:"url,omitempty"`
	Secret  string            `json:"secret,omitempty"` // webhook: HMAC-SHA256 key of X-Shopfloor-Signature
	Headers map[string]string `json:"headers,omitempty"`
	Timeout string            `json:"timeout,omitempty"` // per request, default 10s

	// NATS: Subject is relative to the organization's export namespace
	// (<prefix>.exports.<org>.<subject>); JetStream publishes with
	// acknowledgement to a stream that captures it.
	Subject   string `json:"subject,omitempty"`
	JetStream bool   `json:"jetstream,omitempty"`

	// File: rotate after MaxBytes (default 64 MiB), keep MaxFiles (default 10).
	MaxBytes int64 `json:"maxBytes,omitempty"`
	MaxFiles int   `json:"maxFiles,omitempty"`

	// BatchSize bounds the records of one webhook or remote-write request
	// (default 500).
	BatchSize int `json:"batchSize,omitempty"`

	Filter Filter `json:"filter"`
	// Enrich adds the device's site, template and tags to every record
	// (as labels for remote write).
	Enrich   bool      `json:"enrich,omitempty"`
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"createdAt"`
}

// Filter selects what a destination receives. Empty fields do not narrow;
// all tags must match; Fields keeps only the named fields (a message left
// without fields is dropped).
type Filter struct {
	Site     string            `json:"site,omitempty"`
	Template string            `json:"template,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
	Devices  []string          `json:"devices,omitempty"`
	Fields   []string          `json:"fields,omitempty"`
}

// DeviceInfo is what enrichment and tag filters need about a device.
type DeviceInfo struct {
	Site     string
	Template string
	Tags     map[string]string
}

// Directory looks devices up; the hub implements it over the registry.
type Directory interface {
	DeviceInfo(ctx context.Context, org, device string) (DeviceInfo, error)
}

// Consumer runs durable bus consumers; the hub implements it over the bus.
type Consumer interface {
	// Consume runs the durable consumer name until ctx ends (bus.Bus.Consume).
	Consume(ctx context.Context, name string, h bus.Handler) error
	// Pending is how many messages the consumer has not yet acknowledged.
	Pending(ctx context.Context, name string) (uint64, error)
	// Delete removes the durable consumer.
	Delete(ctx context.Context, name string) error
}

// Record is one exported telemetry message: the JSON of webhook, NATS and
// file destinations.
type Record struct {
	Org      string             `json:"org"`
	Device   string             `json:"device"`
	Time     time.Time          `json:"time"`
	TS       int64              `json:"ts"` // unix ms
	Site     string             `json:"site,omitempty"`
	Template string             `json:"template,omitempty"`
	Tags     map[string]string  `json:"tags,omitempty"`
	Values   map[string]float64 `json:"values,omitempty"`
	Strings  map[string]string  `json:"strings,omitempty"`
}

// Status is a destination with its delivery state.
type Status struct {
	Destination
	Lag       uint64     `json:"lag"`       // messages on the bus not yet delivered
	Delivered int64      `json:"delivered"` // records delivered since the hub started
	LastError string     `json:"lastError,omitempty"`
	LastAt    *time.Time `json:"lastDeliveryAt,omitempty"`
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	subjectRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

func (d *Destination) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: export %q: %s", ErrInvalid, d.Name, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(d.Name) {
		return fmt.Errorf("%w: an export needs a name of 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid)
	}
	if d.Timeout != "" {
		t, err := time.ParseDuration(d.Timeout)
		if err != nil || t <= 0 || t > 5*time.Minute {
			return bad("timeout %q must be a duration between 1ms and 5m, like 10s", d.Timeout)
		}
	}
	if d.BatchSize < 0 || d.BatchSize > 10000 {
		return bad("batchSize must be between 1 and 10000")
	}
	switch d.Type {
	case TypeWebhook, TypeRemoteWrite:
		if !strings.HasPrefix(d.URL, "http://") && !strings.HasPrefix(d.URL, "https://") || len(d.URL) < 10 {
			return bad("url %q must be an absolute http:// or https:// address", d.URL)
		}
		for k := range d.Headers {
			switch strings.ToLower(k) {
			case "content-type", "content-encoding", "x-shopfloor-signature", "x-prometheus-remote-write-version":
				return bad("header %q is set by Shopfloor and cannot be overridden", k)
			}
		}
	case TypeNATS:
		if !subjectRE.MatchString(d.Subject) {
			return bad("subject %q must be dot-separated tokens of letters, digits, '_' or '-', like line3.telemetry (no wildcards)", d.Subject)
		}
	case TypeFile:
		if d.MaxBytes < 0 || d.MaxFiles < 0 {
			return bad("maxBytes and maxFiles cannot be negative")
		}
	default:
		return fmt.Errorf("%w: export type %q is not known; use webhook, nats, remote_write or file", ErrInvalid, string(d.Type))
	}
	return nil
}

func (d Destination) timeout() time.Duration {
	if t, err := time.ParseDuration(d.Timeout); err == nil && t > 0 {
		return t
	}
	return 10 * time.Second
}

func (d Destination) batchSize() int {
	if d.BatchSize > 0 {
		return d.BatchSize
	}
	return 500
}

// encodeDef stores everything but the columns.
func encodeDef(d Destination) (string, error) {
	b, err := json.Marshal(d)
	return string(b), err
}

// matches applies the device-level part of the filter.
func (f *Filter) matches(m *bus.Telemetry, info DeviceInfo) bool {
	site, tmpl := m.Site, m.Template
	if site == "" {
		site = info.Site
	}
	if tmpl == "" {
		tmpl = info.Template
	}
	if f.Site != "" && f.Site != site {
		return false
	}
	if f.Template != "" && f.Template != tmpl {
		return false
	}
	for k, v := range f.Tags {
		if info.Tags[k] != v {
			return false
		}
	}
	if len(f.Devices) > 0 {
		found := false
		for _, d := range f.Devices {
			if d == m.Device {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// record converts a message, keeping only the filter's fields; ok is false
// when nothing is left.
func (f *Filter) record(m *bus.Telemetry, info DeviceInfo, enrich bool) (Record, bool) {
	r := Record{Org: m.Org, Device: m.Device, TS: m.TS, Time: time.UnixMilli(m.TS).UTC()}
	if len(f.Fields) == 0 {
		r.Values, r.Strings = m.Num, m.Str
	} else {
		for _, name := range f.Fields {
			if v, ok := m.Num[name]; ok {
				if r.Values == nil {
					r.Values = map[string]float64{}
				}
				r.Values[name] = v
			}
			if v, ok := m.Str[name]; ok {
				if r.Strings == nil {
					r.Strings = map[string]string{}
				}
				r.Strings[name] = v
			}
		}
	}
	if len(r.Values) == 0 && len(r.Strings) == 0 {
		return r, false
	}
	if enrich {
		r.Site, r.Template, r.Tags = m.Site, m.Template, info.Tags
		if r.Site == "" {
			r.Site = info.Site
		}
		if r.Template == "" {
			r.Template = info.Template
		}
	}
	return r, true
}
