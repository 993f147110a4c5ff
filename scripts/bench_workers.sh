#!/usr/bin/env bash
# Distributed-job throughput: 1, 2 and 4 `transcribe_folder --queue` worker processes on this
# machine share one job through a local redis-server, against one emulator whose every
# `POST /asr` takes a fixed time (the API's latency, not this machine's CPU, sets the pace).
#
# Usage: scripts/bench_workers.sh   (FILES=400 LATENCY_MS=500 CONCURRENCY=8 JOBS=4 WORKERS="1 2 4")
# Needs redis-server and sox. Inputs are generated in $BENCH_DIR (default target/bench-workers)
# from the committed speech samples: FILES recordings of 2 to 4 s, each distinct. Prints one
# line per worker count: wall seconds, files/s, and requests in flight on average (each file
# is one request of LATENCY_MS: files/s × latency). See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${FILES:-400}
LATENCY_MS=${LATENCY_MS:-500}
CONCURRENCY=${CONCURRENCY:-8}
JOBS=${JOBS:-4}
WORKERS=${WORKERS:-"1 2 4"}
DIR=${BENCH_DIR:-target/bench-workers}
mkdir -p "$DIR"

echo "# building examples/transcribe_folder and the emulator (release)" >&2
cargo build --release --quiet --example transcribe_folder -p asr-pipeline
cargo build --release --quiet -p botlhale-emulator
BIN=target/release/examples/transcribe_folder
EMU=target/release/botlhale-emulator

# Inputs: two speech samples each, with a pause that differs per file (distinct content).
IN="$DIR/input-$FILES"
if [ ! -d "$IN" ]; then
  mkdir -p "$IN.tmp"
  samples=(testdata/speech/*.wav)
  n=${#samples[@]}
  for ((i = 0; i < FILES; i++)); do
    a=${samples[$((i % n))]}
    b=${samples[$(((i / n + 3) % n))]}
    sox "$a" "$IN.tmp/pad.wav" pad 0 "0.$((300 + i % 600))" 2>/dev/null
    sox "$IN.tmp/pad.wav" "$b" "$IN.tmp/call-$(printf %05d "$i").wav"
  done
  rm -f "$IN.tmp/pad.wav"
  mv "$IN.tmp" "$IN"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RDIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --dir "$RDIR" --daemonize yes --pidfile "$RDIR/pid" >/dev/null
TOKEN=bench-refresh-token
"$EMU" --asr-latency-ms "$LATENCY_MS" --refresh-token "$TOKEN" > "$RDIR/emu.txt" &
EMU_PID=$!
cleanup() { kill "$EMU_PID" 2>/dev/null || true; kill "$(cat "$RDIR/pid")" 2>/dev/null || true; rm -rf "$RDIR"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q BASE_URL "$RDIR/emu.txt" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^BASE_URL=//p' "$RDIR/emu.txt")

echo "# $FILES files, $LATENCY_MS ms per request, --concurrency $CONCURRENCY (over all workers), --jobs $JOBS per worker"
printf '%-8s %10s %10s %10s\n' workers wall_s files/s in_flight
for W in $WORKERS; do
  redis-cli -p "$PORT" flushall >/dev/null
  OUT="$DIR/out-$W"
  rm -rf "$OUT"
  start=$(date +%s.%N)
  pids=()
  for ((k = 0; k < W; k++)); do
    BOTLHALE_REFRESH_TOKEN=$TOKEN BOTLHALE_ORG_ID=emulator-org \
      "$BIN" --queue "redis://127.0.0.1:$PORT/" --endpoint "$BASE" --quiet \
      --concurrency "$CONCURRENCY" --jobs "$JOBS" --out "$OUT" "$IN" 2> "$DIR/worker-$W-$k.log" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  python3 - "$W" "$start" "$end" "$FILES" "$LATENCY_MS" <<'PY'
import sys
w, s, e, n, lat = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
r = n / (e - s)
print(f"{w:<8} {e - s:10.1f} {r:10.1f} {r * lat / 1000:10.1f}")
PY
  done_files=$(find "$OUT" -name '*.json' ! -name summary.json | wc -l)
  [ "$done_files" -eq "$FILES" ] || { echo "only $done_files of $FILES transcripts" >&2; exit 1; }
done
