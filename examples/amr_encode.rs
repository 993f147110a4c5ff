//! Encodes a 16-bit mono WAV into the AMR storage format with `rvoip-codec-core`'s encoder (a
//! dev-dependency), for benchmark inputs: Debian's ffmpeg and sox cannot encode AMR-WB.
//!
//! ```text
//! amr_encode IN.wav OUT.amr [MODE] [dtx]    8 kHz input → AMR-NB, 16 kHz → AMR-WB;
//!                                           MODE 0–7 (NB) / 0–8 (WB), the highest by default
//! ```

use codec_core::codecs::amr::AmrCodec;
use codec_core::types::{CodecConfig, FrameKind, VariableRateCodec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: amr_encode IN.wav OUT.amr [MODE] [dtx]".into());
    };
    let mut wav = hound::WavReader::open(input)?;
    let spec = wav.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(format!("{input}: want 16-bit mono, got {spec:?}").into());
    }
    let wide = match spec.sample_rate {
        8000 => false,
        16000 => true,
        r => return Err(format!("{input}: {r} Hz; AMR-NB wants 8 kHz, AMR-WB 16 kHz").into()),
    };
    let mode: u8 = match rest.first() {
        Some(m) => m.parse()?,
        None if wide => 8,
        None => 7,
    };
    let dtx = rest.get(1).is_some_and(|d| d == "dtx");
    let cfg = if wide {
        CodecConfig::amr_wb()
    } else {
        CodecConfig::amr_nb()
    };
    let mut enc = AmrCodec::new(&cfg.with_amr_mode_set(&[mode]).with_amr_dtx(dtx))?;
    let (fl, sid) = if wide { (320, 9) } else { (160, 8) };
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    use std::io::Write;
    out.write_all(if wide { b"#!AMR-WB\n" } else { b"#!AMR\n" })?;
    let mut frame = Vec::with_capacity(fl);
    for s in wav.samples::<i16>() {
        frame.push(s?);
        if frame.len() == fl {
            let f = enc.encode_frame(&frame)?;
            let ft = match f.kind {
                FrameKind::Speech => f.mode,
                FrameKind::ComfortNoise => sid,
                _ => 15,
            };
            out.write_all(&[(ft << 3) | 0x04])?;
            out.write_all(&f.data)?;
            frame.clear();
        }
    }
    out.flush()?;
    Ok(())
}
