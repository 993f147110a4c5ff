#!/usr/bin/env bash
# Speed of the whole split-only preprocessing against ffmpeg's bare conversion, every input
# format in one run (issue 14's measure), then memory from MINUTES to LONG_MINUTES.
#
# Input: real recorded voices (testdata/speech: telephone prompts, 0.3-1.5 s pauses, pink noise
# at about -66 dBFS) looped to MINUTES and encoded per format. Ours: the bulk CLI
# `transcribe_folder --split-only` (decode -> mono -> 16 kHz -> normalise -> VAD -> segment ->
# the segment WAV files and manifest). Theirs: `ffmpeg -i IN -ac 1 -ar 16000 -f s16le
# /dev/null`. Per format the two alternate PAIRS times; medians of wall and CPU (user+sys)
# seconds and of peak RSS. Ratios are ours / ffmpeg: below 1, ours takes less.
#
# Usage: scripts/bench.sh     (MINUTES=60 LONG_MINUTES=400 PAIRS=3 BENCH_DIR=target/bench)
#        FORMATS="flac_44k_stereo amrnb_8k" PAIRS=1 scripts/bench.sh        (a subset)
#        MINUTES=5 LONG_MINUTES=0 PAIRS=1 scripts/bench.sh                  (a quick run)
# Needs ffmpeg and GNU time (/usr/bin/time); sox with AMR-NB makes the AMR-NB input if present. Inputs are
# cached in BENCH_DIR; results go to stdout and BENCH_DIR/results.tsv. See BENCHMARKS.md,
# "Split-only preprocessing against ffmpeg".
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-60}
LONG_MINUTES=${LONG_MINUTES:-400}
PAIRS=${PAIRS:-3}
DIR=${BENCH_DIR:-target/bench}
FORMATS=${FORMATS:-"flac_44k_stereo vorbis_44k_stereo mp3_44k_stereo aac_44k_stereo opus_48k_mono wav_48k_stereo wav_8k_s16 wav_8k_mulaw amrnb_8k amrwb_16k"}
mkdir -p "$DIR"
command -v ffmpeg >/dev/null && [ -x /usr/bin/time ] || { echo "needs ffmpeg and /usr/bin/time" >&2; exit 2; }

echo "# building examples/transcribe_folder (release)" >&2
cargo build --release --quiet --example transcribe_folder --example amr_encode
BIN=target/release/examples/transcribe_folder

# The clip: every voice of testdata/speech with a pause after it, over pink noise, 44.1 kHz mono.
CLIP="$DIR/clip.wav"
if [ ! -s "$CLIP" ]; then
  args=(); filt=""; i=0
  pads=(0.4 1.2 0.3 0.9 1.5 0.35 0.7 1.1 0.5)
  for u in testdata/speech/*.wav; do
    args+=(-i "$u")
    filt+="[$i]aresample=44100,apad=pad_dur=${pads[$((i % ${#pads[@]}))]}[a$i];"
    i=$((i + 1))
  done
  for ((k = 0; k < i; k++)); do filt+="[a$k]"; done
  filt+="concat=n=$i:v=0:a=1[s];anoisesrc=a=0.0005:c=pink:r=44100[n];[s][n]amix=inputs=2:duration=first:normalize=0[m]"
  ffmpeg -v error -nostdin "${args[@]}" -filter_complex "$filt" -map '[m]' -ac 1 -c:a pcm_s16le -y "$CLIP"
fi

# input NAME MINUTES: the clip looped to MINUTES in format NAME (cached); prints the path.
input() {
  local name=$1 min=$2 out ext
  case $name in
    flac_*) ext=flac ;; vorbis_*|opus_*) ext=ogg ;; mp3_*) ext=mp3 ;; aac_*) ext=m4a ;;
    wav_*) ext=wav ;; amrnb_*|amrwb_*) ext=amr ;; *) echo "unknown format $name" >&2; return 1 ;;
  esac
  out="$DIR/${name}_${min}m.$ext"
  if [ ! -s "$out" ]; then
    echo "# generating $out" >&2
    local loop=(ffmpeg -v error -nostdin -stream_loop -1 -i "$CLIP" -t $((min * 60)))
    case $name in
      flac_44k_stereo) "${loop[@]}" -ar 44100 -ac 2 -c:a flac -sample_fmt s16 -y "$out.tmp.flac" ;;
      vorbis_44k_stereo) "${loop[@]}" -ar 44100 -ac 2 -c:a libvorbis -q:a 4 -y "$out.tmp.ogg" ;;
      mp3_44k_stereo) "${loop[@]}" -ar 44100 -ac 2 -c:a libmp3lame -b:a 128k -y "$out.tmp.mp3" ;;
      aac_44k_stereo) "${loop[@]}" -ar 44100 -ac 2 -c:a aac -b:a 96k -y "$out.tmp.m4a" ;;
      opus_48k_mono) "${loop[@]}" -ar 48000 -ac 1 -c:a libopus -b:a 32k -y "$out.tmp.ogg" ;;
      wav_48k_stereo) "${loop[@]}" -ar 48000 -ac 2 -c:a pcm_s16le -y "$out.tmp.wav" ;;
      wav_8k_s16) "${loop[@]}" -ar 8000 -ac 1 -c:a pcm_s16le -y "$out.tmp.wav" ;;
      wav_8k_mulaw) "${loop[@]}" -ar 8000 -ac 1 -c:a pcm_mulaw -y "$out.tmp.wav" ;;
      amrnb_8k)
        "${loop[@]}" -ar 8000 -ac 1 -c:a pcm_s16le -y "$out.src.wav"
        if sox -h 2>/dev/null | grep -q 'amr-nb'; then
          sox "$out.src.wav" -t amr-nb -C 7 "$out.tmp.amr"       # opencore's encoder, 12.2 kbit/s
        else
          target/release/examples/amr_encode "$out.src.wav" "$out.tmp.amr" 7
        fi
        rm -f "$out.src.wav" ;;
      amrwb_16k)
        # Neither Debian's ffmpeg nor its sox encodes AMR-WB: rvoip-codec-core's encoder
        # (examples/amr_encode), 23.85 kbit/s.
        "${loop[@]}" -ar 16000 -ac 1 -c:a pcm_s16le -y "$out.src.wav"
        target/release/examples/amr_encode "$out.src.wav" "$out.tmp.amr" 8
        rm -f "$out.src.wav" ;;
    esac
    mv "$out.tmp.$ext" "$out"
  fi
  echo "$out"
}

timed() { # timed CMD... -> "wall cpu rss_mb"
  local tf; tf=$(mktemp)
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >/dev/null 2>&1
  awk '{printf "%.2f %.2f %.1f\n", $1, $2 + $3, $4 / 1024}' "$tf"; rm -f "$tf"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

RES="$DIR/results.tsv"
printf 'format\tminutes\tffmpeg_wall_s\tffmpeg_cpu_s\tffmpeg_rss_mb\tours_wall_s\tours_cpu_s\tours_rss_mb\twall_ratio\tcpu_ratio\tours_xrt_wall\n' >"$RES"
printf '\n| input (%s min) | ffmpeg wall s | ffmpeg CPU s | ours wall s | ours CPU s | wall ours/ffmpeg | CPU ours/ffmpeg | ours × realtime (wall) | ours peak RSS MB |\n|---|---|---|---|---|---|---|---|---|\n' "$MINUTES"
for name in $FORMATS; do
  in=$(input "$name" "$MINUTES") || continue
  runs="$DIR/runs_$name.tsv"; : >"$runs"
  for ((p = 1; p <= PAIRS; p++)); do
    read -r fw fc fr < <(timed ffmpeg -v error -nostdin -i "$in" -ac 1 -ar 16000 -f s16le -y /dev/null)
    rm -rf "$DIR/out"
    read -r ow oc orss < <(timed "$BIN" --split-only --quiet --out "$DIR/out" "$in")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$fw" "$fc" "$fr" "$ow" "$oc" "$orss" >>"$runs"
  done
  rm -rf "$DIR/out"
  col() { cut -f"$1" "$runs" | median; }
  fw=$(col 1); fc=$(col 2); fr=$(col 3); ow=$(col 4); oc=$(col 5); orss=$(col 6)
  awk -v n="$name" -v m="$MINUTES" -v fw="$fw" -v fc="$fc" -v fr="$fr" -v ow="$ow" -v oc="$oc" -v orss="$orss" -v res="$RES" 'BEGIN {
    s = m * 60
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.0f\n", n, m, fw, fc, fr, ow, oc, orss, ow / fw, oc / fc, s / ow >> res
    printf "| %s | %s | %s | %s | %s | %.2f | %.2f | %.0f | %s |\n", n, fw, fc, ow, oc, ow / fw, oc / fc, s / ow, orss
  }'
done

# Memory: the first format at LONG_MINUTES, once (peak RSS should not grow with length).
if [ "$LONG_MINUTES" -gt 0 ]; then
  first=${FORMATS%% *}
  in=$(input "$first" "$LONG_MINUTES")
  rm -rf "$DIR/out"
  read -r ow oc orss < <(timed "$BIN" --split-only --quiet --out "$DIR/out" "$in")
  rm -rf "$DIR/out"
  printf '%s\t%s\t-\t-\t-\t%s\t%s\t%s\t-\t-\t%.0f\n' "$first" "$LONG_MINUTES" "$ow" "$oc" "$orss" \
    "$(awk -v s=$((LONG_MINUTES * 60)) -v w="$ow" 'BEGIN {print s / w}')" >>"$RES"
  printf '\n%s at %s minutes: ours %s s wall, %s s CPU, peak RSS %s MB\n' "$first" "$LONG_MINUTES" "$ow" "$oc" "$orss"
fi
printf '\n%s pairs per format, medians; %s cores, %s, %s\n' "$PAIRS" "$(nproc)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(date -u +%F)"
