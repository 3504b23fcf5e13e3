package connectivity_test

import (
	"context"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/internal/connectivity"
)

func TestParseSIMCSV(t *testing.T) {
	// Any column order and case, a byte-order mark, blank lines, spaces.
	in := "\ufeffLabel,IMSI,ICCID,ki\n" +
		"agv 1, " + imsi(1) + "," + iccid(1) + ",000102030405060708090a0b0c0d0e0f\n" +
		"\n" +
		"\"agv, 2\"," + imsi(2) + "," + iccid(2) + ",\n" +
		"short," + imsi(3) + "\n" +
		"\"broken," + imsi(4) + "," + iccid(4) + "\n"
	rows, err := connectivity.ParseSIMCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	if r := rows[0]; r.ICCID != iccid(1) || r.IMSI != imsi(1) || r.Label != "agv 1" || r.Ki != "000102030405060708090a0b0c0d0e0f" || r.Invalid != "" {
		t.Fatalf("row 1 %+v", r)
	}
	if r := rows[1]; r.Label != "agv, 2" || r.ICCID != iccid(2) {
		t.Fatalf("row 2 %+v", r)
	}
	if r := rows[2]; r.ICCID != "" || r.IMSI != imsi(3) || r.Invalid != "" {
		t.Fatalf("row 3 (no ICCID) %+v", r)
	}
	if r := rows[3]; !strings.Contains(r.Invalid, "not valid CSV") {
		t.Fatalf("row 4 (bad quote) %+v", r)
	}
	// The import fails the bad rows alone and says why.
	f := newFixture(t, backend{"sqlite", openSQLite})
	created, errs, err := f.svc.ImportSIMs(context.Background(), "acme", rows, nil)
	if err != nil || created != 2 || len(errs) != 2 || errs[0].Row != 3 || !strings.Contains(errs[0].Error, `"iccid"`) || errs[1].Row != 4 {
		t.Fatalf("created %d, errors %+v, %v", created, errs, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"iccid,label\n", `"imsi"`},
		{"iccid,imsi,pin1\n", `"pin1"`},
		{"iccid,imsi,IMSI\n", "twice"},
	} {
		_, err := connectivity.ParseSIMCSV(strings.NewReader(tc.in))
		wantField(t, err, "header", connectivity.ErrInvalid)
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: %v, want it to say %s", tc.in, err, tc.want)
		}
	}
}
