package api_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/api"
	"github.com/shopfloor/shopfloor/internal/connectivity"
	"github.com/shopfloor/shopfloor/internal/registry"
)

// connDirectory answers the connectivity service from the API's registry.
type connDirectory struct{ reg api.Registry }

func (d connDirectory) SiteExists(ctx context.Context, org, site string) (bool, error) {
	_, err := d.reg.GetSite(ctx, org, site)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d connDirectory) DeviceExists(ctx context.Context, org, dev string) (bool, error) {
	_, err := d.reg.GetDevice(ctx, org, dev)
	if errors.Is(err, registry.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func withConnectivity(t *testing.T) envOption {
	return func(d *api.Deps) {
		db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "conn.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		svc, err := connectivity.New(context.Background(), connectivity.Options{DB: db, Dialect: connectivity.SQLite, Directory: connDirectory{d.Registry}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		d.Connectivity = svc
	}
}

func TestConnectivitySIMContract(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk, withConnectivity(t))
		op, viewer := e.acme[registry.RoleOperator], e.acme[registry.RoleViewer]
		const iccid = "8944500000000000014"
		const base = "/api/v1/connectivity"
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]any{"id": "agv-7", "site": "acme-plant"}), http.StatusCreated)

		r := e.do("POST", base+"/sims", op, map[string]string{"iccid": iccid, "imsi": "001010000000001", "label": "agv-7 modem"})
		wantStatus(t, r, http.StatusCreated)
		var sim map[string]any
		r.decode(t, &sim)
		if sim["state"] != "INVENTORY" {
			t.Fatalf("new SIM %v", sim)
		}
		wantError(t, e.do("POST", base+"/sims", viewer, map[string]string{"iccid": iccid, "imsi": "001010000000002"}), http.StatusForbidden, "forbidden")
		wantError(t, e.do("POST", base+"/sims", op, map[string]string{"iccid": iccid, "imsi": "001010000000002"}), http.StatusConflict, "conflict")
		for field, body := range map[string]map[string]string{
			"iccid": {"iccid": "8944500000000000015", "imsi": "001010000000003"},
			"imsi":  {"iccid": "8944500000000000022", "imsi": "00101000000000"},
		} {
			msg := wantError(t, e.do("POST", base+"/sims", op, body), http.StatusBadRequest, "invalid")
			if !strings.Contains(msg, `"`+field+`"`) {
				t.Errorf("message %q does not name %s", msg, field)
			}
		}
		msg := wantError(t, e.do("POST", base+"/sims/"+iccid+"/state", op, map[string]string{"state": "SUSPENDED"}), http.StatusConflict, "conflict")
		if !strings.Contains(msg, "INVENTORY") {
			t.Errorf("message %q", msg)
		}
		wantStatus(t, e.do("POST", base+"/sims/"+iccid+"/state", op, map[string]string{"state": "ACTIVATED"}), http.StatusOK)
		msg = wantError(t, e.do("PATCH", base+"/sims/"+iccid, op, map[string]any{"device": "no-such"}), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, `"device"`) {
			t.Errorf("message %q", msg)
		}
		wantStatus(t, e.do("PATCH", base+"/sims/"+iccid, op, map[string]any{"device": "agv-7", "imeiLock": true}), http.StatusOK)
		r = e.do("GET", base+"/sims/"+iccid, viewer, nil)
		wantStatus(t, r, http.StatusOK)
		var got struct {
			State    string          `json:"state"`
			Device   string          `json:"device"`
			IMEILock bool            `json:"imeiLock"`
			Usage    *map[string]any `json:"usage"`
		}
		r.decode(t, &got)
		if got.State != "ACTIVATED" || got.Device != "agv-7" || !got.IMEILock || got.Usage == nil {
			t.Fatalf("GET SIM %s", r.body)
		}
		if strings.Contains(string(r.body), `"ki"`) {
			t.Fatal("keys shown")
		}
		// Another organization does not see it.
		wantError(t, e.do("GET", base+"/sims/"+iccid, e.globex[registry.RoleViewer], nil), http.StatusNotFound, "not_found")
		// Scheduling answers 202.
		wantStatus(t, e.do("POST", base+"/sims/"+iccid+"/state", op, map[string]any{"state": "SUSPENDED", "at": time.Now().Add(time.Hour)}), http.StatusAccepted)
		r = e.do("GET", base+"/audit?iccid="+iccid, viewer, nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `"from":"INVENTORY","to":"ACTIVATED"`) {
			t.Fatalf("audit %s", r.body)
		}

		// A bulk import is a job; one bad row fails alone.
		r = e.do("POST", base+"/sims/import", op, map[string]any{"sims": []map[string]string{
			{"iccid": "8944500000000000022", "imsi": "001010000000002"}, {"iccid": "1", "imsi": "001010000000003"}}})
		wantStatus(t, r, http.StatusAccepted)
		var job connectivity.Job
		r.decode(t, &job)
		deadline := time.Now().Add(10 * time.Second)
		for job.Status != connectivity.JobDone {
			if time.Now().After(deadline) {
				t.Fatalf("job %+v", job)
			}
			time.Sleep(10 * time.Millisecond)
			r = e.do("GET", base+"/jobs/"+job.ID, viewer, nil)
			wantStatus(t, r, http.StatusOK)
			r.decode(t, &job)
		}
		if job.Done != 1 || job.Failed != 1 || job.Errors[0].Row != 2 {
			t.Fatalf("job %+v", job)
		}
		// The same route takes CSV: a header row, then one SIM per row;
		// a bad row, even one that is not valid CSV, fails alone.
		csvBody := "ICCID,imsi,label\n8944500000000000030,001010000000004,batch 8\n8944500000000000031,001010000000005,typo\n\"broken,001010000000006\n"
		r = e.do("POST", base+"/sims/import", op, csvBody, "Content-Type", "text/csv; charset=utf-8")
		wantStatus(t, r, http.StatusAccepted)
		r.decode(t, &job)
		for deadline := time.Now().Add(10 * time.Second); job.Status != connectivity.JobDone; {
			if time.Now().After(deadline) {
				t.Fatalf("CSV job %+v", job)
			}
			time.Sleep(10 * time.Millisecond)
			r = e.do("GET", base+"/jobs/"+job.ID, viewer, nil)
			wantStatus(t, r, http.StatusOK)
			r.decode(t, &job)
		}
		if job.Total != 3 || job.Done != 1 || job.Failed != 2 || len(job.Errors) != 2 ||
			job.Errors[0].Row != 2 || !strings.Contains(job.Errors[0].Error, `"iccid"`) ||
			job.Errors[1].Row != 3 || !strings.Contains(job.Errors[1].Error, "not valid CSV") {
			t.Fatalf("CSV job %+v", job)
		}
		wantStatus(t, e.do("GET", base+"/sims/8944500000000000030", viewer, nil), http.StatusOK)
		msg = wantError(t, e.do("POST", base+"/sims/import", op, "iccid,imsi,colour\n", "Content-Type", "text/csv"), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, `"colour"`) {
			t.Fatalf("bad header message %q", msg)
		}
		wantError(t, e.do("POST", base+"/sims/import", op, "label\nx\n", "Content-Type", "text/csv"), http.StatusBadRequest, "invalid")
		wantError(t, e.do("POST", base+"/sims/import", op, "", "Content-Type", "text/csv"), http.StatusBadRequest, "invalid")
		r = e.do("GET", base+"/sims?state=INVENTORY&limit=10", viewer, nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), "8944500000000000022") || strings.Contains(string(r.body), iccid) {
			t.Fatalf("filtered list %s", r.body)
		}
		rep := e.do("POST", base+"/cdrs", op, map[string]any{"records": []map[string]any{{"id": "r1", "imsi": "001010000000001", "start": "2026-03-02T08:00:00Z", "end": "2026-03-02T09:00:00Z", "upBytes": 10, "downBytes": 20}}})
		wantStatus(t, rep, http.StatusOK)
		rep = e.do("POST", base+"/cdrs", op, map[string]any{"records": []map[string]any{{"id": "r1", "imsi": "001010000000001", "start": "2026-03-02T08:00:00Z", "end": "2026-03-02T09:00:00Z", "upBytes": 10, "downBytes": 20}}})
		if !strings.Contains(string(rep.body), `"duplicate":1`) {
			t.Fatalf("second CDR import %s", rep.body)
		}
	})
}

func TestConnectivityObjects(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, mk regMaker) {
		e := newEnv(t, mk, withConnectivity(t))
		op := e.acme[registry.RoleOperator]
		const base = "/api/v1/connectivity"
		wantStatus(t, e.do("POST", "/api/v1/devices", op, map[string]any{"id": "agv-7", "site": "acme-plant"}), http.StatusCreated)
		wantStatus(t, e.do("PUT", base+"/site-networks/acme-plant", op, map[string]any{"mcc": "001", "mnc": "01", "smallCells": []any{}}), http.StatusCreated)
		wantStatus(t, e.do("PUT", base+"/traffic-classes/platinum", op, map[string]any{"arp": 6, "qci": 9, "pdb": 300, "pelr": 6}), http.StatusCreated)
		wantStatus(t, e.do("PUT", base+"/traffic-classes/platinum", op, map[string]any{"arp": 7, "qci": 9, "pdb": 300, "pelr": 6}), http.StatusOK)
		group := map[string]any{"site": "acme-plant", "devices": []string{"agv-7"}, "ipDomain": map[string]any{"dnn": "internet", "subnet": "172.250.0.0/16", "mtu": 1460},
			"mbrUplink": 1000000, "mbrDownlink": 2000000, "trafficClass": "gold"}
		msg := wantError(t, e.do("PUT", base+"/device-groups/agvs", op, group), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, `"trafficClass"`) {
			t.Fatalf("message %q", msg)
		}
		wantError(t, e.do("GET", base+"/device-groups/agvs", op, nil), http.StatusNotFound, "not_found")
		group["trafficClass"] = "platinum"
		wantStatus(t, e.do("PUT", base+"/device-groups/agvs", op, group), http.StatusCreated)
		slice := map[string]any{"site": "acme-plant", "sst": 1, "sd": "010203", "deviceGroups": []string{"agvs"}, "defaultBehavior": "DENY-ALL", "filters": []any{}}
		wantStatus(t, e.do("PUT", base+"/slices/robots", op, slice), http.StatusCreated)
		slice["sst"] = 2
		msg = wantError(t, e.do("PUT", base+"/slices/robots", op, slice), http.StatusBadRequest, "invalid")
		if !strings.Contains(msg, `"sst"`) {
			t.Fatalf("message %q", msg)
		}
		msg = wantError(t, e.do("DELETE", base+"/traffic-classes/platinum", op, nil), http.StatusConflict, "conflict")
		if !strings.Contains(msg, "device group agvs") {
			t.Fatalf("message %q", msg)
		}
		r := e.do("GET", base+"/slices", e.acme[registry.RoleViewer], nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `"sst":1`) {
			t.Fatalf("list %s", r.body)
		}
		wantStatus(t, e.do("DELETE", base+"/slices/robots", op, nil), http.StatusNoContent)
		wantStatus(t, e.do("DELETE", base+"/device-groups/agvs", op, nil), http.StatusNoContent)
		wantStatus(t, e.do("DELETE", base+"/traffic-classes/platinum", op, nil), http.StatusNoContent)
	})
}
