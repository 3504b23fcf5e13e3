package quota

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func names(n ...string) []string { return n }

func TestFieldsPerDevice(t *testing.T) {
	q := New(Limits{FieldsPerDevice: 3})
	if err := q.Admit("acme", "press-1", names("a", "b")); err != nil {
		t.Fatal(err)
	}
	// Known fields again, and one new: at the limit.
	if err := q.Admit("acme", "press-1", names("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	// Two new ones at once: refused whole, nothing of it recorded.
	err := q.Admit("acme", "press-1", names("a", "d", "e"))
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "per device") {
		t.Fatalf("over the device limit: %v", err)
	}
	if u := q.Usage("acme"); u.Series != 3 || u.RefusedMessages != 1 || u.LargestDevices[0] != (DeviceUsage{"press-1", 3}) {
		t.Fatalf("usage %+v", u)
	}
	// Another device has its own allowance.
	if err := q.Admit("acme", "press-2", names("d", "e", "f")); err != nil {
		t.Fatal(err)
	}
}

func TestSeriesPerOrgAndOtherOrgs(t *testing.T) {
	q := New(Limits{SeriesPerOrg: 10})
	for i := 0; i < 5; i++ {
		if err := q.Admit("acme", fmt.Sprintf("d%d", i), names("x", "y")); err != nil {
			t.Fatal(err)
		}
	}
	err := q.Admit("acme", "d9", names("x"))
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "organization") {
		t.Fatalf("over the organization limit: %v", err)
	}
	// Another organization is not affected by acme's usage.
	if err := q.Admit("globex", "g1", names("x", "y")); err != nil {
		t.Fatalf("another organization refused: %v", err)
	}
	// Deleting a device frees its series.
	q.Forget("d0")
	if err := q.Admit("acme", "d9", names("x")); err != nil {
		t.Fatalf("after a device was deleted: %v", err)
	}
	if u := q.Usage("acme"); u.Series != 9 || u.Devices != 5 {
		t.Fatalf("usage %+v", u)
	}
}

func TestFieldNameLength(t *testing.T) {
	q := New(Limits{})
	long := strings.Repeat("x", 257)
	if err := q.Admit("acme", "d", names("ok", long)); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "field name") {
		t.Fatalf("long name: %v", err)
	}
	if u := q.Usage("acme"); u.Series != 0 {
		t.Fatalf("a refused message recorded fields: %+v", u)
	}
}

func TestSeed(t *testing.T) {
	q := New(Limits{FieldsPerDevice: 2})
	q.Seed("acme", "d", "a")
	q.Seed("acme", "d", "b")
	q.Seed("acme", "d", "a")
	if err := q.Admit("acme", "d", names("c")); !errors.Is(err, ErrLimit) {
		t.Fatalf("seeded fields not counted: %v", err)
	}
	if err := q.Admit("acme", "d", names("a", "b")); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAdmitKnown(b *testing.B) {
	q := New(Limits{})
	fields := []string{"temperature", "pressure", "rpm", "running", "axis.x", "axis.y", "state"}
	_ = q.Admit("acme", "press-1", fields)
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Admit("acme", "press-1", fields); err != nil {
			b.Fatal(err)
		}
	}
}
