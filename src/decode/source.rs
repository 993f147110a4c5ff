//! The byte source every backend reads: any `Read + Seek`, with its length known, optionally
//! presented with a rewritten header: `head` replaces the original bytes `0..skip_to`.
//! The WAV path uses this to hand Symphonia a canonical header (sizes clamped to the bytes
//! present, µ-law/A-law `fmt ` chunks in the form it accepts) in front of the untouched data.

use std::io::{self, Read, Seek, SeekFrom};

use symphonia::core::io::MediaSource;

/// `Read + Seek + Send + Sync`, object safe.
pub(crate) trait ReadSeek: Read + Seek + Send + Sync {}
impl<T: Read + Seek + Send + Sync> ReadSeek for T {}

/// A seekable byte source with a known length and an optional replacement header.
pub(crate) struct Src {
    inner: Box<dyn ReadSeek>,
    /// Virtual position.
    pos: u64,
    /// Length of the original input.
    orig_len: u64,
    head: Vec<u8>,
    skip_to: u64,
}

impl Src {
    /// Wraps `inner`, measuring its length; the position is left at byte 0.
    pub(crate) fn new(mut inner: Box<dyn ReadSeek>) -> io::Result<Src> {
        let orig_len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Src {
            inner,
            pos: 0,
            orig_len,
            head: Vec::new(),
            skip_to: 0,
        })
    }

    /// The length in bytes (as presented).
    pub(crate) fn len(&self) -> u64 {
        self.head.len() as u64 + self.orig_len.saturating_sub(self.skip_to)
    }

    /// Presents `head` in place of the original bytes `0..skip_to`; rewinds to 0.
    pub(crate) fn replace_head(&mut self, head: Vec<u8>, skip_to: u64) -> io::Result<()> {
        self.head = head;
        self.skip_to = skip_to;
        self.seek(SeekFrom::Start(0))?;
        Ok(())
    }
}

impl Read for Src {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let hl = self.head.len() as u64;
        if self.pos < hl {
            let from = &self.head[self.pos as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            self.pos += n as u64;
            if self.pos == hl {
                self.inner.seek(SeekFrom::Start(self.skip_to))?;
            }
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Src {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if self.head.is_empty() && self.skip_to == 0 {
            self.pos = self.inner.seek(to)?;
            return Ok(self.pos);
        }
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before byte 0"))?;
        let hl = self.head.len() as u64;
        let inner_at = if target < hl {
            self.skip_to
        } else {
            self.skip_to + (target - hl)
        };
        self.inner.seek(SeekFrom::Start(inner_at))?;
        self.pos = target;
        Ok(target)
    }
}

impl MediaSource for Src {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len())
    }
}
