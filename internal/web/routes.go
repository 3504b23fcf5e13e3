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
	m.HandleFunc("POST /templates/import", s.edit(s.templateImport))
	m.HandleFunc("GET /templates/{id}", s.authed(s.templateDetail))
	m.HandleFunc("GET /templates/{id}/export", s.authed(s.templateExport))
	m.HandleFunc("POST /templates/{id}", s.edit(s.templateSave))
	m.HandleFunc("POST /templates/{id}/delete", s.edit(s.templateDelete))
	m.HandleFunc("GET /rules", s.authed(s.rules))
	// Validation and dry runs change nothing, so viewers may use them too.
	m.HandleFunc("POST /rules/validate", s.authed(s.ruleValidate))
	m.HandleFunc("POST /rules/dry-run", s.authed(s.ruleDryRun))
	m.HandleFunc("POST /rules", s.edit(s.ruleSave))
	m.HandleFunc("POST /rules/{id}", s.edit(s.ruleSave))
	m.HandleFunc("POST /rules/{id}/delete", s.edit(s.ruleDelete))
	m.HandleFunc("GET /alerts/{id}", s.authed(s.alertDetail))
	m.HandleFunc("POST /alerts/{id}/{action}", s.edit(s.alertAct))
	m.HandleFunc("GET /connectivity", s.authed(s.connectivity))
	m.HandleFunc("GET /audit", s.authed(s.auditLog))
	m.HandleFunc("GET /account", s.authed(s.account))
	m.HandleFunc("POST /account/password", s.authed(s.changePassword))
	m.HandleFunc("GET /users", s.admin(s.usersPage))
	m.HandleFunc("POST /users", s.admin(s.userCreate))
	m.HandleFunc("POST /users/{id}/delete", s.admin(s.userDelete))
	m.HandleFunc("/", s.authed(s.overview)) // 404 page for unknown paths
	s.mux = m
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
		groups, err := s.deps.Connectivity.DeviceGroups(r.Context(), org)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		slices, err := s.deps.Connectivity.Slices(r.Context(), org)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		core, err := s.deps.Connectivity.Core(r.Context(), org)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d["SIMs"], d["Groups"], d["Slices"], d["Core"] = sims, groups, slices, core
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
