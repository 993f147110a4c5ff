#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod atomic;
pub mod error;
pub mod time;

pub mod channels;
pub mod decode;
pub mod encode;
pub mod normalize;
pub mod resample;
pub mod stream;

pub mod segment;
pub mod vad;

pub mod botlhale;

pub mod batch;
pub mod export;
pub mod merge;
pub mod pipeline;
pub mod transcript;

pub use error::{Error, ErrorKind, Result};
