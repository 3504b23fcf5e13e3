package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Dashboard is a grid of tiles saved per organization.
type Dashboard struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Tiles []Tile `json:"tiles"`
}

// Tile kinds.
const (
	TileLine    = "line"
	TileLatest  = "latest"
	TileGauge   = "gauge"
	TileAlerts  = "alerts"
	TileDevices = "devices"
	TilePromQL  = "promql"
)

// PromQL evaluates a PromQL expression over an organization's telemetry;
// each series is named by its label set.
type PromQL interface {
	QueryRange(ctx context.Context, org, expr string, start, end time.Time, step time.Duration) ([]Series, error)
}

// Tile is one cell of a dashboard, bound to a device field (line, latest,
// gauge) or a site (devices); Width is 1 to 4 grid columns.
type Tile struct {
	ID     string  `json:"id"`
	Kind   string  `json:"kind"`
	Title  string  `json:"title"`
	Device string  `json:"device,omitempty"`
	Field  string  `json:"field,omitempty"`
	Site   string  `json:"site,omitempty"`
	Query  string  `json:"query,omitempty"` // PromQL of a promql tile
	Min    float64 `json:"min,omitempty"`
	Max    float64 `json:"max,omitempty"`
	Width  int     `json:"width"`
}

// DashboardStore saves dashboards per organization.
type DashboardStore interface {
	List(ctx context.Context, org string) ([]Dashboard, error)
	Save(ctx context.Context, org string, d Dashboard) error
	Delete(ctx context.Context, org, id string) error
}

// MemoryDashboards keeps dashboards in memory (tests, or a hub without a
// data directory).
type MemoryDashboards struct {
	mu sync.Mutex
	m  map[string][]Dashboard
}

// NewMemoryDashboards returns an empty in-memory store.
func NewMemoryDashboards() *MemoryDashboards { return &MemoryDashboards{m: map[string][]Dashboard{}} }

func (s *MemoryDashboards) List(_ context.Context, org string) ([]Dashboard, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneDashboards(s.m[org]), nil
}

func (s *MemoryDashboards) Save(_ context.Context, org string, d Dashboard) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[org] = upsert(s.m[org], d)
	return nil
}

func (s *MemoryDashboards) Delete(_ context.Context, org, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := remove(s.m[org], id)
	if err != nil {
		return err
	}
	s.m[org] = out
	return nil
}

// FileDashboards keeps each organization's dashboards in one JSON file in
// a directory, written atomically (temp file + rename).
type FileDashboards struct {
	dir string
	mu  sync.Mutex
}

// NewFileDashboards stores dashboards under dir, creating it.
func NewFileDashboards(dir string) (*FileDashboards, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create the dashboards directory %s: %w", dir, err)
	}
	return &FileDashboards{dir: dir}, nil
}

func (s *FileDashboards) path(org string) string { return filepath.Join(s.dir, org+".json") }

func (s *FileDashboards) List(_ context.Context, org string) ([]Dashboard, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read(org)
}

func (s *FileDashboards) read(org string) ([]Dashboard, error) {
	b, err := os.ReadFile(s.path(org))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dashboards of %s: %w", org, err)
	}
	var ds []Dashboard
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, fmt.Errorf("dashboards file %s is damaged (%v): fix or remove it", s.path(org), err)
	}
	return ds, nil
}

func (s *FileDashboards) write(org string, ds []Dashboard) error {
	b, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path(org) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("save dashboards of %s: %w", org, err)
	}
	return os.Rename(tmp, s.path(org))
}

func (s *FileDashboards) Save(_ context.Context, org string, d Dashboard) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds, err := s.read(org)
	if err != nil {
		return err
	}
	return s.write(org, upsert(ds, d))
}

func (s *FileDashboards) Delete(_ context.Context, org, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds, err := s.read(org)
	if err != nil {
		return err
	}
	out, err := remove(ds, id)
	if err != nil {
		return err
	}
	return s.write(org, out)
}

func cloneDashboards(ds []Dashboard) []Dashboard {
	out := make([]Dashboard, len(ds))
	for i, d := range ds {
		d.Tiles = append([]Tile(nil), d.Tiles...)
		out[i] = d
	}
	return out
}

func upsert(ds []Dashboard, d Dashboard) []Dashboard {
	out := cloneDashboards(ds)
	for i := range out {
		if out[i].ID == d.ID {
			out[i] = d
			return out
		}
	}
	return append(out, d)
}

func remove(ds []Dashboard, id string) ([]Dashboard, error) {
	for i := range ds {
		if ds[i].ID == id {
			return append(cloneDashboards(ds[:i]), cloneDashboards(ds[i+1:])...), nil
		}
	}
	return nil, fmt.Errorf("dashboard %q does not exist: %w", id, registry.ErrNotFound)
}

// tileView is a tile with the data it shows.
type tileView struct {
	Tile
	Value    string
	Number   float64
	HasValue bool
	At       int64
	Chart    *chartData
	Devices  []deviceRow
	Alerts   []Alert
	Note     string
}

type dashboardsData struct {
	All     []Dashboard
	Current *Dashboard
	Tiles   []tileView
	Sites   []registry.Site
}

func (s *Server) dashboards(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	all, err := s.dash.List(r.Context(), v.org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := dashboardsData{All: all}
	want := r.URL.Query().Get("id")
	for i := range all {
		if all[i].ID == want || (want == "" && i == 0) {
			d.Current = &all[i]
		}
	}
	if want != "" && d.Current == nil {
		s.problem(w, r, http.StatusNotFound, "Dashboard "+want+" does not exist in this organization.")
		return
	}
	if d.Current != nil {
		for _, t := range d.Current.Tiles {
			d.Tiles = append(d.Tiles, s.tileView(r, v.org, t))
		}
	}
	if d.Sites, err = s.deps.Registry.ListSites(r.Context(), v.org); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "dashboards", d)
}

func (s *Server) tileView(r *http.Request, org string, t Tile) tileView {
	tv := tileView{Tile: t}
	ctx := r.Context()
	switch t.Kind {
	case TileLatest, TileGauge, TileLine:
		if s.deps.Telemetry == nil {
			tv.Note = "The time-series store is not running."
			return tv
		}
		ls, err := s.deps.Telemetry.Latest(ctx, org, t.Device)
		if err != nil {
			tv.Note = sentence(err)
			return tv
		}
		for _, l := range ls {
			if l.Field == t.Field {
				tv.Value, tv.At, tv.HasValue = fmtVal(l.Value), l.T, true
				tv.Number, _ = l.Value.(float64)
			}
		}
		if !tv.HasValue {
			tv.Note = fmt.Sprintf("No data yet for %s of %s.", t.Field, t.Device)
		}
		if t.Kind == TileLine {
			to := s.now()
			series, err := s.deps.Telemetry.Range(ctx, org, t.Device, []string{t.Field}, to.Add(-time.Hour), to, 15*time.Second, "avg")
			if err == nil {
				c := buildChart(series)
				c.Live = "/devices/" + t.Device + "/live"
				c.Window = 3600
				tv.Chart = &c
			}
		}
	case TilePromQL:
		if s.deps.PromQL == nil {
			tv.Note = "PromQL is not available on this hub."
			return tv
		}
		to := s.now()
		series, err := s.deps.PromQL.QueryRange(ctx, org, t.Query, to.Add(-time.Hour), to, 30*time.Second)
		if err != nil {
			tv.Note = sentence(err)
			return tv
		}
		c := buildChart(series)
		c.Window = 3600
		tv.Chart = &c
		if len(series) == 0 {
			tv.Note = "The expression returned no series in the last hour."
		}
	case TileAlerts:
		if s.deps.Alerts == nil {
			tv.Note = "Alerts are available when the rules engine is enabled on this hub."
			return tv
		}
		tv.Alerts, _ = s.deps.Alerts.Recent(ctx, org, t.Device, 10)
	case TileDevices:
		devs, _, err := s.deps.Registry.ListDevices(ctx, org, registry.DeviceFilter{Site: t.Site, Limit: 10})
		if err != nil {
			tv.Note = sentence(err)
			return tv
		}
		for _, d := range devs {
			row := deviceRow{Device: d, LastSeen: s.lastSeen(r, org, d.ID)}
			if s.deps.Presence != nil {
				row.Connected = s.deps.Presence.Connected(d.ID)
			}
			tv.Devices = append(tv.Devices, row)
		}
	}
	return tv
}

func slug(name string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// dashboardCreate makes an empty dashboard, or with factory=1 the default
// factory dashboard built from the organization's sites and devices.
func (s *Server) dashboardCreate(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	name := strings.TrimSpace(r.PostFormValue("name"))
	factory := r.PostFormValue("factory") == "1"
	if factory {
		name = "Factory"
	}
	if name == "" {
		s.problem(w, r, http.StatusBadRequest, "Give the dashboard a name.")
		return
	}
	d := Dashboard{ID: slug(name) + "-" + strconv.FormatInt(s.now().UnixNano()%1e6, 36), Name: name}
	if factory {
		tiles, err := s.factoryTiles(r.Context(), v.org)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d.Tiles = tiles
	}
	if err := s.dash.Save(r.Context(), v.org, d); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/dashboards?id="+d.ID, http.StatusSeeOther)
}

// FactoryDashboard builds the default factory dashboard for org: an alert
// list, a device table per site and, for the first devices, their first
// numeric fields as line charts, latest values and a gauge.
func (s *Server) FactoryDashboard(ctx context.Context, org string) (Dashboard, error) {
	tiles, err := s.factoryTiles(ctx, org)
	return Dashboard{ID: "factory", Name: "Factory", Tiles: tiles}, err
}

func (s *Server) factoryTiles(ctx context.Context, org string) ([]Tile, error) {
	tiles := []Tile{{Kind: TileAlerts, Title: "Recent alerts", Width: 2}}
	sites, err := s.deps.Registry.ListSites(ctx, org)
	if err != nil {
		return nil, err
	}
	for _, st := range sites {
		tiles = append(tiles, Tile{Kind: TileDevices, Title: "Devices at " + st.Name, Site: st.ID, Width: 2})
	}
	// Chart the first connected devices that have sent telemetry.
	charted := 0
	after := ""
	for s.deps.Telemetry != nil && charted < 4 {
		devs, next, err := s.deps.Registry.ListDevices(ctx, org, registry.DeviceFilter{Limit: registry.MaxPageSize, After: after})
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if charted == 4 {
				break
			}
			if s.deps.Presence != nil && !s.deps.Presence.Connected(d.ID) {
				continue
			}
			ls, err := s.deps.Telemetry.Latest(ctx, org, d.ID)
			if err != nil {
				return nil, err
			}
			var fields []string
			last := map[string]float64{}
			for _, l := range ls {
				if v, ok := l.Value.(float64); ok {
					fields = append(fields, l.Field)
					last[l.Field] = v
				}
			}
			sort.Strings(fields)
			if len(fields) == 0 {
				continue
			}
			f := fields[0]
			charted++
			tiles = append(tiles,
				Tile{Kind: TileLine, Title: d.ID + " " + f, Device: d.ID, Field: f, Width: 2},
				Tile{Kind: TileLatest, Title: d.ID + " " + f, Device: d.ID, Field: f, Width: 1},
				Tile{Kind: TileGauge, Title: d.ID + " " + f, Device: d.ID, Field: f, Min: 0, Max: gaugeMax(last[f]), Width: 1})
		}
		if next == "" {
			break
		}
		after = next
	}
	for i := range tiles {
		tiles[i].ID = "t" + strconv.Itoa(i+1)
	}
	return tiles, nil
}

func (s *Server) findDashboard(r *http.Request) (Dashboard, error) {
	v := viewerOf(r)
	all, err := s.dash.List(r.Context(), v.org)
	if err != nil {
		return Dashboard{}, err
	}
	for _, d := range all {
		if d.ID == r.PathValue("id") {
			return d, nil
		}
	}
	return Dashboard{}, fmt.Errorf("dashboard %q does not exist in this organization: %w", r.PathValue("id"), registry.ErrNotFound)
}

func (s *Server) tileAdd(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	d, err := s.findDashboard(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	t := Tile{Kind: r.PostFormValue("kind"), Title: strings.TrimSpace(r.PostFormValue("title")),
		Device: strings.TrimSpace(r.PostFormValue("device")), Field: strings.TrimSpace(r.PostFormValue("field")),
		Site: r.PostFormValue("site"), Query: strings.TrimSpace(r.PostFormValue("query"))}
	t.Width, _ = strconv.Atoi(r.PostFormValue("width"))
	t.Width = min(max(t.Width, 1), 4)
	t.Min, _ = strconv.ParseFloat(r.PostFormValue("min"), 64)
	t.Max, _ = strconv.ParseFloat(r.PostFormValue("max"), 64)
	switch t.Kind {
	case TileLine, TileLatest, TileGauge:
		if t.Device == "" || t.Field == "" {
			s.problem(w, r, http.StatusBadRequest, "A "+t.Kind+" tile needs a device id and a field name.")
			return
		}
		if _, err := s.deps.Registry.GetDevice(r.Context(), v.org, t.Device); err != nil {
			s.fail(w, r, err)
			return
		}
		if t.Kind == TileGauge && t.Max <= t.Min {
			s.problem(w, r, http.StatusBadRequest, "A gauge needs a maximum above its minimum.")
			return
		}
	case TilePromQL:
		if t.Query == "" {
			s.problem(w, r, http.StatusBadRequest, "A PromQL tile needs an expression, for example avg by (site) (temperature).")
			return
		}
		if s.deps.PromQL == nil {
			s.problem(w, r, http.StatusServiceUnavailable, "PromQL is not available on this hub.")
			return
		}
		// Run it once so a typo is refused here rather than shown on the tile.
		to := s.now()
		if _, err := s.deps.PromQL.QueryRange(r.Context(), v.org, t.Query, to.Add(-time.Minute), to, 30*time.Second); err != nil {
			s.problem(w, r, http.StatusBadRequest, "The PromQL expression does not run: "+sentence(err))
			return
		}
	case TileAlerts, TileDevices:
	default:
		s.problem(w, r, http.StatusBadRequest, "Choose a tile kind: line chart, latest value, gauge, alert list, device table or PromQL chart.")
		return
	}
	if t.Title == "" {
		t.Title = strings.TrimSpace(t.Device + " " + t.Field)
		if t.Kind == TilePromQL {
			t.Title = t.Query
		}
		if t.Title == "" {
			t.Title = t.Kind
		}
	}
	t.ID = "t" + strconv.FormatInt(s.now().UnixNano(), 36)
	d.Tiles = append(d.Tiles, t)
	if err := s.dash.Save(r.Context(), v.org, d); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/dashboards?id="+d.ID, http.StatusSeeOther)
}

func (s *Server) tileDelete(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	d, err := s.findDashboard(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	tiles := d.Tiles[:0:0]
	for _, t := range d.Tiles {
		if t.ID != r.PathValue("tile") {
			tiles = append(tiles, t)
		}
	}
	d.Tiles = tiles
	if err := s.dash.Save(r.Context(), v.org, d); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/dashboards?id="+d.ID, http.StatusSeeOther)
}

func (s *Server) dashboardDelete(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if err := s.dash.Delete(r.Context(), v.org, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/dashboards", http.StatusSeeOther)
}

// gaugeMax is the next power of ten above v (at least 100), a scale that
// fits the factory dashboard's gauges before anyone tunes them.
func gaugeMax(v float64) float64 {
	m := 100.0
	for m < math.Abs(v) {
		m *= 10
	}
	return m
}
