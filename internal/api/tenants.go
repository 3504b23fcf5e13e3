package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Routes for organizations, tokens, sites, enrollment groups and CA
// certificates: the tenant's administration.

// exampleTime is the timestamp used in documented examples.
var exampleTime = time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC)

// listBody is the shape of every list response.
type listBody[T any] struct {
	Items []T `json:"items"`
}

func listOf[T any](items []T) listBody[T] {
	if items == nil {
		items = []T{}
	}
	return listBody[T]{Items: items}
}

var idParam = map[string]string{"id": "id"}

type createOrgRequest struct {
	ID            string `json:"id,omitempty"`
	Name          string `json:"name"`
	RetentionDays int    `json:"retentionDays,omitempty"`
}

type patchOrgRequest struct {
	RetentionDays *int `json:"retentionDays"`
}

type createTokenRequest struct {
	Name string        `json:"name"`
	Role registry.Role `json:"role"`
}

type createSiteRequest struct {
	ID   string            `json:"id,omitempty"`
	Name string            `json:"name"`
	Tags map[string]string `json:"tags,omitempty"`
}

type createGroupRequest struct {
	ID           string            `json:"id,omitempty"`
	Site         string            `json:"site,omitempty"`
	Template     string            `json:"template,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	PrimaryKey   string            `json:"primaryKey,omitempty"`
	SecondaryKey string            `json:"secondaryKey,omitempty"`
	Disabled     bool              `json:"disabled,omitempty"`
}

type createCACertRequest struct {
	ID           string `json:"id,omitempty"`
	Name         string `json:"name"`
	PEM          string `json:"pem"`
	AutoRegister bool   `json:"autoRegister,omitempty"`
	Site         string `json:"site,omitempty"`
}

var (
	exampleOrg   = registry.Org{ID: "acme", Name: "ACME Manufacturing", Parent: "operator", RetentionDays: 30, CreatedAt: exampleTime}
	exampleTok   = registry.Token{ID: "tok_4f1c2a", Org: "acme", Name: "line-3 dashboard", Role: registry.RoleViewer, CreatedAt: exampleTime}
	exampleSite  = registry.Site{ID: "plant-north", Org: "acme", Name: "Plant North", Tags: map[string]string{"country": "DE"}, CreatedAt: exampleTime}
	exampleGroup = registry.EnrollmentGroup{ID: "presses", Org: "acme", Site: "plant-north", Template: "press",
		PrimaryKey: "q2V5Zm9yZ3JvdXBwcmVzc2VzMDEyMzQ1Njc4OTAxMjM=", SecondaryKey: "c2Vjb25kYXJ5a2V5Zm9yZ3JvdXBwcmVzc2VzMDEyMzQ=", CreatedAt: exampleTime}
	exampleCA = registry.CACert{ID: "plant-ca", Org: "acme", Name: "Plant North device CA",
		PEM:        "-----BEGIN CERTIFICATE-----\nMIIBdTCCARugAwIBAgIUQ…\n-----END CERTIFICATE-----\n",
		Thumbprint: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", AutoRegister: true, Site: "plant-north", CreatedAt: exampleTime}
)

func (s *Server) tenantRoutes() {
	// Organizations.
	s.add(&route{Method: "POST", Pattern: "/api/v1/orgs", ID: "createOrg", Tag: "orgs", Role: registry.RoleAdmin,
		Summary:   "Create a customer organization (admins of the operator organization only)",
		Request:   &content{Schema: ref("CreateOrg"), Example: createOrgRequest{ID: "acme", Name: "ACME Manufacturing", RetentionDays: 30}},
		Responses: []response{{Status: 201, Description: "created", Body: &content{Schema: ref("Org"), Example: exampleOrg}}},
		Errors:    []int{409}, handle: s.createOrg})
	s.add(&route{Method: "GET", Pattern: "/api/v1/orgs", ID: "listOrgs", Tag: "orgs", Role: registry.RoleViewer,
		Summary:   "List the organization the request acts on and its customer organizations",
		Responses: []response{{Status: 200, Description: "organizations", Body: &content{Schema: ref("OrgList"), Example: listOf([]registry.Org{exampleOrg})}}},
		handle:    s.listOrgs})
	s.add(&route{Method: "GET", Pattern: "/api/v1/orgs/{id}", ID: "getOrg", Tag: "orgs", Role: registry.RoleViewer,
		Summary: "Get an organization", PathParams: map[string]string{"id": "organization id"},
		Responses: []response{{Status: 200, Description: "the organization", Body: &content{Schema: ref("Org"), Example: exampleOrg}}},
		handle:    s.getOrg})
	s.add(&route{Method: "PATCH", Pattern: "/api/v1/orgs/{id}", ID: "updateOrg", Tag: "orgs", Role: registry.RoleAdmin,
		Summary: "Change an organization's telemetry retention (admins of the operator organization only)", PathParams: map[string]string{"id": "organization id"},
		Request:   &content{Schema: ref("PatchOrg"), Example: map[string]int{"retentionDays": 90}},
		Responses: []response{{Status: 200, Description: "the updated organization", Body: &content{Schema: ref("Org"), Example: exampleOrg}}},
		handle:    s.patchOrg})

	// Tokens.
	created := exampleTok
	created.Secret = "sft_8Jw2kQ0xZr5TQm1bYc7vHn3pLd9sAe4u"
	s.add(&route{Method: "POST", Pattern: "/api/v1/tokens", ID: "createToken", Tag: "tokens", Role: registry.RoleAdmin,
		Summary:   "Create an API token; its secret is in this response only",
		Request:   &content{Schema: ref("CreateToken"), Example: createTokenRequest{Name: "line-3 dashboard", Role: registry.RoleViewer}},
		Responses: []response{{Status: 201, Description: "created", Body: &content{Schema: ref("Token"), Example: created}}},
		handle:    s.createToken})
	s.add(&route{Method: "GET", Pattern: "/api/v1/tokens", ID: "listTokens", Tag: "tokens", Role: registry.RoleAdmin,
		Summary:   "List the organization's API tokens (without secrets)",
		Responses: []response{{Status: 200, Description: "tokens", Body: &content{Schema: ref("TokenList"), Example: listOf([]registry.Token{exampleTok})}}},
		handle:    s.listTokens})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/tokens/{id}", ID: "deleteToken", Tag: "tokens", Role: registry.RoleAdmin,
		Summary: "Delete an API token; it stops working at once", PathParams: map[string]string{"id": "token id"},
		Responses: []response{{Status: 204, Description: "deleted"}}, handle: s.deleteToken})

	// Sites.
	s.add(&route{Method: "POST", Pattern: "/api/v1/sites", ID: "createSite", Tag: "sites", Role: registry.RoleOperator,
		Summary:   "Create a site",
		Request:   &content{Schema: ref("CreateSite"), Example: createSiteRequest{ID: "plant-north", Name: "Plant North", Tags: map[string]string{"country": "DE"}}},
		Responses: []response{{Status: 201, Description: "created", Body: &content{Schema: ref("Site"), Example: exampleSite}}},
		Errors:    []int{409}, handle: s.createSite})
	s.add(&route{Method: "GET", Pattern: "/api/v1/sites", ID: "listSites", Tag: "sites", Role: registry.RoleViewer,
		Summary:   "List sites",
		Responses: []response{{Status: 200, Description: "sites", Body: &content{Schema: ref("SiteList"), Example: listOf([]registry.Site{exampleSite})}}},
		handle:    s.listSites})
	s.add(&route{Method: "GET", Pattern: "/api/v1/sites/{id}", ID: "getSite", Tag: "sites", Role: registry.RoleViewer,
		Summary: "Get a site", PathParams: map[string]string{"id": "site id"},
		Responses: []response{{Status: 200, Description: "the site", Body: &content{Schema: ref("Site"), Example: exampleSite}}},
		handle:    s.getSite})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/sites/{id}", ID: "deleteSite", Tag: "sites", Role: registry.RoleOperator,
		Summary: "Delete a site that no device references", PathParams: map[string]string{"id": "site id"},
		Responses: []response{{Status: 204, Description: "deleted"}}, Errors: []int{409}, handle: s.deleteSite})

	// Enrollment groups.
	s.add(&route{Method: "POST", Pattern: "/api/v1/enrollment-groups", ID: "createEnrollmentGroup", Tag: "provisioning", Role: registry.RoleAdmin,
		Summary:   "Create an enrollment group: unknown devices register on first connect with a key derived from the group key",
		Request:   &content{Schema: ref("CreateEnrollmentGroup"), Example: createGroupRequest{ID: "presses", Site: "plant-north", Template: "press"}},
		Responses: []response{{Status: 201, Description: "created, with its keys", Body: &content{Schema: ref("EnrollmentGroup"), Example: exampleGroup}}},
		Errors:    []int{409}, handle: s.createGroup})
	s.add(&route{Method: "GET", Pattern: "/api/v1/enrollment-groups", ID: "listEnrollmentGroups", Tag: "provisioning", Role: registry.RoleViewer,
		Summary:   "List enrollment groups (keys shown to admins only)",
		Responses: []response{{Status: 200, Description: "groups", Body: &content{Schema: ref("EnrollmentGroupList"), Example: listOf([]registry.EnrollmentGroup{exampleGroup})}}},
		handle:    s.listGroups})
	s.add(&route{Method: "GET", Pattern: "/api/v1/enrollment-groups/{id}", ID: "getEnrollmentGroup", Tag: "provisioning", Role: registry.RoleViewer,
		Summary: "Get an enrollment group (keys shown to admins only)", PathParams: map[string]string{"id": "group id"},
		Responses: []response{{Status: 200, Description: "the group", Body: &content{Schema: ref("EnrollmentGroup"), Example: exampleGroup}}},
		handle:    s.getGroup})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/enrollment-groups/{id}", ID: "deleteEnrollmentGroup", Tag: "provisioning", Role: registry.RoleAdmin,
		Summary: "Delete an enrollment group; devices it registered stay", PathParams: map[string]string{"id": "group id"},
		Responses: []response{{Status: 204, Description: "deleted"}}, handle: s.deleteGroup})

	// CA certificates.
	s.add(&route{Method: "POST", Pattern: "/api/v1/ca-certs", ID: "createCACert", Tag: "provisioning", Role: registry.RoleAdmin,
		Summary:   "Register a CA certificate whose issued client certificates authenticate devices",
		Request:   &content{Schema: ref("CreateCACert"), Example: createCACertRequest{ID: "plant-ca", Name: "Plant North device CA", PEM: exampleCA.PEM, AutoRegister: true, Site: "plant-north"}},
		Responses: []response{{Status: 201, Description: "registered", Body: &content{Schema: ref("CACert"), Example: exampleCA}}},
		Errors:    []int{409}, handle: s.createCACert})
	s.add(&route{Method: "GET", Pattern: "/api/v1/ca-certs", ID: "listCACerts", Tag: "provisioning", Role: registry.RoleViewer,
		Summary:   "List CA certificates",
		Responses: []response{{Status: 200, Description: "CA certificates", Body: &content{Schema: ref("CACertList"), Example: listOf([]registry.CACert{exampleCA})}}},
		handle:    s.listCACerts})
	s.add(&route{Method: "DELETE", Pattern: "/api/v1/ca-certs/{id}", ID: "deleteCACert", Tag: "provisioning", Role: registry.RoleAdmin,
		Summary: "Delete a CA certificate; devices it authenticated can no longer connect", PathParams: map[string]string{"id": "CA certificate id"},
		Responses: []response{{Status: 204, Description: "deleted"}}, handle: s.deleteCACert})
}

func (s *Server) createOrg(w http.ResponseWriter, r *http.Request) error {
	var req createOrgRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	p := principalOf(r)
	if !p.Operator {
		return &httpError{Status: http.StatusForbidden, Code: "forbidden",
			Message: "only an admin of the operator organization creates organizations; ask your provider"}
	}
	if orgOf(r) != p.Org {
		return invalid("customer organizations cannot have organizations of their own; create it without ?org= or %s", OrgHeader)
	}
	if strings.TrimSpace(req.Name) == "" {
		return invalid("field \"name\" is required: the organization's display name")
	}
	if req.RetentionDays < 0 {
		return invalid("field \"retentionDays\" must be at least 1, not %d", req.RetentionDays)
	}
	o, err := s.deps.Registry.CreateOrg(r.Context(), p.Org, registry.Org{ID: req.ID, Name: req.Name, RetentionDays: req.RetentionDays})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, o)
	return nil
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) error {
	org := orgOf(r)
	self, err := s.deps.Registry.GetOrg(r.Context(), org)
	if err != nil {
		return err
	}
	children, err := s.deps.Registry.ListOrgs(r.Context(), org)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(append([]registry.Org{self}, children...)))
	return nil
}

// visibleOrg loads organization id if the caller may see it; 404 otherwise.
func (s *Server) visibleOrg(r *http.Request, id string) (registry.Org, error) {
	o, err := s.deps.Registry.GetOrg(r.Context(), id)
	if errors.Is(err, registry.ErrNotFound) || (err == nil && !canSeeOrg(principalOf(r), o)) {
		return registry.Org{}, notFound("organization %q not found", id)
	}
	return o, err
}

func (s *Server) getOrg(w http.ResponseWriter, r *http.Request) error {
	o, err := s.visibleOrg(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) patchOrg(w http.ResponseWriter, r *http.Request) error {
	var req patchOrgRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := s.visibleOrg(r, id); err != nil {
		return err
	}
	if !principalOf(r).Operator {
		return &httpError{Status: http.StatusForbidden, Code: "forbidden",
			Message: "only an admin of the operator organization changes retention; ask your provider"}
	}
	if req.RetentionDays == nil {
		return invalid("field \"retentionDays\" is required: the number of days telemetry is kept")
	}
	if *req.RetentionDays < 1 {
		return invalid("field \"retentionDays\" must be at least 1, not %d", *req.RetentionDays)
	}
	o, err := s.deps.Registry.SetRetention(r.Context(), id, *req.RetentionDays)
	if err != nil {
		return err
	}
	if s.deps.RetentionChanged != nil {
		s.deps.RetentionChanged(o.ID, time.Duration(o.RetentionDays)*24*time.Hour)
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req createTokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return invalid("field \"name\" is required: say what the token is for")
	}
	if roleRank(req.Role) == 0 {
		return invalid("field \"role\" must be viewer, operator or admin, not %q", req.Role)
	}
	t, err := s.deps.Registry.CreateToken(r.Context(), orgOf(r), req.Name, req.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.deps.Registry.ListTokens(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	for i := range ts {
		ts[i].Secret = ""
	}
	writeJSON(w, http.StatusOK, listOf(ts))
	return nil
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	if err := s.deps.Registry.DeleteToken(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) createSite(w http.ResponseWriter, r *http.Request) error {
	var req createSiteRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return invalid("field \"name\" is required: the site's display name")
	}
	site, err := s.deps.Registry.CreateSite(r.Context(), orgOf(r), registry.Site{ID: req.ID, Name: req.Name, Tags: req.Tags})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, site)
	return nil
}

func (s *Server) listSites(w http.ResponseWriter, r *http.Request) error {
	sites, err := s.deps.Registry.ListSites(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(sites))
	return nil
}

func (s *Server) getSite(w http.ResponseWriter, r *http.Request) error {
	site, err := s.deps.Registry.GetSite(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, site)
	return nil
}

func (s *Server) deleteSite(w http.ResponseWriter, r *http.Request) error {
	if err := s.deps.Registry.DeleteSite(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// groupView hides an enrollment group's keys from non-admins: the group key
// derives every member device's key.
func groupView(r *http.Request, g registry.EnrollmentGroup) registry.EnrollmentGroup {
	if !hasRole(principalOf(r), registry.RoleAdmin) {
		g.PrimaryKey, g.SecondaryKey = "", ""
	}
	return g
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req createGroupRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	g, err := s.deps.Registry.CreateEnrollmentGroup(r.Context(), orgOf(r), registry.EnrollmentGroup{
		ID: req.ID, Site: req.Site, Template: req.Template, Tags: req.Tags,
		PrimaryKey: req.PrimaryKey, SecondaryKey: req.SecondaryKey, Disabled: req.Disabled,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := s.deps.Registry.ListEnrollmentGroups(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	for i := range gs {
		gs[i] = groupView(r, gs[i])
	}
	writeJSON(w, http.StatusOK, listOf(gs))
	return nil
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.deps.Registry.GetEnrollmentGroup(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, groupView(r, g))
	return nil
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.deps.Registry.DeleteEnrollmentGroup(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) createCACert(w http.ResponseWriter, r *http.Request) error {
	var req createCACertRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return invalid("field \"name\" is required: say which CA this is")
	}
	if strings.TrimSpace(req.PEM) == "" {
		return invalid("field \"pem\" is required: the CA certificate in PEM form (-----BEGIN CERTIFICATE-----…)")
	}
	c, err := s.deps.Registry.CreateCACert(r.Context(), orgOf(r), registry.CACert{
		ID: req.ID, Name: req.Name, PEM: req.PEM, AutoRegister: req.AutoRegister, Site: req.Site,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, c)
	return nil
}

func (s *Server) listCACerts(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.deps.Registry.ListCACerts(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(cs))
	return nil
}

func (s *Server) deleteCACert(w http.ResponseWriter, r *http.Request) error {
	if err := s.deps.Registry.DeleteCACert(r.Context(), orgOf(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
