package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors of the REST client.
var (
	ErrAPI          = errors.New("hub API request failed")
	ErrUnauthorized = errors.New("the hub refused the API token")
	ErrNotFound     = errors.New("not found on the hub")
)

// Client is the few REST calls the simulator and the load generator make.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the hub at baseURL (http://host:port).
// A nil hc uses a client with a 30 s timeout.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// DeviceSpec is what a device is created with.
type DeviceSpec struct {
	ID       string            `json:"id"`
	Site     string            `json:"site,omitempty"`
	Template string            `json:"template,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// Device is a device as the hub returns it (only the fields used here).
type Device struct {
	ID         string            `json:"id"`
	Site       string            `json:"site,omitempty"`
	Template   string            `json:"template,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	PrimaryKey string            `json:"primaryKey,omitempty"`
}

// Timestamp decodes a time given either as RFC 3339 text or as unix
// milliseconds.
type Timestamp struct{ time.Time }

// UnmarshalJSON accepts "2024-01-02T03:04:05Z" and 1704164645000.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &t.Time)
	}
	if string(b) == "null" {
		return nil
	}
	ms, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("timestamp %s is neither RFC 3339 text nor unix milliseconds: %w", b, err)
	}
	t.Time = time.UnixMilli(int64(ms))
	return nil
}

// LatestValue is the last value of one field of a device.
type LatestValue struct {
	Field string    `json:"field"`
	T     Timestamp `json:"t"`
	Value any       `json:"value"`
}

// Latest is the answer of GET /api/v1/devices/{id}/latest.
type Latest struct {
	Device json.RawMessage `json:"device"`
	Values []LatestValue   `json:"values"`
}

// Value returns the latest value of field and whether there is one.
func (l Latest) Value(field string) (any, bool) {
	for _, v := range l.Values {
		if v.Field == field {
			return v.Value, true
		}
	}
	return nil, false
}

// Point is one sample of a series.
type Point struct {
	T Timestamp `json:"t"`
	V any       `json:"v"`
}

// Series is the samples of one field.
type Series struct {
	Field  string  `json:"field"`
	Points []Point `json:"points"`
}

// EnsureSite creates the site; a site that exists already is fine.
func (c *Client) EnsureSite(ctx context.Context, id, name string) error {
	status, body, err := c.do(ctx, http.MethodPost, "/api/v1/sites", map[string]string{"id": id, "name": name})
	if err != nil {
		return err
	}
	switch status {
	case http.StatusCreated, http.StatusOK, http.StatusConflict:
		return nil
	}
	return c.fail("create site "+id, status, body)
}

// EnsureDevice creates the device, or returns the existing one with the
// same id (including its key).
func (c *Client) EnsureDevice(ctx context.Context, spec DeviceSpec) (Device, error) {
	status, body, err := c.do(ctx, http.MethodPost, "/api/v1/devices", spec)
	if err != nil {
		return Device{}, err
	}
	switch status {
	case http.StatusCreated, http.StatusOK:
		return decodeDevice(spec.ID, body)
	case http.StatusConflict:
		return c.Device(ctx, spec.ID)
	}
	return Device{}, c.fail("create device "+spec.ID, status, body)
}

// Device returns one device with its keys.
func (c *Client) Device(ctx context.Context, id string) (Device, error) {
	status, body, err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id), nil)
	if err != nil {
		return Device{}, err
	}
	if status != http.StatusOK {
		return Device{}, c.fail("get device "+id, status, body)
	}
	return decodeDevice(id, body)
}

func decodeDevice(id string, body []byte) (Device, error) {
	var d Device
	if err := json.Unmarshal(body, &d); err != nil {
		return Device{}, fmt.Errorf("device %s: the hub answered with JSON this client cannot read: %w: %v", id, ErrAPI, err)
	}
	return d, nil
}

// Latest returns the last value of every field of a device.
func (c *Client) Latest(ctx context.Context, id string) (Latest, error) {
	status, body, err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id)+"/latest", nil)
	if err != nil {
		return Latest{}, err
	}
	if status != http.StatusOK {
		return Latest{}, c.fail("latest values of "+id, status, body)
	}
	var l Latest
	if err := json.Unmarshal(body, &l); err != nil {
		return Latest{}, fmt.Errorf("latest values of %s: unreadable answer: %w: %v", id, ErrAPI, err)
	}
	return l, nil
}

// TelemetryQuery selects a device's series: fields (all when empty), a
// time range (zero times use the hub's defaults: the last hour), and the
// bucket width and aggregation of each point (zero: the hub's defaults,
// about 250 points averaged).
type TelemetryQuery struct {
	Names    []string
	From, To time.Time
	Step     time.Duration
	Agg      string // avg, min, max, sum, count or last
}

// Telemetry returns a device's series, aggregated per step.
func (c *Client) Telemetry(ctx context.Context, id string, tq TelemetryQuery) ([]Series, error) {
	q := url.Values{}
	if len(tq.Names) > 0 {
		q.Set("names", strings.Join(tq.Names, ","))
	}
	if !tq.From.IsZero() {
		q.Set("from", strconv.FormatInt(tq.From.UnixMilli(), 10))
	}
	if !tq.To.IsZero() {
		q.Set("to", strconv.FormatInt(tq.To.UnixMilli(), 10))
	}
	if tq.Step > 0 {
		q.Set("step", tq.Step.String())
	}
	if tq.Agg != "" {
		q.Set("agg", tq.Agg)
	}
	path := "/api/v1/devices/" + url.PathEscape(id) + "/telemetry"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	status, body, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, c.fail("telemetry of "+id, status, body)
	}
	var r struct {
		Series []Series `json:"series"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("telemetry of %s: unreadable answer: %w: %v", id, ErrAPI, err)
	}
	return r.Series, nil
}

func (c *Client) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("hub URL %q: %w: %v", c.base, ErrAPI, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s%s: is the hub running and the URL right? %w: %v", method, c.base, path, ErrAPI, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s%s: reading the answer: %w: %v", method, c.base, path, ErrAPI, err)
	}
	return resp.StatusCode, b, nil
}

func (c *Client) fail(what string, status int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Message != "" {
			msg = e.Message
		} else if e.Error != "" {
			msg = e.Error
		}
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s: HTTP %d %s: check --token or SHOPFLOOR_TOKEN (an admin or operator token of the organization): %w", what, status, msg, ErrUnauthorized)
	case http.StatusNotFound:
		return fmt.Errorf("%s: HTTP 404 %s: %w", what, msg, ErrNotFound)
	}
	return fmt.Errorf("%s: HTTP %d %s: %w", what, status, msg, ErrAPI)
}
