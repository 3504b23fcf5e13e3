#!/usr/bin/env bash
# crash.sh — does the hub keep every message it acknowledged, whatever
# happens to it? Builds ./cmd/shopfloor (unless --bin is given) and runs
# `shopfloor bench crash`: N rounds of QoS 1 load from several devices (half
# of them without a "ts"), each ended by SIGKILL or SIGTERM at a random
# moment, then a restart on the same data directory and a check of every
# acknowledged message against the stored series.
#
#   bench/crash.sh [--rounds 100] [--devices 4] [--signal mixed|kill|term]
#                  [--fsync] [--seed N] [--bin PATH] [--out DIR]
#
# It prints one line per round (acknowledged, stored, lost, duplicated,
# stored without an acknowledgement, stop time, restart time) and a summary,
# and exits non-zero if anything acknowledged was lost or duplicated.
set -euo pipefail

ROUNDS=100 DEVICES=4 SIGNAL=mixed SEED="" BIN="" OUT="" EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=$2; shift 2 ;;
	--devices) DEVICES=$2; shift 2 ;;
	--signal) SIGNAL=$2; shift 2 ;;
	--fsync) EXTRA+=(--serve-arg=--fsync); shift ;;
	--seed) SEED=$2; shift 2 ;;
	--bin) BIN=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "crash.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shopfloor-crash.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { echo "crash: $*" >&2; }

if [ -z "$BIN" ]; then
	say "building ./cmd/shopfloor"
	(cd "$ROOT" && go build -o "$WORK/shopfloor" ./cmd/shopfloor)
	BIN="$WORK/shopfloor"
fi
[ -n "$SEED" ] && EXTRA+=(--seed "$SEED")
ARGS=(bench crash --binary "$BIN" --data "$WORK/data" --rounds "$ROUNDS" --devices "$DEVICES" --signal "$SIGNAL" "${EXTRA[@]}")
if [ -n "$OUT" ]; then
	mkdir -p "$OUT"
	"$BIN" "${ARGS[@]}" --out json > "$OUT/crash.json"
	jq -r '"acknowledged \(.acked), lost \(.lost), duplicated \(.duplicated), rounds \(.rounds|length)"' "$OUT/crash.json"
else
	"$BIN" "${ARGS[@]}"
fi
