package api

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Device routes: identities, keys, credentials for devices, CSV import.

// deviceView is a device as the API shows it: with its live connection
// state, and with its keys only for callers allowed to use them.
type deviceView struct {
	registry.Device
	Connected bool `json:"connected"`
}

type deviceList struct {
	Items []deviceView `json:"items"`
	Next  string       `json:"next"`
}

type createDeviceRequest struct {
	ID         string            `json:"id"`
	Site       string            `json:"site,omitempty"`
	Template   string            `json:"template,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Auth       registry.AuthKind `json:"auth,omitempty"`
	Thumbprint string            `json:"thumbprint,omitempty"`
	Disabled   bool              `json:"disabled,omitempty"`
}

type sasTokenBody struct {
	Device string    `json:"device"`
	Token  string    `json:"token"`
	Expiry time.Time `json:"expiry"`
}

type connectionStringBody struct {
	Device           string `json:"device"`
	ConnectionString string `json:"connectionString"`
}

const (
	maxTokenTTL      = 365 * 24 * time.Hour
	defaultTokenTTL  = time.Hour
	maxDeviceListing = 1000
)

var exampleDevice = registry.Device{
	ID: "press-7", Org: "acme", Site: "plant-north", Template: "press", Tags: map[string]string{"line": "3"},
	Auth: registry.AuthSAS, PrimaryKey: "pX3mV0n8yQ2r0b8K1w9ZtS4dE6fG7hJ8kL9mN0pQ1rA=", SecondaryKey: "sY7uI8oP9aS0dF1gH2jK3lZ4xC5vB6nM7qW8eR9tY0u=",
	CreatedAt: exampleTime, UpdatedAt: exampleTime,
}

func (s *Server) deviceRoutes() {
	idOnly := map[string]string{"id": "device id"}
	withKeys := deviceView{Device: exampleDevice, Connected: true}
	noKeys := withKeys
	noKeys.PrimaryKey, noKeys.SecondaryKey = "", ""
	deviceBody := func(ex deviceView) *content { return &content{Schema: ref("Device"), Example: ex} }
	hostParam := param{Name: "host", Description: "host name devices connect to (default: the host of this request)", Schema: schema{"type": "string"}, Example: "hub.example.com"}
	keyParam := param{Name: "key", Description: "which key signs: primary (default) or secondary", Schema: strEnum("", "primary", "secondary")}

	s.add(&route{Method: "POST", Pattern: "/api/v1/devices", ID: "createDevice", Tag: "devices", Role: registry.RoleOperator,
		Summary:   "Create a device; SAS devices get generated primary and secondary keys",
		Request:   &content{Schema: ref("CreateDevice"), Example: createDeviceRequest{ID: "press-7", Site: "plant-north", Template: "press", Tags: map[string]string{"line": "3"}}},
		Responses: []response{{Status: 201, Description: "created, with its keys", Body: deviceBody(deviceView{Device: exampleDevice})}},
		Errors:    []int{409}, handle: s.createDevice})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices", ID: "listDevices", Tag: "devices", Role: registry.RoleViewer,
		Summary: "List devices, a page at a time (without keys)",
		Query: []param{
			{Name: "site", Description: "only devices of this site", Schema: schema{"type": "string"}},
			{Name: "template", Description: "only devices of this template", Schema: schema{"type": "string"}},
			{Name: "tag", Description: "only devices with this tag, as key:value; repeat to require several", Schema: arrayOf(schema{"type": "string"}), Example: []string{"line:3"}},
			{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": maxDeviceListing}},
			{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}},
		},
		Responses: []response{{Status: 200, Description: "a page of devices", Body: &content{Schema: ref("DeviceList"), Example: deviceList{Items: []deviceView{noKeys}, Next: "press-7"}}}},
		handle:    s.listDevices})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}", ID: "getDevice", Tag: "devices", Role: registry.RoleViewer,
		Summary: "Get a device (keys shown to operators and admins)", PathParams: idOnly,
		Responses: []response{{Status: 200, Description: "the device", Body: deviceBody(withKeys)}},
		handle:    s.getDevice})
	disabled := true
	s.add(&route{Method: "PATCH", Pattern: "/api/v1/devices/{id}", ID: "updateDevice", Tag: "devices", Role: registry.RoleOperator,
		Summary: "Change a device's site, template, tags or disabled flag; disabling drops its connection", PathParams: idOnly,
		Request:   &content{Schema: ref("PatchDevice"), Example: registry.DevicePatch{Disabled: &disabled}},
		Responses: []response{{Status: 200, Description: "the updated device", Body: deviceBody(withKeys)}},
		handle:    s.patchDevice})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/devices/{id}", ID: "deleteDevice", Tag: "devices", Role: registry.RoleOperator,
		Summary: "Delete a device and drop its connection", PathParams: idOnly,
		Responses: []response{{Status: 204, Description: "deleted"}}, handle: s.deleteDevice})
	s.add(&route{Method: "POST", Pattern: "/api/v1/devices/{id}/keys/{which}/regenerate", ID: "regenerateDeviceKey", Tag: "devices", Role: registry.RoleOperator,
		Summary:    "Replace a device's primary or secondary key with a new random key",
		PathParams: map[string]string{"id": "device id", "which": "primary or secondary"},
		Responses:  []response{{Status: 200, Description: "the device with its new keys", Body: deviceBody(withKeys)}},
		handle:     s.regenerateKey})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/token", ID: "deviceSASToken", Tag: "devices", Role: registry.RoleOperator,
		Summary: "Sign a SAS token a device uses as its MQTT password", PathParams: idOnly,
		Query: []param{
			{Name: "ttl", Description: "how long the token works: a Go duration (90m, 24h) or seconds; default 1h (or the hub's --max-token-ttl if shorter), at most --max-token-ttl (default 8760h)", Schema: schema{"type": "string"}, Example: "24h"},
			hostParam, keyParam,
		},
		Responses: []response{{Status: 200, Description: "the token", Body: &content{Schema: ref("SASToken"), Example: sasTokenBody{
			Device: "press-7", Expiry: exampleTime.Add(time.Hour),
			Token: "SharedAccessSignature sr=hub.example.com%2Fdevices%2Fpress-7&sig=Zm9vYmFyYmF6cXV4%3D&se=1772443800",
		}}}},
		Errors: []int{503}, handle: s.deviceToken})
	s.add(&route{Method: "GET", Pattern: "/api/v1/devices/{id}/connection-string", ID: "deviceConnectionString", Tag: "devices", Role: registry.RoleOperator,
		Summary: "The device's connection string, as Azure IoT device SDKs take it", PathParams: idOnly,
		Query: []param{hostParam, keyParam},
		Responses: []response{{Status: 200, Description: "the connection string", Body: &content{Schema: ref("ConnectionString"), Example: connectionStringBody{
			Device: "press-7", ConnectionString: "HostName=hub.example.com;DeviceId=press-7;SharedAccessKey=" + exampleDevice.PrimaryKey,
		}}}},
		handle: s.connectionString})
	s.add(&route{Method: "POST", Pattern: "/api/v1/devices/import", ID: "importDevices", Tag: "devices", Role: registry.RoleOperator,
		Summary: "Create devices from a CSV file (header id,site,template,tags,auth,thumbprint; tags as k=v;k=v); each row succeeds or fails alone",
		Request: &content{Type: "text/csv", Schema: schema{"type": "string"},
			Example: "id,site,template,tags,auth,thumbprint\npress-7,plant-north,press,line=3;cell=b,sas,\npress-8,plant-north,press,line=3,sas,\n"},
		Responses: []response{{Status: 200, Description: "the report, row by row", Body: &content{Schema: ref("ImportReport"), Example: registry.ImportReport{
			Created: 1, Failed: 1, Rows: []registry.ImportRow{{Line: 2, ID: "press-7"}, {Line: 3, ID: "press-8", Error: `device "press-8" already exists`}},
		}}}},
		Errors: []int{415}, handle: s.importDevices})
}

func (s *Server) view(r *http.Request, d registry.Device) deviceView {
	if !hasRole(principalOf(r), registry.RoleOperator) {
		d.PrimaryKey, d.SecondaryKey = "", ""
	}
	return deviceView{Device: d, Connected: s.deps.Presence != nil && s.deps.Presence.Connected(d.ID)}
}

func (s *Server) createDevice(w http.ResponseWriter, r *http.Request) error {
	var req createDeviceRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return invalid("field \"id\" is required: the device id (letters, digits and . _ : -, up to 128 characters)")
	}
	switch req.Auth {
	case "", registry.AuthSAS, registry.AuthX509Self, registry.AuthX509CA:
	default:
		return invalid("field \"auth\" must be sas, x509_self or x509_ca, not %q", req.Auth)
	}
	d, err := s.deps.Registry.CreateDevice(r.Context(), orgOf(r), registry.Device{
		ID: req.ID, Site: req.Site, Template: req.Template, Tags: req.Tags,
		Auth: req.Auth, Thumbprint: req.Thumbprint, Disabled: req.Disabled,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.view(r, d))
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	f := registry.DeviceFilter{Site: q.Get("site"), Template: q.Get("template"), After: after}
	for _, t := range q["tag"] {
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			k, v, ok = strings.Cut(t, "=")
		}
		if !ok || k == "" {
			return invalid("parameter \"tag\" must be key:value, not %q", t)
		}
		if f.Tag == nil {
			f.Tag = map[string]string{}
		}
		f.Tag[k] = v
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxDeviceListing {
			return invalid("parameter \"limit\" must be a whole number from 1 to %d, not %q", maxDeviceListing, l)
		}
		f.Limit = n
	}
	items, next, err := s.deps.Registry.ListDevices(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	out := deviceList{Items: make([]deviceView, len(items)), Next: next}
	for i, d := range items {
		v := s.view(r, d)
		v.PrimaryKey, v.SecondaryKey = "", ""
		out.Items[i] = v
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := s.deps.Registry.GetDevice(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.view(r, d))
	return nil
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request) error {
	var p registry.DevicePatch
	if err := decodeJSON(w, r, &p); err != nil {
		return err
	}
	if p.Site == nil && p.Template == nil && p.Tags == nil && p.Disabled == nil {
		return invalid("the body changes nothing; send at least one of site, template, tags, disabled")
	}
	id := r.PathValue("id")
	d, err := s.deps.Registry.UpdateDevice(r.Context(), orgOf(r), id, p)
	if err != nil {
		return err
	}
	if d.Disabled && s.deps.Presence != nil {
		s.deps.Presence.Disconnect(d.ID)
	}
	writeJSON(w, http.StatusOK, s.view(r, d))
	return nil
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.deps.Registry.DeleteDevice(r.Context(), orgOf(r), id); err != nil {
		return err
	}
	s.seen.forget(id)
	if s.deps.Presence != nil {
		s.deps.Presence.Disconnect(id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) regenerateKey(w http.ResponseWriter, r *http.Request) error {
	which := r.PathValue("which")
	if which != "primary" && which != "secondary" {
		return invalid("the key to regenerate must be primary or secondary, not %q", which)
	}
	d, err := s.deps.Registry.RegenerateKey(r.Context(), orgOf(r), r.PathValue("id"), which)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.view(r, d))
	return nil
}

// sasKey loads a SAS device and picks the key ?key= names.
func (s *Server) sasKey(r *http.Request) (registry.Device, string, error) {
	which := r.URL.Query().Get("key")
	if which == "" {
		which = "primary"
	}
	if which != "primary" && which != "secondary" {
		return registry.Device{}, "", invalid("parameter \"key\" must be primary or secondary, not %q", which)
	}
	d, err := s.deps.Registry.GetDevice(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return d, "", err
	}
	if d.Auth != "" && d.Auth != registry.AuthSAS {
		return d, "", nil
	}
	key := d.PrimaryKey
	if which == "secondary" {
		key = d.SecondaryKey
	}
	if key == "" {
		return d, "", invalid("device %q has no %s key; regenerate it first", d.ID, which)
	}
	return d, key, nil
}

// hubHost is the host devices connect to: ?host= or this request's host.
func hubHost(r *http.Request) (string, error) {
	h := strings.TrimSpace(r.URL.Query().Get("host"))
	if h == "" {
		h = r.Host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
	}
	if h == "" || strings.ContainsAny(h, "/;= ") {
		return "", invalid("parameter \"host\" must be a host name such as hub.example.com, not %q", h)
	}
	return h, nil
}

func (s *Server) deviceToken(w http.ResponseWriter, r *http.Request) error {
	ttl, longest := defaultTokenTTL, maxTokenTTL
	if s.deps.MaxTokenTTL > 0 {
		longest = s.deps.MaxTokenTTL
	}
	ttl = min(ttl, longest)
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := parseDuration(v)
		if err != nil || d <= 0 || d > longest {
			return invalid("parameter \"ttl\" must be a duration from 1s to %s (e.g. 1h, 30m, 3600), not %q: the hub accepts no longer-lived token", longest, v)
		}
		ttl = d
	}
	host, err := hubHost(r)
	if err != nil {
		return err
	}
	d, key, err := s.sasKey(r)
	if err != nil {
		return err
	}
	if key == "" {
		return invalid("device %q authenticates with %s certificates; SAS tokens work only for devices with auth sas", d.ID, d.Auth)
	}
	if s.deps.SASToken == nil {
		return &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "this hub cannot sign SAS tokens (no signer configured)"}
	}
	expiry := s.now().Add(ttl).Truncate(time.Second).UTC()
	tok, err := s.deps.SASToken(host, d.ID, key, expiry)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sasTokenBody{Device: d.ID, Token: tok, Expiry: expiry})
	return nil
}

func (s *Server) connectionString(w http.ResponseWriter, r *http.Request) error {
	host, err := hubHost(r)
	if err != nil {
		return err
	}
	d, key, err := s.sasKey(r)
	if err != nil {
		return err
	}
	cs := "HostName=" + host + ";DeviceId=" + d.ID
	if key == "" {
		cs += ";x509=true"
	} else {
		cs += ";SharedAccessKey=" + key
	}
	writeJSON(w, http.StatusOK, connectionStringBody{Device: d.ID, ConnectionString: cs})
	return nil
}

func (s *Server) importDevices(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "text/csv" && mt != "application/csv" && mt != "text/plain") {
			return &httpError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
				Message: "send the CSV file with Content-Type: text/csv, not " + ct}
		}
	}
	// Read it whole first, so a body over the limit is refused before any
	// row is created.
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCSVBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return invalid("the CSV file is larger than %d MiB; split it into smaller files", maxCSVBody>>20)
		}
		return invalid("the CSV body could not be read: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("the CSV body is empty; send a header row id,site,template,tags,auth,thumbprint and one row per device")
	}
	rep, err := s.deps.Registry.ImportCSV(r.Context(), orgOf(r), bytes.NewReader(data), nil)
	if err != nil {
		return err
	}
	if rep.Rows == nil {
		rep.Rows = []registry.ImportRow{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// parseDuration takes a Go duration ("90s", "1h30m") or a number of seconds.
func parseDuration(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f != f || f > float64(1<<62)/float64(time.Second) || f < -float64(1<<62)/float64(time.Second) {
			return 0, errors.New("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}
