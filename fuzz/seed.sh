#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) from the repository's own files:
# the audio fixtures for the decoder and stream targets, and example API answers (the first
# byte chooses the parser, see fuzz_targets/api_responses.rs) for the parser target.
set -euo pipefail
cd "$(dirname "$0")"
for t in decoder stream; do
  mkdir -p "corpus/$t"
  cp ../testdata/formats/*.* "corpus/$t/"
  rm -f "corpus/$t/README.md"
  # The smallest speech clips only: small seeds keep the decoder target fast.
  for f in ../testdata/speech/u2_hello.wav ../testdata/speech/u3_hold.wav; do cp "$f" "corpus/$t/"; done
done
# Channels: the first byte picks the mode (0 Auto, 2 Separate), the rest is an audio file.
mkdir -p corpus/channels
for f in ../testdata/formats/*.*; do
  [ "$(basename "$f")" = README.md ] && continue
  for m in 0 2; do { printf "\\x0$m"; cat "$f"; } >"corpus/channels/$m-$(basename "$f")"; done
done
# AMR: the first byte picks the codec (0 NB, 1 WB), then the storage-format frames without the magic.
mkdir -p corpus/amr
{ printf "\\x00"; tail -c +7 ../testdata/formats/tone_8k.amr; } >corpus/amr/nb
{ printf "\\x01"; tail -c +10 ../testdata/formats/tone_16k_wb.amr; } >corpus/amr/wb
mkdir -p corpus/api_responses
seed() { printf "\\x$(printf %02x "$1")%s" "$2" >"corpus/api_responses/$1_$3"; }
seed 0 '{"data":[{"start":"0.5","end":1200,"speaker":"speaker_0","text":"sawubona","language":"zu-ZA"}],"status":"completed"}' async
seed 1 '{"transcription":"hello","language":"en-ZA","duration":"2.5"}' sync
seed 2 '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Invalid according to Policy</Message></Error>' s3
seed 3 'Wed, 21 Oct 2026 07:28:00 GMT' date
seed 3 '120' secs
seed 4 'completed' status
seed 5 '{"segments":[{"start":0.66,"end":1.26,"speaker":null,"language":null,"text":"hi","source":{"route":"sync","segment":0}}],"metadata":{}}' transcript
seed 6 $'HTTP/1.1 403 Forbidden\r\nContent-Length: 20\r\n\r\n<Error><Code>A</Code>' answer_length
seed 6 $'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n' answer_chunked
seed 7 '{"segments":[]}' plan
echo "seeded: $(ls corpus/*/ | wc -l) files"
