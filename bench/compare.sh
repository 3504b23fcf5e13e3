#!/usr/bin/env bash
# compare.sh — run the same MQTT telemetry load against Mosquitto and against a
# Shopfloor hub, one after the other on this machine, and print both with
# their ratio.
#
#   bench/compare.sh [--connections 200] [--qos 1] [--fields 5] [--duration 30s]
#                    [--inflight 1] [--payload-size 0] [--bin PATH]
#                    [--only mosquitto|shopfloor] [--out DIR]
#
# Mosquitto (Debian package; installed with apt-get when missing) runs on a
# free loopback port with a temporary configuration, never on 1883:
# anonymous, persistence off (its default), and no limit on the messages in
# flight or queued towards the subscriber, so that the subscriber that
# measures delivery is not throttled by Mosquitto's defaults (20 in flight,
# 1000 queued, beyond which it drops). The hub runs `shopfloor serve` with a
# fresh data directory on free ports; QoS 1 is acknowledged only once durable.
# Each target runs alone, the other stopped, so they do not share the CPU.
#
# "queryable" differs by target (see `shopfloor bench --help`): for Mosquitto
# every message is timed until a subscriber on the same topics receives it;
# for the hub sampled messages are timed until GET /api/v1/devices/{id}/latest
# shows them.
set -euo pipefail

CONNECTIONS=200 QOS=1 FIELDS=5 DURATION=30s INFLIGHT=1 PAYLOAD=0
BIN="" ONLY="" OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--connections) CONNECTIONS=$2; shift 2 ;;
	--qos) QOS=$2; shift 2 ;;
	--fields) FIELDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--inflight) INFLIGHT=$2; shift 2 ;;
	--payload-size) PAYLOAD=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	--only) ONLY=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$ONLY" in "" | mosquitto | shopfloor) ;; *) echo "compare.sh: --only takes mosquitto or shopfloor" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopfloor-compare.XXXXXX")
PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "compare: $*" >&2; }

# stop PID: end one process we started and wait for it.
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# wait_port PORT SECONDS: until something accepts connections on the port.
wait_port() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

need() { # need COMMAND PACKAGE
	if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		say "$1 is missing: install the Debian package $2 (apt-get install $2) and run again"
		exit 1
	fi
	say "installing $2"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }
}

need jq jq
if [ "$ONLY" != shopfloor ]; then
	need mosquitto mosquitto
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

if [ -z "$BIN" ]; then
	BIN="$WORK/shopfloor"
	say "building shopfloor"
	(cd "$ROOT" && go build -o "$BIN" ./cmd/shopfloor)
fi

LOAD=(--connections "$CONNECTIONS" --qos "$QOS" --fields "$FIELDS" --duration "$DURATION"
	--inflight "$INFLIGHT" --payload-size "$PAYLOAD" --out json)

run_mosquitto() {
	local port pid
	port=$(free_port)
	cat >"$WORK/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 0
max_queued_messages 1000000
log_dest stderr
EOF
	"$MOSQUITTO" -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
	pid=$!
	PIDS+=("$pid")
	if ! wait_port "$port" 10; then
		say "mosquitto did not start; its log:"
		cat "$WORK/mosquitto.log" >&2 || true
		exit 1
	fi
	say "mosquitto $("$MOSQUITTO" -h 2>/dev/null | head -1 | awk '{print $3}') on 127.0.0.1:$port: ${CONNECTIONS} connections, QoS $QOS, $DURATION"
	"$BIN" bench --target mqtt --mqtt "127.0.0.1:$port" "${LOAD[@]}" >"$WORK/mosquitto.json"
	stop "$pid"
}

run_shopfloor() {
	local http mqtt mqtts pid token i
	http=$(free_port)
	mqtt=$(free_port)
	mqtts=$(free_port)
	token="sft_bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	SHOPFLOOR_ADMIN_TOKEN="$token" "$BIN" serve --data "$WORK/data" --http "127.0.0.1:$http" \
		--mqtt "127.0.0.1:$mqtt" --mqtts "127.0.0.1:$mqtts" >"$WORK/hub.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_healthy "$http" "$pid" "$WORK/hub.log"
	say "shopfloor hub on 127.0.0.1:$mqtt (HTTP $http): ${CONNECTIONS} connections, QoS $QOS, $DURATION"
	"$BIN" bench --target shopfloor --mqtt "127.0.0.1:$mqtt" --url "http://127.0.0.1:$http" --token "$token" \
		"${LOAD[@]}" >"$WORK/shopfloor.json"
	stop "$pid"
}

[ "$ONLY" = shopfloor ] || run_mosquitto
[ "$ONLY" = mosquitto ] || run_shopfloor

row() { # row FILE NAME
	jq -r --arg name "$2" '[$name, (.throughput|floor), .ack_latency.p50_ms, .ack_latency.p95_ms, .ack_latency.p99_ms,
		.ack_latency.max_ms, .queryable_latency.p50_ms, .queryable_latency.p95_ms, .queryable_latency.p99_ms,
		.queryable_latency.max_ms, .errors, .generator_cpu_cores] |
		"\(.[0])\t\(.[1])\t\(.[2]*100|round/100)/\(.[3]*100|round/100)/\(.[4]*100|round/100)/\(.[5]*100|round/100)\t\(.[6]*100|round/100)/\(.[7]*100|round/100)/\(.[8]*100|round/100)/\(.[9]*100|round/100)\t\(.[10])\t\(.[11]*100|round/100)"' "$1"
}

echo
echo "load: $CONNECTIONS connections, QoS $QOS, $FIELDS numeric fields, $DURATION, inflight $INFLIGHT; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
{
	printf 'target\tmsg/s\tack p50/p95/p99/max ms\tqueryable p50/p95/p99/max ms\terrors\tgenerator CPU\n'
	[ ! -s "$WORK/mosquitto.json" ] || row "$WORK/mosquitto.json" mosquitto
	[ ! -s "$WORK/shopfloor.json" ] || row "$WORK/shopfloor.json" shopfloor
} | column -t -s $'\t'

if [ -s "$WORK/mosquitto.json" ] && [ -s "$WORK/shopfloor.json" ]; then
	jq -rn --slurpfile m "$WORK/mosquitto.json" --slurpfile s "$WORK/shopfloor.json" '
		def r(a; b): if b > 0 then (a / b * 100 | round / 100) else "n/a" end;
		"ratio shopfloor/mosquitto: throughput \(r($s[0].throughput; $m[0].throughput))x, ack p99 \(r($s[0].ack_latency.p99_ms; $m[0].ack_latency.p99_ms))x, queryable p99 \(r($s[0].queryable_latency.p99_ms; $m[0].queryable_latency.p99_ms))x"'
fi
for f in mosquitto shopfloor; do
	if [ -s "$WORK/$f.json" ]; then
		jq -r --arg f "$f" 'select(.errors > 0) | "\($f): \(.errors) errors \(.errors_by_kind) first: \(.first_error)"' "$WORK/$f.json"
		jq -r --arg f "$f" 'select(.drain_complete | not) | "\($f): gave up waiting after \(.drain_seconds)s for delivery/visibility"' "$WORK/$f.json"
		jq -r --arg f "$f" 'select(.verified_devices > 0) | "\($f): \(.verified_found) of \(.verified_acked) acknowledged messages found stored (\(.verified_devices) devices checked)"' "$WORK/$f.json"
	fi
done
if [ -n "$OUT" ]; then
	mkdir -p "$OUT"
	for f in mosquitto shopfloor; do
		[ ! -s "$WORK/$f.json" ] || cp "$WORK/$f.json" "$OUT/$f.json"
	done
	say "results saved in $OUT"
fi
