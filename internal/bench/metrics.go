package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrNoMetrics is returned when the hub's /metrics lacks the process
// figures an idle run needs.
var ErrNoMetrics = errors.New("no process metrics")

// The hub metrics an idle run reads.
const (
	metricRSS        = "process_resident_memory_bytes"
	metricHeap       = "go_memstats_heap_inuse_bytes"
	metricGoroutines = "go_goroutines"
	metricOpenFDs    = "process_open_fds"
	metricMaxFDs     = "process_max_fds"
	metricGateway    = "shopfloor_gateway_connections"
	metricStack      = "go_memstats_stack_inuse_bytes"
	metricHeapIdle   = "go_memstats_heap_idle_bytes"
	metricReleased   = "go_memstats_heap_released_bytes"
	metricSys        = "go_memstats_sys_bytes"
)

var hubMetricNames = []string{metricRSS, metricHeap, metricGoroutines, metricOpenFDs, metricMaxFDs, metricGateway,
	metricStack, metricHeapIdle, metricReleased, metricSys}

// parseMetrics reads the Prometheus text format and returns the values of
// the wanted metrics that have no labels (process and runtime gauges).
func parseMetrics(r io.Reader, want []string) (map[string]float64, error) {
	wanted := make(map[string]bool, len(want))
	for _, n := range want {
		wanted[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok || !wanted[name] {
			continue // labelled samples have a '{' in the name part
		}
		f := strings.Fields(rest) // value, then an optional timestamp
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s has the value %q, not a number: %w", name, f[0], err)
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the answer has none of %s: is this a Shopfloor hub's /metrics? %w", strings.Join(want, ", "), ErrNoMetrics)
	}
	return out, nil
}
