package sdcore

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

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// ErrRejected is returned when the web console answers with an error status.
var ErrRejected = errors.New("the SD-Core web console refused the request")

// DefaultSequenceNumber is the initial authentication sequence number
// given to new subscribers, the value SD-Core's own examples use.
const DefaultSequenceNumber = "16f3b3f70fc2"

// UPFPort is the PFCP port of the user plane.
const UPFPort = 8805

// Client talks to one web console. It implements connectivity.Core.
type Client struct {
	base string
	http *http.Client
}

var _ connectivity.Core = (*Client)(nil)

// New returns a client for the web console at baseURL (http://host:5000).
// A nil httpClient gets one with a 10 s timeout.
func New(baseURL string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SD-Core web console URL %q must look like http://host:5000", baseURL)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{base: u.String(), http: httpClient}, nil
}

type subscriber struct {
	UeID           string `json:"UeId"`
	PlmnID         string `json:"plmnId"`
	OPc            string `json:"opc"`
	Key            string `json:"key"`
	SequenceNumber string `json:"sequenceNumber"`
}

type trafficClass struct {
	Name string `json:"name"`
	QCI  int    `json:"qci"`
	ARP  int    `json:"arp"`
	PDB  int    `json:"pdb"`
	PELR int    `json:"pelr"`
}

type dnnQoS struct {
	Uplink       int64         `json:"dnn-mbr-uplink"`
	Downlink     int64         `json:"dnn-mbr-downlink"`
	BitrateUnit  string        `json:"bitrate-unit"`
	TrafficClass *trafficClass `json:"traffic-class,omitempty"`
}

type ipDomain struct {
	DNN          string `json:"dnn"`
	UEIPPool     string `json:"ue-ip-pool"`
	DNSPrimary   string `json:"dns-primary,omitempty"`
	DNSSecondary string `json:"dns-secondary,omitempty"`
	MTU          int    `json:"mtu"`
	QoS          dnnQoS `json:"ue-dnn-qos"`
}

type deviceGroup struct {
	IMSIs        []string `json:"imsis"`
	SiteInfo     string   `json:"site-info"`
	IPDomainName string   `json:"ip-domain-name"`
	IPDomain     ipDomain `json:"ip-domain-expanded"`
}

type sliceID struct {
	SST string `json:"sst"`
	SD  string `json:"sd"`
}

type sliceQoS struct {
	Uplink      int64  `json:"uplink"`
	Downlink    int64  `json:"downlink"`
	BitrateUnit string `json:"bitrate-unit"`
}

type gNodeB struct {
	Name string `json:"name"`
	TAC  int    `json:"tac"`
}

type plmn struct {
	MCC string `json:"mcc"`
	MNC string `json:"mnc"`
}

type upf struct {
	Name string `json:"upf-name"`
	Port int    `json:"upf-port"`
}

type siteInfo struct {
	SiteName string   `json:"site-name"`
	PLMN     plmn     `json:"plmn"`
	GNodeBs  []gNodeB `json:"gNodeBs"`
	UPF      upf      `json:"upf"`
}

type rule struct {
	Name      string `json:"rule-name"`
	Priority  int    `json:"priority"`
	Action    string `json:"action"`
	Endpoint  string `json:"endpoint"`
	PortStart *int   `json:"dest-port-start,omitempty"`
	PortEnd   *int   `json:"dest-port-end,omitempty"`
	Protocol  *int   `json:"protocol,omitempty"`
}

type slice struct {
	ID          sliceID   `json:"slice-id"`
	QoS         *sliceQoS `json:"qos,omitempty"`
	DeviceGroup []string  `json:"site-device-group"`
	SiteInfo    siteInfo  `json:"site-info"`
	Rules       []rule    `json:"application-filtering-rules"`
}

// SubscriberPayload is the JSON body of a subscriber.
func SubscriberPayload(s connectivity.CoreSubscriber) any {
	return subscriber{UeID: s.IMSI, PlmnID: s.PLMN, OPc: strings.ToLower(s.OPc), Key: strings.ToLower(s.Ki), SequenceNumber: DefaultSequenceNumber}
}

// DeviceGroupPayload is the JSON body of a device group.
func DeviceGroupPayload(g connectivity.CoreDeviceGroup) any {
	d := deviceGroup{IMSIs: g.IMSIs, SiteInfo: g.Site, IPDomainName: g.Name + "-pool", IPDomain: ipDomain{
		DNN: g.IPDomain.DNN, UEIPPool: g.IPDomain.Subnet, MTU: g.IPDomain.MTU,
		QoS: dnnQoS{Uplink: g.MBRUplink, Downlink: g.MBRDownlink, BitrateUnit: "bps", TrafficClass: &trafficClass{
			Name: g.TrafficClass.Name, QCI: g.TrafficClass.QCI, ARP: g.TrafficClass.ARP, PDB: g.TrafficClass.PDB, PELR: g.TrafficClass.PELR}},
	}}
	if d.IMSIs == nil {
		d.IMSIs = []string{}
	}
	if len(g.IPDomain.DNS) > 0 {
		d.IPDomain.DNSPrimary = g.IPDomain.DNS[0]
	}
	if len(g.IPDomain.DNS) > 1 {
		d.IPDomain.DNSSecondary = g.IPDomain.DNS[1]
	}
	return d
}

// SlicePayload is the JSON body of a network slice.
func SlicePayload(s connectivity.CoreSlice) any {
	out := slice{ID: sliceID{SST: strconv.Itoa(s.SST), SD: s.SD}, DeviceGroup: s.DeviceGroups,
		SiteInfo: siteInfo{SiteName: s.Site, PLMN: plmn{MCC: s.MCC, MNC: s.MNC}, GNodeBs: []gNodeB{}, UPF: upf{Name: s.UPF, Port: UPFPort}},
		Rules:    []rule{}}
	if out.DeviceGroup == nil {
		out.DeviceGroup = []string{}
	}
	if s.MBR != nil {
		out.QoS = &sliceQoS{Uplink: s.MBR.Uplink, Downlink: s.MBR.Downlink, BitrateUnit: "bps"}
	}
	for _, c := range s.Cells {
		out.SiteInfo.GNodeBs = append(out.SiteInfo.GNodeBs, gNodeB{Name: c.ID, TAC: c.TAC})
	}
	for _, r := range s.Rules {
		action := "deny"
		if r.Permit {
			action = "permit"
		}
		x := rule{Name: r.Name, Priority: r.Priority, Action: action, Endpoint: r.Prefix}
		if r.PortStart > 0 {
			ps, pe := r.PortStart, r.PortEnd
			x.PortStart, x.PortEnd = &ps, &pe
		}
		if r.Protocol > 0 {
			p := r.Protocol
			x.Protocol = &p
		}
		out.Rules = append(out.Rules, x)
	}
	return out
}

func (c *Client) PutSubscriber(ctx context.Context, s connectivity.CoreSubscriber) error {
	return c.send(ctx, http.MethodPost, "/api/subscriber/imsi-"+s.IMSI, SubscriberPayload(s))
}

func (c *Client) DeleteSubscriber(ctx context.Context, imsi string) error {
	return c.send(ctx, http.MethodDelete, "/api/subscriber/imsi-"+imsi, nil)
}

func (c *Client) PutDeviceGroup(ctx context.Context, g connectivity.CoreDeviceGroup) error {
	return c.send(ctx, http.MethodPost, "/config/v1/device-group/"+url.PathEscape(g.Name), DeviceGroupPayload(g))
}

func (c *Client) DeleteDeviceGroup(ctx context.Context, name string) error {
	return c.send(ctx, http.MethodDelete, "/config/v1/device-group/"+url.PathEscape(name), nil)
}

func (c *Client) PutSlice(ctx context.Context, s connectivity.CoreSlice) error {
	return c.send(ctx, http.MethodPost, "/config/v1/network-slice/"+url.PathEscape(s.Name), SlicePayload(s))
}

func (c *Client) DeleteSlice(ctx context.Context, name string) error {
	return c.send(ctx, http.MethodDelete, "/config/v1/network-slice/"+url.PathEscape(name), nil)
}

func (c *Client) send(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case method == http.MethodDelete && resp.StatusCode == http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("%s %s: %d %s: %w", method, path, resp.StatusCode, strings.TrimSpace(string(msg)), ErrRejected)
}
