package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// Connectivity routes: SIMs, their lifecycle and audit, device groups,
// traffic classes, slices, applications, site network settings, bulk jobs,
// usage and radio-side usage records. They answer 503 when the hub runs
// without the connectivity service (Deps.Connectivity nil).

const connBase = "/api/v1/connectivity"

type simView struct {
	connectivity.SIM
	Usage *connectivity.SIMUsage `json:"usage,omitempty"`
}

type simList struct {
	Items []connectivity.SIM `json:"items"`
	Next  string             `json:"next"`
}

type createSIMRequest struct {
	ICCID    string `json:"iccid"`
	IMSI     string `json:"imsi"`
	MSISDN   string `json:"msisdn,omitempty"`
	Label    string `json:"label,omitempty"`
	StaticIP string `json:"staticIp,omitempty"`
	Ki       string `json:"ki,omitempty"`
	OPc      string `json:"opc,omitempty"`
}

type stateRequest struct {
	State connectivity.State `json:"state"`
	// At schedules the change; absent means now.
	At *time.Time `json:"at,omitempty"`
}

type importRequest struct {
	SIMs []createSIMRequest `json:"sims"`
}

type bulkStateRequest struct {
	ICCIDs []string           `json:"iccids"`
	State  connectivity.State `json:"state"`
}

type auditList struct {
	Items []connectivity.AuditEntry `json:"items"`
	Next  string                    `json:"next"`
}

type cdrRequest struct {
	Records []connectivity.CDR `json:"records"`
}

type itemsOf[T any] struct {
	Items []T `json:"items"`
}

var (
	exampleICCID = "8944500000000000014"
	exampleSIM   = connectivity.SIM{ICCID: exampleICCID, Org: "acme", IMSI: "001010000000001", Label: "agv-7 modem",
		State: connectivity.StateActivated, Device: "agv-7", IMEILock: true, IMEI: "490154203237518", CreatedAt: exampleTime, UpdatedAt: exampleTime}
	exampleTrafficClass = connectivity.TrafficClass{Name: "platinum", ARP: 6, QCI: 9, PDB: 300, PELR: 6, UpdatedAt: exampleTime}
	exampleConnApp      = connectivity.Application{Name: "mes", Prefix: "10.20.0.0/24", Endpoints: []connectivity.Endpoint{{Port: 443, Protocol: "TCP"}}, UpdatedAt: exampleTime}
	exampleDevGroup     = connectivity.DeviceGroup{Name: "agvs", Site: "plant-north", Devices: []string{"agv-7"},
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", DNS: []string{"8.8.8.8"}, MTU: 1460},
		MBRUplink: 4000000, MBRDownlink: 20000000, TrafficClass: "platinum", Quota: &connectivity.Quota{Bytes: 5 << 30, Action: "notify"}, UpdatedAt: exampleTime}
	exampleSlice = connectivity.Slice{Name: "robots", Site: "plant-north", SST: 1, SD: "010203", DeviceGroups: []string{"agvs"},
		DefaultBehavior: connectivity.AllowPublic, Filters: []connectivity.AppFilter{{Application: "mes", Priority: 10, Action: "allow"}},
		MBR: &connectivity.Bitrate{Uplink: 50000000, Downlink: 100000000, BurstBytes: 1 << 20}, UpdatedAt: exampleTime}
	exampleSiteNet = connectivity.SiteNetwork{Site: "plant-north", MCC: "001", MNC: "01",
		IMSIRange:  &connectivity.IMSIRange{First: "001010000000000", Last: "001010000099999"},
		SmallCells: []connectivity.SmallCell{{ID: "gnb-hall-1", TAC: 1, Address: "10.0.0.10", Enabled: true}}, EdgeNode: "edge-north", UpdatedAt: exampleTime}
	exampleJob = connectivity.Job{ID: "064cacc5fc5c0026ae86b5aa", Org: "acme", Kind: "import", Status: connectivity.JobRunning, Total: 1000, Done: 400,
		Errors: []connectivity.RowError{{Row: 3, ICCID: "8944500000000000022", Error: `field "iccid": "8944500000000000022" fails the Luhn check of its last digit: check for a typing error`}}, CreatedAt: exampleTime}
)

func connSchemas() map[string]schema {
	ts := dateTime("")
	states := []string{"INVENTORY", "TEST_READY", "ACTIVATED", "SUSPENDED", "TERMINATED"}
	iccid := schema{"type": "string", "pattern": `^[0-9]{19,22}$`, "description": "ICCID, 19 to 22 digits with a Luhn check digit"}
	imsi := schema{"type": "string", "pattern": `^[0-9]{15}$`}
	sim := object("a SIM card", []string{"iccid", "org", "imsi", "state", "imeiLock", "createdAt", "updatedAt"}, schema{
		"iccid": iccid, "org": str(""), "imsi": imsi, "msisdn": str(""), "label": str(""),
		"state":       strEnum("lifecycle state", states...),
		"systemState": strEnum("what the hub imposed", "data_limit_exceeded", "unauthorized_imei"),
		"device":      str("the device the SIM is in"), "imeiLock": boolean("bind to the first IMEI"),
		"imei": str("bound IMEI or IMEISV"), "staticIp": str(""), "createdAt": ts, "updatedAt": ts,
	})
	usage := object("usage in the current billing cycle", []string{"cycleStart", "upBytes", "downBytes", "upMessages", "downMessages"}, schema{
		"cycleStart": ts, "upBytes": integer("", 0), "downBytes": integer("", 0), "upMessages": integer("", 0), "downMessages": integer("", 0),
		"quotaBytes": integer("the device group's quota", 0),
	})
	simView := object("a SIM with its usage", []string{"iccid", "org", "imsi", "state", "imeiLock", "createdAt", "updatedAt"}, schema{})
	simView["allOf"] = []schema{sim}
	simView["properties"] = schema{"usage": usage}
	createSIM := input("a new SIM, created in INVENTORY", []string{"iccid", "imsi"}, schema{
		"iccid": iccid, "imsi": imsi, "msisdn": str(""), "label": str(""), "staticIp": str(""),
		"ki": str("subscriber key, 32 hex digits (never shown again)"), "opc": str("OPc, 32 hex digits (never shown again)"),
	})
	rowErr := object("", []string{"row", "error"}, schema{"row": integer("row, from 1 (0: the whole job)", 0), "iccid": str(""), "error": str("")})
	sliceRef := schema{"type": "array", "items": schema{"type": "string"}}
	return map[string]schema{
		"SIM":       simView,
		"SIMList":   object("a page of SIMs", []string{"items", "next"}, schema{"items": arrayOf(sim), "next": str("pass as ?after= for the next page")}),
		"CreateSIM": createSIM,
		"PatchSIM": input("SIM fields to change; absent fields stay", nil, schema{
			"label": str(""), "msisdn": str(""), "device": str("device id; empty unbinds"), "imeiLock": boolean(""),
			"clearImei": boolean("forget the bound IMEI"), "staticIp": str(""),
			"ki": str("new subscriber key, 32 hex digits (never shown again); pushed to the mobile core"), "opc": str("new OPc, 32 hex digits (never shown again)"),
		}),
		"SetState": input("a state change, now or at a time", []string{"state"}, schema{
			"state": strEnum("", states...), "at": dateTime("schedule for this time instead of now"),
		}),
		"Scheduled": object("a scheduled change", []string{"id", "iccid", "to", "at", "actor"}, schema{
			"id": str(""), "iccid": iccid, "to": strEnum("", states...), "at": ts, "actor": str(""),
		}),
		"ImportSIMs": input("SIMs to create", []string{"sims"}, schema{"sims": arrayOf(createSIM)}),
		"BulkState":  input("SIMs to change", []string{"iccids", "state"}, schema{"iccids": arrayOf(iccid), "state": strEnum("", states...)}),
		"Job": object("an asynchronous bulk job", []string{"id", "org", "kind", "status", "total", "done", "failed", "errors", "createdAt"}, schema{
			"id": str(""), "org": str(""), "kind": strEnum("", "import", "state"), "status": strEnum("", "running", "done"),
			"total": integer("", 0), "done": integer("rows that succeeded", 0), "failed": integer("rows that failed", 0),
			"errors": arrayOf(rowErr), "createdAt": ts, "endedAt": ts,
		}),
		"AuditList": object("SIM state changes, oldest first", []string{"items", "next"}, schema{"items": arrayOf(object("", []string{"id", "iccid", "actor", "at", "from", "to"}, schema{
			"id": str(""), "iccid": iccid, "actor": str("token:<id>, job:<id>, system"), "at": ts, "from": str(""), "to": str(""), "reason": str(""),
		})), "next": str("")}),
		"TrafficClass": object("a QoS class", []string{"name", "arp", "qci", "pdb", "pelr"}, schema{
			"name": str(""), "arp": schema{"type": "integer", "minimum": 1, "maximum": 15}, "qci": schema{"type": "integer", "minimum": 1, "maximum": 255},
			"pdb": integer("packet delay budget, ms", 1), "pelr": schema{"type": "integer", "minimum": 1, "maximum": 8, "description": "loss rate 10^-pelr"}, "updatedAt": ts,
		}),
		"Application": object("a destination devices talk to", []string{"name", "prefix", "endpoints"}, schema{
			"name": str(""), "prefix": str("address/bits"), "updatedAt": ts,
			"endpoints": arrayOf(object("", []string{"port", "protocol"}, schema{"port": integer("", 1), "portEnd": integer("", 0), "protocol": strEnum("", "TCP", "UDP", "ANY")})),
		}),
		"DeviceGroup": object("devices sharing an IP domain, bitrate and traffic class", []string{"name", "site", "devices", "ipDomain", "mbrUplink", "mbrDownlink", "trafficClass"}, schema{
			"name": str(""), "site": str("registry site id"), "devices": arrayOf(str("")),
			"ipDomain":  object("", []string{"dnn", "subnet", "mtu"}, schema{"dnn": str(""), "subnet": str(""), "dns": arrayOf(str("")), "mtu": integer("", 576)}),
			"mbrUplink": integer("bits/s per device", 1), "mbrDownlink": integer("bits/s per device", 1), "trafficClass": str(""),
			"quota":     object("per SIM per billing cycle", []string{"bytes", "action"}, schema{"bytes": integer("", 1), "action": strEnum("", "block", "notify")}),
			"updatedAt": ts,
		}),
		"Slice": object("a network slice; sst and sd cannot change", []string{"name", "site", "sst", "sd", "deviceGroups", "defaultBehavior", "filters"}, schema{
			"name": str(""), "site": str("site with network settings"), "sst": schema{"type": "integer", "minimum": 1, "maximum": 255},
			"sd": schema{"type": "string", "pattern": "^[0-9A-Fa-f]{1,6}$"}, "deviceGroups": sliceRef,
			"defaultBehavior": strEnum("", "DENY-ALL", "ALLOW-ALL", "ALLOW-PUBLIC"),
			"filters": arrayOf(object("", []string{"application", "priority", "action"}, schema{
				"application": str(""), "priority": schema{"type": "integer", "minimum": 0, "maximum": 250}, "action": strEnum("", "allow", "deny")})),
			"mbr": object("aggregate bitrate; the mobile core enforces it on each permitting rule (app-mbr-uplink/downlink), hence at most 2147483647", []string{"uplink", "downlink", "burstBytes"}, schema{
				"uplink": schema{"type": "integer", "minimum": 1, "maximum": connectivity.MaxRuleBitrate, "description": "bits/s"}, "downlink": schema{"type": "integer", "minimum": 1, "maximum": connectivity.MaxRuleBitrate, "description": "bits/s"}, "burstBytes": integer("", 0)}),
			"updatedAt": ts,
		}),
		"SiteNetwork": object("a site's private network settings", []string{"site", "mcc", "mnc", "smallCells"}, schema{
			"site": str(""), "mcc": schema{"type": "string", "pattern": "^[0-9]{3}$"}, "mnc": schema{"type": "string", "pattern": "^[0-9]{2,3}$"},
			"imsiRange": object("", []string{"first", "last"}, schema{"first": imsi, "last": imsi}),
			"smallCells": arrayOf(object("", []string{"id", "tac", "address", "enabled"}, schema{
				"id":  schema{"type": "string", "pattern": connectivity.CoreNameRule, "description": "the gNodeB's name in the mobile core"},
				"tac": schema{"type": "integer", "minimum": 1, "maximum": 16777215}, "address": str(""), "enabled": boolean("")})),
			"edgeNode": str(""), "updatedAt": ts,
		}),
		"CDRImport": input("radio-side usage records", []string{"records"}, schema{"records": arrayOf(object("", []string{"id", "imsi", "start", "end", "upBytes", "downBytes"}, schema{
			"id": str("unique record id; a repeat is ignored"), "imsi": imsi, "start": ts, "end": ts, "upBytes": integer("", 0), "downBytes": integer("", 0)}))}),
		"CDRReport": object("", []string{"imported", "duplicate", "failed", "errors"}, schema{
			"imported": integer("", 0), "duplicate": integer("", 0), "failed": integer("", 0), "errors": arrayOf(rowErr)}),
		"CoreStatus": object("the mobile core's link and the state of each object there", []string{"link", "linkSince", "unmanaged", "counts", "objects"}, schema{
			"link":          strEnum("ok, unreachable, login_failed (wrong --sdcore-user or --sdcore-password), starting, not_configured", "ok", "unreachable", "login_failed", "starting", "not_configured"),
			"linkDetail":    str("why, in the core's words"),
			"linkSince":     ts,
			"lastReconcile": dateTime("when the core was last read back and compared"),
			"unmanaged":     integer("objects in the core no organization here owns (left alone)", 0),
			"counts":        schema{"type": "object", "additionalProperties": schema{"type": "integer"}, "description": "objects per state: in_sync, pending, failed"},
			"objects": arrayOf(object("", []string{"kind", "name", "state", "at"}, schema{
				"kind": strEnum("", "subscriber", "devicegroup", "slice"), "name": str("subscribers by ICCID"),
				"state": strEnum("", "in_sync", "pending", "failed"), "detail": str("the core's error, or the drift found"), "at": ts})),
		}),
		"UsageList": object("usage per hour", []string{"items"}, schema{"items": arrayOf(object("", []string{"hour", "upBytes", "downBytes", "upMessages", "downMessages"}, schema{
			"hour": ts, "upBytes": integer("", 0), "downBytes": integer("", 0), "upMessages": integer("", 0), "downMessages": integer("", 0)}))}),
	}
}

func (s *Server) connectivityRoutes() {
	sc := connSchemas()
	body := func(name string, ex any) *content { return &content{Schema: sc[name], Example: ex} }
	iccidParam := map[string]string{"iccid": "the SIM's ICCID"}
	op, view := registry.RoleOperator, registry.RoleViewer
	tag := "connectivity"
	add := func(method, pattern, id, summary string, role registry.Role, req *content, resp []response, errs []int, h func(w http.ResponseWriter, r *http.Request) error, params map[string]string, q ...param) {
		s.add(&route{Method: method, Pattern: connBase + pattern, ID: id, Tag: tag, Summary: summary, Role: role, Request: req, Responses: resp,
			Errors: append(errs, http.StatusServiceUnavailable), PathParams: params, Query: q, handle: s.needConn(h)})
	}
	fullSIM := simView{SIM: exampleSIM, Usage: &connectivity.SIMUsage{CycleStart: exampleTime.AddDate(0, 0, -1), Usage: connectivity.Usage{UpBytes: 52000, DownBytes: 18000, UpMsgs: 410, DownMsgs: 35}, QuotaBytes: 5 << 30}}
	newSIM := exampleSIM
	newSIM.State, newSIM.Device, newSIM.IMEILock, newSIM.IMEI = connectivity.StateInventory, "", false, ""

	add("POST", "/sims", "createSIM", "Add a SIM card; it starts in INVENTORY", op,
		body("CreateSIM", createSIMRequest{ICCID: exampleICCID, IMSI: "001010000000001", Label: "agv-7 modem"}),
		[]response{{Status: 201, Description: "created", Body: body("SIM", simView{SIM: newSIM})}}, []int{409}, s.createSIM, nil)
	add("GET", "/sims", "listSIMs", "List SIMs, a page at a time", view, nil,
		[]response{{Status: 200, Description: "a page", Body: body("SIMList", simList{Items: []connectivity.SIM{exampleSIM}, Next: ""})}}, nil, s.listSIMs, nil,
		param{Name: "state", Description: "only SIMs in this state", Schema: strEnum("", "INVENTORY", "TEST_READY", "ACTIVATED", "SUSPENDED", "TERMINATED"), Example: "ACTIVATED"},
		param{Name: "device", Description: "only the SIM of this device", Schema: schema{"type": "string"}},
		param{Name: "label", Description: "only SIMs whose label starts with this", Schema: schema{"type": "string"}},
		param{Name: "limit", Description: "page size, 1 to 1000 (default 100)", Schema: schema{"type": "integer", "minimum": 1, "maximum": 1000}},
		param{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}})
	add("GET", "/sims/{iccid}", "getSIM", "Get a SIM with its state, device, IMEI and usage this billing cycle", view, nil,
		[]response{{Status: 200, Description: "the SIM", Body: body("SIM", fullSIM)}}, nil, s.getSIM, iccidParam)
	lock, dev := true, "agv-7"
	add("PATCH", "/sims/{iccid}", "updateSIM", "Bind a SIM to a device, set its IMEI lock, label, MSISDN or static IP", op,
		body("PatchSIM", connectivity.SIMPatch{Device: &dev, IMEILock: &lock}),
		[]response{{Status: 200, Description: "the updated SIM", Body: body("SIM", simView{SIM: exampleSIM})}}, []int{409}, s.patchSIM, iccidParam)
	add("POST", "/sims/{iccid}/state", "setSIMState", "Change a SIM's state now (200), or at a future time (202 with the scheduled change); 409 for an illegal transition", op,
		body("SetState", stateRequest{State: connectivity.StateActivated}),
		[]response{
			{Status: 200, Description: "changed", Body: body("SIM", simView{SIM: exampleSIM})},
			{Status: 202, Description: "scheduled", Body: body("Scheduled", connectivity.Scheduled{ID: "064cacc5fc5c0026ae86b5aa", ICCID: exampleICCID, To: connectivity.StateSuspended, At: exampleTime.Add(24 * time.Hour), Actor: "token:tok-1"})},
		}, []int{409}, s.setSIMState, iccidParam)
	importBody := body("ImportSIMs", importRequest{SIMs: []createSIMRequest{{ICCID: exampleICCID, IMSI: "001010000000001", Label: "batch 7"}}})
	importBody.Also = &content{Type: "text/csv", Schema: schema{"type": "string", "description": "a header row naming the columns (iccid and imsi required; msisdn, label, ki, opc optional; any order), then one SIM per row"},
		Example: "iccid,imsi,label\n" + exampleICCID + ",001010000000001,batch 7\n8944500000000000022,001010000000002,batch 7\n"}
	add("POST", "/sims/import", "importSIMs", "Create many SIMs as a background job, from JSON or a CSV file (Content-Type: text/csv); poll the job; a bad row fails alone", op,
		importBody, []response{{Status: 202, Description: "the job", Body: body("Job", exampleJob)}}, nil, s.importSIMs, nil)
	add("POST", "/sims/state", "bulkSIMState", "Change the state of many SIMs as a background job; each change is audited and fails alone", op,
		body("BulkState", bulkStateRequest{ICCIDs: []string{exampleICCID}, State: connectivity.StateSuspended}),
		[]response{{Status: 202, Description: "the job", Body: body("Job", exampleJob)}}, nil, s.bulkState, nil)
	add("GET", "/jobs/{id}", "getConnectivityJob", "A bulk job's progress and failed rows", view, nil,
		[]response{{Status: 200, Description: "the job", Body: body("Job", exampleJob)}}, nil, s.getConnJob, map[string]string{"id": "job id"})
	add("GET", "/audit", "listSIMAudit", "SIM state changes: who, when, from, to", view, nil,
		[]response{{Status: 200, Description: "a page", Body: body("AuditList", auditList{Items: []connectivity.AuditEntry{{ID: "064cacc5fc5c0026ae86b5aa", ICCID: exampleICCID, Actor: "token:tok-1", At: exampleTime, From: "INVENTORY", To: "ACTIVATED"}}})}},
		nil, s.listAudit, nil,
		param{Name: "iccid", Description: "only this SIM", Schema: schema{"type": "string"}},
		param{Name: "limit", Description: "page size, 1 to 1000", Schema: schema{"type": "integer", "minimum": 1, "maximum": 1000}},
		param{Name: "after", Description: "the next value of the previous page", Schema: schema{"type": "string"}})
	add("POST", "/cdrs", "importCDRs", "Import radio-side usage records; a record id seen before is ignored", op,
		body("CDRImport", cdrRequest{Records: []connectivity.CDR{{ID: "smf-42-0001", IMSI: "001010000000001", Start: exampleTime, End: exampleTime.Add(time.Hour), UpBytes: 120000, DownBytes: 48000}}}),
		[]response{{Status: 200, Description: "the report", Body: body("CDRReport", connectivity.CDRReport{Imported: 1, Errors: []connectivity.RowError{}})}}, nil, s.importCDRs, nil)
	add("GET", "/usage", "connectivityUsage", "Usage per hour of one SIM, device or slice", view, nil,
		[]response{{Status: 200, Description: "usage", Body: body("UsageList", itemsOf[connectivity.UsageRow]{Items: []connectivity.UsageRow{{Hour: exampleTime, Usage: connectivity.Usage{UpBytes: 52000, DownBytes: 18000, UpMsgs: 410, DownMsgs: 35}}}})}},
		nil, s.usage, nil,
		param{Name: "iccid", Description: "a SIM", Schema: schema{"type": "string"}},
		param{Name: "device", Description: "a device", Schema: schema{"type": "string"}},
		param{Name: "slice", Description: "a slice", Schema: schema{"type": "string"}, Example: "robots"},
		param{Name: "from", Description: "RFC 3339 (default 24 h before to)", Schema: schema{"type": "string"}},
		param{Name: "to", Description: "RFC 3339 (default now)", Schema: schema{"type": "string"}})

	add("GET", "/core", "connectivityCoreStatus", "The mobile core (SD-Core): whether Shopfloor can reach and log in to it, and per device group, slice and subscriber whether the core holds it in sync, pending or failed with the core's error", view, nil,
		[]response{{Status: 200, Description: "the status", Body: body("CoreStatus", connectivity.CoreStatus{Link: connectivity.CoreLinkOK, LinkSince: exampleTime, Counts: map[string]int{"in_sync": 2, "pending": 0, "failed": 1},
			Objects: []connectivity.CoreObjectStatus{{Kind: "slice", Name: "robots", State: connectivity.CoreFailed, Detail: "POST /config/v1/network-slice/acme-robots: 400 invalid TAC 0 for gNB gnb1", At: exampleTime}}})}},
		nil, s.coreStatus, nil)

	// The named objects share one shape of routes.
	objectRoutes(s, sc, add, "traffic-classes", "TrafficClass", "trafficClass", exampleTrafficClass,
		func(r *http.Request, name string) (any, bool, error) {
			var v connectivity.TrafficClass
			if err := decodeJSONReq(r, &v); err != nil {
				return nil, false, err
			}
			if err := nameMatches(v.Name, name); err != nil {
				return nil, false, err
			}
			v.Name = name
			return s.deps.Connectivity.PutTrafficClass(r.Context(), orgOf(r), v)
		},
		func(r *http.Request, name string) (any, error) {
			return s.deps.Connectivity.GetTrafficClass(r.Context(), orgOf(r), name)
		},
		func(r *http.Request) (any, error) {
			l, err := s.deps.Connectivity.ListTrafficClasses(r.Context(), orgOf(r))
			return itemsOf[connectivity.TrafficClass]{Items: l}, err
		},
		func(r *http.Request, name string) error {
			return s.deps.Connectivity.DeleteTrafficClass(r.Context(), orgOf(r), name)
		})
	objectRoutes(s, sc, add, "applications", "Application", "application", exampleConnApp,
		func(r *http.Request, name string) (any, bool, error) {
			var v connectivity.Application
			if err := decodeJSONReq(r, &v); err != nil {
				return nil, false, err
			}
			if err := nameMatches(v.Name, name); err != nil {
				return nil, false, err
			}
			v.Name = name
			return s.deps.Connectivity.PutApplication(r.Context(), orgOf(r), v)
		},
		func(r *http.Request, name string) (any, error) {
			return s.deps.Connectivity.GetApplication(r.Context(), orgOf(r), name)
		},
		func(r *http.Request) (any, error) {
			l, err := s.deps.Connectivity.ListApplications(r.Context(), orgOf(r))
			return itemsOf[connectivity.Application]{Items: l}, err
		},
		func(r *http.Request, name string) error {
			return s.deps.Connectivity.DeleteApplication(r.Context(), orgOf(r), name)
		})
	objectRoutes(s, sc, add, "device-groups", "DeviceGroup", "deviceGroup", exampleDevGroup,
		func(r *http.Request, name string) (any, bool, error) {
			var v connectivity.DeviceGroup
			if err := decodeJSONReq(r, &v); err != nil {
				return nil, false, err
			}
			if err := nameMatches(v.Name, name); err != nil {
				return nil, false, err
			}
			v.Name = name
			return s.deps.Connectivity.PutDeviceGroup(r.Context(), orgOf(r), v)
		},
		func(r *http.Request, name string) (any, error) {
			return s.deps.Connectivity.GetDeviceGroup(r.Context(), orgOf(r), name)
		},
		func(r *http.Request) (any, error) {
			l, err := s.deps.Connectivity.ListDeviceGroups(r.Context(), orgOf(r))
			return itemsOf[connectivity.DeviceGroup]{Items: l}, err
		},
		func(r *http.Request, name string) error {
			return s.deps.Connectivity.DeleteDeviceGroup(r.Context(), orgOf(r), name)
		})
	objectRoutes(s, sc, add, "slices", "Slice", "slice", exampleSlice,
		func(r *http.Request, name string) (any, bool, error) {
			var v connectivity.Slice
			if err := decodeJSONReq(r, &v); err != nil {
				return nil, false, err
			}
			if err := nameMatches(v.Name, name); err != nil {
				return nil, false, err
			}
			v.Name = name
			return s.deps.Connectivity.PutSlice(r.Context(), orgOf(r), v)
		},
		func(r *http.Request, name string) (any, error) {
			return s.deps.Connectivity.GetSlice(r.Context(), orgOf(r), name)
		},
		func(r *http.Request) (any, error) {
			l, err := s.deps.Connectivity.ListSlices(r.Context(), orgOf(r))
			return itemsOf[connectivity.Slice]{Items: l}, err
		},
		func(r *http.Request, name string) error {
			return s.deps.Connectivity.DeleteSlice(r.Context(), orgOf(r), name)
		})
	objectRoutes(s, sc, add, "site-networks", "SiteNetwork", "siteNetwork", exampleSiteNet,
		func(r *http.Request, name string) (any, bool, error) {
			var v connectivity.SiteNetwork
			if err := decodeJSONReq(r, &v); err != nil {
				return nil, false, err
			}
			if v.Site != "" && v.Site != name {
				return nil, false, invalid("field \"site\" is %q but the path names %q; leave it out or make them equal", v.Site, name)
			}
			v.Site = name
			return s.deps.Connectivity.PutSiteNetwork(r.Context(), orgOf(r), v)
		},
		func(r *http.Request, name string) (any, error) {
			return s.deps.Connectivity.GetSiteNetwork(r.Context(), orgOf(r), name)
		},
		func(r *http.Request) (any, error) {
			l, err := s.deps.Connectivity.ListSiteNetworks(r.Context(), orgOf(r))
			return itemsOf[connectivity.SiteNetwork]{Items: l}, err
		},
		func(r *http.Request, name string) error {
			return s.deps.Connectivity.DeleteSiteNetwork(r.Context(), orgOf(r), name)
		})
}

type addFunc func(method, pattern, id, summary string, role registry.Role, req *content, resp []response, errs []int, h func(w http.ResponseWriter, r *http.Request) error, params map[string]string, q ...param)

// objectRoutes registers PUT (create or replace), GET, list and DELETE for
// one kind of named object.
func objectRoutes(s *Server, sc map[string]schema, add addFunc, path, schemaName, idName string, example any,
	put func(r *http.Request, name string) (any, bool, error), get func(r *http.Request, name string) (any, error),
	list func(r *http.Request) (any, error), del func(r *http.Request, name string) error) {
	title := strings.ToUpper(idName[:1]) + idName[1:]
	name := map[string]string{"name": "name (for site networks: the site id)"}
	one := &content{Schema: sc[schemaName], Example: example}
	req := &content{Schema: inputOf(sc[schemaName]), Example: example}
	listSchema := object("", []string{"items"}, schema{"items": arrayOf(sc[schemaName])})
	add("PUT", "/"+path+"/{name}", "put"+title, "Create or replace a "+strings.ReplaceAll(path[:len(path)-1], "-", " ")+"; references must exist", registry.RoleOperator, req,
		[]response{{Status: 200, Description: "replaced", Body: one}, {Status: 201, Description: "created", Body: one}}, []int{409},
		func(w http.ResponseWriter, r *http.Request) error {
			v, created, err := put(r, r.PathValue("name"))
			if err != nil {
				return err
			}
			st := http.StatusOK
			if created {
				st = http.StatusCreated
			}
			writeJSON(w, st, v)
			return nil
		}, name)
	add("GET", "/"+path+"/{name}", "get"+title, "Get one", registry.RoleViewer, nil,
		[]response{{Status: 200, Description: "found", Body: one}}, nil,
		func(w http.ResponseWriter, r *http.Request) error {
			v, err := get(r, r.PathValue("name"))
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, v)
			return nil
		}, name)
	add("GET", "/"+path, "list"+title+"s", "List all of the organization's", registry.RoleViewer, nil,
		[]response{{Status: 200, Description: "all", Body: &content{Schema: listSchema, Example: map[string]any{"items": []any{example}}}}}, nil,
		func(w http.ResponseWriter, r *http.Request) error {
			v, err := list(r)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, v)
			return nil
		}, nil)
	add("DELETE", "/"+path+"/{name}", "delete"+title, "Delete one; refused with 409 naming what still uses it", registry.RoleOperator, nil,
		[]response{{Status: 204, Description: "deleted"}}, []int{409},
		func(w http.ResponseWriter, r *http.Request) error {
			if err := del(r, r.PathValue("name")); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}, name)
}

// inputOf is the request form of a response schema: the hub sets updatedAt
// and the name comes from the path.
func inputOf(out schema) schema {
	props := schema{}
	for k, v := range out["properties"].(schema) {
		props[k] = v
	}
	var req []string
	for _, r := range out["required"].([]string) {
		if r != "name" && r != "site" || out["description"] != "a site's private network settings" && r == "site" {
			req = append(req, r)
		}
	}
	return input(out["description"].(string), req, props)
}

func nameMatches(body, path string) error {
	if body != "" && body != path {
		return invalid("field \"name\" is %q but the path names %q; leave it out or make them equal", body, path)
	}
	return nil
}

// needConn answers 503 without the service and maps its errors.
func (s *Server) needConn(h func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.deps.Connectivity == nil {
			return &httpError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "connectivity management is not running on this hub"}
		}
		return connError(h(w, r))
	}
}

// connError maps the connectivity sentinels to statuses.
func connError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, connectivity.ErrNotFound):
		return notFound("%s", err.Error())
	case errors.Is(err, connectivity.ErrTransition), errors.Is(err, connectivity.ErrConflict):
		return &httpError{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	case errors.Is(err, connectivity.ErrInvalid):
		return invalid("%s", err.Error())
	}
	return err
}

// decodeJSONReq is decodeJSON for handlers that have no ResponseWriter at
// hand; the body limit still applies.
func decodeJSONReq(r *http.Request, dst any) error { return decodeJSON(nil, r, dst) }

func actorOf(r *http.Request) string { return "token:" + principalOf(r).TokenID }

func (s *Server) coreStatus(w http.ResponseWriter, r *http.Request) error {
	st, err := s.deps.Connectivity.CoreStatus(r.Context(), orgOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) createSIM(w http.ResponseWriter, r *http.Request) error {
	var req createSIMRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	m, err := s.deps.Connectivity.CreateSIM(r.Context(), orgOf(r), connectivity.SIM{ICCID: req.ICCID, IMSI: req.IMSI, MSISDN: req.MSISDN,
		Label: req.Label, StaticIP: req.StaticIP, Ki: req.Ki, OPc: req.OPc})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, simView{SIM: m})
	return nil
}

func (s *Server) listSIMs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	f := connectivity.SIMFilter{State: connectivity.State(q.Get("state")), Device: q.Get("device"), Label: q.Get("label"), After: after}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return invalid("parameter \"limit\" must be a whole number from 1 to 1000, not %q", l)
		}
		f.Limit = n
	}
	if f.State != "" && !validStateName(f.State) {
		return invalid("parameter \"state\" must be INVENTORY, TEST_READY, ACTIVATED, SUSPENDED or TERMINATED, not %q", f.State)
	}
	items, next, err := s.deps.Connectivity.ListSIMs(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, simList{Items: items, Next: next})
	return nil
}

func validStateName(st connectivity.State) bool {
	for _, v := range connectivity.States {
		if v == st {
			return true
		}
	}
	return false
}

func (s *Server) getSIM(w http.ResponseWriter, r *http.Request) error {
	m, err := s.deps.Connectivity.GetSIM(r.Context(), orgOf(r), r.PathValue("iccid"))
	if err != nil {
		return err
	}
	u, err := s.deps.Connectivity.SIMUsage(r.Context(), orgOf(r), m.ICCID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, simView{SIM: m, Usage: &u})
	return nil
}

func (s *Server) patchSIM(w http.ResponseWriter, r *http.Request) error {
	var p connectivity.SIMPatch
	if err := decodeJSON(w, r, &p); err != nil {
		return err
	}
	if p.Label == nil && p.MSISDN == nil && p.Device == nil && p.IMEILock == nil && !p.ClearIMEI && p.StaticIP == nil && p.Ki == nil && p.OPc == nil {
		return invalid("the body changes nothing; send at least one of label, msisdn, device, imeiLock, clearImei, staticIp, ki, opc")
	}
	m, err := s.deps.Connectivity.UpdateSIM(r.Context(), orgOf(r), actorOf(r), r.PathValue("iccid"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, simView{SIM: m})
	return nil
}

func (s *Server) setSIMState(w http.ResponseWriter, r *http.Request) error {
	var req stateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.State == "" {
		return invalid("field \"state\" is required: INVENTORY, TEST_READY, ACTIVATED, SUSPENDED or TERMINATED")
	}
	if req.At != nil {
		sc, err := s.deps.Connectivity.ScheduleState(r.Context(), orgOf(r), actorOf(r), r.PathValue("iccid"), req.State, *req.At)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, sc)
		return nil
	}
	m, err := s.deps.Connectivity.SetState(r.Context(), orgOf(r), actorOf(r), r.PathValue("iccid"), req.State)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, simView{SIM: m})
	return nil
}

// maxImportBody bounds a JSON SIM import (about 100,000 SIMs).
const maxImportBody = 32 << 20

func (s *Server) importSIMs(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBody)
	var rows []connectivity.SIMRow
	// CSV when it says so; anything else is read as JSON, as before CSV was taken.
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "text/csv", "application/csv":
		// Read it whole first, so a body over the limit is refused before
		// any row is imported.
		data, err := io.ReadAll(r.Body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return invalid("the CSV file is larger than %d MiB; split it into smaller files", maxImportBody>>20)
			}
			return invalid("the CSV body could not be read: %v", err)
		}
		if rows, err = connectivity.ParseSIMCSV(bytes.NewReader(data)); err != nil {
			return err
		}
	default:
		var req importRequest
		if err := decodeJSONLarge(r, &req); err != nil {
			return err
		}
		rows = make([]connectivity.SIMRow, len(req.SIMs))
		for i, m := range req.SIMs {
			rows[i] = connectivity.SIMRow{ICCID: m.ICCID, IMSI: m.IMSI, MSISDN: m.MSISDN, Label: m.Label, Ki: m.Ki, OPc: m.OPc}
		}
	}
	j, err := s.deps.Connectivity.StartImport(r.Context(), orgOf(r), rows)
	if err != nil {
		return err
	}
	w.Header().Set("Location", connBase+"/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
	return nil
}

func (s *Server) bulkState(w http.ResponseWriter, r *http.Request) error {
	var req bulkStateRequest
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBody)
	if err := decodeJSONLarge(r, &req); err != nil {
		return err
	}
	j, err := s.deps.Connectivity.StartBulkState(r.Context(), orgOf(r), actorOf(r), req.ICCIDs, req.State)
	if err != nil {
		return err
	}
	w.Header().Set("Location", connBase+"/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, j)
	return nil
}

func (s *Server) getConnJob(w http.ResponseWriter, r *http.Request) error {
	j, err := s.deps.Connectivity.GetJob(r.Context(), orgOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	f := connectivity.AuditFilter{ICCID: q.Get("iccid"), After: after}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return invalid("parameter \"limit\" must be a whole number from 1 to 1000, not %q", l)
		}
		f.Limit = n
	}
	items, next, err := s.deps.Connectivity.ListAudit(r.Context(), orgOf(r), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, auditList{Items: items, Next: next})
	return nil
}

func (s *Server) importCDRs(w http.ResponseWriter, r *http.Request) error {
	var req cdrRequest
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBody)
	if err := decodeJSONLarge(r, &req); err != nil {
		return err
	}
	rep, err := s.deps.Connectivity.ImportCDRs(r.Context(), orgOf(r), req.Records)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	uq := connectivity.UsageQuery{ICCID: q.Get("iccid"), Device: q.Get("device"), Slice: q.Get("slice")}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &uq.From}, {"to", &uq.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return invalid("parameter %q must be an RFC 3339 time such as 2026-03-02T08:00:00Z, not %q", p.name, v)
			}
			*p.dst = t
		}
	}
	rows, err := s.deps.Connectivity.UsageByHour(r.Context(), orgOf(r), uq)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, itemsOf[connectivity.UsageRow]{Items: rows})
	return nil
}

// decodeJSONLarge decodes a bulk body whose size limit the caller set.
func decodeJSONLarge(r *http.Request, dst any) error {
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		return bodyError(err, dst)
	}
	return decodeObject(raw, dst)
}

// Connectivity is the part of *connectivity.Service the API calls.
type Connectivity interface {
	CreateSIM(ctx context.Context, org string, m connectivity.SIM) (connectivity.SIM, error)
	GetSIM(ctx context.Context, org, iccid string) (connectivity.SIM, error)
	ListSIMs(ctx context.Context, org string, f connectivity.SIMFilter) ([]connectivity.SIM, string, error)
	UpdateSIM(ctx context.Context, org, actor, iccid string, p connectivity.SIMPatch) (connectivity.SIM, error)
	SetState(ctx context.Context, org, actor, iccid string, to connectivity.State) (connectivity.SIM, error)
	ScheduleState(ctx context.Context, org, actor, iccid string, to connectivity.State, at time.Time) (connectivity.Scheduled, error)
	SIMUsage(ctx context.Context, org, iccid string) (connectivity.SIMUsage, error)
	StartImport(ctx context.Context, org string, rows []connectivity.SIMRow) (connectivity.Job, error)
	StartBulkState(ctx context.Context, org, actor string, iccids []string, to connectivity.State) (connectivity.Job, error)
	GetJob(ctx context.Context, org, id string) (connectivity.Job, error)
	ListAudit(ctx context.Context, org string, f connectivity.AuditFilter) ([]connectivity.AuditEntry, string, error)
	ImportCDRs(ctx context.Context, org string, recs []connectivity.CDR) (connectivity.CDRReport, error)
	UsageByHour(ctx context.Context, org string, q connectivity.UsageQuery) ([]connectivity.UsageRow, error)

	PutTrafficClass(ctx context.Context, org string, c connectivity.TrafficClass) (connectivity.TrafficClass, bool, error)
	GetTrafficClass(ctx context.Context, org, name string) (connectivity.TrafficClass, error)
	ListTrafficClasses(ctx context.Context, org string) ([]connectivity.TrafficClass, error)
	DeleteTrafficClass(ctx context.Context, org, name string) error
	PutApplication(ctx context.Context, org string, a connectivity.Application) (connectivity.Application, bool, error)
	GetApplication(ctx context.Context, org, name string) (connectivity.Application, error)
	ListApplications(ctx context.Context, org string) ([]connectivity.Application, error)
	DeleteApplication(ctx context.Context, org, name string) error
	PutDeviceGroup(ctx context.Context, org string, g connectivity.DeviceGroup) (connectivity.DeviceGroup, bool, error)
	GetDeviceGroup(ctx context.Context, org, name string) (connectivity.DeviceGroup, error)
	ListDeviceGroups(ctx context.Context, org string) ([]connectivity.DeviceGroup, error)
	DeleteDeviceGroup(ctx context.Context, org, name string) error
	PutSlice(ctx context.Context, org string, s connectivity.Slice) (connectivity.Slice, bool, error)
	GetSlice(ctx context.Context, org, name string) (connectivity.Slice, error)
	ListSlices(ctx context.Context, org string) ([]connectivity.Slice, error)
	DeleteSlice(ctx context.Context, org, name string) error
	PutSiteNetwork(ctx context.Context, org string, n connectivity.SiteNetwork) (connectivity.SiteNetwork, bool, error)
	GetSiteNetwork(ctx context.Context, org, site string) (connectivity.SiteNetwork, error)
	ListSiteNetworks(ctx context.Context, org string) ([]connectivity.SiteNetwork, error)
	DeleteSiteNetwork(ctx context.Context, org, site string) error
	CoreStatus(ctx context.Context, org string) (connectivity.CoreStatus, error)
}

var _ Connectivity = (*connectivity.Service)(nil)
