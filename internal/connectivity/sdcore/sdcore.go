package sdcore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// ErrRejected is returned when the web console answers with an error
// status. A 4xx about the object also wraps connectivity.ErrCoreRefused, a
// refused login connectivity.ErrCoreLogin.
var ErrRejected = errors.New("refused by the SD-Core web console")

// errNotFound is a 404, which the adapter handles itself.
var errNotFound = errors.New("not found in the SD-Core web console")

// DefaultSequenceNumber is the authentication sequence number given to a
// subscriber when it is created or its keys change, the value SD-Core's
// own examples use. The core moves it on with every attach.
const DefaultSequenceNumber = "16f3b3f70fc2"

// UPFPort is the PFCP port of the user plane.
const UPFPort = 8805

// Options configure a Client.
type Options struct {
	// User and Password log in at POST /login when the web console has
	// authentication enabled; empty sends no Authorization header.
	User, Password string
	// HTTP is the client to use; nil gets one with a 10 s timeout.
	HTTP   *http.Client
	Logger *slog.Logger
}

// Client talks to one web console. It implements connectivity.Core and
// connectivity.CoreReader.
type Client struct {
	base string
	opt  Options
	log  *slog.Logger

	mu    sync.Mutex
	token string
	// subs is which IMSIs the core holds, as last read (Snapshot) or
	// written: it decides between POST (create) and PUT (update) so
	// neither is refused.
	subs map[string]bool
}

var (
	_ connectivity.Core       = (*Client)(nil)
	_ connectivity.CoreReader = (*Client)(nil)
)

// New returns a client for the web console at baseURL (http://host:5000).
func New(baseURL string, opt Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SD-Core web console URL %q must look like http://host:5000", baseURL)
	}
	if (opt.User == "") != (opt.Password == "") {
		return nil, errors.New("the SD-Core user and password go together: set both or neither")
	}
	if opt.HTTP == nil {
		opt.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{base: u.String(), opt: opt, log: opt.Logger, subs: map[string]bool{}}, nil
}

// SubscriberPayload is the body of a subscriber's POST or PUT.
func SubscriberPayload(s connectivity.CoreSubscriber) Subscriber {
	return Subscriber{PLMNID: s.PLMN, OPc: strings.ToLower(s.OPc), Key: strings.ToLower(s.Ki), SequenceNumber: DefaultSequenceNumber}
}

// SubscriberUpdatePayload is the body of a subscriber's PUT, readable by
// the 3.0 line and by older releases alike.
func SubscriberUpdatePayload(s connectivity.CoreSubscriber) SubscriberUpdate {
	b := SubscriberPayload(s)
	return SubscriberUpdate{Subscriber: b, UEID: "imsi-" + s.IMSI, Auth: AuthData{
		PermanentKey: &PermanentKey{Value: b.Key}, OPc: &OPc{Value: b.OPc}, SequenceNumber: b.SequenceNumber,
		AuthenticationManagementField: "8000", AuthenticationMethod: "5G_AKA"}}
}

func trafficClass(c connectivity.TrafficClass) *TrafficClass {
	return &TrafficClass{Name: c.Name, QCI: int32(c.QCI), ARP: int32(c.ARP), PDB: int32(c.PDB), PELR: int32(c.PELR)}
}

// DeviceGroupPayload is the body of a device group: the IP domain goes
// both as "ip-domains" (v2.1.1 on) and as "ip-domain-expanded" (before).
func DeviceGroupPayload(g connectivity.CoreDeviceGroup) DeviceGroup {
	d := IPDomain{DNN: g.IPDomain.DNN, UEIPPool: g.IPDomain.Subnet, MTU: int32(g.IPDomain.MTU),
		QoS: &UEDNNQoS{Uplink: g.MBRUplink, Downlink: g.MBRDownlink, BitrateUnit: "bps", TrafficClass: trafficClass(g.TrafficClass)}}
	if len(g.IPDomain.DNS) > 0 {
		d.DNSPrimary = g.IPDomain.DNS[0]
	}
	if len(g.IPDomain.DNS) > 1 {
		d.DNSSecondary = g.IPDomain.DNS[1]
	}
	out := DeviceGroup{Name: g.Name, IMSIs: g.IMSIs, SiteInfo: g.Site, IPDomainName: g.Name + "-pool", IPDomains: []IPDomain{d}}
	legacy := d
	out.IPDomainExpanded = &legacy
	if out.IMSIs == nil {
		out.IMSIs = []string{}
	}
	return out
}

// SlicePayload is the body of a network slice.
func SlicePayload(s connectivity.CoreSlice) Slice {
	out := Slice{Name: s.Name, ID: SliceID{SST: strconv.Itoa(s.SST), SD: s.SD}, DeviceGroups: s.DeviceGroups,
		SiteInfo: SiteInfo{SiteName: s.Site, PLMN: PLMN{MCC: s.MCC, MNC: s.MNC}, GNodeBs: []GNodeB{}, UPF: UPF{Name: s.UPF, Port: UPFPort}},
		Rules:    []Rule{}}
	if out.DeviceGroups == nil {
		out.DeviceGroups = []string{}
	}
	for _, c := range s.Cells {
		out.SiteInfo.GNodeBs = append(out.SiteInfo.GNodeBs, GNodeB{Name: c.ID, TAC: int32(c.TAC)})
	}
	for _, r := range s.Rules {
		action := "deny"
		if r.Permit {
			action = "permit"
		}
		out.Rules = append(out.Rules, Rule{Name: r.Name, Priority: int32(r.Priority), Action: action, Endpoint: r.Prefix,
			Protocol: int32(r.Protocol), PortStart: int32(r.PortStart), PortEnd: int32(r.PortEnd),
			MBRUplink: int32(r.MBRUplink), MBRDownlink: int32(r.MBRDownlink), BitrateUnit: "bps", TrafficClass: trafficClass(r.TrafficClass)})
	}
	return out
}

// PutSubscriber creates the subscriber (POST) or, when the core holds it,
// updates its keys (PUT). A 409 to the POST or a 404 to the PUT means the
// core changed behind our back: the other verb follows once.
func (c *Client) PutSubscriber(ctx context.Context, s connectivity.CoreSubscriber) error {
	path := "/api/subscriber/imsi-" + s.IMSI
	body := map[string]any{http.MethodPost: SubscriberPayload(s), http.MethodPut: SubscriberUpdatePayload(s)}
	c.mu.Lock()
	exists := c.subs[s.IMSI]
	c.mu.Unlock()
	first, second := http.MethodPost, http.MethodPut
	if exists {
		first, second = http.MethodPut, http.MethodPost
	}
	status, err := c.do(ctx, first, path, body[first], nil)
	if err != nil && (first == http.MethodPost && status == http.StatusConflict || first == http.MethodPut && status == http.StatusNotFound) {
		c.log.Info("the SD-Core web console's subscriber list changed behind Shopfloor", "imsi", s.IMSI, "sent", first, "answer", status)
		_, err = c.do(ctx, second, path, body[second], nil)
	}
	if err == nil {
		c.mu.Lock()
		c.subs[s.IMSI] = true
		c.mu.Unlock()
	}
	return err
}

// DeleteSubscriber removes the subscriber; a missing one is not an error.
func (c *Client) DeleteSubscriber(ctx context.Context, imsi string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/subscriber/imsi-"+imsi, nil, nil)
	if errors.Is(err, errNotFound) {
		err = nil
	}
	if err == nil {
		c.mu.Lock()
		delete(c.subs, imsi)
		c.mu.Unlock()
	}
	return err
}

// PutDeviceGroup creates or replaces a device group (the core's POST does
// both).
func (c *Client) PutDeviceGroup(ctx context.Context, g connectivity.CoreDeviceGroup) error {
	_, err := c.do(ctx, http.MethodPost, "/config/v1/device-group/"+url.PathEscape(g.Name), DeviceGroupPayload(g), nil)
	return err
}

// DeleteDeviceGroup removes a device group; a missing one is not an error.
func (c *Client) DeleteDeviceGroup(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/config/v1/device-group/"+url.PathEscape(name), nil, nil)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

// PutSlice creates or replaces a network slice.
func (c *Client) PutSlice(ctx context.Context, s connectivity.CoreSlice) error {
	_, err := c.do(ctx, http.MethodPost, "/config/v1/network-slice/"+url.PathEscape(s.Name), SlicePayload(s), nil)
	return err
}

// DeleteSlice removes a network slice; a missing one is not an error.
func (c *Client) DeleteSlice(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/config/v1/network-slice/"+url.PathEscape(name), nil, nil)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

// Snapshot reads every subscriber, device group and slice the core holds:
// the lists, then each object. An object that vanishes between the two
// reads is skipped.
func (c *Client) Snapshot(ctx context.Context) (connectivity.CoreSnapshot, error) {
	snap := connectivity.CoreSnapshot{Subscribers: map[string]connectivity.CoreSubscriber{},
		DeviceGroups: map[string]connectivity.CoreDeviceGroup{}, Slices: map[string]connectivity.CoreSlice{}}
	var list []SubscriberListItem
	if _, err := c.do(ctx, http.MethodGet, "/api/subscriber", nil, &list); err != nil {
		return snap, err
	}
	for _, it := range list {
		imsi := strings.TrimPrefix(it.UEID, "imsi-")
		var d SubscriberData
		_, err := c.do(ctx, http.MethodGet, "/api/subscriber/"+url.PathEscape(it.UEID), nil, &d)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return snap, err
		}
		s := connectivity.CoreSubscriber{IMSI: imsi, PLMN: it.PLMNID}
		if d.Auth.PermanentKey != nil {
			s.Ki = strings.ToLower(d.Auth.PermanentKey.Value)
		}
		if d.Auth.OPc != nil {
			s.OPc = strings.ToLower(d.Auth.OPc.Value)
		}
		snap.Subscribers[imsi] = s
	}
	var names []string
	if _, err := c.do(ctx, http.MethodGet, "/config/v1/device-group", nil, &names); err != nil {
		return snap, err
	}
	for _, n := range names {
		var g DeviceGroup
		_, err := c.do(ctx, http.MethodGet, "/config/v1/device-group/"+url.PathEscape(n), nil, &g)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return snap, err
		}
		snap.DeviceGroups[n] = coreGroup(n, g)
	}
	names = nil
	if _, err := c.do(ctx, http.MethodGet, "/config/v1/network-slice", nil, &names); err != nil {
		return snap, err
	}
	for _, n := range names {
		var s Slice
		_, err := c.do(ctx, http.MethodGet, "/config/v1/network-slice/"+url.PathEscape(n), nil, &s)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return snap, err
		}
		snap.Slices[n] = coreSlice(n, s)
	}
	c.mu.Lock()
	c.subs = map[string]bool{}
	for imsi := range snap.Subscribers {
		c.subs[imsi] = true
	}
	c.mu.Unlock()
	return snap, nil
}

// ToBps converts a bitrate to bit/s as the core does (convertToBps:
// bps, kbps, mbps, gbps in any case; an unknown unit counts as bps).
func ToBps(v int64, unit string) int64 {
	switch lower(unit) {
	case "kbps":
		return v * 1000
	case "mbps":
		return v * 1000000
	case "gbps":
		return v * 1000000000
	}
	return v
}

func fromClass(t *TrafficClass) connectivity.TrafficClass {
	if t == nil {
		return connectivity.TrafficClass{}
	}
	return connectivity.TrafficClass{Name: t.Name, QCI: int(t.QCI), ARP: int(t.ARP), PDB: int(t.PDB), PELR: int(t.PELR)}
}

// coreGroup reads a device group back into the form Shopfloor pushes.
func coreGroup(name string, g DeviceGroup) connectivity.CoreDeviceGroup {
	out := connectivity.CoreDeviceGroup{Name: name, Site: g.SiteInfo, IMSIs: g.IMSIs}
	if out.IMSIs == nil {
		out.IMSIs = []string{}
	}
	var d *IPDomain
	switch {
	case len(g.IPDomains) > 0:
		d = &g.IPDomains[0]
	case g.IPDomainExpanded != nil:
		d = g.IPDomainExpanded
	}
	if d == nil {
		return out
	}
	out.IPDomain = connectivity.IPDomain{DNN: d.DNN, Subnet: d.UEIPPool, MTU: int(d.MTU)}
	for _, s := range []string{d.DNSPrimary, d.DNSSecondary} {
		if s != "" {
			out.IPDomain.DNS = append(out.IPDomain.DNS, s)
		}
	}
	if q := d.QoS; q != nil {
		out.MBRUplink, out.MBRDownlink = ToBps(q.Uplink, q.BitrateUnit), ToBps(q.Downlink, q.BitrateUnit)
		out.TrafficClass = fromClass(q.TrafficClass)
	}
	return out
}

// coreSlice reads a slice back into the form Shopfloor pushes.
func coreSlice(name string, s Slice) connectivity.CoreSlice {
	sst, _ := strconv.Atoi(s.ID.SST)
	out := connectivity.CoreSlice{Name: name, SST: sst, SD: s.ID.SD, DeviceGroups: append([]string{}, s.DeviceGroups...),
		Site: s.SiteInfo.SiteName, MCC: s.SiteInfo.PLMN.MCC, MNC: s.SiteInfo.PLMN.MNC, UPF: s.SiteInfo.UPF.Name,
		Cells: []connectivity.SmallCell{}, Rules: []connectivity.CoreRule{}}
	sort.Strings(out.DeviceGroups)
	for _, g := range s.SiteInfo.GNodeBs {
		out.Cells = append(out.Cells, connectivity.SmallCell{ID: g.Name, TAC: int(g.TAC)})
	}
	for _, r := range s.Rules {
		out.Rules = append(out.Rules, connectivity.CoreRule{Name: r.Name, Priority: int(r.Priority), Permit: r.Action == "permit",
			Prefix: r.Endpoint, PortStart: int(r.PortStart), PortEnd: int(r.PortEnd), Protocol: int(r.Protocol),
			MBRUplink: ToBps(int64(r.MBRUplink), r.BitrateUnit), MBRDownlink: ToBps(int64(r.MBRDownlink), r.BitrateUnit),
			TrafficClass: fromClass(r.TrafficClass)})
	}
	return out
}

// do sends one request, logging in first when credentials are set and no
// token is held, and once more when the core answers 401 (tokens last an
// hour). It decodes a 2xx body into out when out is not nil and returns
// the status.
func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var raw []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode %s: %w", path, err)
		}
		raw = b
	}
	for attempt := 0; ; attempt++ {
		token, err := c.bearer(ctx, attempt > 0)
		if err != nil {
			return 0, err
		}
		status, msg, err := c.send(ctx, method, path, raw, token, out)
		if err != nil {
			return 0, err
		}
		switch {
		case status >= 200 && status < 300:
			return status, nil
		case status == http.StatusUnauthorized && c.opt.User != "" && attempt == 0:
			continue // the token expired or the core restarted: log in again
		case status == http.StatusUnauthorized && c.opt.User == "":
			return status, fmt.Errorf("%s %s: 401 %s: the web console wants a login; set --sdcore-user and --sdcore-password: %w: %w", method, path, msg, ErrRejected, connectivity.ErrCoreLogin)
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return status, fmt.Errorf("%s %s: %d %s: user %q may not do this; give it the admin role on the web console: %w: %w", method, path, status, msg, c.opt.User, ErrRejected, connectivity.ErrCoreLogin)
		case status == http.StatusNotFound:
			return status, fmt.Errorf("%s %s: 404 %s: %w", method, path, msg, errNotFound)
		case status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			return status, fmt.Errorf("%s %s: %d %s: %w: %w", method, path, status, msg, ErrRejected, connectivity.ErrCoreRefused)
		}
		return status, fmt.Errorf("%s %s: %d %s: %w", method, path, status, msg, ErrRejected)
	}
}

// bearer returns the token to send, logging in when there is none or
// when fresh is set.
func (c *Client) bearer(ctx context.Context, fresh bool) (string, error) {
	if c.opt.User == "" {
		return "", nil
	}
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if token != "" && !fresh {
		return token, nil
	}
	raw, _ := json.Marshal(LoginRequest{Username: c.opt.User, Password: c.opt.Password})
	var resp LoginResponse
	status, msg, err := c.send(ctx, http.MethodPost, "/login", raw, "", &resp)
	if err != nil {
		return "", err
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusBadRequest:
		return "", fmt.Errorf("log in to the SD-Core web console as %q: %d %s: check --sdcore-user and --sdcore-password: %w: %w", c.opt.User, status, msg, ErrRejected, connectivity.ErrCoreLogin)
	case status == http.StatusNotFound:
		return "", fmt.Errorf("log in to the SD-Core web console as %q: 404 at /login: this console has no login (authentication off); drop --sdcore-user and --sdcore-password: %w: %w", c.opt.User, ErrRejected, connectivity.ErrCoreLogin)
	case status < 200 || status >= 300:
		return "", fmt.Errorf("log in to the SD-Core web console as %q: %d %s: %w", c.opt.User, status, msg, ErrRejected)
	case resp.Token == "":
		return "", fmt.Errorf("log in to the SD-Core web console as %q: the answer holds no token: %w", c.opt.User, ErrRejected)
	}
	c.mu.Lock()
	c.token = resp.Token
	c.mu.Unlock()
	return resp.Token, nil
}

// send is one HTTP exchange. msg is the start of an error body.
func (c *Client) send(ctx context.Context, method, path string, raw []byte, token string, out any) (int, string, error) {
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, "", err
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.opt.HTTP.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
			return resp.StatusCode, "", fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, path, err)
		}
		return resp.StatusCode, "", nil
	}
	raw, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, answer(raw), nil
}

// answer is the core's error in words: the "error" (and "message") of
// its JSON answer, or the start of the body.
func answer(body []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		// The sentence goes on after it.
		msg := strings.TrimRight(e.Error, ". ")
		if e.Message != "" {
			msg += " (" + strings.TrimRight(e.Message, ". ") + ")"
		}
		return msg
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
