#!/usr/bin/env bash
# idle.sh — how much memory does a Shopfloor hub need for many idle devices?
# Starts `shopfloor serve` with a fresh data directory on free loopback ports
# (open-file limit raised to the hard limit), runs
# `shopfloor bench --idle N`, which provisions N devices, connects them all
# over MQTT with SAS tokens and holds them idle, and prints the hub's
# resident memory before, after connecting and at the end of the hold,
# against a budget.
#
#   bench/idle.sh [--devices 10000] [--hold 30s] [--keepalive 60s]
#                 [--concurrency 64] [--budget-mb 500] [--bin PATH] [--out DIR]
#
# Memory figures come from the hub's /metrics (process_resident_memory_bytes,
# go_memstats_heap_inuse_bytes); the peak (VmHWM) is read from /proc at the
# end. MB are 10^6 bytes. Both processes share this machine: the load
# average is printed with the figures.
set -euo pipefail

DEVICES=10000 HOLD=30s KEEPALIVE=60s CONCURRENCY=64 BUDGET=500
BIN="" OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--devices) DEVICES=$2; shift 2 ;;
	--hold) HOLD=$2; shift 2 ;;
	--keepalive) KEEPALIVE=$2; shift 2 ;;
	--concurrency) CONCURRENCY=$2; shift 2 ;;
	--budget-mb) BUDGET=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "idle.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopfloor-idle.XXXXXX")
HUB=""

cleanup() {
	if [ -n "$HUB" ]; then
		kill "$HUB" 2>/dev/null || true
		wait "$HUB" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "idle: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

command -v jq >/dev/null || { say "jq is missing: install the Debian package jq (apt-get install jq) and run again"; exit 1; }

# Both the hub and the generator need a descriptor per connection; the
# children inherit this shell's limit.
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ]; then
	ulimit -n "$HARD"
	if [ "$HARD" -lt $((DEVICES + 1000)) ]; then
		say "warning: the open-file hard limit is $HARD, too low for $DEVICES connections plus the hub's own files;" \
			"raise it (ulimit -Hn as root, nofile in /etc/security/limits.conf) or expect failures"
	fi
else
	ulimit -n 1048576 2>/dev/null || true
fi

if [ -z "$BIN" ]; then
	BIN="$WORK/shopfloor"
	say "building shopfloor"
	(cd "$ROOT" && go build -o "$BIN" ./cmd/shopfloor)
fi

HTTP=$(free_port)
MQTT=$(free_port)
MQTTS=$(free_port)
TOKEN="sft_bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SHOPFLOOR_ADMIN_TOKEN="$TOKEN" "$BIN" serve --data "$WORK/data" --http "127.0.0.1:$HTTP" \
	--mqtt "127.0.0.1:$MQTT" --mqtts "127.0.0.1:$MQTTS" --log-level warn >"$WORK/hub.log" 2>&1 &
HUB=$!
wait_healthy "$HTTP" "$HUB" "$WORK/hub.log"
say "hub pid $HUB on 127.0.0.1:$MQTT (HTTP $HTTP), open-file limit $(awk '/Max open files/ {print $4}' "/proc/$HUB/limits")"

CMD=("$BIN" bench --idle "$DEVICES" --hold "$HOLD" --keepalive "$KEEPALIVE" --connect-concurrency "$CONCURRENCY"
	--mqtt "127.0.0.1:$MQTT" --url "http://127.0.0.1:$HTTP" --token "$TOKEN" --out json)
status=0
"${CMD[@]}" >"$WORK/idle.json" || status=$?
PEAK=$(awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$HUB/status" 2>/dev/null || echo 0)
if ! kill -0 "$HUB" 2>/dev/null; then
	say "the hub died during the run; the end of its log:"
	tail -n 30 "$WORK/hub.log" >&2
fi
if [ ! -s "$WORK/idle.json" ]; then
	say "the benchmark produced no result (exit status $status)"
	tail -n 30 "$WORK/hub.log" >&2
	exit 1
fi

echo
jq -r --argjson peak "${PEAK:-0}" --argjson budget "$BUDGET" '
	def mb: . / 1e6 * 10 | round / 10;
	def kb: . / 1e3 * 10 | round / 10;
	def pad(n): tostring | (" " * (n - length)) + .;
	(.hub | map(select(.phase == "end of hold")) | first) as $fin |
	"devices      \(.connected) of \(.devices) connected in \(.connect_seconds * 10 | round / 10)s (\(.connect_rate | round)/s), \(.alive) alive after holding \(.hold_seconds | round)s, \(.dropped) dropped, \(.failures) failures",
	"connect      CONNECT to CONNACK p50 \(.connect_latency.p50_ms * 10 | round / 10) ms, p99 \(.connect_latency.p99_ms * 10 | round / 10) ms, max \(.connect_latency.max_ms | round) ms",
	"provision    \(.created) created, \(.existing) existed, \(.provision_seconds * 10 | round / 10)s",
	"hub memory   phase          RSS MB   heap MB  stacks MB  idle heap MB  Go sys MB  goroutines  open fds   devices",
	(.hub[] | "             \(.phase | . + " " * (12 - length))\(.rss_bytes | mb | pad(9))\(.heap_inuse_bytes | mb | pad(10))\(.stack_inuse_bytes | mb | pad(11))\((.heap_idle_bytes - .heap_released_bytes) | mb | pad(14))\(.go_sys_bytes | mb | pad(11))\(.goroutines | pad(12))\(.open_fds | pad(10))\(.gateway_connections | pad(10))"),
	"             idle heap: free heap not yet returned to the OS (counts in RSS); Go sys: all memory the Go runtime obtained",
	"per device   \(.rss_per_connection_bytes | kb) KB RSS, \(.heap_per_connection_bytes | kb) KB heap, \(.stack_per_connection_bytes | kb) KB stacks (end of hold minus before connecting); \(if .alive > 0 and $fin then ($fin.rss_bytes / .alive | kb) else "n/a" end) KB total RSS per device",
	"peak RSS     \($peak | mb) MB (VmHWM of the hub process over its whole life)",
	"generator    \(.generator_rss_bytes | mb) MB RSS, open-file limit \(.generator_file_limit)",
	"machine      \(.cpus) CPUs, load average \(.load_average_start) at the start, \(.load_average_end) at the end",
	(if .failures > 0 then "failures     \(.failures_by_kind)\nfirst        \(.first_failure)" else empty end),
	(.diagnosis // [] | .[] | "diagnosis    \(.)"),
	(if $fin == null then "verdict      no end-of-hold sample"
	 elif .alive < .devices then "verdict      FAIL: only \(.alive) of \(.devices) devices held (end-of-hold RSS \($fin.rss_bytes | mb) MB)"
	 elif $fin.rss_bytes <= $budget * 1e6 then "verdict      PASS: \(.alive) idle devices in \($fin.rss_bytes | mb) MB RSS at the end of the hold, budget \($budget) MB"
	 else "verdict      FAIL: \(.alive) idle devices take \($fin.rss_bytes | mb) MB RSS at the end of the hold, budget \($budget) MB" end)
' "$WORK/idle.json"
echo "command      ${CMD[*]/$TOKEN/\$TOKEN}"

if grep -qi "too many open files" "$WORK/hub.log"; then
	say "the hub logged 'too many open files':"
	grep -i "too many open files" "$WORK/hub.log" | head -n 3 >&2
fi
if [ -n "$OUT" ]; then
	mkdir -p "$OUT"
	cp "$WORK/idle.json" "$OUT/idle.json"
	cp "$WORK/hub.log" "$OUT/hub.log"
	say "results saved in $OUT"
fi
exit "$status"
