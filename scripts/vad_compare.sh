#!/usr/bin/env bash
# Compare VAD segmenters (ours, Silero, WebRTC) on a real-speech corpus: see scripts/vad_compare.py.
# Usage: scripts/vad_compare.sh CORPUS_DIR [--systems ours,silero,webrtc,webrtc1] [--markdown]
# Dependencies go into a venv under ${XDG_CACHE_HOME:-~/.cache}/asr-pipeline-vadcmp, made once.
set -euo pipefail
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/asr-pipeline-vadcmp"
if [ ! -e "$VENV/.installed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy scipy onnxruntime webrtcvad-wheels
  "$VENV/bin/pip" install -q --no-deps silero-vad  # only its ONNX model is used: no torch
  touch "$VENV/.installed"
fi
exec "$VENV/bin/python" "$(dirname "$0")/vad_compare.py" "$@"
