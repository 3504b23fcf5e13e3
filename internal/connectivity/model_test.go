package connectivity_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

// seedModel creates a site network, a traffic class, an application, a
// device group with agv-0..2 and a slice.
func seedModel(t *testing.T, f *fixture, quota *connectivity.Quota, mbr *connectivity.Bitrate) {
	t.Helper()
	ctx := context.Background()
	put := func(_ any, _ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	put(f.svc.PutSiteNetwork(ctx, "acme", connectivity.SiteNetwork{Site: "plant", MCC: "001", MNC: "01",
		IMSIRange:  &connectivity.IMSIRange{First: "001010000000000", Last: "001019999999999"},
		SmallCells: []connectivity.SmallCell{{ID: "gnb1", TAC: 1, Address: "10.0.0.10", Enabled: true}, {ID: "gnb2", TAC: 2, Address: "10.0.0.11"}},
		EdgeNode:   "edge-plant"}))
	put(f.svc.PutTrafficClass(ctx, "acme", connectivity.TrafficClass{Name: "platinum", ARP: 6, QCI: 9, PDB: 300, PELR: 6}))
	put(f.svc.PutApplication(ctx, "acme", connectivity.Application{Name: "mes", Prefix: "10.20.0.0/24",
		Endpoints: []connectivity.Endpoint{{Port: 443, Protocol: "TCP"}, {Port: 5000, PortEnd: 5010, Protocol: "UDP"}}}))
	put(f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "agvs", Site: "plant", Devices: []string{"agv-0", "agv-1", "agv-2"},
		IPDomain:  connectivity.IPDomain{DNN: "internet", Subnet: "172.250.0.0/16", DNS: []string{"8.8.8.8"}, MTU: 1460},
		MBRUplink: 8_000_000, MBRDownlink: 16_000_000, TrafficClass: "platinum", Quota: quota}))
	put(f.svc.PutSlice(ctx, "acme", connectivity.Slice{Name: "robots", Site: "plant", SST: 1, SD: "010203", DeviceGroups: []string{"agvs"},
		DefaultBehavior: connectivity.AllowPublic, Filters: []connectivity.AppFilter{{Application: "mes", Priority: 10, Action: "allow"}}, MBR: mbr}))
}

func TestReferentialIntegrity(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		seedModel(t, f, nil, nil)

		_, _, err := f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "cams", Site: "plant", IPDomain: connectivity.IPDomain{DNN: "internet", Subnet: "10.1.0.0/16", MTU: 1460},
			MBRUplink: 1, MBRDownlink: 1, TrafficClass: "gold"})
		wantField(t, err, "trafficClass", connectivity.ErrInvalid)
		_, _, err = f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "cams", Site: "plant", Devices: []string{"cam-9"}, IPDomain: connectivity.IPDomain{DNN: "internet", Subnet: "10.1.0.0/16", MTU: 1460},
			MBRUplink: 1, MBRDownlink: 1, TrafficClass: "platinum"})
		wantField(t, err, "devices[0]", connectivity.ErrInvalid)
		_, _, err = f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "cams", Site: "plant", Devices: []string{"agv-1"}, IPDomain: connectivity.IPDomain{DNN: "internet", Subnet: "10.1.0.0/16", MTU: 1460},
			MBRUplink: 1, MBRDownlink: 1, TrafficClass: "platinum"})
		wantField(t, err, "devices[0]", connectivity.ErrConflict)
		_, _, err = f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "cams", Site: "nowhere", IPDomain: connectivity.IPDomain{DNN: "internet", Subnet: "10.1.0.0/16", MTU: 1460},
			MBRUplink: 1, MBRDownlink: 1, TrafficClass: "platinum"})
		wantField(t, err, "site", connectivity.ErrInvalid)
		_, _, err = f.svc.PutDeviceGroup(ctx, "acme", connectivity.DeviceGroup{Name: "cams", Site: "plant", IPDomain: connectivity.IPDomain{DNN: "internet", Subnet: "10.1.0.1/16", MTU: 1460},
			MBRUplink: 1, MBRDownlink: 1, TrafficClass: "platinum"})
		wantField(t, err, "ipDomain.subnet", connectivity.ErrInvalid)

		// Deleting what is referenced is refused with the referrers named.
		err = f.svc.DeleteTrafficClass(ctx, "acme", "platinum")
		if !errors.Is(err, connectivity.ErrConflict) || !strings.Contains(err.Error(), "device group agvs") {
			t.Fatalf("delete a used traffic class: %v", err)
		}
		err = f.svc.DeleteApplication(ctx, "acme", "mes")
		if !errors.Is(err, connectivity.ErrConflict) || !strings.Contains(err.Error(), "slice robots") {
			t.Fatalf("delete a used application: %v", err)
		}
		if err := f.svc.DeleteSiteNetwork(ctx, "acme", "plant"); !errors.Is(err, connectivity.ErrConflict) {
			t.Fatalf("delete a used site network: %v", err)
		}
		// SST and SD are fixed.
		sl := must[connectivity.Slice](t)(f.svc.GetSlice(ctx, "acme", "robots"))
		sl.SST = 2
		_, _, err = f.svc.PutSlice(ctx, "acme", sl)
		wantField(t, err, "sst", connectivity.ErrInvalid)
		sl.SST, sl.SD = 1, "FFFFFF"
		_, _, err = f.svc.PutSlice(ctx, "acme", sl)
		wantField(t, err, "sd", connectivity.ErrInvalid)
		sl.SD = "1000000"
		_, _, err = f.svc.PutSlice(ctx, "acme", sl)
		wantField(t, err, "sd", connectivity.ErrInvalid)
		sl.SD = "10203" // the same value, fewer digits
		sl.DeviceGroups = nil
		if _, created, err := f.svc.PutSlice(ctx, "acme", sl); err != nil || created {
			t.Fatalf("replace slice: created=%v %v", created, err)
		}
		// With the slice gone nothing holds the application.
		if err := f.svc.DeleteSlice(ctx, "acme", "robots"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.DeleteApplication(ctx, "acme", "mes"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.DeleteDeviceGroup(ctx, "acme", "agvs"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.DeleteTrafficClass(ctx, "acme", "platinum"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.GetTrafficClass(ctx, "acme", "platinum"); !errors.Is(err, connectivity.ErrNotFound) {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			c     connectivity.TrafficClass
			field string
		}{
			{connectivity.TrafficClass{Name: "x", ARP: 16, QCI: 9, PDB: 1, PELR: 1}, "arp"},
			{connectivity.TrafficClass{Name: "x", ARP: 1, QCI: 0, PDB: 1, PELR: 1}, "qci"},
			{connectivity.TrafficClass{Name: "x", ARP: 1, QCI: 9, PDB: 0, PELR: 1}, "pdb"},
			{connectivity.TrafficClass{Name: "x", ARP: 1, QCI: 9, PDB: 1, PELR: 9}, "pelr"},
			{connectivity.TrafficClass{Name: "9x", ARP: 1, QCI: 9, PDB: 1, PELR: 1}, "name"},
		} {
			_, _, err := f.svc.PutTrafficClass(ctx, "acme", tc.c)
			wantField(t, err, tc.field, connectivity.ErrInvalid)
		}
	})
}

// TestIMSIRangeEnforced checks that a SIM serves a device only at a site
// whose PLMN and IMSI range its IMSI fits, whichever of SIM binding, device
// group or site network changes last, and that a refusal changes nothing.
func TestIMSIRangeEnforced(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		seedModel(t, f, nil, nil)
		plant := must[connectivity.SiteNetwork](t)(f.svc.GetSiteNetwork(ctx, "acme", "plant"))
		plant.IMSIRange = &connectivity.IMSIRange{First: "001010000000000", Last: "001010000000099"}
		if _, _, err := f.svc.PutSiteNetwork(ctx, "acme", plant); err != nil {
			t.Fatal(err)
		}
		bind := func(n int, dev string) error {
			_, err := f.svc.UpdateSIM(ctx, "acme", "token:a", iccid(n), connectivity.SIMPatch{Device: &dev})
			return err
		}
		for n, id := range map[int]string{1: imsi(1), 2: imsi(500), 3: "001020000000003"} {
			must[connectivity.SIM](t)(f.svc.CreateSIM(ctx, "acme", connectivity.SIM{ICCID: iccid(n), IMSI: id}))
		}
		if err := bind(1, "agv-1"); err != nil {
			t.Fatalf("a SIM inside the range: %v", err)
		}
		// Outside the range, and another PLMN: refused, naming the field.
		err := bind(2, "agv-2")
		wantField(t, err, "device", connectivity.ErrInvalid)
		if !strings.Contains(err.Error(), "IMSI range 001010000000000 to 001010000000099") {
			t.Fatalf("message %q does not give the range", err)
		}
		err = bind(3, "agv-2")
		wantField(t, err, "device", connectivity.ErrInvalid)
		if !strings.Contains(err.Error(), "PLMN 00101") {
			t.Fatalf("message %q does not give the PLMN", err)
		}
		if m := must[connectivity.SIM](t)(f.svc.GetSIM(ctx, "acme", iccid(2))); m.Device != "" {
			t.Fatalf("refused binding changed the SIM: device %q", m.Device)
		}
		// A device in no group may hold it; then the group cannot take the device.
		if err := bind(2, "agv-9"); err != nil {
			t.Fatal(err)
		}
		g := must[connectivity.DeviceGroup](t)(f.svc.GetDeviceGroup(ctx, "acme", "agvs"))
		g.Devices = append(g.Devices, "agv-9")
		_, _, err = f.svc.PutDeviceGroup(ctx, "acme", g)
		wantField(t, err, "devices[3]", connectivity.ErrInvalid)
		if g2 := must[connectivity.DeviceGroup](t)(f.svc.GetDeviceGroup(ctx, "acme", "agvs")); len(g2.Devices) != 3 {
			t.Fatalf("refused group change stored: %v", g2.Devices)
		}
		// The site cannot narrow its range or change PLMN under a served SIM.
		narrow := plant
		narrow.IMSIRange = &connectivity.IMSIRange{First: "001010000000002", Last: "001010000000099"}
		_, _, err = f.svc.PutSiteNetwork(ctx, "acme", narrow)
		wantField(t, err, "imsiRange", connectivity.ErrInvalid)
		other := plant
		other.MNC, other.IMSIRange = "02", nil
		_, _, err = f.svc.PutSiteNetwork(ctx, "acme", other)
		wantField(t, err, "mnc", connectivity.ErrInvalid)
		if n := must[connectivity.SiteNetwork](t)(f.svc.GetSiteNetwork(ctx, "acme", "plant")); n.MNC != "01" || n.IMSIRange.First != "001010000000000" {
			t.Fatalf("refused site change stored: %+v", n)
		}
		// Widening is fine, and then the group takes the device.
		plant.IMSIRange.Last = "001010000000999"
		if _, _, err := f.svc.PutSiteNetwork(ctx, "acme", plant); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.PutDeviceGroup(ctx, "acme", g); err != nil {
			t.Fatal(err)
		}
	})
}
