//! A limit on requests in flight shared beyond one process.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::Result;

/// A limit on requests in flight that a [`super::Client`] asks before each attempt, on top of
/// its own [`super::ClientBuilder::concurrency`]: for example one shared by every worker of a
/// batch run on several machines, so that together they never have more requests in flight
/// than the account allows.
///
/// An error from [`Limiter::acquire`] (the shared store unreachable) fails the call with that
/// error, without retrying: use [`crate::ErrorKind::Queue`] so that a batch stops.
pub trait Limiter: Send + Sync {
    /// Waits for a slot; the slot is held until the returned [`Permit`] is dropped.
    fn acquire(&self) -> Pin<Box<dyn Future<Output = Result<Permit>> + Send + '_>>;
}

/// A slot of a [`Limiter`], given back when dropped.
pub struct Permit {
    _guard: Box<dyn Send + Sync>,
}

impl Permit {
    /// A permit that gives its slot back by dropping `guard`.
    pub fn new(guard: impl Send + Sync + 'static) -> Permit {
        Permit {
            _guard: Box::new(guard),
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}
