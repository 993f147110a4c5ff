//! Stage `pipeline`: route each file, transcribe it, and merge the results back onto the
//! file's ORIGINAL timeline.
//!
//! ```no_run
//! # async fn f(client: asr_pipeline::botlhale::Client) -> asr_pipeline::Result<()> {
//! use asr_pipeline::pipeline::{Pipeline, Route};
//! let pipeline = Pipeline::builder().client(client).route(Route::Auto).build()?;
//! let transcript = pipeline.transcribe_path("call.wav").await?;
//! # Ok(()) }
//! ```
//!
//! # Routes
//! - [`Route::Sync`]: the file is decoded, resampled and segmented as a stream (segments of at
//!   most 60 s, cut in pauses); each segment is normalised, encoded as WAV and sent to
//!   `POST /asr`, with [`PipelineBuilder::concurrency`] requests in flight. Decoding runs on
//!   blocking threads ahead of the requests through a bounded channel: segment k+1 is decoded
//!   while segment k is in the air, and at most `concurrency` segments wait, so memory does not
//!   grow with the file.
//!
//! # Threads
//! One file's front end runs as a chain of stages on threads of their own, with bounded queues
//! between them: decoding (a few packets ahead), 16 kHz resampling and the choice of tracks,
//! the voice detector's frame analysis (energy, tone features, the state-free half of the
//! speech model), and segmentation with the model's recurrent half and encoding. So a single
//! long file uses the machine's cores; the results are exactly those of one thread. When as
//! many files are being read at once as there are cores (a batch with `jobs` ≥ cores), each
//! further file runs its chain on one thread instead.
//! - [`Route::Async`]: a first pass measures loudness and finds the speech; the file is then
//!   planned into parts of at most 400 minutes of uploaded audio (cut in
//!   silences), optionally with long silences removed ([`PipelineBuilder::remove_silence`]).
//!   A second pass encodes each part as 16 kHz FLAC into a temporary file (streamed from disk
//!   on upload); each part is uploaded, polled and fetched on its own, and the results are
//!   merged with their offsets and time maps.
//! - [`Route::Auto`] (the default): **async when diarization is requested, sync otherwise**.
//!   Diarization exists only on the async API; without it the sync route is faster (many
//!   requests in flight, no queue) and bills only speech.
//!
//! A file in which the voice activity detector finds no speech gives an empty transcript with
//! [`crate::transcript::Metadata::no_speech`] set, without any request; it is not an error.
//!
//! # Partial failures
//! - Sync route: a segment whose request fails for good (a final 4xx such as 400 or 402,
//!   retries exhausted, a dropped connection after the last retry) does not cancel the file:
//!   the other segments are still sent and kept, and the failure is recorded in
//!   [`crate::transcript::Metadata::failed_segments`] (and reported as
//!   [`Progress::SegmentFailed`]). The file fails only when every segment failed (with the
//!   first segment's error), or at once on an error that dooms the rest:
//!   [`crate::ErrorKind::Auth`] and [`crate::ErrorKind::QuotaExhausted`].
//! - A truncated input (the decoder breaks part way through): by default what decoded is
//!   transcribed and [`crate::transcript::Metadata::truncated`] says so
//!   ([`PipelineBuilder::keep_truncated`]).
//!
//! # Resuming async jobs
//! Every upload is reported as [`Progress::Uploaded`] with an [`UploadedPart`] (serde), which a
//! caller journals. Passing the journaled parts back with [`Job::resume`] makes the pipeline
//! poll those jobs instead of uploading again; when every part of the file is in the journal,
//! the audio is not even decoded.

mod ahead;
mod api;
mod asynch;
mod plan;
mod source;
mod split;
mod sync;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::botlhale::{Client, PollOptions};
use crate::channels::{ChannelMode, Choice};
use crate::merge::MergeOptions;
use crate::normalize::NormalizeOptions;
use crate::segment::SegmenterOptions;
use crate::stream::MonoSource;
use crate::time::TimeMap;
use crate::time::{Samples, RATE};
use crate::transcript::NamedChannel;
use crate::transcript::Transcript;
use crate::{Error, Result};

pub use crate::transcript::Route;
pub use split::{split_only, SplitFormat, SplitOptions, MANIFEST};

/// The most audio one async job may carry: 400 minutes (the API's limit).
pub const MAX_ASYNC_PART: Samples = 400 * 60 * RATE as Samples;

/// A progress event, for progress bars and journals. Times are seconds on the original
/// timeline.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Progress {
    /// The route chosen for the file.
    Route(Route),
    /// Audio decoded so far (sent about every 10 s of audio, and at the end of each pass).
    Decoded {
        /// Seconds of audio decoded so far in this pass.
        seconds: f64,
        /// Which pass: 1 (sync route, or the async analysis pass) or 2 (async encoding pass).
        pass: u8,
    },
    /// The length the file's header announces (a hint for progress bars and ETAs; the real
    /// length follows as [`Progress::Duration`]). Not sent when the header says nothing.
    DurationHint {
        /// Announced length in seconds.
        seconds: f64,
    },
    /// Decoding is complete: the file's length is known.
    Duration {
        /// The file's length in seconds.
        seconds: f64,
    },
    /// How the file's channels are transcribed (sent once the channel mode is decided, for
    /// files of more than one channel and whenever channels are separate).
    Channels(crate::transcript::Channels),
    /// Sync route: a segment was cut and queued for sending.
    SegmentPlanned {
        /// 0-based index of the segment.
        index: usize,
        /// The file's channel it was cut from, when channels are transcribed separately.
        channel: Option<u16>,
        /// Start, seconds.
        start: f64,
        /// End, seconds.
        end: f64,
        /// The stretches of `[start, end)` whose audio is sent (concatenated), seconds; long
        /// silences between utterances are left out.
        kept: Vec<[f64; 2]>,
    },
    /// Sync route: a segment's request was sent.
    SegmentSent {
        /// 0-based index of the segment.
        index: usize,
        /// Bytes of WAV sent.
        bytes: u64,
    },
    /// Sync route: a segment's request failed for good; the run goes on without it (see
    /// [`crate::transcript::Metadata::failed_segments`]).
    SegmentFailed {
        /// 0-based index of the segment.
        index: usize,
        /// The error, as text.
        error: String,
    },
    /// Sync route: a segment's transcription came back.
    SegmentDone {
        /// 0-based index of the segment.
        index: usize,
        /// Seconds of audio it covered.
        seconds: f64,
    },
    /// Async route: the parts are planned.
    PartsPlanned {
        /// How many parts.
        parts: usize,
        /// Seconds of audio that will be uploaded in all (less than the file when silences are
        /// removed).
        upload_seconds: f64,
    },
    /// Async route: bytes of a part uploaded so far: `sent: 0` when the upload starts, then
    /// about every MiB, and `sent == total` when the whole part has gone (a retried attempt
    /// starts again from 0).
    UploadBytes {
        /// 0-based part index.
        part: usize,
        /// Bytes sent so far.
        sent: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Async route: a part was uploaded; journal this to resume polling later.
    Uploaded(UploadedPart),
    /// Async route: waiting for a part's job.
    Polling {
        /// 0-based part index.
        part: usize,
        /// The channel it carries, when channels are transcribed separately.
        channel: Option<u16>,
        /// The server's file name of the job.
        file_name: String,
    },
    /// Async route: a part's result was fetched.
    PartDone {
        /// 0-based part index.
        part: usize,
        /// The channel it carries, when channels are transcribed separately.
        channel: Option<u16>,
        /// Timestamps in its result.
        pieces: usize,
    },
    /// The voice activity detector found no speech: nothing will be sent.
    NoSpeech,
}

/// A progress callback. Called from the pipeline's tasks and its decoding thread: keep it
/// quick (forward to a channel).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// An uploaded async part: what a caller journals to resume polling without uploading again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    /// 0-based part index (within its channel when channels are transcribed separately).
    pub part: usize,
    /// How many parts the file (or its channel) was planned into.
    pub parts_total: usize,
    /// The server's file name of the job (never used as a local path).
    pub file_name: String,
    /// The part's start on the original timeline (samples at 16 kHz).
    pub offset: Samples,
    /// The part's end on the original timeline (samples at 16 kHz).
    pub end: Samples,
    /// The map from uploaded to part-relative original time, when silences were removed.
    pub time_map: Option<TimeMap>,
    /// Samples from `offset` that belong to the part before, uploaded again to match
    /// speakers (see [`PipelineBuilder::speaker_overlap`]); 0 for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lead_in: Samples,
    /// The whole file's length (samples at 16 kHz).
    pub file_len: Samples,
    /// The file's channel this part carries, when channels are transcribed separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
    /// The channels transcribed separately that have parts (a channel without speech has
    /// none); empty when the channels were mixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<u16>,
    /// Channels in the file.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub file_channels: u16,
}

fn is_zero(n: &Samples) -> bool {
    *n == 0
}

fn one() -> u16 {
    1
}

fn is_one(n: &u16) -> bool {
    *n == 1
}

/// What to transcribe: a path, a reader, or a ready source of samples, with per-file options.
pub struct Job {
    input: source::Input,
    name: String,
    progress: Option<ProgressFn>,
    resume: Vec<UploadedPart>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// A `Read + Seek` input, for [`Job::reader`].
pub trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

impl Job {
    /// A file on disk. Its file name (without directories) names the transcript's source.
    pub fn path(path: impl Into<PathBuf>) -> Job {
        let path = path.into();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Job {
            input: source::Input::Path(path),
            name,
            progress: None,
            resume: Vec::new(),
        }
    }

    /// Any seekable reader holding an audio file (probed by content); `name` is used in errors
    /// and as the transcript's source.
    pub fn reader(reader: impl ReadSeek + Send + Sync + 'static, name: impl Into<String>) -> Job {
        Job {
            input: source::Input::reader(Box::new(reader)),
            name: name.into(),
            progress: None,
            resume: Vec::new(),
        }
    }

    /// Mono samples from any [`MonoSource`] (at its own rate; resampled to 16 kHz). Note that
    /// the async route reads the source twice: `make` is called once per pass.
    pub fn source<S, F>(make: F, name: impl Into<String>) -> Job
    where
        S: MonoSource + 'static,
        F: Fn() -> Result<S> + Send + Sync + 'static,
    {
        Job {
            input: source::Input::Source(Arc::new(move || {
                make().map(|s| Box::new(s) as Box<dyn MonoSource>)
            })),
            name: name.into(),
            progress: None,
            resume: Vec::new(),
        }
    }

    /// A progress callback for this file only (instead of the pipeline's).
    pub fn progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Job {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Async parts of this file already uploaded (from a journal): their jobs are polled
    /// instead of uploading them again. Parts that do not match the file's plan (different
    /// options or a changed file) are ignored and uploaded anew.
    ///
    /// A job with a non-empty `resume` always takes the async route, whatever the pipeline's
    /// route. When the journal holds every part of the file (`parts_total` of them, same file
    /// length) the audio is not read at all.
    pub fn resume(mut self, parts: Vec<UploadedPart>) -> Job {
        self.resume = parts;
        self
    }

    /// The name used in errors and as the transcript's source.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The default of [`PipelineBuilder::remove_silence`].
const DEFAULT_REMOVAL: Duration = Duration::from_secs(2);

/// Builds a [`Pipeline`]; every option has a documented default.
pub struct PipelineBuilder {
    client: Option<Client>,
    route: Route,
    language: Option<String>,
    diarization: bool,
    concurrency: NonZeroUsize,
    segmenter: SegmenterOptions,
    normalize: Option<NormalizeOptions>,
    remove_silence: Option<Duration>,
    max_part: Samples,
    speaker_overlap: Option<Duration>,
    poll: Option<PollOptions>,
    join_turns: Option<Duration>,
    temp_dir: Option<PathBuf>,
    progress: Option<ProgressFn>,
    keep_truncated: bool,
    merge: MergeOptions,
    join_max_len: Duration,
    channels: ChannelMode,
    channel_names: Vec<String>,
}

/// Default of [`PipelineBuilder::speaker_overlap`]: 3 minutes.
pub const DEFAULT_SPEAKER_OVERLAP: Duration = Duration::from_secs(180);

/// Default of [`PipelineBuilder::join_max_len`]: 30 s.
pub const DEFAULT_JOIN_MAX_LEN: Duration = Duration::from_secs(30);

/// The pipeline's segmenter defaults: [`SegmenterOptions::requests`].
pub(crate) fn default_segmenter() -> SegmenterOptions {
    SegmenterOptions::requests()
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        let segmenter = default_segmenter();
        PipelineBuilder {
            client: None,
            route: Route::Auto,
            language: None,
            diarization: false,
            concurrency: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            segmenter,
            normalize: Some(NormalizeOptions::default()),
            remove_silence: Some(DEFAULT_REMOVAL),
            max_part: MAX_ASYNC_PART,
            speaker_overlap: Some(DEFAULT_SPEAKER_OVERLAP),
            poll: None,
            join_turns: None,
            temp_dir: None,
            progress: None,
            keep_truncated: true,
            merge: MergeOptions::default(),
            join_max_len: DEFAULT_JOIN_MAX_LEN,
            channels: ChannelMode::default(),
            channel_names: Vec::new(),
        }
    }
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("route", &self.route)
            .field("language", &self.language)
            .field("diarization", &self.diarization)
            .field("concurrency", &self.concurrency)
            .field("segmenter", &self.segmenter)
            .field("normalize", &self.normalize)
            .field("remove_silence", &self.remove_silence)
            .field("max_part", &self.max_part)
            .field("speaker_overlap", &self.speaker_overlap)
            .field("poll", &self.poll)
            .field("join_turns", &self.join_turns)
            .field("temp_dir", &self.temp_dir)
            .field("keep_truncated", &self.keep_truncated)
            .field("merge", &self.merge)
            .field("join_max_len", &self.join_max_len)
            .field("channels", &self.channels)
            .field("channel_names", &self.channel_names)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// The API client. Required.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The route. Default [`Route::Auto`]: async when diarization is requested, sync otherwise.
    pub fn route(mut self, route: Route) -> Self {
        self.route = route;
        self
    }

    /// The language (BCP-47, e.g. `zu-ZA`). Default `None`: the server decides (on the async
    /// route it detects the language per sentence).
    pub fn language(mut self, language: Option<String>) -> Self {
        self.language = language.filter(|l| !l.trim().is_empty());
        self
    }

    /// Ask for speaker diarization (async route only). Default `false`. With
    /// [`Route::Sync`] it is an error at [`PipelineBuilder::build`].
    pub fn diarization(mut self, on: bool) -> Self {
        self.diarization = on;
        self
    }

    /// Sync requests in flight per file. Default 4. Also the number of decoded segments that
    /// may wait for a free slot, which bounds memory (each ≤ 60 s, ~2 MB).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// Segmenter options. Default: [`SegmenterOptions::requests`] (utterances packed into
    /// requests of about 30 s of billed audio, never above 60 s, long silences left out).
    pub fn segmenter(mut self, opts: SegmenterOptions) -> Self {
        self.segmenter = opts;
        self
    }

    /// Loudness normalisation of what is sent: per segment on the sync route, one gain for
    /// the whole file on the async route. Default `Some(NormalizeOptions::default())`
    /// (−23 LUFS, never clipped); `None` sends the level as recorded (DC still removed).
    pub fn normalize(mut self, opts: Option<NormalizeOptions>) -> Self {
        self.normalize = opts;
        self
    }

    /// Async route: cut stretches without speech at least this long out of the upload: dead
    /// air, and hold music that the voice activity detector rejects (saves billed minutes; a
    /// time map restores original times; 250 ms is kept on each side of speech). Default 2 s
    /// (at least 2 s); `None` uploads everything.
    pub fn remove_silence(mut self, min_silence: Option<Duration>) -> Self {
        self.remove_silence = min_silence;
        self
    }

    /// Async route: the most audio per uploaded part. Default and maximum 400 minutes (the
    /// API's limit); at least one minute.
    pub fn max_part(mut self, max: Duration) -> Self {
        self.max_part = crate::time::from_secs(max.as_secs_f64());
        self
    }

    /// Async route with diarization, a file of several parts: each part after the first
    /// also uploads, before its own audio, this much of the part before (uploaded time, at
    /// most a quarter of [`PipelineBuilder::max_part`]). Both jobs hear those minutes, so
    /// the speakers of each part are matched to those of the part before and one person
    /// keeps one label across the file; what is said in them is transcribed once, by the
    /// part before. Default 3 minutes (billed twice: under 1 % of a 400-minute part).
    /// `None`: no overlap, and each later part's speakers are labelled by their part
    /// (`p2:speaker_0`). See [`crate::transcript::PartInfo::speakers`].
    pub fn speaker_overlap(mut self, overlap: Option<Duration>) -> Self {
        self.speaker_overlap = overlap;
        self
    }

    /// Async route: how patiently to wait for each job (delays and deadline; past the deadline
    /// the run fails with [`crate::ErrorKind::PollDeadline`] and can be resumed). Default
    /// `None`: the client's [`PollOptions::for_audio`] for the part's uploaded length
    /// (10 min + 2 × audio).
    pub fn poll_options(mut self, opts: Option<PollOptions>) -> Self {
        self.poll = opts;
        self
    }

    /// Join adjacent pieces of one speaker separated by at most this gap (into pieces of at
    /// most [`PipelineBuilder::join_max_len`], default 30 s), for reading. Default `None` (pieces as the server gave them).
    pub fn join_speaker_turns(mut self, max_gap: Option<Duration>) -> Self {
        self.join_turns = max_gap;
        self
    }

    /// Directory for the temporary FLAC files of async uploads. Default: the system's
    /// temporary directory.
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }

    /// A progress callback for every file (a [`Job::progress`] overrides it). Default none.
    pub fn progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// What to do when the input breaks part way through (the decoder reports
    /// [`crate::ErrorKind::Truncated`] after delivering audio). Default `true`: transcribe
    /// what decoded and record it in [`crate::transcript::Metadata::truncated`]. `false`:
    /// fail the file with the decoder's error.
    pub fn keep_truncated(mut self, keep: bool) -> Self {
        self.keep_truncated = keep;
        self
    }

    /// How async results are merged (see [`MergeOptions`]). Default
    /// [`MergeOptions::default`]: speakers kept distinct per part (`p2:speaker_0`).
    pub fn merge_options(mut self, opts: MergeOptions) -> Self {
        self.merge = opts;
        self
    }

    /// With [`PipelineBuilder::join_speaker_turns`]: the longest a joined piece may grow.
    /// Default [`DEFAULT_JOIN_MAX_LEN`] (30 s, a comfortable subtitle or reading unit).
    pub fn join_max_len(mut self, max: Duration) -> Self {
        self.join_max_len = max;
        self
    }

    /// How the channels of a file are transcribed (see [`crate::channels`]). Default
    /// [`ChannelMode::Auto`]: a 2-channel file whose channels carry different talkers (a
    /// call recorded agent / customer) is transcribed per channel, anything else is mixed.
    pub fn channels(mut self, mode: ChannelMode) -> Self {
        self.channels = mode;
        self
    }

    /// Names of the channels, by channel index (`["agent", "customer"]`): a segment of a
    /// separately transcribed channel carries its name as `speaker`. Default none:
    /// `channel_0`, `channel_1`, ...; a channel without a name here also gets its default.
    pub fn channel_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.channel_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the options and builds the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let client = self.client.ok_or_else(|| {
            Error::config("the pipeline needs a client (PipelineBuilder::client)")
        })?;
        self.segmenter.validate()?;
        if self.diarization && self.route == Route::Sync {
            return Err(Error::config(
                "diarization is only available on the async route",
            ));
        }
        if self.max_part > MAX_ASYNC_PART || self.max_part < 60 * RATE as Samples {
            return Err(Error::config(format!(
                "max_part {:.1} min must be between 1 and 400 minutes",
                crate::time::to_secs(self.max_part) / 60.0
            )));
        }
        if let Some(d) = self.remove_silence {
            if d < Duration::from_secs(2) {
                return Err(Error::config(format!(
                    "remove_silence {:.3} s: only silences of at least 2 s may be removed",
                    d.as_secs_f64()
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, n) in self.channel_names.iter().enumerate() {
            let t = n.trim();
            // `channel_3` may only name channel 3: it is channel 3's default name.
            let default_of_another = t
                .strip_prefix("channel_")
                .and_then(|k| k.parse::<usize>().ok())
                .is_some_and(|k| k != i);
            if t.is_empty()
                || t.chars().any(char::is_control)
                || !seen.insert(t.to_string())
                || default_of_another
            {
                return Err(Error::config(format!(
                    "channel name {n:?}: names must be non-empty, distinct, on one line, and not another channel's default name"
                )));
            }
        }
        if let ChannelMode::Separate(list) = &self.channels {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = list.iter().find(|&&c| !seen.insert(c)) {
                return Err(Error::config(format!(
                    "channel {dup} is listed twice in ChannelMode::Separate"
                )));
            }
        }
        Ok(Pipeline {
            inner: Arc::new(Inner {
                channels: self.channels,
                channel_names: self
                    .channel_names
                    .iter()
                    .map(|n| n.trim().to_string())
                    .collect(),
                client,
                route: self.route,
                language: self.language,
                diarization: self.diarization,
                concurrency: self.concurrency.get(),
                segmenter: self.segmenter,
                normalize: self.normalize,
                remove_silence: self
                    .remove_silence
                    .map(|d| crate::time::from_secs(d.as_secs_f64())),
                max_part: self.max_part,
                speaker_overlap: self
                    .speaker_overlap
                    .map_or(0, |d| crate::time::from_secs(d.as_secs_f64())),
                poll: self.poll,
                join_turns: self
                    .join_turns
                    .map(|d| crate::time::from_secs(d.as_secs_f64())),
                temp_dir: self.temp_dir.unwrap_or_else(std::env::temp_dir),
                progress: self.progress,
                keep_truncated: self.keep_truncated,
                merge: self.merge,
                join_max_len: crate::time::from_secs(self.join_max_len.as_secs_f64()),
            }),
        })
    }
}

struct Inner {
    client: Client,
    route: Route,
    language: Option<String>,
    diarization: bool,
    concurrency: usize,
    segmenter: SegmenterOptions,
    normalize: Option<NormalizeOptions>,
    remove_silence: Option<Samples>,
    max_part: Samples,
    /// Uploaded samples of lead-in per later part, with diarization (0: none).
    speaker_overlap: Samples,
    poll: Option<PollOptions>,
    join_turns: Option<Samples>,
    temp_dir: PathBuf,
    progress: Option<ProgressFn>,
    keep_truncated: bool,
    merge: MergeOptions,
    join_max_len: Samples,
    channels: ChannelMode,
    channel_names: Vec<String>,
}

impl Inner {
    /// The speaker name of channel `i`.
    pub(crate) fn channel_name(&self, i: u16) -> String {
        self.channel_names
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("channel_{i}"))
    }

    /// The transcript's record of how the channels went: `None` for a mono file mixed.
    pub(crate) fn channels_metadata(
        &self,
        file_channels: u16,
        choice: &Choice,
    ) -> Option<crate::transcript::Channels> {
        if file_channels <= 1 && choice.channels.is_none() {
            return None;
        }
        Some(crate::transcript::Channels {
            file_channels,
            separate: choice
                .channels
                .iter()
                .flatten()
                .map(|&channel| NamedChannel {
                    channel,
                    name: self.channel_name(channel),
                })
                .collect(),
            auto: choice.auto,
        })
    }
}

/// The transcription pipeline; cheap to clone, shareable between tasks (one file per call).
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("route", &self.inner.route)
            .field("diarization", &self.inner.diarization)
            .field("concurrency", &self.inner.concurrency)
            .finish_non_exhaustive()
    }
}

/// Per-call context handed to the routes.
pub(crate) struct Ctx {
    pub(crate) input: source::Input,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) progress: Option<ProgressFn>,
}

impl Ctx {
    pub(crate) fn emit(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(&p);
        }
    }
}

impl Pipeline {
    /// A builder with the documented defaults.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// The route a file goes: [`Route::Auto`] resolves to async with diarization, else sync.
    pub fn route(&self) -> Route {
        match self.inner.route {
            Route::Auto if self.inner.diarization => Route::Async,
            Route::Auto => Route::Sync,
            r => r,
        }
    }

    /// The base URL of the API this pipeline calls.
    pub fn base_url(&self) -> &str {
        self.inner.client.base_url()
    }

    /// The settings that shape a transcript, as text for a batch journal: a change redoes
    /// finished files. The segmenter, merge and silence options enter as a hash of their
    /// `Debug` text (FNV-1a).
    pub(crate) fn settings_text(&self) -> String {
        // Journals written before silences were removed by default name the default `None`
        // and everything uploaded `None` too: the default keeps their text (results from
        // whole uploads stay valid), uploading everything is named apart.
        let removal = match self.inner.remove_silence {
            Some(r) if r == crate::time::from_secs(DEFAULT_REMOVAL.as_secs_f64()) => None,
            None => Some(0),
            other => other,
        };
        let mut options = format!(
            "{:?}{:?}{:?}{:?}",
            self.inner.segmenter, self.inner.merge, removal, self.inner.max_part
        );
        // So does the overlap, with diarization and when not the default.
        if self.inner.diarization
            && self.inner.speaker_overlap
                != crate::time::from_secs(DEFAULT_SPEAKER_OVERLAP.as_secs_f64())
        {
            options.push_str(&format!("overlap{}", self.inner.speaker_overlap));
        }
        // Channel options enter only when they are not the defaults, so that journals written
        // before channels existed still match (a mono file's result does not depend on them).
        if self.inner.channels != ChannelMode::default() || !self.inner.channel_names.is_empty() {
            options.push_str(&format!(
                "{:?}{:?}",
                self.inner.channels, self.inner.channel_names
            ));
        }
        let hash = options.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!(
            "route={} language={} diarization={} options={hash:016x}",
            match self.route() {
                Route::Async => "async",
                _ => "sync",
            },
            self.inner.language.as_deref().unwrap_or("-"),
            self.inner.diarization,
        )
    }

    /// Transcribes a file on disk.
    pub async fn transcribe_path(&self, path: impl AsRef<Path>) -> Result<Transcript> {
        self.transcribe(Job::path(path.as_ref())).await
    }

    /// Transcribes a [`Job`] (a path, reader or source, with its own progress and resume
    /// options).
    pub async fn transcribe(&self, job: Job) -> Result<Transcript> {
        let path = match &job.input {
            source::Input::Path(p) => p.clone(),
            _ => PathBuf::from(&job.name),
        };
        let ctx = Ctx {
            input: job.input,
            name: job.name,
            path,
            progress: job.progress.or_else(|| self.inner.progress.clone()),
        };
        let route = if job.resume.is_empty() {
            self.route()
        } else {
            Route::Async
        };
        ctx.emit(Progress::Route(route));
        let mut t = match route {
            Route::Async => asynch::run(&self.inner, &ctx, job.resume).await,
            _ => sync::run(&self.inner, &ctx).await,
        }
        .map_err(|e| e.with_path(&ctx.path))?;
        if let Some(gap) = self.inner.join_turns {
            let segs = std::mem::take(&mut t.segments);
            t.segments = crate::merge::join_adjacent(segs, gap, self.inner.join_max_len);
        }
        Ok(t)
    }
}
