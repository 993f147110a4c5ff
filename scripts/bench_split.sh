#!/usr/bin/env bash
# Split-only preprocessing against ffmpeg's bare conversion, on real recorded speech.
#
# Input: a MINUTES-long 44.1 kHz stereo FLAC made of the real voices in testdata/speech
# (telephone prompts with 0.3–1.5 s pauses, a little noise), looped. Ours: the bulk CLI
# `transcribe_folder --split-only` (decode → mono → 16 kHz → normalise → VAD → segment → write
# the segment files and manifest). Theirs: `ffmpeg -i IN -ac 1 -ar 16000 -f s16le /dev/null`.
# Runs alternate (ffmpeg, ours) PAIRS times; medians of wall and CPU (user+sys) seconds.
#
# Usage: scripts/bench_split.sh           (MINUTES=60 PAIRS=3 BENCH_DIR=target/bench-split)
# Needs ffmpeg and GNU time (/usr/bin/time). See BENCHMARKS.md, "Split-only preprocessing".
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
PAIRS=${PAIRS:-3}
DIR=${BENCH_DIR:-target/bench-split}
mkdir -p "$DIR"
command -v ffmpeg >/dev/null && [ -x /usr/bin/time ] || { echo "needs ffmpeg and /usr/bin/time" >&2; exit 2; }

echo "# building examples/transcribe_folder (release)" >&2
cargo build --release --quiet --example transcribe_folder
BIN=target/release/examples/transcribe_folder

IN="$DIR/speech_44k_stereo_${MINUTES}m.flac"
if [ ! -s "$IN" ]; then
  echo "# generating $IN" >&2
  args=(); filt=""; i=0
  pads=(0.4 1.2 0.3 0.9 1.5 0.35 0.7 1.1 0.5)
  for u in testdata/speech/*.wav; do
    args+=(-i "$u")
    filt+="[$i]aresample=44100,apad=pad_dur=${pads[$((i % ${#pads[@]}))]}[a$i];"
    i=$((i + 1))
  done
  for ((k = 0; k < i; k++)); do filt+="[a$k]"; done
  filt+="concat=n=$i:v=0:a=1[s];anoisesrc=a=0.0005:c=pink:r=44100[n];[s][n]amix=inputs=2:duration=first:normalize=0[m]"
  ffmpeg -v error -nostdin "${args[@]}" -filter_complex "$filt" -map '[m]' -ac 1 -c:a pcm_s16le -y "$DIR/clip.wav"
  ffmpeg -v error -nostdin -stream_loop -1 -i "$DIR/clip.wav" -t $((MINUTES * 60)) -ar 44100 -ac 2 \
    -c:a flac -sample_fmt s16 -y "$IN.tmp.flac"
  mv "$IN.tmp.flac" "$IN"
fi

timed() { # timed CMD... → "wall cpu rss_mb"
  local tf; tf=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >/dev/null 2>&1
  awk '{printf "%.2f %.2f %.1f\n", $1, $2 + $3, $4 / 1024}' "$tf"; rm -f "$tf"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

: >"$DIR/runs.tsv"
for ((p = 1; p <= PAIRS; p++)); do
  read -r fw fc fr < <(timed ffmpeg -v error -nostdin -i "$IN" -ac 1 -ar 16000 -f s16le -y /dev/null)
  rm -rf "$DIR/out"
  read -r ow oc orss < <(timed "$BIN" --split-only --quiet --out "$DIR/out" "$IN")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$fw" "$fc" "$fr" "$ow" "$oc" "$orss" | tee -a "$DIR/runs.tsv" >&2
done
col() { cut -f"$1" "$DIR/runs.tsv" | median; }
secs=$((MINUTES * 60))
fw=$(col 1); fc=$(col 2); ow=$(col 4); oc=$(col 5)
segs=$(find "$DIR/out" -type f ! -name '*.json' ! -name '*.jsonl' | wc -l)
awk -v s="$secs" -v fw="$fw" -v fc="$fc" -v fr="$(col 3)" -v ow="$ow" -v oc="$oc" -v orss="$(col 6)" \
    -v segs="$segs" -v pairs="$PAIRS" -v cores="$(nproc)" -v day="$(date -u +%F)" 'BEGIN {
  printf "\n| | wall s | CPU s | × realtime (wall) | × realtime (CPU) | peak RSS MB |\n|---|---|---|---|---|---|\n"
  printf "| ffmpeg -ac 1 -ar 16000 | %s | %s | %.0f | %.0f | %s |\n", fw, fc, s / fw, s / fc, fr
  printf "| ours, --split-only | %s | %s | %.0f | %.0f | %s |\n", ow, oc, s / ow, s / oc, orss
  printf "\nours / ffmpeg: wall %.2f, CPU %.2f (< 1: ours is faster); %s segment files; %s pairs, medians; %s cores, %s\n", ow / fw, oc / fc, segs, pairs, cores, day
}'
