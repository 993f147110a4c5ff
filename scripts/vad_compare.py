#!/usr/bin/env python3
"""Side-by-side comparison of VAD segmenters on a real-speech corpus.

Usage: python3 scripts/vad_compare.py CORPUS_DIR [--systems ours,silero,webrtc,webrtc1] [--markdown]
(scripts/vad_compare.sh sets up a venv with the dependencies and runs this.)

Corpus format and metric definitions: see the corpus format spec (`<name>.wav`,
`<name>.truth.json`, `<name>.<system>.json`). Systems:
  ours     reads `<name>.ours.json` written by the Rust project (reported as missing if absent)
  silero   Silero VAD (ONNX model from the `silero-vad` wheel, run with onnxruntime, no torch);
           `get_speech_timestamps` defaults except speech_pad_ms=300, max_speech_duration_s=60;
           one request per speech timestamp
  webrtc   py-webrtcvad mode 3, 30 ms frames, the classic 300 ms ring-buffer collector,
           one request per voiced run, runs over 60 s cut into 60 s pieces
  webrtc1  the same with mode 1
silero/webrtc results are written to `<name>.<system>.json`. `seconds` is the process CPU time
(onnxruntime is limited to one thread) of the VAD and its post-processing only, not decoding
or resampling.
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections import deque

import numpy as np
from scipy.signal import resample_poly

RATE = 16000  # all systems work and report at 16 kHz
TOL = 0.01  # utterance edge tolerance, seconds
MAX_REQ = 60.0  # request length limit, seconds
SPEECH_KINDS = ("call", "dialogue")


# -------- Audio -------------------------------------------------------------------------
def _mulaw_table():
    """G.711 µ-law byte -> linear 16-bit value."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.float32)


def read_wav(path):
    """Read a RIFF WAV (PCM 16-bit, tag 1, or µ-law, tag 7) -> (float32 mono in [-1, 1), rate)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            tag, ch, rate = (int.from_bytes(body[a:b], "little") for a, b in ((0, 2), (2, 4), (4, 8)))
            bits = int.from_bytes(body[14:16], "little")
            if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                tag = int.from_bytes(body[24:26], "little")
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise ValueError(f"{path}: no fmt or data chunk")
    tag, ch, rate, bits = fmt
    if tag == 1 and bits == 16:
        x = np.frombuffer(pcm[:len(pcm) // 2 * 2], "<i2").astype(np.float32)
    elif tag == 7 and bits == 8:
        x = _mulaw_table()[np.frombuffer(pcm, np.uint8)]
    else:
        raise ValueError(f"{path}: unsupported format tag {tag} / {bits} bits")
    x = x[:len(x) // ch * ch].reshape(-1, ch).mean(axis=1)
    return (x / 32768.0).astype(np.float32), rate


def to_16k(x, rate):
    """Polyphase resampling (Kaiser-windowed FIR, scipy's default) to 16 kHz."""
    if rate == RATE:
        return x
    g = math.gcd(rate, RATE)
    return resample_poly(x, RATE // g, rate // g).astype(np.float32)


# -------- Silero VAD (ONNX), fed as silero_vad.utils_vad.OnnxWrapper does at 16 kHz -----
class Silero:
    WIN, CTX = 512, 64  # samples per call and context carried over from the previous call

    def __init__(self):
        import onnxruntime as ort
        spec = importlib.util.find_spec("silero_vad")  # locates the package without importing it (torch)
        if spec is None:
            sys.exit("silero: package silero-vad not installed (pip install --no-deps silero-vad)")
        path = os.path.join(spec.submodule_search_locations[0], "data", "silero_vad.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        names = {i.name: i.shape for i in self.sess.get_inputs()}
        if set(names) != {"input", "state", "sr"} or names["state"][0] != 2 or names["state"][2] != 128:
            sys.exit(f"silero: unexpected model inputs {names}")

    def probs(self, x):
        """Speech probability per 512-sample window; the last window is zero-padded."""
        x = np.concatenate([x, np.zeros(-len(x) % self.WIN, np.float32)])
        state = np.zeros((2, 1, 128), np.float32)
        ctx = np.zeros(self.CTX, np.float32)
        sr = np.array(RATE, dtype=np.int64)
        out = np.empty(len(x) // self.WIN, np.float32)
        for i in range(len(out)):
            inp = np.concatenate([ctx, x[i * self.WIN:(i + 1) * self.WIN]])[None, :]  # [1, 576]
            p, state = self.sess.run(None, {"input": inp, "state": state, "sr": sr})
            out[i] = p[0, 0]
            ctx = inp[0, -self.CTX:]
        return out

    def requests(self, x):
        n = len(x)
        return [(max(0, s), min(n, e)) for s, e in speech_timestamps(self.probs(x), n) if e > s]


def speech_timestamps(probs, n, threshold=0.5, min_speech_ms=250, max_speech_s=60.0,
                      min_silence_ms=100, pad_ms=300, min_silence_at_max_ms=98):
    """Port of silero_vad get_speech_timestamps_from_probs (use_max_poss_sil_at_max_speech=True,
    16 kHz), returning [(start, end)] in samples. With that option prev_end is only ever set
    from possible_ends, so the legacy prev_end branch reduces to the hard cut at cur_sample."""
    win = Silero.WIN
    neg = max(threshold - 0.15, 0.01)
    min_speech, pad = RATE * min_speech_ms / 1000, RATE * pad_ms / 1000
    max_speech = RATE * max_speech_s - win - 2 * pad
    min_sil, min_sil_max = RATE * min_silence_ms / 1000, RATE * min_silence_at_max_ms / 1000
    triggered, speeches, cur = False, [], {}
    temp_end = prev_end = next_start = 0
    possible_ends = []
    for i, p in enumerate(probs):
        cur_sample = win * i
        if p >= threshold and temp_end:
            sil = cur_sample - temp_end
            if sil > min_sil_max:
                possible_ends.append((temp_end, sil))
            temp_end = 0
            if next_start < prev_end:
                next_start = cur_sample
        if p >= threshold and not triggered:
            triggered, cur = True, {"start": cur_sample}
            continue
        if triggered and cur_sample - cur["start"] > max_speech:
            if possible_ends:  # cut at the longest silence seen in this chunk
                prev_end, dur = max(possible_ends, key=lambda t: t[1])
                cur["end"] = prev_end
                speeches.append(cur)
                cur = {}
                next_start = prev_end + dur
                if next_start < prev_end + cur_sample:
                    cur["start"] = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:  # no silence: hard cut here
                cur["end"] = cur_sample
                speeches.append(cur)
                cur, triggered = {}, False
                prev_end = next_start = temp_end = 0
                possible_ends = []
                continue
        if p < neg and triggered:
            if not temp_end:
                temp_end = cur_sample
            if cur_sample - temp_end < min_sil:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech:
                speeches.append(cur)
            cur, triggered = {}, False
            prev_end = next_start = temp_end = 0
            possible_ends = []
    if cur and n - cur["start"] > min_speech:
        cur["end"] = n
        speeches.append(cur)
    for i, s in enumerate(speeches):  # padding: split short gaps between neighbours evenly
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1]["start"] - s["end"]
            if gap < 2 * pad:
                s["end"] += int(gap // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - gap // 2))
            else:
                s["end"] = int(min(n, s["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            s["end"] = int(min(n, s["end"] + pad))
    return [(s["start"], s["end"]) for s in speeches]


# -------- WebRTC VAD with the classic collector from py-webrtcvad's example.py ----------
def webrtc_requests(x, mode, frame_ms=30, ring_ms=300):
    import webrtcvad
    vad = webrtcvad.Vad(mode)
    flen = RATE * frame_ms // 1000
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    ring = deque(maxlen=ring_ms // frame_ms)
    triggered, start, runs = False, 0, []
    for i in range(len(x) // flen):  # a trailing partial frame is dropped, as in the example
        ring.append(vad.is_speech(pcm[2 * i * flen:2 * (i + 1) * flen], RATE))
        if not triggered and sum(ring) > 0.9 * ring.maxlen:
            triggered, start = True, (i + 1 - len(ring)) * flen  # the run starts with the ring
            ring.clear()
        elif triggered and len(ring) - sum(ring) > 0.9 * ring.maxlen:
            triggered = False
            runs.append((start, (i + 1) * flen))  # includes the unvoiced frames in the ring
            ring.clear()
    if triggered:
        runs.append((start, len(x) // flen * flen))
    step = int(MAX_REQ * RATE)
    return [(s, min(e, s + step)) for a, e in runs for s in range(a, e, step)]


# -------- Metrics (everything in seconds) -----------------------------------------------
def union(iv):
    out = []
    for s, e in sorted(iv):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def overlap(a, b):
    """Total overlap of two sorted, disjoint interval lists."""
    i = j = 0
    tot = 0.0
    while i < len(a) and j < len(b):
        tot += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tot


def load_result(path):
    """-> (requests [(start, end, [spans])] in seconds, processing seconds)."""
    with open(path) as f:
        r = json.load(f)
    rate = r.get("rate", RATE)
    reqs = []
    for q in r["requests"]:
        spans = q.get("spans") or [[q["start"], q["end"]]]
        reqs.append((q["start"] / rate, q["end"] / rate, [(a / rate, b / rate) for a, b in spans]))
    return reqs, float(r.get("seconds", 0.0))


def score(truth, reqs, seconds):
    rate = truth["rate"]
    utts = [(u["start"] / rate, u["end"] / rate) for u in truth.get("utterances", [])]
    speech = union(utts)
    music = union((m["start"] / rate, m["end"] / rate) for m in truth.get("music", []))
    kept = union(sp for q in reqs for sp in q[2])
    c = dict(utts=len(utts), whole=0, split=0, missed=0, speech=sum(e - s for s, e in speech),
             music=sum(e - s for s, e in music), requests=len(reqs), over60=0, billed=0.0,
             audio=truth["len"] / rate, proc=seconds)
    c["covered"], c["music_sent"] = overlap(speech, kept), overlap(music, kept)
    for s, e in utts:
        a, b = s + TOL, e - TOL
        if b <= a:  # shorter than twice the tolerance: test its midpoint
            a = b = (s + e) / 2
        hits = [q for q in reqs if q[0] < b and q[1] > a or q[0] <= a < q[1]]
        if not hits:
            c["missed"] += 1
        elif len(hits) > 1:
            c["split"] += 1
        elif hits[0][0] <= a and hits[0][1] >= b:
            c["whole"] += 1
    for q in reqs:
        billed = sum(b - a for a, b in q[2])
        c["billed"] += billed
        c["over60"] += billed > MAX_REQ
    return c


# -------- Tables ------------------------------------------------------------------------
def pct(a, b):
    return f"{100 * a / b:.1f}" if b > 0 else "–"


def table(title, head, rows, markdown):
    print(f"\n### {title}\n" if markdown else f"\n{title}")
    if markdown:
        for r in [head, ["---"] + ["---:"] * (len(head) - 1)] + rows:
            print("| " + " | ".join(r) + " |")
        return
    w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join([r[0].ljust(w[0])] + [r[i].rjust(w[i]) for i in range(1, len(r))]))


def total(cases):
    cases = list(cases)
    return {k: sum(c[k] for c in cases) for k in (cases[0] if cases else ())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--systems", default="ours,silero,webrtc,webrtc1")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    if set(systems) - {"ours", "silero", "webrtc", "webrtc1"}:
        sys.exit(f"unknown system in {args.systems} (known: ours, silero, webrtc, webrtc1)")
    names = sorted(f[:-len(".truth.json")] for f in os.listdir(args.corpus) if f.endswith(".truth.json"))
    if not names:
        sys.exit(f"no *.truth.json in {args.corpus}")
    silero = Silero() if "silero" in systems else None
    scores = {s: [] for s in systems}  # system -> [(kind, case metrics)]
    kinds, missing = {}, []
    for name in names:
        base = os.path.join(args.corpus, name)
        with open(base + ".truth.json") as f:
            truth = json.load(f)
        kinds[name] = truth["kind"]
        x, rate = read_wav(base + ".wav")
        if rate != truth["rate"] or len(x) != truth["len"]:
            print(f"warning: {name}: wav {rate} Hz/{len(x)} samples, truth says "
                  f"{truth['rate']} Hz/{truth['len']}", file=sys.stderr)
        x16 = to_16k(x, rate)
        for sysname in systems:
            out = f"{base}.{sysname}.json"
            if sysname == "ours":
                if not os.path.exists(out):
                    missing.append(name)
                    continue
            else:
                t0 = time.process_time()
                if sysname == "silero":
                    reqs = silero.requests(x16)
                else:
                    reqs = webrtc_requests(x16, 3 if sysname == "webrtc" else 1)
                secs = time.process_time() - t0
                with open(out, "w") as f:
                    json.dump({"system": sysname, "rate": RATE, "seconds": round(secs, 6),
                               "requests": [{"start": int(s), "end": int(e), "spans": [[int(s), int(e)]]}
                                            for s, e in reqs]}, f)
            scores[sysname].append((truth["kind"], score(truth, *load_result(out))))
        print(f"{name}: {truth['kind']}, {len(x) / rate:.1f} s", file=sys.stderr)
    if missing:
        print(f"ours: no .ours.json for {len(missing)} case(s): {', '.join(missing)}", file=sys.stderr)

    n_speech, n_music, n_sil = (sum(k in ks for k in kinds.values())
                                for ks in (SPEECH_KINDS, ("music",), ("silence",)))
    print(f"corpus {args.corpus}: {len(names)} cases ({n_speech} call/dialogue, {n_music} music, "
          f"{n_sil} silence)")
    head = ["system", "cases", "utterances whole %", "split", "missed", "speech coverage %",
            "music sent %", "billed ratio", "requests > 60 s", "× realtime"]
    rows = []
    for s in systems:
        cs = [c for k, c in scores[s] if k in SPEECH_KINDS]
        t = total(cs)
        if not cs:
            rows.append([s, f"0/{n_speech}", "missing" if s == "ours" else "–"] + ["–"] * 7)
            continue
        rows.append([s, f"{len(cs)}/{n_speech}", pct(t["whole"], t["utts"]), str(t["split"]),
                     str(t["missed"]), pct(t["covered"], t["speech"]), pct(t["music_sent"], t["music"]),
                     f"{t['billed'] / t['speech']:.3f}" if t["speech"] else "–", str(t["over60"]),
                     f"{t['audio'] / t['proc']:.0f}" if t["proc"] > 0 else "–"])
    table("Speech cases (call + dialogue)", head, rows, args.markdown)
    head = ["system", "cases", "music sent % (music cases)", "requests (music cases)",
            "requests (silence cases)", "billed s (music + silence)"]
    rows = []
    for s in systems:
        tm, ts = (total(c for k, c in scores[s] if k == kind) for kind in ("music", "silence"))
        n = sum(k in ("music", "silence") for k, _ in scores[s])
        rows.append([s, f"{n}/{n_music + n_sil}"] + (
            [pct(tm.get("music_sent", 0), tm.get("music", 0)), str(tm.get("requests", "–")),
             str(ts.get("requests", "–")), f"{tm.get('billed', 0) + ts.get('billed', 0):.1f}"]
            if n else ["missing" if s == "ours" else "–"] + ["–"] * 3))
    table("Music-only and silence-only cases", head, rows, args.markdown)


if __name__ == "__main__":
    main()
