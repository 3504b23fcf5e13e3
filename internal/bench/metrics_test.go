package bench

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.23456e+08
go_memstats_heap_inuse_bytes 4.2e+07 1700000000000
go_goroutines{worker="x y"} 7
go_goroutines 10042
shopfloor_gateway_connections_other 5
`
	m, err := parseMetrics(strings.NewReader(text), hubMetricNames)
	if err != nil {
		t.Fatal(err)
	}
	if m[metricRSS] != 123456000 || m[metricHeap] != 42e6 || m[metricGoroutines] != 10042 {
		t.Fatalf("parsed %v", m)
	}
	if _, ok := m[metricGateway]; ok {
		t.Fatalf("a metric with a longer name was taken for %s: %v", metricGateway, m)
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines many\n"), hubMetricNames); err == nil {
		t.Fatal("a value that is not a number was accepted")
	}
	if _, err := parseMetrics(strings.NewReader("# nothing\nhttp_requests_total 3\n"), hubMetricNames); !errors.Is(err, ErrNoMetrics) {
		t.Fatalf("no wanted metric: %v", err)
	}
}

func TestRaiseFileLimit(t *testing.T) {
	soft, hard, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft == 0 || soft != hard {
		t.Fatalf("open-file limit %d of hard %d after raising", soft, hard)
	}
}
