package sdcore

// The wire types below follow omec-project/webconsole's configmodels
// package and the OpenAPI schemas under configapi/api/schemas (release
// 2.1 and 3.0 lines; field names and JSON tags as there, Go names ours).
// They are what the web console's handlers bind requests to and answer
// GETs with, so the adapter, its fixtures and the fake in sdcoretest all
// speak exactly this shape.

// TrafficClass is configmodels.TrafficClassInfo. The OpenAPI schema
// (traffic-class-info.yaml) requires all five fields.
type TrafficClass struct {
	Name string `json:"name,omitempty"`
	QCI  int32  `json:"qci,omitempty"`
	ARP  int32  `json:"arp,omitempty"`
	PDB  int32  `json:"pdb,omitempty"`
	PELR int32  `json:"pelr,omitempty"`
}

// UEDNNQoS is configmodels.DeviceGroupsIpDomainExpandedUeDnnQos. The core
// converts the bitrates to bit/s by BitrateUnit (bps, kbps, mbps, gbps).
type UEDNNQoS struct {
	Uplink       int64         `json:"dnn-mbr-uplink,omitempty"`
	Downlink     int64         `json:"dnn-mbr-downlink,omitempty"`
	BitrateUnit  string        `json:"bitrate-unit,omitempty"`
	TrafficClass *TrafficClass `json:"traffic-class,omitempty"`
}

// IPDomain is configmodels.DeviceGroupsIpDomainExpanded: the DNN, UE
// address pool and DNS of a device group.
type IPDomain struct {
	DNN          string    `json:"dnn,omitempty"`
	UEIPPool     string    `json:"ue-ip-pool,omitempty"`
	DNSPrimary   string    `json:"dns-primary,omitempty"`
	DNSSecondary string    `json:"dns-secondary,omitempty"`
	MTU          int32     `json:"mtu,omitempty"`
	QoS          *UEDNNQoS `json:"ue-dnn-qos,omitempty"`
}

// DeviceGroup is configmodels.DeviceGroups. Since webconsole v2.1.1 a
// group holds a list of IP domains ("ip-domains"); up to v2.1.0 it held
// one ("ip-domain-expanded"). Each version ignores the other's field, so
// the adapter sends both with the same domain and reads whichever the
// core answers with.
type DeviceGroup struct {
	Name             string     `json:"group-name"`
	IMSIs            []string   `json:"imsis"`
	SiteInfo         string     `json:"site-info,omitempty"`
	IPDomainName     string     `json:"ip-domain-name,omitempty"`
	IPDomains        []IPDomain `json:"ip-domains,omitempty"`
	IPDomainExpanded *IPDomain  `json:"ip-domain-expanded,omitempty"`
}

// SliceID is configmodels.SliceSliceId (both strings; SD in hex).
type SliceID struct {
	SST string `json:"sst"`
	SD  string `json:"sd"`
}

// PLMN is configmodels.SliceSiteInfoPlmn.
type PLMN struct {
	MCC string `json:"mcc"`
	MNC string `json:"mnc"`
}

// GNodeB is configmodels.SliceSiteInfoGNodeBs: the core checks the name
// against its name pattern and the TAC against 1 to 16,777,215.
type GNodeB struct {
	Name string `json:"name"`
	TAC  int32  `json:"tac"`
}

// UPF is the site's user plane, a free-form object upstream
// (map[string]interface{}); these are the two keys the core reads.
type UPF struct {
	Name string `json:"upf-name"`
	Port int    `json:"upf-port"`
}

// SiteInfo is configmodels.SliceSiteInfo.
type SiteInfo struct {
	SiteName string   `json:"site-name"`
	PLMN     PLMN     `json:"plmn"`
	GNodeBs  []GNodeB `json:"gNodeBs"`
	UPF      UPF      `json:"upf"`
}

// Rule is configmodels.SliceApplicationFilteringRules. Since v2.1.0 the
// core refuses a slice whose rule lacks a traffic class. The bitrates are
// converted by BitrateUnit and kept in 32 bits of bit/s.
type Rule struct {
	Name         string        `json:"rule-name,omitempty"`
	Priority     int32         `json:"priority,omitempty"`
	Action       string        `json:"action,omitempty"`
	Endpoint     string        `json:"endpoint,omitempty"`
	Protocol     int32         `json:"protocol,omitempty"`
	PortStart    int32         `json:"dest-port-start,omitempty"`
	PortEnd      int32         `json:"dest-port-end,omitempty"`
	MBRUplink    int32         `json:"app-mbr-uplink,omitempty"`
	MBRDownlink  int32         `json:"app-mbr-downlink,omitempty"`
	BitrateUnit  string        `json:"bitrate-unit,omitempty"`
	TrafficClass *TrafficClass `json:"traffic-class,omitempty"`
	RuleTrigger  string        `json:"rule-trigger,omitempty"`
}

// Slice is configmodels.Slice. The slice-wide "qos" of older releases is
// gone from the model: the core ignores it, which is why the slice's
// bitrate goes on the rules.
type Slice struct {
	Name         string   `json:"slice-name,omitempty"`
	ID           SliceID  `json:"slice-id"`
	DeviceGroups []string `json:"site-device-group"`
	SiteInfo     SiteInfo `json:"site-info"`
	Rules        []Rule   `json:"application-filtering-rules,omitempty"`
}

// Subscriber is configmodels.SubsOverrideData, the body of POST (create)
// and PUT (update) /api/subscriber/imsi-{imsi}. The core needs opc, key
// and sequenceNumber; it does not read plmnID.
type Subscriber struct {
	PLMNID         string `json:"plmnID"`
	OPc            string `json:"opc"`
	Key            string `json:"key"`
	SequenceNumber string `json:"sequenceNumber"`
}

// SubscriberUpdate is the body of PUT /api/subscriber/imsi-{imsi}: the
// 3.0 line binds it to SubsOverrideData (the flat fields), older releases
// to SubsData (ueId and AuthenticationSubscription). Each ignores the
// other's fields, so one body serves both.
type SubscriberUpdate struct {
	Subscriber
	UEID string   `json:"ueId"`
	Auth AuthData `json:"AuthenticationSubscription"`
}

// SubscriberListItem is configmodels.SubsListIE, one entry of GET
// /api/subscriber.
type SubscriberListItem struct {
	PLMNID string `json:"plmnID"`
	UEID   string `json:"ueId"`
}

// SubscriberData is the part of configmodels.SubsData (GET
// /api/subscriber/imsi-{imsi}) that the adapter reads back: the
// authentication subscription, in omec-project/openapi's field names.
type SubscriberData struct {
	UEID string   `json:"ueId"`
	Auth AuthData `json:"AuthenticationSubscription"`
}

// AuthData is models.AuthenticationSubscription, reduced to the keys.
type AuthData struct {
	PermanentKey                  *PermanentKey `json:"permanentKey"`
	OPc                           *OPc          `json:"opc,omitempty"`
	SequenceNumber                string        `json:"sequenceNumber"`
	AuthenticationManagementField string        `json:"authenticationManagementField,omitempty"`
	AuthenticationMethod          string        `json:"authenticationMethod,omitempty"`
}

// PermanentKey is models.PermanentKey (Ki).
type PermanentKey struct {
	Value string `json:"permanentKeyValue"`
}

// OPc is models.Opc.
type OPc struct {
	Value string `json:"opcValue"`
}

// LoginRequest and LoginResponse are configapi's LoginParams and
// LoginResponse (POST /login); the token is a JWT valid for an hour.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse carries the bearer token.
type LoginResponse struct {
	Token string `json:"token"`
}
