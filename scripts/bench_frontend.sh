#!/usr/bin/env bash
# Front-end benchmark: decode → 16 kHz → DC removal + loudness metering, per input format,
# 60-minute inputs, one core. Prints x-realtime and peak RSS for each, and, where ffmpeg is
# installed, times `ffmpeg -i IN -ac 1 -ar 16000 -f s16le -y /dev/null` on the same input and
# prints the ratio (ffmpeg wall time / ours: > 1 means we are faster while doing more work).
# Then a 400-minute run for memory (mostly silence, 44.1 kHz stereo FLAC, and a generated
# source without a decoder).
#
# x-realtime = audio seconds / seconds taken, on CPU time (user+sys, one core) and on wall time.
#
# Usage: scripts/bench_frontend.sh   (MINUTES=60 LONG_MINUTES=400 BENCH_DIR=target/bench-frontend)
#        MINUTES=5 LONG_MINUTES=20 scripts/bench_frontend.sh   (a quick run)
# Inputs are cached in $BENCH_DIR; delete it to regenerate. Results go to stdout and
# $BENCH_DIR/results.tsv. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-60}
LONG_MINUTES=${LONG_MINUTES:-400}
DIR=${BENCH_DIR:-target/bench-frontend}
mkdir -p "$DIR"
SECS=$((MINUTES * 60))

echo "# building examples/bench_frontend (release)" >&2
cargo build --release --quiet --example bench_frontend
BIN=target/release/examples/bench_frontend

have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Inputs. With ffmpeg: a 60 s speech-like clip (harmonic tone, 4 Hz syllable envelope, pauses,
# a little noise), looped to MINUTES and encoded per format. Without ffmpeg: WAV and FLAC from
# our own encoders (bench_frontend --gen).
# ---------------------------------------------------------------------------------------------
EXPR='(0.25*sin(2*PI*(140+30*sin(2*PI*0.3*t))*t)+0.12*sin(4*PI*(140+30*sin(2*PI*0.3*t))*t)+0.06*sin(6*PI*(140+30*sin(2*PI*0.3*t))*t))*pow(sin(2*PI*2*t),2)*lt(mod(t,3),2.2)+0.002*(random(0)-0.5)'
gen() { # gen NAME ARGS... : encode the looped clip to $DIR/NAME unless cached
  local out="$DIR/$1"; shift
  [ -s "$out" ] && return 0
  echo "# generating $out" >&2
  ffmpeg -v error -nostdin -stream_loop $((MINUTES - 1)) -i "$DIR/clip.wav" "$@" -y "$out.tmp.${out##*.}"
  mv "$out.tmp.${out##*.}" "$out"
}

INPUTS=()
if have ffmpeg; then
  [ -s "$DIR/clip.wav" ] || ffmpeg -v error -nostdin -f lavfi \
      -i "aevalsrc='$EXPR|$EXPR':s=44100:d=60" -c:a pcm_f32le -y "$DIR/clip.wav"
  gen "flac_44k_stereo_${MINUTES}m.flac" -ar 44100 -ac 2 -c:a flac -sample_fmt s16
  gen "wav_8k_mulaw_${MINUTES}m.wav" -ar 8000 -ac 1 -c:a pcm_mulaw
  gen "wav_8k_s16_${MINUTES}m.wav" -ar 8000 -ac 1 -c:a pcm_s16le
  gen "wav_48k_stereo_s16_${MINUTES}m.wav" -ar 48000 -ac 2 -c:a pcm_s16le
  gen "mp3_44k_stereo_${MINUTES}m.mp3" -ar 44100 -ac 2 -c:a libmp3lame -b:a 128k
  gen "vorbis_44k_stereo_${MINUTES}m.ogg" -ar 44100 -ac 2 -c:a libvorbis -q:a 4
  gen "opus_48k_mono_${MINUTES}m.opus" -ar 48000 -ac 1 -c:a libopus -b:a 32k
  gen "aac_44k_stereo_${MINUTES}m.m4a" -ar 44100 -ac 2 -c:a aac -b:a 96k
  INPUTS+=(flac_44k_stereo wav_8k_mulaw wav_8k_s16 wav_48k_stereo_s16 mp3_44k_stereo vorbis_44k_stereo opus_48k_mono aac_44k_stereo)
  if have sox && sox -h 2>/dev/null | grep -q 'amr-nb'; then
    AMR="$DIR/amrnb_8k_${MINUTES}m.amr"
    if [ ! -s "$AMR" ]; then
      echo "# generating $AMR" >&2
      ffmpeg -v error -nostdin -i "$DIR/wav_8k_s16_${MINUTES}m.wav" -c:a pcm_s16le -y "$DIR/amr_src.wav"
      sox "$DIR/amr_src.wav" -t amr-nb -C 7 "$AMR.tmp" && mv "$AMR.tmp" "$AMR"
      rm -f "$DIR/amr_src.wav"
    fi
    INPUTS+=(amrnb_8k)
  fi
else
  echo "# ffmpeg not installed: WAV and FLAC from our own encoders only" >&2
  for f in wav_16k_s16.wav flac_16k.flac; do
    [ -s "$DIR/${f%.*}_${MINUTES}m.${f##*.}" ] || "$BIN" --gen "$DIR/${f%.*}_${MINUTES}m.${f##*.}" "$MINUTES"
  done
  INPUTS+=(wav_16k_s16 flac_16k)
fi

file_of() { ls "$DIR/$1_${MINUTES}m".* 2>/dev/null | grep -v '\.tmp' | head -1; }

# ---------------------------------------------------------------------------------------------
# Runs. Ours: one process per input (so peak RSS is per input). ffmpeg: same input, same run.
# ---------------------------------------------------------------------------------------------
RES="$DIR/results.tsv"
# x-realtime is reported on CPU time (one core; user+sys) and on wall time. On a shared
# machine the CPU figure is the fair one: wall time includes waiting for the core.
kv() { awk -F'\t' -v k="$1" '$1 == k {print $2}' <<<"$2"; }
printf 'input\tmin\tours_cpu_s\tours_xrt_cpu\tours_wall_s\tours_xrt_wall\tours_rss_mb\tffmpeg_cpu_s\tffmpeg_xrt_cpu\tffmpeg_wall_s\tffmpeg_rss_mb\tcpu_ratio_ffmpeg/ours\n' | tee "$RES"
for name in "${INPUTS[@]}"; do
  f=$(file_of "$name")
  [ -n "$f" ] || { echo "# missing input $name" >&2; continue; }
  out=$("$BIN" "$f")
  secs=$(kv secs "$out"); cpu=$(kv cpu "$out"); wall=$(kv wall "$out"); rss=$(kv peak_rss_mb "$out")
  xc=$(awk -v s="$secs" -v w="$cpu" 'BEGIN {printf "%.0f", s / w}')
  xw=$(awk -v s="$secs" -v w="$wall" 'BEGIN {printf "%.0f", s / w}')
  if have ffmpeg && [ -x /usr/bin/time ]; then
    tf=$(mktemp)
    /usr/bin/time -f '%e %U %S %M' -o "$tf" ffmpeg -v error -nostdin -i "$f" -ac 1 -ar 16000 -f s16le -y /dev/null
    read -r fw fu fs fm <"$tf"; rm -f "$tf"
    fc=$(awk -v u="$fu" -v s="$fs" 'BEGIN {printf "%.2f", u + s}')
    fx=$(awk -v s="$secs" -v c="$fc" 'BEGIN {printf "%.0f", (c > 0 ? s / c : 0)}')
    fr=$(awk -v m="$fm" 'BEGIN {printf "%.1f", m / 1024}')
    ratio=$(awk -v o="$cpu" -v c="$fc" 'BEGIN {printf "%.2f", c / o}')
  else
    fc=-; fx=-; fw=-; fr=-; ratio=-
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$MINUTES" "$cpu" "$xc" "$wall" "$xw" "$rss" "$fc" "$fx" "$fw" "$fr" "$ratio" | tee -a "$RES"
done

# The whole-file route: measuring pass + gain pass over the first input (two decodes).
f=$(file_of "${INPUTS[0]}")
if [ -n "$f" ]; then
  out=$("$BIN" --two-pass "$f")
  printf '%s_two_pass\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n' "${INPUTS[0]}" "$MINUTES" "$(kv cpu "$out")" "$(kv xrt_cpu "$out")" \
    "$(kv wall "$out")" "$(kv xrt "$out")" "$(kv peak_rss_mb "$out")" | tee -a "$RES"
fi

# ---------------------------------------------------------------------------------------------
# Memory: LONG_MINUTES of mostly silence (1 s of tone every 10 s).
# ---------------------------------------------------------------------------------------------
echo "# memory runs: ${LONG_MINUTES} minutes" >&2
if have ffmpeg; then
  LONG="$DIR/long_flac_44k_stereo_${LONG_MINUTES}m.flac"
  if [ ! -s "$LONG" ]; then
    ffmpeg -v error -nostdin -f lavfi -i "aevalsrc='0.3*sin(2*PI*150*t)*lt(mod(t,10),1)|0.3*sin(2*PI*150*t)*lt(mod(t,10),1)':s=44100:d=60" \
      -c:a pcm_s16le -y "$DIR/long_clip.wav"
    ffmpeg -v error -nostdin -stream_loop $((LONG_MINUTES - 1)) -i "$DIR/long_clip.wav" -c:a flac -y "$LONG.tmp.flac"
    mv "$LONG.tmp.flac" "$LONG"
  fi
  out=$("$BIN" "$LONG")
  printf 'long_flac_44k_stereo\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n' "$LONG_MINUTES" "$(kv cpu "$out")" "$(kv xrt_cpu "$out")" \
    "$(kv wall "$out")" "$(kv xrt "$out")" "$(kv peak_rss_mb "$out")" | tee -a "$RES"
fi
out=$("$BIN" --synth 44100 "$LONG_MINUTES")
printf 'synth_44k_no_decoder\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n' "$LONG_MINUTES" "$(kv cpu "$out")" "$(kv xrt_cpu "$out")" \
  "$(kv wall "$out")" "$(kv xrt "$out")" "$(kv peak_rss_mb "$out")" | tee -a "$RES"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)" | tee -a "$RES"
