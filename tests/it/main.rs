//! The library's integration tests, in one binary (one link instead of one per file): each
//! module is one area, the real-speech corpus builder is shared.

mod corpus;

mod channels;
mod client;
mod client_emulator;
mod client_env;
mod client_memory;
mod decode;
mod distributed;
mod encode;
mod export;
mod pipeline;
mod resample;
mod robustness;
mod s3_upload;
mod segment;
mod segment_real;
mod stream;
mod throughput;
mod transcribe_folder;
