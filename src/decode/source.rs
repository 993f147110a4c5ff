//! The byte source every backend reads: any `Read + Seek`, with its length known and optional
//! 4-byte patches laid over header fields (used to make a WAV header that over-claims its data
//! size agree with the bytes actually present).

use std::io::{self, Read, Seek, SeekFrom};

use symphonia::core::io::MediaSource;

/// `Read + Seek + Send + Sync`, object safe.
pub(crate) trait ReadSeek: Read + Seek + Send + Sync {}
impl<T: Read + Seek + Send + Sync> ReadSeek for T {}

/// A seekable byte source with a known length and optional header patches.
pub(crate) struct Src {
    inner: Box<dyn ReadSeek>,
    pos: u64,
    len: u64,
    patches: Vec<(u64, [u8; 4])>,
}

impl Src {
    /// Wraps `inner`, measuring its length; the position is left at byte 0.
    pub(crate) fn new(mut inner: Box<dyn ReadSeek>) -> io::Result<Src> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Src {
            inner,
            pos: 0,
            len,
            patches: Vec::new(),
        })
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Makes reads of bytes `at..at + 4` return `bytes` instead of what is stored.
    pub(crate) fn patch(&mut self, at: u64, bytes: [u8; 4]) {
        self.patches.push((at, bytes));
    }
}

impl Read for Src {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let (lo, hi) = (self.pos, self.pos + n as u64);
        for &(at, bytes) in &self.patches {
            for (i, b) in bytes.iter().enumerate() {
                let p = at + i as u64;
                if p >= lo && p < hi {
                    if let Some(slot) = buf.get_mut((p - lo) as usize) {
                        *slot = *b;
                    }
                }
            }
        }
        self.pos = hi;
        Ok(n)
    }
}

impl Seek for Src {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

impl MediaSource for Src {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}
