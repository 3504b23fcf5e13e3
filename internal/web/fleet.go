package web

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// fleetTTL bounds how often one organization's fleet is recounted: the
// overview polls every few seconds and a count walks every device.
const fleetTTL = 2 * time.Second

// sparkPoints is how many samples the sparklines keep per site.
const sparkPoints = 30

// SiteStats is one site's row of the fleet overview.
type SiteStats struct {
	ID, Name   string
	Total      int
	Connected  int
	Disabled   int
	Errors     int // devices with a recorded error
	Rate       float64
	RateSpark  []float64 // messages/s, oldest first
	ConnSpark  []float64 // connected devices, oldest first
	msgs       uint64
	connectedN []string
}

// FleetSummary is the fleet overview of one organization.
type FleetSummary struct {
	At        time.Time
	Sites     []*SiteStats
	Total     int
	Connected int
	Rate      float64
	Templates map[string]int // devices per template
}

type fleetCache struct {
	mu       sync.Mutex
	orgs     map[string]*FleetSummary
	counting map[string]bool // a recount runs in the background
}

func newFleetCache() *fleetCache {
	return &fleetCache{orgs: map[string]*FleetSummary{}, counting: map[string]bool{}}
}

// summary returns org's fleet summary, recounting it when older than
// fleetTTL. The messages/s rate is the growth of the per-connection counters
// of connected devices between two counts (a reconnect restarts a counter,
// which never makes the rate negative).
//
// An older summary is served at once while the recount runs in the
// background, so no page waits for a walk over every device but the very
// first of an organization.
func (s *Server) summary(ctx context.Context, org string) (*FleetSummary, error) {
	s.fleet.mu.Lock()
	prev := s.fleet.orgs[org]
	now := s.now()
	if prev == nil {
		s.fleet.mu.Unlock()
		return s.recount(ctx, org, nil, now)
	}
	if now.Sub(prev.At) >= fleetTTL && !s.fleet.counting[org] {
		s.fleet.counting[org] = true
		go func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if _, err := s.recount(cctx, org, prev, s.now()); err != nil {
				s.log.Warn("console: fleet overview not recounted", "org", org, "err", err)
			}
			s.fleet.mu.Lock()
			delete(s.fleet.counting, org)
			s.fleet.mu.Unlock()
		}()
	}
	s.fleet.mu.Unlock()
	return prev, nil
}

// recount walks org's devices and stores a new summary; prev (may be nil)
// gives the message rates and sparklines their history.
func (s *Server) recount(ctx context.Context, org string, prev *FleetSummary, now time.Time) (*FleetSummary, error) {
	sites, err := s.deps.Registry.ListSites(ctx, org)
	if err != nil {
		return nil, err
	}
	cur := &FleetSummary{At: now, Templates: map[string]int{}}
	bySite := map[string]*SiteStats{}
	for _, st := range sites {
		ss := &SiteStats{ID: st.ID, Name: st.Name}
		bySite[st.ID] = ss
		cur.Sites = append(cur.Sites, ss)
	}
	after := ""
	for {
		devs, next, err := s.deps.Registry.ListDevices(ctx, org, registry.DeviceFilter{Limit: registry.MaxPageSize, After: after})
		if err != nil {
			return nil, err
		}
		for i := range devs {
			d := &devs[i]
			ss := bySite[d.Site]
			if ss == nil {
				ss = &SiteStats{ID: d.Site, Name: "(no site)"}
				if d.Site != "" {
					ss.Name = d.Site
				}
				bySite[d.Site] = ss
				cur.Sites = append(cur.Sites, ss)
			}
			ss.Total++
			cur.Total++
			if d.Template != "" {
				cur.Templates[d.Template]++
			}
			if d.Disabled {
				ss.Disabled++
			}
			if d.ErrorCount > 0 {
				ss.Errors++
			}
			if s.deps.Presence != nil {
				if n, ok := s.deps.Presence.DeviceMessages(d.ID); ok {
					ss.Connected++
					cur.Connected++
					ss.msgs += n
				}
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	sort.Slice(cur.Sites, func(i, j int) bool { return cur.Sites[i].ID < cur.Sites[j].ID })
	if prev != nil {
		dt := now.Sub(prev.At).Seconds()
		old := map[string]*SiteStats{}
		for _, p := range prev.Sites {
			old[p.ID] = p
		}
		for _, ss := range cur.Sites {
			p := old[ss.ID]
			if p == nil {
				continue
			}
			if ss.msgs > p.msgs && dt > 0 && dt < 60 {
				ss.Rate = float64(ss.msgs-p.msgs) / dt
			}
			ss.RateSpark = appendSpark(p.RateSpark, ss.Rate)
			ss.ConnSpark = appendSpark(p.ConnSpark, float64(ss.Connected))
			cur.Rate += ss.Rate
		}
	}
	for _, ss := range cur.Sites {
		if ss.ConnSpark == nil {
			ss.ConnSpark = []float64{float64(ss.Connected)}
			ss.RateSpark = []float64{0}
		}
	}
	s.fleet.mu.Lock()
	s.fleet.orgs[org] = cur
	s.fleet.mu.Unlock()
	return cur, nil
}

func appendSpark(old []float64, v float64) []float64 {
	out := make([]float64, 0, sparkPoints)
	if len(old) >= sparkPoints {
		old = old[len(old)-sparkPoints+1:]
	}
	return append(append(out, old...), v)
}

// overviewData is the fleet overview page.
type overviewData struct {
	Fleet       *FleetSummary
	Alerts      []Alert
	AlertsOn    bool
	BySeverity  []sevCount
	HasPresence bool
	AlertsErr   string
}

type sevCount struct {
	Severity string
	N        int
}

func (s *Server) overviewData(r *http.Request) (overviewData, error) {
	v := viewerOf(r)
	f, err := s.summary(r.Context(), v.org)
	if err != nil {
		return overviewData{}, err
	}
	d := overviewData{Fleet: f, HasPresence: s.deps.Presence != nil, AlertsOn: s.deps.Alerts != nil}
	if s.deps.Alerts != nil {
		as, err := s.deps.Alerts.Recent(r.Context(), v.org, "", 200)
		if err != nil {
			d.AlertsErr = "The alerts could not be read: " + err.Error()
		}
		counts := map[string]int{}
		for _, a := range as {
			if a.State != "resolved" {
				counts[a.Severity]++
			}
		}
		for _, sev := range []string{"critical", "major", "minor", "warning", "info"} {
			d.BySeverity = append(d.BySeverity, sevCount{sev, counts[sev]})
		}
		if len(as) > 20 {
			as = as[:20]
		}
		d.Alerts = as
	}
	return d, nil
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		s.problem(w, r, http.StatusNotFound, "There is no console page "+r.URL.Path+". Use the menu to find your way.")
		return
	}
	d, err := s.overviewData(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", d)
}

// overviewFragment is the live part of the overview that htmx polls.
func (s *Server) overviewFragment(w http.ResponseWriter, r *http.Request) {
	d, err := s.overviewData(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.renderAs(w, r, http.StatusOK, "overview", "fleet", d)
}
