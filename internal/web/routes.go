package web

import (
	"net/http"
	"sort"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", s.static())
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.authed(s.logout))
	m.HandleFunc("POST /org", s.authed(s.switchOrg))
	m.HandleFunc("GET /{$}", s.authed(s.overview))
	m.HandleFunc("GET /fragments/fleet", s.authed(s.overviewFragment))
	m.HandleFunc("GET /devices", s.authed(s.devices))
	m.HandleFunc("POST /devices/bulk", s.edit(s.bulk))
	m.HandleFunc("POST /devices/import", s.edit(s.importCSV))
	m.HandleFunc("GET /devices/{id}", s.authed(s.deviceDetail))
	m.HandleFunc("GET /devices/{id}/live", s.authed(s.liveStream))
	m.HandleFunc("POST /devices/{id}", s.edit(s.devicePatch))
	m.HandleFunc("POST /devices/{id}/connection-string", s.edit(s.connectionString))
	m.HandleFunc("POST /devices/{id}/keys/{which}/rotate", s.edit(s.rotate))
	m.HandleFunc("POST /devices/{id}/twin", s.edit(s.twinPatch))
	m.HandleFunc("POST /devices/{id}/methods", s.edit(s.invoke))
	m.HandleFunc("POST /devices/{id}/messages", s.edit(s.sendC2D))
	m.HandleFunc("GET /dashboards", s.authed(s.dashboards))
	m.HandleFunc("POST /dashboards", s.edit(s.dashboardCreate))
	m.HandleFunc("POST /dashboards/{id}/tiles", s.edit(s.tileAdd))
	m.HandleFunc("POST /dashboards/{id}/tiles/{tile}/delete", s.edit(s.tileDelete))
	m.HandleFunc("POST /dashboards/{id}/delete", s.edit(s.dashboardDelete))
	m.HandleFunc("GET /templates", s.authed(s.templates))
	m.HandleFunc("GET /rules", s.authed(s.rules))
	m.HandleFunc("GET /connectivity", s.authed(s.connectivity))
	m.HandleFunc("/", s.authed(s.overview)) // 404 page for unknown paths
	s.mux = m
}

type templateRow struct {
	Name    string
	Devices int
}

// templates lists the device templates in use. The registry has no template
// objects yet; a template is the name devices carry.
func (s *Server) templates(w http.ResponseWriter, r *http.Request) {
	f, err := s.summary(r.Context(), viewerOf(r).org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rows := make([]templateRow, 0, len(f.Templates))
	for n, c := range f.Templates {
		rows = append(rows, templateRow{n, c})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	s.render(w, r, http.StatusOK, "templates", rows)
}

func (s *Server) rules(w http.ResponseWriter, r *http.Request) {
	d := map[string]any{"AlertsOn": s.deps.Alerts != nil}
	if s.deps.Alerts != nil {
		as, err := s.deps.Alerts.Recent(r.Context(), viewerOf(r).org, "", 100)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d["Alerts"] = as
	}
	s.render(w, r, http.StatusOK, "rules", d)
}

func (s *Server) connectivity(w http.ResponseWriter, r *http.Request) {
	d := map[string]any{"On": s.deps.Connectivity != nil}
	if s.deps.Connectivity != nil {
		org := viewerOf(r).org
		sims, err := s.deps.Connectivity.SIMs(r.Context(), org, 200)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		slices, err := s.deps.Connectivity.Slices(r.Context(), org)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d["SIMs"], d["Slices"] = sims, slices
	}
	s.render(w, r, http.StatusOK, "connectivity", d)
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
