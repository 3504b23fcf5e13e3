package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// devicePageSize is how many devices one page of the list shows.
const devicePageSize = 50

// maxScan bounds how many devices one list request walks when filters the
// registry cannot apply (state, last seen, id search) are set.
const maxScan = 20000

// deviceFilter is the device list's query string.
type deviceFilter struct {
	Q, Site, Template, Tag, State, Seen, After string
}

func (f deviceFilter) registry() (registry.DeviceFilter, error) {
	rf := registry.DeviceFilter{Site: f.Site, Template: f.Template}
	if f.Tag != "" {
		k, v, ok := strings.Cut(f.Tag, "=")
		if !ok || k == "" {
			return rf, fmt.Errorf("the tag filter %q must look like key=value, for example line=3: %w", f.Tag, registry.ErrInvalid)
		}
		rf.Tag = map[string]string{strings.TrimSpace(k): strings.TrimSpace(v)}
	}
	return rf, nil
}

// deviceRow is one device of the list.
type deviceRow struct {
	registry.Device
	Connected bool
	LastSeen  int64 // unix ms of the newest telemetry; 0 when none
}

type devicesData struct {
	F       deviceFilter
	Rows    []deviceRow
	Next    string
	Sites   []registry.Site
	Scanned int
	Capped  bool
	Report  *registry.ImportReport
	Flash   string
}

var seenWindows = map[string]time.Duration{"5m": 5 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	d, err := s.listDevices(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "devices", d)
}

func (s *Server) listDevices(r *http.Request) (devicesData, error) {
	v := viewerOf(r)
	q := r.URL.Query()
	f := deviceFilter{Q: strings.TrimSpace(q.Get("q")), Site: q.Get("site"), Template: strings.TrimSpace(q.Get("template")),
		Tag: strings.TrimSpace(q.Get("tag")), State: q.Get("state"), Seen: q.Get("seen"), After: q.Get("after")}
	d := devicesData{F: f}
	sites, err := s.deps.Registry.ListSites(r.Context(), v.org)
	if err != nil {
		return d, err
	}
	d.Sites = sites
	rf, err := f.registry()
	if err != nil {
		return d, err
	}
	post := f.Q != "" || f.State != "" || f.Seen != ""
	rf.After = f.After
	rf.Limit = devicePageSize + 1
	if post {
		rf.Limit = registry.MaxPageSize
	}
	now := s.now()
	for {
		devs, next, err := s.deps.Registry.ListDevices(r.Context(), v.org, rf)
		if err != nil {
			return d, err
		}
		for _, dev := range devs {
			d.Scanned++
			row := deviceRow{Device: dev}
			if s.deps.Presence != nil {
				row.Connected = s.deps.Presence.Connected(dev.ID)
			}
			if f.Seen != "" || !post {
				row.LastSeen = s.lastSeen(r, v.org, dev.ID)
			}
			if !matches(f, row, now) {
				continue
			}
			if len(d.Rows) == devicePageSize {
				d.Next = d.Rows[len(d.Rows)-1].ID
				break
			}
			d.Rows = append(d.Rows, row)
		}
		if d.Next != "" || next == "" || !post {
			break
		}
		if d.Scanned >= maxScan {
			d.Capped = true
			d.Next = next
			break
		}
		rf.After = next
	}
	if post && f.Seen == "" {
		for i := range d.Rows {
			d.Rows[i].LastSeen = s.lastSeen(r, v.org, d.Rows[i].ID)
		}
	}
	return d, nil
}

func matches(f deviceFilter, row deviceRow, now time.Time) bool {
	if f.Q != "" && !strings.Contains(strings.ToLower(row.ID), strings.ToLower(f.Q)) {
		return false
	}
	switch f.State {
	case "connected":
		if !row.Connected {
			return false
		}
	case "offline":
		if row.Connected || row.Disabled {
			return false
		}
	case "disabled":
		if !row.Disabled {
			return false
		}
	case "errors":
		if row.ErrorCount == 0 {
			return false
		}
	}
	switch f.Seen {
	case "":
	case "never":
		return row.LastSeen == 0
	case "stale":
		return row.LastSeen != 0 && now.Sub(time.UnixMilli(row.LastSeen)) > 24*time.Hour
	default:
		win, ok := seenWindows[f.Seen]
		if ok && (row.LastSeen == 0 || now.Sub(time.UnixMilli(row.LastSeen)) > win) {
			return false
		}
	}
	return true
}

func (s *Server) lastSeen(r *http.Request, org, id string) int64 {
	if s.deps.Telemetry == nil {
		return 0
	}
	ls, err := s.deps.Telemetry.Latest(r.Context(), org, id)
	if err != nil {
		return 0
	}
	var t int64
	for _, l := range ls {
		t = max(t, l.T)
	}
	return t
}

// bulk applies one action to the selected devices; each device succeeds or
// fails alone and the page lists the failures.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if err := r.ParseForm(); err != nil {
		s.problem(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		s.problem(w, r, http.StatusBadRequest, "Select at least one device, then choose the action again.")
		return
	}
	action := r.PostFormValue("action")
	arg := strings.TrimSpace(r.PostFormValue("value"))
	var failed []string
	done := 0
	for _, id := range ids {
		var p registry.DevicePatch
		switch action {
		case "disable", "enable":
			b := action == "disable"
			p.Disabled = &b
		case "site":
			p.Site = &arg
		case "tag":
			k, val, ok := strings.Cut(arg, "=")
			if !ok || strings.TrimSpace(k) == "" {
				s.problem(w, r, http.StatusBadRequest, "Write the tag as key=value, for example line=3.")
				return
			}
			dev, err := s.deps.Registry.GetDevice(r.Context(), v.org, id)
			if err != nil {
				failed = append(failed, id+": "+sentence(err))
				continue
			}
			tags := map[string]string{}
			for tk, tv := range dev.Tags {
				tags[tk] = tv
			}
			tags[strings.TrimSpace(k)] = strings.TrimSpace(val)
			p.Tags = &tags
		default:
			s.problem(w, r, http.StatusBadRequest, "Choose an action: tag, assign to site, disable or enable.")
			return
		}
		if _, err := s.deps.Registry.UpdateDevice(r.Context(), v.org, id, p); err != nil {
			failed = append(failed, id+": "+sentence(err))
			continue
		}
		done++
	}
	d, err := s.listDevices(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Flash = fmt.Sprintf("%s: %d of %d devices changed.", action, done, len(ids))
	if len(failed) > 0 {
		d.Flash += " Failed: " + strings.Join(failed, "; ")
	}
	s.render(w, r, http.StatusOK, "devices", d)
}

// importCSV creates devices from an uploaded or pasted CSV file.
func (s *Server) importCSV(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	var src io.Reader
	if err := r.ParseMultipartForm(8 << 20); err == nil {
		if f, _, err := r.FormFile("file"); err == nil {
			defer f.Close()
			src = f
		}
	}
	if src == nil {
		text := r.FormValue("csv")
		if strings.TrimSpace(text) == "" {
			s.problem(w, r, http.StatusBadRequest, "Choose a CSV file or paste CSV text (header id,site,template,tags,auth,thumbprint).")
			return
		}
		src = strings.NewReader(text)
	}
	rep, err := s.deps.Registry.ImportCSV(r.Context(), v.org, src, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	r.URL.RawQuery = ""
	d, err := s.listDevices(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Report = &rep
	s.render(w, r, http.StatusOK, "devices", d)
}

// rangeChoices are the time range picker's options.
var rangeChoices = []struct {
	Key  string
	D    time.Duration
	Step time.Duration
}{
	{"15m", 15 * time.Minute, 5 * time.Second},
	{"1h", time.Hour, 15 * time.Second},
	{"6h", 6 * time.Hour, time.Minute},
	{"24h", 24 * time.Hour, 5 * time.Minute},
	{"7d", 7 * 24 * time.Hour, 30 * time.Minute},
}

// chartData is uPlot's column layout: x in unix seconds, then one column
// per field with null where the field has no point.
type chartData struct {
	Fields []string     `json:"fields"`
	X      []float64    `json:"x"`
	Y      [][]*float64 `json:"y"`
	Live   string       `json:"live"`
	Window int64        `json:"window"` // seconds of data the chart keeps
}

type detailData struct {
	D         registry.Device
	Connected bool
	Latest    []LatestValue
	Range     string
	Ranges    []string
	Chart     chartData
	HasTS     bool
	Alerts    []Alert
	AlertsOn  bool
	Anomaly   *Anomaly
	Twin      *Twin
	TwinOn    bool
	TwinErr   string
	MethodsOn bool
	C2DOn     bool
	Secret    string // a connection string shown once after POST
	Flash     string
	Result    string
	// The method form's values, kept so an invocation can be repeated.
	MethodName, MethodPayload, MethodTimeout string
}

func (s *Server) deviceDetail(w http.ResponseWriter, r *http.Request) {
	d, err := s.detail(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "device", d)
}

func (s *Server) detail(r *http.Request) (*detailData, error) {
	v := viewerOf(r)
	id := r.PathValue("id")
	dev, err := s.deps.Registry.GetDevice(r.Context(), v.org, id)
	if err != nil {
		return nil, err
	}
	d := &detailData{D: dev, HasTS: s.deps.Telemetry != nil, AlertsOn: s.deps.Alerts != nil, TwinOn: s.deps.Twins != nil,
		MethodsOn: s.deps.Methods != nil, C2DOn: s.deps.Messages != nil}
	if s.deps.Presence != nil {
		d.Connected = s.deps.Presence.Connected(id)
	}
	d.Range = r.URL.Query().Get("range")
	choice := rangeChoices[0]
	for _, c := range rangeChoices {
		d.Ranges = append(d.Ranges, c.Key)
		if c.Key == d.Range {
			choice = c
		}
	}
	d.Range = choice.Key
	if s.deps.Telemetry != nil {
		if d.Latest, err = s.deps.Telemetry.Latest(r.Context(), v.org, id); err != nil {
			return nil, err
		}
		to := s.now()
		series, err := s.deps.Telemetry.Range(r.Context(), v.org, id, nil, to.Add(-choice.D), to, choice.Step, "avg")
		if err != nil {
			return nil, err
		}
		d.Chart = buildChart(series)
		d.Chart.Live = "/devices/" + id + "/live"
		d.Chart.Window = int64(choice.D / time.Second)
	}
	if s.deps.Alerts != nil {
		d.Alerts, _ = s.deps.Alerts.Recent(r.Context(), v.org, id, 20)
	}
	if s.deps.Anomalies != nil {
		if a, err := s.deps.Anomalies.DeviceAnomaly(r.Context(), v.org, id); err == nil {
			d.Anomaly = &a
		}
	}
	if s.deps.Twins != nil {
		t, err := s.deps.Twins.Get(r.Context(), v.org, id)
		if err != nil {
			d.TwinErr = sentence(err)
		} else {
			d.Twin = &t
		}
	}
	return d, nil
}

// maxChartFields keeps the page light for devices with many fields.
const maxChartFields = 8

func buildChart(series []Series) chartData {
	sort.Slice(series, func(i, j int) bool { return series[i].Field < series[j].Field })
	if len(series) > maxChartFields {
		series = series[:maxChartFields]
	}
	ts := map[int64]struct{}{}
	for _, sr := range series {
		for _, p := range sr.Points {
			ts[p.T] = struct{}{}
		}
	}
	xs := make([]int64, 0, len(ts))
	for t := range ts {
		xs = append(xs, t)
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	idx := make(map[int64]int, len(xs))
	c := chartData{Fields: []string{}, X: make([]float64, len(xs)), Y: [][]*float64{}}
	for i, t := range xs {
		idx[t] = i
		c.X[i] = float64(t) / 1000
	}
	for _, sr := range series {
		col := make([]*float64, len(xs))
		for _, p := range sr.Points {
			v := p.V
			col[idx[p.T]] = &v
		}
		c.Fields = append(c.Fields, sr.Field)
		c.Y = append(c.Y, col)
	}
	return c
}

// live streams the device's new numeric values as Server-Sent Events: one
// "point" event per new timestamp with {"t": unix ms, "v": {field: value}}.
func (s *Server) liveStream(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	id := r.PathValue("id")
	if _, err := s.deps.Registry.GetDevice(r.Context(), v.org, id); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.deps.Telemetry == nil {
		s.problem(w, r, http.StatusServiceUnavailable, "The time-series store is not running on this hub.")
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		s.problem(w, r, http.StatusInternalServerError, "This connection cannot stream live data.")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 3000\n\n")
	fl.Flush()
	var last int64
	if ls, err := s.deps.Telemetry.Latest(r.Context(), v.org, id); err == nil {
		for _, l := range ls {
			last = max(last, l.T)
		}
	}
	tick := time.NewTicker(s.live)
	defer tick.Stop()
	// The server's write timeout bounds ordinary answers; a live stream
	// lives longer, so each write gets its own deadline instead.
	rc := http.NewResponseController(w)
	beat := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		ls, err := s.deps.Telemetry.Latest(r.Context(), v.org, id)
		if err != nil {
			return
		}
		vals := map[string]float64{}
		var t int64
		for _, l := range ls {
			f, ok := l.Value.(float64)
			if !ok || l.T <= last {
				continue
			}
			vals[l.Field] = f
			t = max(t, l.T)
		}
		if len(vals) > 0 {
			last = t
			b, _ := json.Marshal(map[string]any{"t": t, "v": vals})
			if _, err := fmt.Fprintf(w, "event: point\ndata: %s\n\n", b); err != nil {
				return
			}
			fl.Flush()
			beat = 0
			continue
		}
		if beat++; beat >= 15 { // keep proxies from closing an idle stream
			beat = 0
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// rotate regenerates one key and shows the new connection string once.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	which := r.PathValue("which")
	if which != "primary" && which != "secondary" {
		s.problem(w, r, http.StatusBadRequest, "Choose the primary or the secondary key.")
		return
	}
	dev, err := s.deps.Registry.RegenerateKey(r.Context(), v.org, r.PathValue("id"), which)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("console rotated a device key", "org", v.org, "device", dev.ID, "key", which, "token", v.P.TokenID)
	s.showSecret(w, r, dev, which, "The "+which+" key was regenerated; devices using the old one must be updated.")
}

// connectionString shows a connection string once; it is never part of a
// GET page, so it does not linger in history or caches.
func (s *Server) connectionString(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	dev, err := s.deps.Registry.GetDevice(r.Context(), v.org, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.showSecret(w, r, dev, "primary", "")
}

func (s *Server) showSecret(w http.ResponseWriter, r *http.Request, dev registry.Device, which, flash string) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	cs := "HostName=" + host + ";DeviceId=" + dev.ID
	switch {
	case dev.Auth != registry.AuthSAS:
		cs += ";x509=true"
	case which == "secondary":
		cs += ";SharedAccessKey=" + dev.SecondaryKey
	default:
		cs += ";SharedAccessKey=" + dev.PrimaryKey
	}
	d, err := s.detail(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Secret, d.Flash = cs, flash
	s.render(w, r, http.StatusOK, "device", d)
}

// devicePatch edits one device's site, template, tags and state.
func (s *Server) devicePatch(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	id := r.PathValue("id")
	var p registry.DevicePatch
	site, tmpl := strings.TrimSpace(r.PostFormValue("site")), strings.TrimSpace(r.PostFormValue("template"))
	p.Site, p.Template = &site, &tmpl
	tags := map[string]string{}
	for _, part := range strings.FieldsFunc(r.PostFormValue("tags"), func(c rune) bool { return c == ';' || c == '\n' }) {
		k, val, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			s.problem(w, r, http.StatusBadRequest, fmt.Sprintf("The tag %q must look like key=value; separate tags with ';'.", part))
			return
		}
		tags[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	p.Tags = &tags
	dis := r.PostFormValue("disabled") == "on"
	p.Disabled = &dis
	if _, err := s.deps.Registry.UpdateDevice(r.Context(), v.org, id, p); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/devices/"+id, http.StatusSeeOther)
}

func (s *Server) twinPatch(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if s.deps.Twins == nil {
		s.fail(w, r, fmt.Errorf("device twins are %w", ErrNotConfigured))
		return
	}
	patch := json.RawMessage(r.PostFormValue("desired"))
	if !json.Valid(patch) {
		s.problem(w, r, http.StatusBadRequest, "The desired properties are not valid JSON; check quotes and commas.")
		return
	}
	if _, err := s.deps.Twins.PatchDesired(r.Context(), v.org, r.PathValue("id"), patch, r.PostFormValue("etag")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/devices/"+r.PathValue("id")+"#twin", http.StatusSeeOther)
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if s.deps.Methods == nil {
		s.fail(w, r, fmt.Errorf("direct methods are %w", ErrNotConfigured))
		return
	}
	name := strings.TrimSpace(r.PostFormValue("method"))
	payload := strings.TrimSpace(r.PostFormValue("payload"))
	if payload == "" {
		payload = "null"
	}
	if name == "" || !json.Valid([]byte(payload)) {
		s.problem(w, r, http.StatusBadRequest, "Give the method a name and a JSON payload (or leave the payload empty).")
		return
	}
	timeout := 30 * time.Second
	if n, err := strconv.Atoi(r.PostFormValue("timeout")); err == nil && n > 0 && n <= 300 {
		timeout = time.Duration(n) * time.Second
	}
	status, resp, err := s.deps.Methods.Invoke(r.Context(), v.org, r.PathValue("id"), name, json.RawMessage(payload), timeout)
	d, derr := s.detail(r)
	if derr != nil {
		s.fail(w, r, derr)
		return
	}
	if err != nil {
		d.Result = "The method failed: " + sentence(err)
	} else {
		var pretty bytes.Buffer
		if json.Indent(&pretty, resp, "", "  ") == nil {
			resp = pretty.Bytes()
		}
		d.Result = fmt.Sprintf("Status %d:\n%s", status, resp)
	}
	d.MethodName, d.MethodPayload, d.MethodTimeout = name, r.PostFormValue("payload"), strconv.Itoa(int(timeout/time.Second))
	s.render(w, r, http.StatusOK, "device", d)
}

func (s *Server) sendC2D(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if s.deps.Messages == nil {
		s.fail(w, r, fmt.Errorf("cloud-to-device messages are %w", ErrNotConfigured))
		return
	}
	if err := s.deps.Messages.Send(r.Context(), v.org, r.PathValue("id"), []byte(r.PostFormValue("body"))); err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.detail(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Flash = "The message was queued for the device."
	s.render(w, r, http.StatusOK, "device", d)
}
