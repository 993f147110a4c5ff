//! The Silero VAD network (v6.2, 16 kHz branch) in plain Rust: no runtime, no unsafe. The
//! forward pass is compiled for the baseline CPU, for AVX2 and for AVX-512 (chosen at run time
//! with `pulp`), with eight tiles of output sums held in registers (two or four rows of a
//! batch at a time, sharing each row of weights loaded) and fused multiply-adds in the SIMD
//! builds, so one 32 ms chunk costs about 8 µs with AVX-512 and 11 µs with AVX2. The SIMD
//! builds give identical numbers (each sum takes its terms in the same order, fused); the
//! baseline build, which multiplies then adds, agrees with them to 1e-5.
//!
//! Weights: `silero_vad.onnx` of the `silero-vad` 6.2.3 package (MIT licence, © Silero Team),
//! exported to `silero_vad_16k_v6_2.safetensors` by `scripts/export_silero_weights.py`. Per
//! 512-sample chunk (32 ms):
//!
//! ```text
//! x = [64 samples of context | 512 new samples], reflect-padded on the right by 64 → 640
//! STFT: 4 frames of 256, hop 128, periodic Hann, |X_k| for k = 0..=128
//! conv1 129→128 k3 s1, conv2 128→64 k3 s2, conv3 64→64 k3 s2, conv4 64→128 k3 s1 (+ ReLU)
//! LSTM cell 128→128 with state (h, c) carried from chunk to chunk
//! ReLU → 1×1 conv 128→1 → sigmoid = speech probability
//! ```
//!
//! The ONNX graph computes the STFT as a convolution with a windowed-DFT basis; a real FFT of
//! the Hann-windowed frame gives the same magnitudes (the basis matches it to 1e-7), at a
//! sixteenth of the cost. Probabilities agree with onnxruntime within 1e-4 (tested against
//! stored reference values).

use std::sync::{Arc, OnceLock};

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::{Error, Result};

/// New samples per chunk.
pub(crate) const CHUNK: usize = 512;
const CONTEXT: usize = 64;
const N_FFT: usize = 256;
const HOP: usize = 128;
const N_BINS: usize = N_FFT / 2 + 1;
const N_FRAMES: usize = 4;
const HIDDEN: usize = 128;
pub(crate) const GATES: usize = 4 * HIDDEN;
/// Outputs accumulated in registers at once: every layer's output count is a multiple.
const TILE: usize = 32;
/// Chunks encoded together by [`Front::run`] (the weights are read once per batch).
pub(crate) const BATCH: usize = 8;
/// The LSTM's input gates for one chunk before the recurrent part is added: `b + W_ih·x`,
/// where `x` is the encoder's output. It depends on the audio alone, not on the model's state,
/// so it can be computed ahead, on another thread ([`Front`]), and finished by [`Recurrent`].
pub(crate) type Pre = [f32; GATES];

static WEIGHTS_FILE: &[u8] = include_bytes!("silero_vad_16k_v6_2.safetensors");

/// A convolution (kernel 3, padding 1) with weights laid out `[tile][tap][in][TILE]`: one
/// tile of outputs is accumulated in registers over all taps and inputs, reading its weights
/// in order (loops LLVM vectorises).
#[derive(Debug)]
struct Conv {
    cin: usize,
    cout: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Conv {
    fn new(w: &[f32], b: &[f32], cin: usize, cout: usize) -> Conv {
        debug_assert_eq!(cout % TILE, 0);
        let mut t = vec![0f32; 3 * cin * cout];
        for o in 0..cout {
            let (tile, lane) = (o / TILE, o % TILE);
            for i in 0..cin {
                for k in 0..3 {
                    t[((tile * 3 + k) * cin + i) * TILE + lane] = w[(o * cin + i) * 3 + k];
                }
            }
        }
        Conv {
            cin,
            cout,
            w: t,
            b: b.to_vec(),
        }
    }

    /// For each of `batch` chunks, `input` holds `[tin][cin]` and `out` gets `[tout][cout]`
    /// after ReLU; returns `tout`. `acc` is scratch of `batch × tout` rows.
    ///
    /// Tile by tile and tap by tap, every output row of every chunk takes its turn while that
    /// tap's weights (`cin × TILE`, 16 KB at most) are in the L1 cache: the weights are read
    /// from further out once per batch instead of once per row, and `R` rows at a time share
    /// each row of weights loaded ([`mac`]). Each output's sum is added in the same order as
    /// row by row (tap, then input), so the results do not depend on `R`.
    #[inline(always)]
    fn forward_relu<const R: usize, const F: bool>(
        &self,
        input: &[f32],
        batch: usize,
        tin: usize,
        stride: usize,
        out: &mut [f32],
        acc: &mut [[f32; TILE]],
    ) -> usize {
        let (cin, cout) = (self.cin, self.cout);
        let tout = (tin - 1) / stride + 1;
        let rows = (batch * tout).min(acc.len()).min(MAX_ROWS);
        let per_tile = 3 * cin * TILE;
        // Per tap, the rows whose input frame exists (the others are padding: no terms).
        let mut taps = [([(0usize, 0usize); MAX_ROWS], 0usize); 3];
        for (k, (list, m)) in taps.iter_mut().enumerate() {
            for r in 0..rows {
                let (b, t) = (r / tout, r % tout);
                if let Some(ti) = (t * stride + k).checked_sub(1).filter(|&ti| ti < tin) {
                    list[*m] = (r, (b * tin + ti) * cin);
                    *m += 1;
                }
            }
        }
        for (tile, (wt, bias)) in self
            .w
            .chunks_exact(per_tile)
            .zip(self.b.as_chunks::<TILE>().0)
            .enumerate()
        {
            acc[..rows].fill(*bias);
            for ((list, m), wk) in taps.iter().zip(wt.chunks_exact(cin * TILE)) {
                let wk = wk.as_chunks::<TILE>().0;
                let mut group = list[..*m].chunks_exact(R);
                for g in &mut group {
                    let mut a: [[f32; TILE]; R] = std::array::from_fn(|j| acc[g[j].0]);
                    let x = std::array::from_fn(|j| &input[g[j].1..g[j].1 + cin]);
                    mac::<R, F>(&mut a, x, wk);
                    for (j, a) in a.iter().enumerate() {
                        acc[g[j].0] = *a;
                    }
                }
                for &(r, at) in group.remainder() {
                    let mut a = [acc[r]];
                    mac::<1, F>(&mut a, [&input[at..at + cin]], wk);
                    acc[r] = a[0];
                }
            }
            for (r, a) in acc[..rows].iter().enumerate() {
                let at = r * cout + tile * TILE;
                for (d, &a) in out[at..at + TILE].iter_mut().zip(a) {
                    *d = a.max(0.0);
                }
            }
        }
        tout
    }
}

/// The most output rows of one layer over a batch.
const MAX_ROWS: usize = BATCH * N_FRAMES;

/// `a + x·w`, fused into one rounding when `F` (the SIMD builds: every CPU with AVX2 or NEON
/// has the instruction), else a multiply then an add (a fused multiply-add without hardware
/// support is a slow library call).
#[inline(always)]
fn madd<const F: bool>(x: f32, w: f32, a: f32) -> f32 {
    if F {
        x.mul_add(w, a)
    } else {
        a + x * w
    }
}

/// Adds `Σ_i x[r][i] · w[i]` to each of `R` rows of accumulators, input by input in order (so
/// every sum is formed exactly as for one row alone): the rows share each row of weights
/// loaded, and their sums are independent chains the CPU overlaps.
#[inline(always)]
fn mac<const R: usize, const F: bool>(
    acc: &mut [[f32; TILE]; R],
    x: [&[f32]; R],
    w: &[[f32; TILE]],
) {
    let n = w.len();
    let x = x.map(|x| &x[..n]);
    let mut a = *acc;
    for (i, row) in w.iter().enumerate() {
        for (a, x) in a.iter_mut().zip(x) {
            let v = x[i];
            for (a, &w) in a.iter_mut().zip(row) {
                *a = madd::<F>(v, w, *a);
            }
        }
    }
    *acc = a;
}

/// Adds `Σ_i x[i] · w[t][i]` to each of `T` tiles of accumulators (one input vector, `T`
/// tiles of outputs), input by input in order, as [`mac`] does for rows.
#[inline(always)]
fn mac_tiles<const T: usize, const F: bool>(
    acc: &mut [[f32; TILE]; T],
    x: &[f32],
    w: [&[[f32; TILE]]; T],
) {
    let n = x.len();
    let w = w.map(|w| &w[..n]);
    let mut a = *acc;
    for (i, &v) in x.iter().enumerate() {
        for (a, w) in a.iter_mut().zip(w) {
            for (a, &w) in a.iter_mut().zip(&w[i]) {
                *a = madd::<F>(v, w, *a);
            }
        }
    }
    *acc = a;
}

/// The weights, prepared once per process and shared by every model.
#[derive(Debug)]
struct Weights {
    window: [f32; N_FFT],
    convs: [Conv; 4],
    /// `W_ih` as `[tile][input][TILE]` over the gates (in the order i, f, g, o).
    w_in: Vec<f32>,
    /// `W_hh`, laid out the same way.
    w_rec: Vec<f32>,
    b: Vec<f32>,
    final_w: Vec<f32>,
    final_b: f32,
}

/// Reads one little-endian f32 tensor of the given shape from a safetensors file.
fn tensor(
    header: &serde_json::Value,
    data: &[u8],
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>> {
    let bad = |what: &str| Error::internal(format!("speech model weights: {name}: {what}"));
    let t = header.get(name).ok_or_else(|| bad("missing"))?;
    if t.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
        return Err(bad("not F32"));
    }
    // A list of non-negative integers in the tensor's header entry (empty when absent).
    let list = |key: &str| -> Vec<usize> {
        t.get(key)
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as usize)
                    .collect()
            })
            .unwrap_or_default()
    };
    let got = list("shape");
    if got != shape {
        return Err(bad(&format!("shape {got:?}, expected {shape:?}")));
    }
    let offs = list("data_offsets");
    let (Some(&a), Some(&b)) = (offs.first(), offs.get(1)) else {
        return Err(bad("no data offsets"));
    };
    let bytes = data.get(a..b).ok_or_else(|| bad("data out of range"))?;
    if bytes.len() != 4 * shape.iter().product::<usize>() {
        return Err(bad("data length"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl Weights {
    fn parse(file: &[u8]) -> Result<Weights> {
        let bad = |what: &str| Error::internal(format!("speech model weights: {what}"));
        let n = file
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| bad("short file"))? as usize;
        let head = file.get(8..8 + n).ok_or_else(|| bad("short header"))?;
        let data = &file[8 + n..];
        let header: serde_json::Value =
            serde_json::from_slice(head).map_err(|e| bad(&e.to_string()))?;
        let t = |name: &str, shape: &[usize]| tensor(&header, data, name, shape);
        let basis = t("stft_conv.weight", &[2 * N_BINS, 1, N_FFT])?;
        let mut window = [0f32; N_FFT];
        // Row 0 of the basis is the window times cos(0).
        window.copy_from_slice(&basis[..N_FFT]);
        let dims = [(129, 128), (128, 64), (64, 64), (64, 128)];
        let mut convs = Vec::with_capacity(4);
        for (l, &(i, o)) in dims.iter().enumerate() {
            let w = t(&format!("conv{}.weight", l + 1), &[o, i, 3])?;
            let b = t(&format!("conv{}.bias", l + 1), &[o])?;
            convs.push(Conv::new(&w, &b, i, o));
        }
        let convs: [Conv; 4] = convs.try_into().map_err(|_| bad("conv layers"))?;
        let w_ih = t("lstm_cell.weight_ih", &[GATES, HIDDEN])?;
        let w_hh = t("lstm_cell.weight_hh", &[GATES, HIDDEN])?;
        let mut w_in = vec![0f32; GATES * HIDDEN];
        let mut w_rec = vec![0f32; GATES * HIDDEN];
        for r in 0..GATES {
            let (tile, lane) = (r / TILE, r % TILE);
            for j in 0..HIDDEN {
                w_in[(tile * HIDDEN + j) * TILE + lane] = w_ih[r * HIDDEN + j];
                w_rec[(tile * HIDDEN + j) * TILE + lane] = w_hh[r * HIDDEN + j];
            }
        }
        let b_ih = t("lstm_cell.bias_ih", &[GATES])?;
        let b_hh = t("lstm_cell.bias_hh", &[GATES])?;
        let b = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        let final_w = t("final_conv.weight", &[1, HIDDEN, 1])?;
        let final_b = t("final_conv.bias", &[1])?.first().copied().unwrap_or(0.0);
        Ok(Weights {
            window,
            convs,
            w_in,
            w_rec,
            b,
            final_w,
            final_b,
        })
    }

    fn shared() -> Result<&'static Weights> {
        static W: OnceLock<std::result::Result<Weights, String>> = OnceLock::new();
        W.get_or_init(|| Weights::parse(WEIGHTS_FILE).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::internal(e.clone()))
    }
}

/// A copy of the model's recurrent state (the LSTM's `h` and `c`).
#[derive(Clone)]
pub(crate) struct State {
    h: [f32; HIDDEN],
    c: [f32; HIDDEN],
}

impl State {
    /// The state of a fresh model.
    pub(crate) fn zero() -> State {
        State {
            h: [0.0; HIDDEN],
            c: [0.0; HIDDEN],
        }
    }
}

/// The state-free half of the network for one stream: STFT, encoder and the input part of
/// the LSTM's gates ([`Pre`]). Between chunks it keeps only the last 64 samples of the
/// previous chunk it prepared (the context the network sees) and the chunks prepared and not
/// yet run (at most [`BATCH`]), so a stream's chunks go through one `Front` in order, but
/// that can run ahead of the [`Recurrent`] half, on another thread.
pub(crate) struct Front {
    w: &'static Weights,
    pub(super) arch: pulp::Arch,
    fft: Arc<dyn RealToComplex<f32>>,
    fft_in: Vec<f32>,
    fft_out: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    context: [f32; CONTEXT],
    buf: [f32; CONTEXT + CHUNK + 64],
    /// Chunks prepared (their STFT in `mag`) and not yet run.
    ready: usize,
    /// Per chunk of the batch, the layers' outputs.
    mag: Vec<f32>,
    a1: Vec<f32>,
    a2: Vec<f32>,
    a3: Vec<f32>,
    enc: Vec<f32>,
    acc: Vec<[f32; TILE]>,
    pre: Vec<Pre>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").finish_non_exhaustive()
    }
}

impl Front {
    /// A front with an empty (zero) context.
    pub(crate) fn new() -> Result<Front> {
        let w = Weights::shared()?;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Ok(Front {
            w,
            arch: pulp::Arch::new(),
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            fft,
            context: [0.0; CONTEXT],
            buf: [0.0; CONTEXT + CHUNK + 64],
            ready: 0,
            mag: vec![0.0; BATCH * N_FRAMES * N_BINS],
            a1: vec![0.0; BATCH * 4 * 128],
            a2: vec![0.0; BATCH * 2 * 64],
            a3: vec![0.0; BATCH * 64],
            enc: vec![0.0; BATCH * HIDDEN],
            acc: vec![[0.0; TILE]; BATCH * N_FRAMES],
            pre: vec![[0.0; GATES]; BATCH],
        })
    }

    /// Chunks [`Front::prepare`]d and not yet [`Front::run`].
    pub(crate) fn ready(&self) -> usize {
        self.ready
    }

    /// Takes the next chunk of [`CHUNK`] samples (16 kHz, ±1.0; a shorter chunk is
    /// zero-padded) into the batch: its STFT now, the rest at [`Front::run`]. At most
    /// [`BATCH`] chunks wait; run them first when [`Front::ready`] says so.
    pub(crate) fn prepare(&mut self, chunk: &[f32]) {
        debug_assert!(self.ready < BATCH);
        let slot = self.ready.min(BATCH - 1);
        let n = chunk.len().min(CHUNK);
        self.buf[..CONTEXT].copy_from_slice(&self.context);
        self.buf[CONTEXT..CONTEXT + n].copy_from_slice(&chunk[..n]);
        self.buf[CONTEXT + n..CONTEXT + CHUNK].fill(0.0);
        let end = CONTEXT + CHUNK;
        self.context.copy_from_slice(&self.buf[end - CONTEXT..end]);
        // Reflection padding on the right: buf[576 + j] = buf[574 − j].
        for j in 0..64 {
            self.buf[end + j] = self.buf[end - 2 - j];
        }
        let w = self.w;
        let mag = &mut self.mag[slot * N_FRAMES * N_BINS..(slot + 1) * N_FRAMES * N_BINS];
        for f in 0..N_FRAMES {
            let frame = &self.buf[f * HOP..f * HOP + N_FFT];
            for ((d, &x), &win) in self.fft_in.iter_mut().zip(frame).zip(&w.window) {
                *d = x * win;
            }
            // Sizes come from the plan itself: this cannot fail.
            let _ = self.fft.process_with_scratch(
                &mut self.fft_in,
                &mut self.fft_out,
                &mut self.fft_scratch,
            );
            for (d, z) in mag[f * N_BINS..(f + 1) * N_BINS]
                .iter_mut()
                .zip(&self.fft_out)
            {
                *d = (z.re * z.re + z.im * z.im).sqrt();
            }
        }
        self.ready = slot + 1;
    }

    /// Runs the encoder and the LSTM's input part on every prepared chunk: their [`Pre`], in
    /// the order they were prepared. The batch is empty afterwards.
    pub(crate) fn run(&mut self) -> &[Pre] {
        let n = std::mem::take(&mut self.ready);
        let arch = self.arch;
        arch.dispatch(Run { front: self, n });
        &self.pre[..n]
    }

    /// Encodes the next chunk of [`CHUNK`] samples (16 kHz, ±1.0; a shorter chunk is
    /// zero-padded) into `pre`, the input part of the LSTM's gates (a batch of one).
    #[cfg(test)]
    pub(crate) fn encode(&mut self, chunk: &[f32], pre: &mut Pre) {
        if self.ready > 0 {
            self.run();
        }
        self.prepare(chunk);
        if let Some(p) = self.run().first() {
            *pre = *p;
        }
    }

    /// The encoder and the gates' input part, `R` output rows at a time, fused when `F`.
    #[inline(always)]
    fn run_inline<const R: usize, const F: bool>(&mut self, n: usize) {
        let w = self.w;
        let acc = &mut self.acc[..];
        w.convs[0].forward_relu::<R, F>(&self.mag, n, N_FRAMES, 1, &mut self.a1, acc);
        w.convs[1].forward_relu::<R, F>(&self.a1, n, 4, 2, &mut self.a2, acc);
        w.convs[2].forward_relu::<R, F>(&self.a2, n, 2, 2, &mut self.a3, acc);
        w.convs[3].forward_relu::<R, F>(&self.a3, n, 1, 1, &mut self.enc, acc);
        // b + W_ih·x, one tile of gates at a time, for every chunk of the batch.
        gates_in::<R, F>(&w.b, &w.w_in, &self.enc, &mut self.pre[..n]);
    }
}

/// `out[b] = base + W·v[b]` over the gates for each chunk `b` of a batch (`v` holds
/// [`HIDDEN`] values per chunk), tile by tile so that a tile's weights are read once per batch;
/// the terms are added in the same order as [`gates_add`]'s.
#[inline(always)]
fn gates_in<const R: usize, const F: bool>(base: &[f32], w: &[f32], v: &[f32], out: &mut [Pre]) {
    for (tile, (wt, b)) in w
        .chunks_exact(HIDDEN * TILE)
        .zip(base.as_chunks::<TILE>().0)
        .enumerate()
    {
        let wt = wt.as_chunks::<TILE>().0;
        let span = tile * TILE..(tile + 1) * TILE;
        let mut ins = v[..out.len() * HIDDEN].chunks_exact(R * HIDDEN);
        let mut outs = out.chunks_exact_mut(R);
        for (o, v) in (&mut outs).zip(&mut ins) {
            let mut acc = [*b; R];
            mac::<R, F>(&mut acc, std::array::from_fn(|j| &v[j * HIDDEN..]), wt);
            for (o, a) in o.iter_mut().zip(&acc) {
                o[span.clone()].copy_from_slice(a);
            }
        }
        for (o, v) in outs
            .into_remainder()
            .iter_mut()
            .zip(ins.remainder().chunks_exact(HIDDEN))
        {
            let mut acc = [*b];
            mac::<1, F>(&mut acc, [v], wt);
            o[span.clone()].copy_from_slice(&acc[0]);
        }
    }
}

/// `out = base + W·v` over the gates, one tile at a time, adding `v`'s terms in order (so that
/// `b + W_ih·x` then `+ W_hh·h` sums exactly as one product over `[x | h]` would).
#[inline(always)]
fn gates_add<const T: usize, const F: bool>(
    base: &[f32],
    w: &[f32],
    v: &[f32; HIDDEN],
    out: &mut Pre,
) {
    let tiles = out.as_chunks_mut::<TILE>().0;
    let bases = base.as_chunks::<TILE>().0;
    for ((g, wt), b) in tiles
        .chunks_exact_mut(T)
        .zip(w.chunks_exact(T * HIDDEN * TILE))
        .zip(bases.chunks_exact(T))
    {
        let mut acc: [[f32; TILE]; T] = std::array::from_fn(|t| b[t]);
        let wt = wt.as_chunks::<TILE>().0;
        mac_tiles::<T, F>(&mut acc, v, std::array::from_fn(|t| &wt[t * HIDDEN..]));
        g.copy_from_slice(&acc);
    }
}

/// The recurrent half of the network for one stream: the LSTM's state and the output layer.
/// It takes the chunks' [`Pre`] from a [`Front`] in order.
pub(crate) struct Recurrent {
    w: &'static Weights,
    pub(super) arch: pulp::Arch,
    h: [f32; HIDDEN],
    c: [f32; HIDDEN],
    gates: Pre,
}

impl std::fmt::Debug for Recurrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recurrent").finish_non_exhaustive()
    }
}

impl Recurrent {
    /// The recurrent half with zero state.
    pub(crate) fn new() -> Result<Recurrent> {
        Ok(Recurrent {
            w: Weights::shared()?,
            arch: pulp::Arch::new(),
            h: [0.0; HIDDEN],
            c: [0.0; HIDDEN],
            gates: [0.0; GATES],
        })
    }

    /// A copy of the recurrent state.
    pub(crate) fn state(&self) -> State {
        State {
            h: self.h,
            c: self.c,
        }
    }

    /// Puts back a state taken by [`Recurrent::state`].
    pub(crate) fn set_state(&mut self, s: &State) {
        self.h = s.h;
        self.c = s.c;
    }

    /// The speech probability of the chunk whose input gates are `pre`; the state moves on.
    pub(crate) fn step(&mut self, pre: &Pre) -> f32 {
        let arch = self.arch;
        arch.dispatch(Step { rec: self, pre })
    }

    /// One step, `T` tiles of gates at a time, fused when `F`.
    #[inline(always)]
    fn step_inline<const T: usize, const F: bool>(&mut self, pre: &Pre) -> f32 {
        let w = self.w;
        // Gates = (b + W_ih·x) + W_hh·h.
        gates_add::<T, F>(pre, &w.w_rec, &self.h, &mut self.gates);
        let (gi, rest) = self.gates.split_at(HIDDEN);
        let (gf, rest) = rest.split_at(HIDDEN);
        let (gg, go) = rest.split_at(HIDDEN);
        for k in 0..HIDDEN {
            let c = sigmoid(gf[k]) * self.c[k] + sigmoid(gi[k]) * tanh(gg[k]);
            self.c[k] = c;
            self.h[k] = sigmoid(go[k]) * tanh(c);
        }
        let mut logit = w.final_b;
        for (&h, &w) in self.h.iter().zip(&w.final_w) {
            logit += h.max(0.0) * w;
        }
        sigmoid(logit)
    }
}

/// Both halves in one: a chunk in, its probability out.
#[cfg(test)]
pub(crate) struct Model {
    front: Front,
    rec: Recurrent,
    pre: Pre,
}

#[cfg(test)]
impl Model {
    /// A model with zero state.
    pub(crate) fn new() -> Result<Model> {
        Ok(Model {
            front: Front::new()?,
            rec: Recurrent::new()?,
            pre: [0.0; GATES],
        })
    }

    /// The speech probability of the next chunk of [`CHUNK`] samples. The context and the
    /// LSTM state carry over from the previous chunk, as in Silero's own wrapper.
    pub(crate) fn prob(&mut self, chunk: &[f32]) -> f32 {
        self.front.encode(chunk, &mut self.pre);
        self.rec.step(&self.pre)
    }

    fn set_arch(&mut self, arch: pulp::Arch) {
        self.front.arch = arch;
        self.rec.arch = arch;
    }
}

/// `e^x` to within 2 ulp for the range the network produces (Cody–Waite reduction to
/// `r` in [−ln 2 / 2, ln 2 / 2], a degree-6 Taylor polynomial, the exponent set by bits), in
/// plain arithmetic so that loops calling it vectorise; libm's `expf`/`tanhf` are calls.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 × 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low bits of `t` hold n (|n| ≤ 127); 2^n is n + 127 in the exponent field.
    let n_int = t.to_bits() as i32 - SHIFT.to_bits() as i32;
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// [`Front::run_inline`] as an operation that `pulp` compiles for each instruction set
/// (everything it calls is inlined into it).
struct Run<'a> {
    front: &'a mut Front,
    n: usize,
}

impl pulp::WithSimd for Run<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        // Eight tiles of accumulators in registers: 2 rows × 4 × 256 bits (AVX2), 4 rows ×
        // 2 × 512 bits (AVX-512).
        match S::F32_LANES {
            16.. => self.front.run_inline::<4, true>(self.n),
            4.. => self.front.run_inline::<2, true>(self.n),
            _ => self.front.run_inline::<1, false>(self.n),
        }
    }
}

/// [`Recurrent::step_inline`], compiled the same way.
struct Step<'a> {
    rec: &'a mut Recurrent,
    pre: &'a Pre,
}

impl pulp::WithSimd for Step<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f32 {
        match S::F32_LANES {
            16.. => self.rec.step_inline::<4, true>(self.pre),
            4.. => self.rec.step_inline::<2, true>(self.pre),
            _ => self.rec.step_inline::<1, false>(self.pre),
        }
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_weights_load() {
        let w = Weights::shared().unwrap();
        // The window is a periodic Hann window (what lets an FFT replace the basis).
        for (n, &x) in w.window.iter().enumerate() {
            let hann = 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / N_FFT as f64).cos();
            assert!((f64::from(x) - hann).abs() < 1e-6, "{n}: {x}");
        }
    }

    #[test]
    fn silence_is_not_speech_and_state_carries_over() {
        let mut m = Model::new().unwrap();
        let p: Vec<f32> = (0..20).map(|_| m.prob(&[0.0; CHUNK])).collect();
        assert!(p.iter().all(|&p| p < 0.1), "{p:?}");
        // A short chunk is zero-padded, never a panic.
        assert!(m.prob(&[0.1; 7]).is_finite());
    }

    /// The reference: onnxruntime running Silero's own `silero_vad.onnx` on the same samples
    /// (`tests/testdata/silero/r1_please_hold.probs.txt`; how it was made is in its header).
    #[test]
    fn probabilities_match_the_official_model() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/speech/");
        let reference: Vec<f32> = std::fs::read_to_string(format!(
            "{dir}../../tests/testdata/silero/r1_please_hold.probs.txt"
        ))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim().parse().unwrap())
        .collect();
        let mut d =
            crate::decode::Decoder::open(std::path::Path::new(&format!("{dir}r1_please_hold.wav")))
                .unwrap();
        let mut x = Vec::new();
        while d.read_mono(&mut x).unwrap() > 0 {}
        let mut m = Model::new().unwrap();
        let ours: Vec<f32> = x.chunks_exact(CHUNK).map(|c| m.prob(c)).collect();
        assert_eq!(ours.len(), reference.len());
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!((a - b).abs() < 1e-4, "chunk {i}: {a} vs {b}");
        }
        // Every SIMD build fuses its multiply-adds and adds each sum's terms in the same order,
        // whatever the rows per pass: the same numbers on AVX2 as on AVX-512.
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = pulp::x86::V3::try_new() {
            let mut m = Model::new().unwrap();
            m.set_arch(pulp::Arch::V3(v3));
            let avx2: Vec<f32> = x.chunks_exact(CHUNK).map(|c| m.prob(c)).collect();
            assert_eq!(avx2, ours);
        }
        // Without SIMD (a multiply, then an add): the same up to rounding.
        let mut m = Model::new().unwrap();
        m.set_arch(pulp::Arch::Scalar);
        let plain: Vec<f32> = x.chunks_exact(CHUNK).map(|c| m.prob(c)).collect();
        for (i, (a, b)) in plain.iter().zip(&ours).enumerate() {
            assert!(
                (a - b).abs() < 1e-5,
                "chunk {i}: {a} without SIMD, {b} with"
            );
        }
    }

    #[test]
    fn the_inlined_exp_and_tanh_match_libm() {
        let mut worst = (0f32, 0f32);
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0043; // −86 to 86
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            worst.0 = worst.0.max(rel);
            worst.1 = worst.1.max((tanh(x / 8.0) - (x / 8.0).tanh()).abs());
        }
        assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 3e-7, "tanh absolute error {}", worst.1);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert_eq!(tanh(1000.0), 1.0);
        assert_eq!(tanh(-1000.0), -1.0);
    }

    #[test]
    fn corrupt_weights_are_an_error() {
        assert!(Weights::parse(&[1, 2, 3]).is_err());
        let mut f = WEIGHTS_FILE.to_vec();
        f.truncate(f.len() / 2);
        assert!(Weights::parse(&f).is_err());
    }
}
