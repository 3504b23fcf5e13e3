package sdcoretest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity/sdcore"
)

// Options shape a Fake.
type Options struct {
	// User and Password turn authentication on: every route but /login
	// then wants "Authorization: Bearer <token>" from POST /login.
	User, Password string
	// TokenTTL is how long a token lasts (default an hour, as upstream).
	TokenTTL time.Duration
	// Legacy models a web console before v2.1.1: a device group holds one
	// "ip-domain-expanded" and "ip-domains" is ignored, and a subscriber's
	// PUT reads SubsData (AuthenticationSubscription). Otherwise it is the
	// 3.0 line.
	Legacy bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Fake is an SD-Core web console in memory. It is safe for concurrent use.
type Fake struct {
	opt Options
	mux *http.ServeMux

	mu       sync.Mutex
	tokens   map[string]time.Time
	subs     map[string]sdcore.Subscriber // by ueId (imsi-…)
	groups   map[string]sdcore.DeviceGroup
	slices   map[string]sdcore.Slice
	requests int
	writes   []string
	logins   int
	refused  []string
}

// New returns an empty web console.
func New(opt Options) *Fake {
	if opt.TokenTTL <= 0 {
		opt.TokenTTL = time.Hour
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	f := &Fake{opt: opt, mux: http.NewServeMux(), tokens: map[string]time.Time{},
		subs: map[string]sdcore.Subscriber{}, groups: map[string]sdcore.DeviceGroup{}, slices: map[string]sdcore.Slice{}}
	f.mux.HandleFunc("POST /login", f.login)
	f.mux.HandleFunc("GET /api/subscriber", f.authed(f.listSubs))
	f.mux.HandleFunc("GET /api/subscriber/{ueId}", f.authed(f.getSub))
	f.mux.HandleFunc("POST /api/subscriber/{ueId}", f.authed(f.postSub))
	f.mux.HandleFunc("PUT /api/subscriber/{ueId}", f.authed(f.putSub))
	f.mux.HandleFunc("DELETE /api/subscriber/{ueId}", f.authed(f.deleteSub))
	f.mux.HandleFunc("GET /config/v1/device-group", f.authed(listOf(f, func() map[string]sdcore.DeviceGroup { return f.groups })))
	f.mux.HandleFunc("GET /config/v1/device-group/{name}", f.authed(getOne(f, func() map[string]sdcore.DeviceGroup { return f.groups })))
	f.mux.HandleFunc("POST /config/v1/device-group/{name}", f.authed(f.putGroup))
	f.mux.HandleFunc("PUT /config/v1/device-group/{name}", f.authed(f.putGroup))
	f.mux.HandleFunc("DELETE /config/v1/device-group/{name}", f.authed(f.deleteGroup))
	f.mux.HandleFunc("GET /config/v1/network-slice", f.authed(listOf(f, func() map[string]sdcore.Slice { return f.slices })))
	f.mux.HandleFunc("GET /config/v1/network-slice/{name}", f.authed(getOne(f, func() map[string]sdcore.Slice { return f.slices })))
	f.mux.HandleFunc("POST /config/v1/network-slice/{name}", f.authed(f.putSlice))
	f.mux.HandleFunc("PUT /config/v1/network-slice/{name}", f.authed(f.putSlice))
	f.mux.HandleFunc("DELETE /config/v1/network-slice/{name}", f.authed(f.deleteSlice))
	return f
}

// ServeHTTP serves the web console's API.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	if r.Method != http.MethodGet && r.URL.Path != "/login" {
		f.writes = append(f.writes, r.Method+" "+r.URL.Path)
	}
	f.mu.Unlock()
	rec := &statusWriter{ResponseWriter: w}
	f.mux.ServeHTTP(rec, r)
	// A 401 to a request carrying an expired token is how the real core
	// tells the client to log in again; it is not a refused configuration.
	if rec.status >= 400 && !(rec.status == http.StatusUnauthorized && r.URL.Path != "/login" && r.Header.Get("Authorization") != "") {
		f.mu.Lock()
		f.refused = append(f.refused, fmt.Sprintf("%s %s: %d %s", r.Method, r.URL.Path, rec.status, strings.TrimSpace(rec.body.String())))
		f.mu.Unlock()
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	body   strings.Builder
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status >= 400 && s.body.Len() < 512 {
		s.body.Write(b)
	}
	return s.ResponseWriter.Write(b)
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	reply(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (f *Fake) login(w http.ResponseWriter, r *http.Request) {
	var req sdcore.LoginRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "Invalid data provided")
		return
	}
	switch {
	case req.Username == "":
		fail(w, http.StatusBadRequest, "Username is required")
		return
	case req.Password == "":
		fail(w, http.StatusBadRequest, "Password is required")
		return
	case f.opt.User == "" || req.Username != f.opt.User || req.Password != f.opt.Password:
		fail(w, http.StatusUnauthorized, "The username or the password is incorrect. Try again.")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	f.mu.Lock()
	f.tokens[tok] = f.opt.Now().Add(f.opt.TokenTTL)
	f.logins++
	f.mu.Unlock()
	reply(w, http.StatusOK, sdcore.LoginResponse{Token: tok})
}

func (f *Fake) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if f.opt.User != "" {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			f.mu.Lock()
			exp, known := f.tokens[tok]
			f.mu.Unlock()
			if !ok || !known || !f.opt.Now().Before(exp) {
				fail(w, http.StatusUnauthorized, "Auth failed: the token is missing, invalid or expired")
				return
			}
		}
		h(w, r)
	}
}

// decode binds a JSON body the way gin's ShouldBindJSON does.
func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	if ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]); ct != "application/json" {
		fail(w, http.StatusBadRequest, "unsupported content-type: %s", ct)
		return false
	}
	if err := json.NewDecoder(r.Body).Decode(dst); err != nil {
		fail(w, http.StatusBadRequest, "Invalid request body: failed to parse JSON.")
		return false
	}
	return true
}

func (f *Fake) listSubs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	out := []sdcore.SubscriberListItem{}
	for id, s := range f.subs {
		out = append(out, sdcore.SubscriberListItem{UEID: id, PLMNID: s.PLMNID})
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UEID < out[j].UEID })
	reply(w, http.StatusOK, out)
}

func (f *Fake) getSub(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("ueId")
	f.mu.Lock()
	s, ok := f.subs[id]
	f.mu.Unlock()
	if !ok {
		fail(w, http.StatusNotFound, "subscriber with ID %s not found", id)
		return
	}
	reply(w, http.StatusOK, sdcore.SubscriberData{UEID: id, Auth: sdcore.AuthData{
		PermanentKey: &sdcore.PermanentKey{Value: s.Key}, OPc: &sdcore.OPc{Value: s.OPc}, SequenceNumber: s.SequenceNumber}})
}

func (f *Fake) postSub(w http.ResponseWriter, r *http.Request) {
	var s sdcore.Subscriber
	if !decode(w, r, &s) {
		return
	}
	id := r.PathValue("ueId")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[id]; ok {
		fail(w, http.StatusConflict, "subscriber %s already exists", id)
		return
	}
	if err := sdcore.ValidateSubscriber(s); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	f.subs[id] = s
	reply(w, http.StatusCreated, map[string]any{})
}

func (f *Fake) putSub(w http.ResponseWriter, r *http.Request) {
	var u sdcore.SubscriberUpdate
	if !decode(w, r, &u) {
		return
	}
	s := u.Subscriber
	if f.opt.Legacy {
		// Before the 3.0 handlers, PUT bound SubsData: the keys come from
		// AuthenticationSubscription and the flat fields are ignored.
		s = sdcore.Subscriber{PLMNID: u.PLMNID, SequenceNumber: u.Auth.SequenceNumber}
		if u.Auth.PermanentKey != nil {
			s.Key = u.Auth.PermanentKey.Value
		}
		if u.Auth.OPc != nil {
			s.OPc = u.Auth.OPc.Value
		}
	}
	id := r.PathValue("ueId")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[id]; !ok {
		fail(w, http.StatusNotFound, "subscriber %s does not exist", id)
		return
	}
	if err := sdcore.ValidateSubscriber(s); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	f.subs[id] = s
	w.WriteHeader(http.StatusNoContent)
}

// deleteSub also takes the IMSI out of every device group, as upstream
// does (updateSubscriberInDeviceGroups).
func (f *Fake) deleteSub(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("ueId")
	imsi := strings.TrimPrefix(id, "imsi-")
	f.mu.Lock()
	delete(f.subs, id)
	for n, g := range f.groups {
		if i := slices.Index(g.IMSIs, imsi); i >= 0 {
			g.IMSIs = slices.Delete(slices.Clone(g.IMSIs), i, i+1)
			f.groups[n] = g
		}
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func names[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// listOf answers GET of a collection: its names, sorted.
func listOf[V any](f *Fake, coll func() map[string]V) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		out := names(coll())
		f.mu.Unlock()
		reply(w, http.StatusOK, out)
	}
}

// getOne answers GET of one object: 404 with a null body when missing,
// as upstream.
func getOne[V any](f *Fake, coll func() map[string]V) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		v, ok := coll()[r.PathValue("name")]
		f.mu.Unlock()
		if !ok {
			reply(w, http.StatusNotFound, nil)
			return
		}
		reply(w, http.StatusOK, v)
	}
}

func (f *Fake) putGroup(w http.ResponseWriter, r *http.Request) {
	var g sdcore.DeviceGroup
	if !decode(w, r, &g) {
		return
	}
	name := r.PathValue("name")
	// The field this version does not know is dropped, as Go's JSON
	// binding drops unknown fields.
	if f.opt.Legacy {
		g.IPDomains = nil
	} else {
		g.IPDomainExpanded = nil
	}
	if err := sdcore.ValidateDeviceGroup(name, g); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	norm := func(d *sdcore.IPDomain) {
		if q := d.QoS; q != nil {
			q.Uplink, q.Downlink = sdcore.ToBps(q.Uplink, q.BitrateUnit), sdcore.ToBps(q.Downlink, q.BitrateUnit)
		}
	}
	for i := range g.IPDomains {
		norm(&g.IPDomains[i])
	}
	if g.IPDomainExpanded != nil {
		norm(g.IPDomainExpanded)
	}
	g.Name = name
	f.mu.Lock()
	f.groups[name] = g
	f.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{})
}

func (f *Fake) deleteGroup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f.mu.Lock()
	delete(f.groups, name)
	// Upstream takes the group out of the slices that name it.
	for n, s := range f.slices {
		if i := slices.Index(s.DeviceGroups, name); i >= 0 {
			s.DeviceGroups = slices.Delete(slices.Clone(s.DeviceGroups), i, i+1)
			f.slices[n] = s
		}
	}
	f.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{})
}

func toInt32(v int64) int32 {
	if v < 0 || v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(v)
}

func (f *Fake) putSlice(w http.ResponseWriter, r *http.Request) {
	var s sdcore.Slice
	if !decode(w, r, &s) {
		return
	}
	name := r.PathValue("name")
	if err := sdcore.ValidateSlice(name, s); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	// As upstream: device groups sorted and deduplicated, rule bitrates
	// converted to bit/s and capped at 32 bits (the unit is kept).
	s.DeviceGroups = slices.Compact(slices.Sorted(slices.Values(s.DeviceGroups)))
	for i := range s.Rules {
		ru := &s.Rules[i]
		ru.MBRUplink = toInt32(sdcore.ToBps(int64(ru.MBRUplink), ru.BitrateUnit))
		ru.MBRDownlink = toInt32(sdcore.ToBps(int64(ru.MBRDownlink), ru.BitrateUnit))
	}
	s.Name = name
	f.mu.Lock()
	f.slices[name] = s
	f.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{})
}

func (f *Fake) deleteSlice(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	delete(f.slices, r.PathValue("name"))
	f.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{})
}

// Stats counts what the core was sent.
type Stats struct {
	Requests int      // every request, logins included
	Writes   []string // POST, PUT and DELETE but logins, as "METHOD path"
	Logins   int      // successful logins
	Refused  []string // every answer of 400 or more, but 401 to an expired token
}

// Stats returns the counts so far.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Requests: f.requests, Writes: slices.Clone(f.writes), Logins: f.logins, Refused: slices.Clone(f.refused)}
}

// Subscribers returns the subscribers by IMSI.
func (f *Fake) Subscribers() map[string]sdcore.Subscriber {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]sdcore.Subscriber{}
	for id, s := range f.subs {
		out[strings.TrimPrefix(id, "imsi-")] = s
	}
	return out
}

// DeviceGroups returns the device groups by name.
func (f *Fake) DeviceGroups() map[string]sdcore.DeviceGroup {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.groups)
}

// Slices returns the slices by name.
func (f *Fake) Slices() map[string]sdcore.Slice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.slices)
}

// SetSubscriberKey changes a subscriber's Ki behind the client's back, as
// an operator on the core's own console would.
func (f *Fake) SetSubscriberKey(imsi, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.subs["imsi-"+imsi]; ok {
		s.Key = key
		f.subs["imsi-"+imsi] = s
	}
}

// DropDeviceGroup deletes a device group behind the client's back.
func (f *Fake) DropDeviceGroup(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.groups, name)
}

// ExpireTokens ends every session, as an hour passing would.
func (f *Fake) ExpireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]time.Time{}
}
