package connectivity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

func asField(err error, fe **connectivity.FieldError) bool { return errors.As(err, fe) }
func errorsIs(err, target error) bool                      { return errors.Is(err, target) }

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{iccid(1), true}, {"8944500000000000001", false}, {"89445", false}, {"89445000000000000a18", false},
		{withLuhn("894450000000000000001"), true}, {withLuhn("89445000000000000000012"), false},
	} {
		if err := connectivity.ValidateICCID(tc.s); (err == nil) != tc.ok {
			t.Errorf("ICCID %q: err %v, want ok=%v", tc.s, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		s  string
		ok bool
	}{{"490154203237518", true}, {"490154203237519", false}, {"4901542032375180", true}, {"49015420323751", false}, {"49015420323751x", false}} {
		if err := connectivity.ValidateIMEI("imei", tc.s); (err == nil) != tc.ok {
			t.Errorf("IMEI %q: err %v, want ok=%v", tc.s, err, tc.ok)
		}
	}
	if connectivity.ValidateIMSI("imsi", "00101000000001") == nil || connectivity.ValidateIMSI("imsi", imsi(1)) != nil {
		t.Error("IMSI must be exactly 15 digits")
	}
}

func TestSIMLifecycleAndAudit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		m := must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(1), IMSI: imsi(1), Label: "agv 1"}))
		if m.State != connectivity.StateInventory {
			t.Fatalf("new SIM in %s", m.State)
		}
		_, err := f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(1), IMSI: imsi(2)})
		wantField(t, err, "iccid", connectivity.ErrConflict)
		_, err = f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(2), IMSI: imsi(1)})
		wantField(t, err, "imsi", connectivity.ErrConflict)
		_, err = f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(2)[:18] + "0", IMSI: imsi(2)})
		wantField(t, err, "iccid", connectivity.ErrInvalid)

		_, err = f.svc.SetState(ctx, "acme", "token:a", iccid(1), connectivity.StateSuspended)
		wantField(t, err, "state", connectivity.ErrTransition)
		for _, st := range []connectivity.State{connectivity.StateTestReady, connectivity.StateActivated, connectivity.StateSuspended, connectivity.StateActivated} {
			f.clock.Add(time.Second)
			must[connectivity.SIM](t)(f.svc.SetState(ctx, "acme", "token:a", iccid(1), st))
		}
		got := must[connectivity.SIM](t)(f.svc.GetSIM(ctx, "acme", iccid(1)))
		if got.State != connectivity.StateActivated {
			t.Fatalf("state %s", got.State)
		}
		if _, err := f.svc.GetSIM(ctx, "globex", iccid(1)); !errors.Is(err, connectivity.ErrNotFound) {
			t.Fatalf("another org sees the SIM: %v", err)
		}
		entries, _, err := f.svc.ListAudit(ctx, "acme", connectivity.AuditFilter{ICCID: iccid(1)})
		if err != nil {
			t.Fatal(err)
		}
		want := [][2]string{{"INVENTORY", "TEST_READY"}, {"TEST_READY", "ACTIVATED"}, {"ACTIVATED", "SUSPENDED"}, {"SUSPENDED", "ACTIVATED"}}
		if len(entries) != len(want) {
			t.Fatalf("audit %+v", entries)
		}
		for i, e := range entries {
			if e.From != want[i][0] || e.To != want[i][1] || e.Actor != "token:a" || e.At.IsZero() {
				t.Errorf("audit %d: %+v, want %v", i, e, want[i])
			}
		}
		// Paging and filters.
		for i := 2; i <= 5; i++ {
			must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(i), IMSI: imsi(i), Label: "spare"}))
		}
		page, next, err := f.svc.ListSIMs(ctx, "acme", connectivity.SIMFilter{Limit: 2, Label: "spa"})
		if err != nil || len(page) != 2 || next != iccid(3) {
			t.Fatalf("page %v next %q err %v", page, next, err)
		}
		page, next, _ = f.svc.ListSIMs(ctx, "acme", connectivity.SIMFilter{Limit: 2, Label: "spa", After: next})
		if len(page) != 2 || next != "" {
			t.Fatalf("second page %d next %q", len(page), next)
		}
		act, _, _ := f.svc.ListSIMs(ctx, "acme", connectivity.SIMFilter{State: connectivity.StateActivated})
		if len(act) != 1 || act[0].ICCID != iccid(1) {
			t.Fatalf("state filter %v", act)
		}
	})
}

func TestScheduledChange(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(1), IMSI: imsi(1)}))
		if _, err := f.svc.ScheduleState(ctx, "acme", "token:a", iccid(1), connectivity.StateActivated, f.clock.Now().Add(-time.Minute)); err == nil {
			t.Fatal("a change in the past was scheduled")
		}
		must[connectivity.Scheduled](t)(f.svc.ScheduleState(ctx, "acme", "token:a", iccid(1), connectivity.StateActivated, f.clock.Now().Add(time.Hour)))
		// An illegal one is recorded as not applied.
		must[connectivity.Scheduled](t)(f.svc.ScheduleState(ctx, "acme", "token:b", iccid(1), connectivity.StateTerminated, f.clock.Now().Add(2*time.Hour)))
		if n, err := f.svc.RunDue(ctx); err != nil || n != 0 {
			t.Fatalf("ran %d early (%v)", n, err)
		}
		f.clock.Add(3 * time.Hour)
		if n, err := f.svc.RunDue(ctx); err != nil || n != 1 {
			t.Fatalf("ran %d, want 1 (%v)", n, err)
		}
		if m, _ := f.svc.GetSIM(ctx, "acme", iccid(1)); m.State != connectivity.StateActivated {
			t.Fatalf("state %s", m.State)
		}
		left, _ := f.svc.ListScheduled(ctx, "acme", "")
		if len(left) != 0 {
			t.Fatalf("left %v", left)
		}
		entries, _, _ := f.svc.ListAudit(ctx, "acme", connectivity.AuditFilter{ICCID: iccid(1)})
		if len(entries) != 2 || entries[0].To != "ACTIVATED" || entries[1].Actor != "token:b" || entries[1].Reason == "" {
			t.Fatalf("audit %+v", entries)
		}
	})
}

func waitJob(t *testing.T, f *fixture, id string) connectivity.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		j, err := f.svc.GetJob(context.Background(), "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == connectivity.JobDone {
			return j
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("job did not end")
	return connectivity.Job{}
}

func TestBulkJobsFailRowsAlone(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		rows := []connectivity.SIMRow{{ICCID: iccid(1), IMSI: imsi(1)}, {ICCID: "123", IMSI: imsi(2)}, {ICCID: iccid(3), IMSI: imsi(1)}, {ICCID: iccid(4), IMSI: imsi(4)}}
		must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(4), IMSI: imsi(99)}))
		j := waitJob(t, f, must[connectivity.Job](t)(f.svc.StartImport(ctx, "acme", rows)).ID)
		if j.Done != 1 || j.Failed != 3 || len(j.Errors) != 3 || j.Errors[0].Row != 2 {
			t.Fatalf("import job %+v", j)
		}
		j = waitJob(t, f, must[connectivity.Job](t)(f.svc.StartBulkState(ctx, "acme", "token:a", []string{iccid(1), iccid(4), iccid(7)}, connectivity.StateActivated)).ID)
		if j.Done != 2 || j.Failed != 1 || j.Errors[0].ICCID != iccid(7) {
			t.Fatalf("state job %+v", j)
		}
		entries, _, _ := f.svc.ListAudit(ctx, "acme", connectivity.AuditFilter{})
		if len(entries) != 2 || entries[0].Reason != "job "+j.ID {
			t.Fatalf("audit %+v", entries)
		}
	})
}
