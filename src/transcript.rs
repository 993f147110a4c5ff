//! The result of a run: timed, attributed text on the ORIGINAL file's timeline.
//!
//! Inside, every time is an integer sample count at [`crate::time::RATE`] (16 kHz). At the edge
//! (JSON) times are seconds with millisecond precision: `1.234`. A JSON round trip therefore
//! keeps times to the millisecond (a sample count comes back as the nearest millisecond boundary).
//!
//! # JSON shape
//!
//! ```json
//! {
//!   "segments": [
//!     {"start": 1.25, "end": 3.5, "speaker": "speaker_0", "language": "zu-ZA",
//!      "text": "sawubona", "source": {"route": "async", "part": 0}},
//!     {"start": 4.0, "end": 9.125, "speaker": null, "language": null,
//!      "text": "...", "source": {"route": "sync", "segment": 1}}
//!   ],
//!   "metadata": {
//!     "source": "call 17.wav", "duration": 3600.0, "route": "async",
//!     "language": null, "diarization": true, "no_speech": false,
//!     "requests": 4, "audio_seconds_sent": 3600.0, "segments_planned": 0,
//!     "parts": [{"part": 0, "offset": 0.0, "duration": 3600.0, "file_name": "asr_....flac"}]
//!   }
//!   // optional metadata, present only when it applies:
//!   //   "failed_segments": [{"index": 3, "start": 90.0, "end": 118.5, "error": "..."}]
//!   //   "truncated": {"decoded_secs": 61.25, "what": "..."}
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::time::Samples;

/// Which way the audio went to the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Let the pipeline choose (see `pipeline::Route` docs); a finished transcript never says
    /// `auto`, it names the route actually taken.
    #[default]
    Auto,
    /// Segments of at most 60 s, each to `POST /asr`.
    Sync,
    /// The whole file (or parts of at most 400 minutes) through the asynchronous API.
    Async,
}

/// Where a transcript segment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "route", rename_all = "lowercase")]
pub enum Source {
    /// The result of the synchronous request for segment `segment` (0-based index in the
    /// segment plan of the file).
    Sync {
        /// 0-based index of the segment in the file's segment plan.
        segment: usize,
    },
    /// One timestamp of the asynchronous result of part `part` (0-based; files of at most
    /// 400 minutes have one part, 0).
    Async {
        /// 0-based index of the uploaded part.
        part: usize,
    },
}

/// One piece of timed text on the original timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    /// Start, in samples at 16 kHz on the original timeline (JSON: seconds, 3 decimals).
    #[serde(with = "secs")]
    pub start: Samples,
    /// End (exclusive), in samples at 16 kHz; always `> start` (JSON: seconds, 3 decimals).
    #[serde(with = "secs")]
    pub end: Samples,
    /// Speaker label (`speaker_0`, or `p2:speaker_0` when a file was sent in several parts whose
    /// speakers cannot be matched); `None` without diarization.
    pub speaker: Option<String>,
    /// Language tag as the server gave it (`zu-ZA`), when it gave one.
    pub language: Option<String>,
    /// The transcribed text (may be empty for a speaker turn without words).
    pub text: String,
    /// Where this piece came from.
    pub source: Source,
    /// The file's channel (0-based) this piece was transcribed from, when channels were
    /// transcribed separately ([`crate::channels::ChannelMode`]); `None` for a mix. Absent
    /// in JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
}

impl TranscriptSegment {
    /// Start in seconds, rounded to the millisecond.
    pub fn start_secs(&self) -> f64 {
        ms_secs(self.start)
    }
    /// End in seconds, rounded to the millisecond.
    pub fn end_secs(&self) -> f64 {
        ms_secs(self.end)
    }
}

/// One uploaded part of an asynchronous run (a file of at most 400 minutes has exactly one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// 0-based index of the part.
    pub part: usize,
    /// Where the part starts on the original timeline (samples; JSON: seconds).
    #[serde(with = "secs")]
    pub offset: Samples,
    /// Length of the part on the original timeline (samples; JSON: seconds).
    #[serde(with = "secs")]
    pub duration: Samples,
    /// The server's file name of the job (`fields.key` of the upload form). A server-given
    /// name: never use it as a local path.
    pub file_name: String,
    /// The file's channel the part carries, when channels were transcribed separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
    /// Samples from `offset` that belong to the part before and were uploaded again only to
    /// match speakers (JSON: seconds; absent when 0): what this part's job said about them is
    /// not in the transcript, the part before's is. See
    /// [`crate::pipeline::PipelineBuilder::speaker_overlap`].
    #[serde(default, with = "secs", skip_serializing_if = "is_zero")]
    pub lead_in: Samples,
    /// With diarization, for every part after the first: how the job's speaker labels became
    /// the transcript's. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speakers: Option<SpeakerMatch>,
}

fn is_zero(n: &Samples) -> bool {
    *n == 0
}

/// How the speakers of one async part were matched to those of the part before.
///
/// The server numbers speakers per job, so `speaker_0` of part 2 need not be `speaker_0` of
/// part 1. Each later part uploads a lead-in, the end of the part before, and its speakers
/// are matched by who talks when in it; a matched speaker carries the earlier part's label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct SpeakerMatch {
    /// The job's own label → the label its segments carry in the transcript.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The job's labels that could not be matched to a speaker of the part before: they do
    /// not speak in the lead-in, or it does not tell them apart. Their segments carry a label
    /// of their part (`p2:speaker_1`): a new speaker, or one this run could not recognise.
    /// Empty when every speaker was matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
}

/// Facts about the run that produced a transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct Metadata {
    /// The input's file name (no directories), or a caller-given name for readers.
    pub source: String,
    /// Length of the input in samples at 16 kHz (JSON: seconds).
    #[serde(with = "secs")]
    pub duration: Samples,
    /// The route taken (`sync` or `async`; never `auto` after a run).
    pub route: Route,
    /// The language requested, if any.
    pub language: Option<String>,
    /// Whether diarization was requested.
    pub diarization: bool,
    /// True when the voice activity detector found no speech at all: the transcript is empty
    /// on purpose, no request was made.
    pub no_speech: bool,
    /// API requests made for this file, retries not counted. Sync: one per segment. Async, per
    /// part: 2 for the upload (form + storage POST) and 1 for waiting and fetching (the
    /// client's status polls are not counted).
    pub requests: u64,
    /// Seconds of audio sent to the API (what is billed).
    pub audio_seconds_sent: f64,
    /// Segments planned on the sync route (0 on the async route).
    pub segments_planned: u64,
    /// The uploaded parts on the async route (empty on the sync route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartInfo>,
    /// Sync route: segments whose request failed for good (a final 4xx, retries exhausted...);
    /// the run kept going and the transcript holds every other segment. Absent in JSON when
    /// empty. A run where every segment failed is an error instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_segments: Vec<FailedSegment>,
    /// Set when the input broke part way through and what decoded before the break was
    /// transcribed (`PipelineBuilder::keep_truncated`, on by default). Absent in JSON when the
    /// input was whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
    /// How the file's channels were transcribed: present for files of more than one channel
    /// and whenever channels were transcribed separately. Absent in JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Channels>,
}

/// How a file's channels were transcribed (see [`crate::channels`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Channels {
    /// Channels in the file.
    pub file_channels: u16,
    /// The channels transcribed separately, each with the name its segments carry as
    /// `speaker`; empty when the channels were mixed.
    #[serde(default)]
    pub separate: Vec<NamedChannel>,
    /// What [`crate::channels::ChannelMode::Auto`] measured, when it judged the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<crate::channels::AutoStats>,
}

/// A channel transcribed on its own, and its speaker name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NamedChannel {
    /// 0-based channel index in the file.
    pub channel: u16,
    /// The name its segments carry as `speaker` (`channel_0`, or a given name).
    pub name: String,
}

/// A sync segment whose request failed for good; its audio is missing from the transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedSegment {
    /// 0-based index of the segment in the file's segment plan.
    pub index: usize,
    /// Start on the original timeline (samples; JSON: seconds).
    #[serde(with = "secs")]
    pub start: Samples,
    /// End (exclusive) on the original timeline (samples; JSON: seconds).
    #[serde(with = "secs")]
    pub end: Samples,
    /// The error, as text (tokens redacted by the client).
    pub error: String,
    /// The channel it was cut from, when channels are transcribed separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
}

/// The input ended early: only its first `decoded_secs` seconds were transcribed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    /// Seconds of audio that decoded cleanly before the break (all of it was transcribed).
    pub decoded_secs: f64,
    /// What broke, as the decoder said.
    pub what: String,
}

/// A timed transcript of one input file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Transcript {
    /// The pieces, sorted by (start, end); none is zero-length. Pieces of different speakers
    /// may overlap (crosstalk); see [`crate::merge`].
    pub segments: Vec<TranscriptSegment>,
    /// Facts about the run.
    pub metadata: Metadata,
}

impl Transcript {
    /// The whole text, segments separated by single spaces.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            let t = seg.text.trim();
            if t.is_empty() {
                continue;
            }
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(t);
        }
        s
    }

    /// Parses the JSON shape documented at the top of this module.
    pub fn from_json(json: &str) -> crate::Result<Transcript> {
        serde_json::from_str(json).map_err(|e| {
            crate::Error::new(crate::ErrorKind::Malformed {
                path: None,
                what: format!("transcript JSON: {e}"),
            })
        })
    }
}

/// Samples → seconds rounded to the millisecond (exactly `ms / 1000` as the nearest f64, so it
/// prints with at most 3 decimals).
pub(crate) fn ms_secs(samples: Samples) -> f64 {
    crate::time::to_ms(samples) as f64 / 1000.0
}

/// Serde adapter: a sample count at 16 kHz as seconds with millisecond precision.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::time::{from_secs, Samples};

    pub fn serialize<S: Serializer>(v: &Samples, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(super::ms_secs(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Samples, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || !(0.0..=1.0e9).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "time {v} is not a non-negative number of seconds"
            )));
        }
        // Round to the millisecond first so that a value written by `serialize` comes back as
        // the same sample count it rounds to.
        Ok(from_secs((v * 1000.0).round() / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_uses_seconds_and_tags() {
        let t = Transcript {
            segments: vec![TranscriptSegment {
                start: 16_000 + 8,
                end: 3 * 16_000 + 16 * 5,
                speaker: Some("speaker_0".into()),
                language: None,
                text: "a".into(),
                source: Source::Async { part: 1 },
                channel: None,
            }],
            metadata: Metadata {
                source: "x.wav".into(),
                duration: 16_000 * 4,
                route: Route::Async,
                ..Metadata::default()
            },
        };
        let v: serde_json::Value = serde_json::to_value(&t).unwrap();
        // 16008 samples = 1.0005 s → rounds to 1.001 s (half up on whole ms).
        assert_eq!(v["segments"][0]["start"], serde_json::json!(1.001));
        assert_eq!(v["segments"][0]["end"], serde_json::json!(3.005));
        assert_eq!(
            v["segments"][0]["source"],
            serde_json::json!({"route": "async", "part": 1})
        );
        assert_eq!(v["metadata"]["route"], "async");
        assert_eq!(v["metadata"]["duration"], serde_json::json!(4.0));
        assert!(v["metadata"].get("parts").is_none());
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.contains("\"end\":3.005"), "{text}");
        let back = Transcript::from_json(&text).unwrap();
        assert_eq!(back.segments[0].start, 16_016);
        assert_eq!(back.segments[0].end, t.segments[0].end);
    }

    #[test]
    fn negative_times_are_refused() {
        let j = r#"{"segments":[{"start":-1,"end":2,"speaker":null,"language":null,"text":"",
                   "source":{"route":"sync","segment":0}}],"metadata":{"source":"a","duration":1,
                   "route":"sync","language":null,"diarization":false,"no_speech":false,
                   "requests":0,"audio_seconds_sent":0,"segments_planned":0}}"#;
        assert!(Transcript::from_json(j).is_err());
    }
}
