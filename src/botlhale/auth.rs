//! Credentials and the IdToken cache.
//!
//! A client holds either a ready IdToken (used as is, never renewed) or a refresh token, which
//! it trades for an IdToken at `POST /generateAuthToken` (form field `REFRESH_TOKEN`). The
//! IdToken is renewed a margin (`ClientBuilder::token_renewal_margin`) before its `ExpiresIn` runs out, and once when a request
//! is answered 401 (a second 401 is [`crate::ErrorKind::Auth`]). Concurrent requests that hit
//! a 401 with the same stale token share one renewal.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A secret string (token). `Debug` and `Display` print `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Arc::from(s.into()))
    }

    /// The secret itself; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// A ready IdToken, sent as `Authorization: Bearer`; it cannot be renewed.
    IdToken(Secret),
    /// A refresh token, traded for IdTokens at `POST /generateAuthToken` as needed.
    RefreshToken(Secret),
}

/// A cached IdToken and when to stop using it.
#[derive(Clone)]
pub(crate) struct Cached {
    pub token: Secret,
    /// `None` for a caller-supplied IdToken (no known expiry).
    pub renew_at: Option<Instant>,
}

/// The token state shared by the clones of one client.
pub(crate) struct Auth {
    pub credentials: Credentials,
    /// How long before `ExpiresIn` runs out the token is renewed. Default 5 min (capped at a
    /// tenth of the token's lifetime for short-lived tokens).
    pub margin: Duration,
    pub cache: Mutex<Option<Cached>>,
    /// The last minted IdToken, readable without waiting (for redaction of error bodies).
    pub last_minted: std::sync::Mutex<Option<Secret>>,
}

impl Auth {
    pub fn new(credentials: Credentials, margin: Duration) -> Auth {
        let cache = match &credentials {
            Credentials::IdToken(t) => Some(Cached {
                token: t.clone(),
                renew_at: None,
            }),
            Credentials::RefreshToken(_) => None,
        };
        Auth {
            credentials,
            margin,
            cache: Mutex::new(cache),
            last_minted: std::sync::Mutex::new(None),
        }
    }

    /// When a token that lives `expires_in` seconds from now should be renewed.
    pub fn renew_at(&self, now: Instant, expires_in: Option<u64>) -> Instant {
        let life = Duration::from_secs(expires_in.unwrap_or(3600));
        let margin = self.margin.min(life / 10);
        now + life.saturating_sub(margin)
    }

    /// True when the credentials can mint a new token.
    pub fn can_renew(&self) -> bool {
        matches!(self.credentials, Credentials::RefreshToken(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("eyJhbGciOiJIUzI1NiJ9.payload.sig");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let c = Credentials::RefreshToken(s.clone());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("eyJ"), "{dbg}");
        assert_eq!(dbg, "RefreshToken(***)");
        assert_eq!(s.expose(), "eyJhbGciOiJIUzI1NiJ9.payload.sig");
    }

    #[tokio::test]
    async fn renewal_time_keeps_a_margin() {
        let a = Auth::new(
            Credentials::RefreshToken("r".into()),
            Duration::from_secs(300),
        );
        let now = Instant::now();
        assert_eq!(a.renew_at(now, Some(3600)), now + Duration::from_secs(3300));
        // Short-lived: the margin shrinks to a tenth of the lifetime.
        assert_eq!(a.renew_at(now, Some(60)), now + Duration::from_secs(54));
        assert_eq!(a.renew_at(now, None), now + Duration::from_secs(3300));
        assert!(a.can_renew());
        assert!(a.cache.lock().await.is_none());
        let b = Auth::new(Credentials::IdToken("t".into()), Duration::from_secs(300));
        assert!(!b.can_renew());
        assert!(b.cache.lock().await.is_some());
    }
}
