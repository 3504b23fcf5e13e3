#!/usr/bin/env bash
# rules.sh — what 100 active rules cost a hub: the same telemetry load against
# a fresh `shopfloor serve` without rules and with 100 rules, in one run, and
# the publish-to-alert latency of the rules.
#
#   bench/rules.sh [--rate 20000] [--connections 200] [--duration 30s]
#                  [--inflight 1] [--rounds 1] [--bin PATH]
#
# Each round runs the hub twice, one after the other on fresh data
# directories: once with no rules, once with 100 rules in the organization
# the bench devices belong to. 49 rules compare a field with a threshold
# (f1 > 100000…), 50 keep a 5-minute sliding average (avg(f2, 5m) > 100000…),
# none of them ever true, so they cost evaluation only; one marker rule,
#   f0 > 300 + int(device[6:]) * 10
# becomes true once per device (f0 is each connection's sequence number), at
# staggered times. Its alerts give publish-to-alert latency: the alert's
# updatedAt (when it was stored, the hub's clock) minus its firstSeen (the
# publishing device's "ts", this machine's clock), in ms.
#
# --rate is the offered total msg/s (0 = as fast as the hub acknowledges).
# The ratio compares acknowledged throughput with rules to without.
set -euo pipefail

RATE=20000 CONNECTIONS=200 DURATION=30s INFLIGHT=1 ROUNDS=1 BIN=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rate) RATE=$2; shift 2 ;;
	--connections) CONNECTIONS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--inflight) INFLIGHT=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	-h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "rules.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopfloor-rules.XXXXXX")
PID=""
cleanup() {
	[ -z "$PID" ] || { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "rules: $*" >&2; }

for c in jq curl python3; do
	command -v "$c" >/dev/null || { say "$c is missing: install it (apt-get install $c) and run again"; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

if [ -z "$BIN" ]; then
	BIN="$WORK/shopfloor"
	say "building shopfloor"
	(cd "$ROOT" && go build -o "$BIN" ./cmd/shopfloor)
fi

# run NAME RULES(0|1): one hub, one load; leaves $WORK/NAME.json (bench) and,
# with rules, $WORK/NAME.alerts (one latency in ms per line).
run() {
	local name=$1 withRules=$2 http mqtt token i
	http=$(free_port)
	mqtt=$(free_port)
	token="sft_bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	rm -rf "$WORK/data"
	SHOPFLOOR_ADMIN_TOKEN="$token" "$BIN" serve --data "$WORK/data" --http "127.0.0.1:$http" \
		--mqtt "127.0.0.1:$mqtt" --mqtts "" --https "" >"$WORK/$name.log" 2>&1 &
	PID=$!
	wait_healthy "$http" "$PID" "$WORK/$name.log"
	api() { curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
	if [ "$withRules" = 1 ]; then
		for i in $(seq 1 49); do
			api -o /dev/null -X POST "http://127.0.0.1:$http/api/v1/rules" \
				-d "{\"name\":\"limit-$i\",\"condition\":\"f1 > $((100000 + i))\",\"severity\":\"minor\"}"
		done
		for i in $(seq 1 50); do
			api -o /dev/null -X POST "http://127.0.0.1:$http/api/v1/rules" \
				-d "{\"name\":\"trend-$i\",\"condition\":\"avg(f2, 5m) > $((100000 + i))\",\"severity\":\"minor\"}"
		done
		api -o "$WORK/marker.json" -X POST "http://127.0.0.1:$http/api/v1/rules" \
			-d '{"name":"marker","condition":"f0 > 300 + int(device[6:]) * 10","severity":"info"}'
		sleep 6 # the engine reloads rules every 5 s
	fi
	say "$name: hub on 127.0.0.1:$mqtt, $( [ "$withRules" = 1 ] && echo 100 || echo no) rules, rate ${RATE}/s, $CONNECTIONS connections, $DURATION"
	"$BIN" bench --target shopfloor --mqtt "127.0.0.1:$mqtt" --url "http://127.0.0.1:$http" --token "$token" \
		--connections "$CONNECTIONS" --rate "$RATE" --duration "$DURATION" --inflight "$INFLIGHT" --qos 1 --out json >"$WORK/$name.json"
	if [ "$withRules" = 1 ]; then
		local rule after="" page
		rule=$(jq -r .id "$WORK/marker.json")
		: >"$WORK/$name.alerts"
		while :; do
			page=$(api "http://127.0.0.1:$http/api/v1/alerts?rule=$rule&limit=1000${after:+&after=$after}")
			echo "$page" | python3 -c '
import json, sys
from datetime import datetime
def t(s):
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        frac, tz = rest[:rest.index("+")], rest[rest.index("+"):]
        s = head + "." + (frac + "000000")[:6] + tz
    return datetime.fromisoformat(s)
for a in json.load(sys.stdin)["items"]:
    print((t(a["updatedAt"]) - t(a["firstSeen"])).total_seconds() * 1000)
' >>"$WORK/$name.alerts"
			after=$(echo "$page" | jq -r '.next // empty')
			[ -n "$after" ] || break
		done
		curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$http/metrics" | grep -E '^shopfloor_rules_' >"$WORK/$name.metrics" || true
	fi
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=""
}

pct() { # pct FILE: count p50 p95 p99 max of the numbers in FILE
	python3 -c '
import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
if not v:
    print("0 - - - -"); sys.exit()
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(len(v), *("%.2f" % x for x in (q(.50), q(.95), q(.99), v[-1])))' "$1"
}

echo "load: rate $RATE msg/s offered, $CONNECTIONS connections, QoS 1, inflight $INFLIGHT, $DURATION; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
	run "plain$r" 0
	run "rules$r" 1
	p=$(jq .throughput "$WORK/plain$r.json")
	w=$(jq .throughput "$WORK/rules$r.json")
	read -r n p50 p95 p99 mx < <(pct "$WORK/rules$r.alerts")
	printf 'round %d: no rules %.0f msg/s (ack p99 %.2f ms), 100 rules %.0f msg/s (ack p99 %.2f ms), ratio %.3f; publish-to-alert over %s alerts: p50 %s p95 %s p99 %s max %s ms\n' \
		"$r" "$p" "$(jq .ack_latency.p99_ms "$WORK/plain$r.json")" "$w" "$(jq .ack_latency.p99_ms "$WORK/rules$r.json")" \
		"$(python3 -c "print($w / $p if $p else 0)")" "$n" "$p50" "$p95" "$p99" "$mx"
	sed 's/^/  /' "$WORK/rules$r.metrics" 2>/dev/null | grep -E 'evaluations|fired|errors' || true
done
