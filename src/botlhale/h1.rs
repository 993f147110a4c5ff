//! The presigned upload's own HTTP/1.1 exchange: one `POST` on its own connection, whose
//! answer is read even when the storage service sends it before the body is through and then
//! closes.
//!
//! S3 refuses a browser POST (expired form, broken policy, wrong signature) as soon as it
//! has read the form's fields, answers with its XML error and closes the connection while
//! the client is still sending the file; the unread bytes make the close a reset. A client
//! that treats the failed write as the outcome sees a broken pipe, not the refusal, and
//! sends the whole file again. Here the body is written while the answer is read, on the
//! two halves of one connection:
//! - an answer that arrives first ends the attempt at once (the rest of the file is not
//!   sent);
//! - a failed write is not the outcome: the answer, which races the reset, is waited for a
//!   few seconds;
//! - a non-2xx answer whose body breaks off counts by its status, with what came of the body.
//!
//! TLS is rustls with the webpki roots, as in the `reqwest` client the rest of the API uses.
//! When a proxy is configured in the environment, uploads go through `reqwest` instead (see
//! [`proxied`]), which knows proxies but not early answers.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::retry::{self, Outcome};

/// How long a reset write waits for the answer racing it.
const ANSWER_AFTER_RESET: Duration = Duration::from_secs(5);
/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One attempt's answer: status, `Retry-After`, body.
pub(crate) type Answer = (u16, Option<Duration>, Bytes);
/// Why an attempt has no answer, as the retry policy sees it, and what happened.
pub(crate) type Failure = (Outcome, String);

/// A `POST` whose body is streamed, ready to be sent once.
pub(crate) struct Post {
    pub url: url::Url,
    /// Extra headers (`Content-Type`, `Content-Length`, `User-Agent`).
    pub headers: Vec<(&'static str, String)>,
    pub body: BoxStream<'static, io::Result<Bytes>>,
    pub connect_timeout: Duration,
    /// Largest answer body kept.
    pub max_body: usize,
}

/// True when the environment names a proxy for `url`'s scheme: such uploads go through
/// `reqwest`, which applies it (and `NO_PROXY`).
pub(crate) fn proxied(url: &str) -> bool {
    let names: &[&str] = if url.starts_with("https:") {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    names
        .iter()
        .any(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
}

/// The TLS configuration, made once: rustls with the ring provider and the webpki roots.
fn tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS configuration: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(c))
        })
        .clone()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(
    url: &url::Url,
    timeout: Duration,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
) -> Result<Box<dyn Io>, Failure> {
    let port = url.port_or_known_default().ok_or_else(|| {
        (
            Outcome::Other,
            format!("no port for scheme {}", url.scheme()),
        )
    })?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err((Outcome::Other, "the upload URL has no host".into())),
    };
    let tcp = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| {
        (
            Outcome::Connect,
            format!("connecting to {host}:{port} timed out"),
        )
    })?
    .map_err(|e| {
        (
            Outcome::Connect,
            format!("connecting to {host}:{port}: {e}"),
        )
    })?;
    let _ = tcp.set_nodelay(true);
    match url.scheme() {
        "http" => Ok(Box::new(tcp)),
        "https" => {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| (Outcome::Other, format!("TLS server name {host:?}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(tls().map_err(|e| (Outcome::Other, e))?);
            let stream = tokio::time::timeout(timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    (
                        Outcome::Connect,
                        format!("TLS handshake with {host} timed out"),
                    )
                })?
                .map_err(|e| (Outcome::Connect, format!("TLS handshake with {host}: {e}")))?;
            Ok(Box::new(stream))
        }
        s => Err((Outcome::Other, format!("unsupported URL scheme {s:?}"))),
    }
}

/// The request head: `POST`, `Host`, the given headers, `Connection: close`.
fn request_head(url: &url::Url, headers: &[(&'static str, String)]) -> Vec<u8> {
    let mut target = url.path().to_string();
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut host = url.host_str().unwrap_or_default().to_string();
    if let Some(p) = url.port() {
        host.push_str(&format!(":{p}"));
    }
    let mut h = format!("POST {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    h.into_bytes()
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the server closes.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    retry_after: Option<Duration>,
    framing: Framing,
    /// Bytes of the buffer the head took.
    len: usize,
}

/// Parses a final response head at the start of `buf`: `Ok(None)` while incomplete.
/// Interim (1xx) answers are skipped.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let n = match r.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > MAX_HEAD {
                    Err(format!("answer head longer than {MAX_HEAD} bytes"))
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(format!("malformed answer head: {e}")),
        };
        let status = r.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            at += n;
            continue;
        }
        // RFC 9112 §6.3: a transfer coding decides (chunked last: chunked; else until the
        // close); otherwise Content-Length, which must agree with itself.
        let mut coding: Option<bool> = None;
        let mut length: Option<u64> = None;
        let mut retry_after = None;
        for h in r.headers.iter() {
            let v = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = v
                    .rsplit(',')
                    .map(str::trim)
                    .find(|c| !c.is_empty())
                    .unwrap_or("");
                coding = Some(last.eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {v:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values".into());
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("retry-after") {
                retry_after = retry::parse_retry_after(&v, SystemTime::now());
            }
        }
        let mut framing = match (coding, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
        };
        if status == 204 || status == 304 {
            framing = Framing::Length(0);
        }
        return Ok(Some(Head {
            status,
            retry_after,
            framing,
            len: at + n,
        }));
    }
}

/// Decodes the complete chunks of a chunked body in `buf` from `*at` on into `out`, moving
/// `*at` past them: `true` once the last chunk was seen (trailers are not read). Each byte
/// is decoded once however the body arrives.
fn dechunk_more(buf: &[u8], at: &mut usize, out: &mut Vec<u8>) -> Result<bool, String> {
    loop {
        let rest = buf.get(*at..).unwrap_or_default();
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(false);
        };
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| format!("bad chunk size line {:?}", line.trim()))?;
        if size == 0 {
            *at += eol + 2;
            return Ok(true);
        }
        let data = eol + 2;
        let end = data
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or("chunk size overflows")?;
        if rest.len() < end {
            return Ok(false);
        }
        out.extend_from_slice(&rest[data..data + size]);
        *at += end;
    }
}

/// Decodes a whole chunked body: the chunks complete in `buf`, and whether the last chunk
/// was seen.
#[cfg(test)]
fn dechunk(buf: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    let mut at = 0;
    let done = dechunk_more(buf, &mut at, &mut out)?;
    Ok((out, done))
}

/// Reads `buf` as a storage answer that arrived whole, as an upload reads one off the
/// connection: its status and body, or what is wrong. For the fuzz targets.
pub fn parse_answer(buf: &[u8]) -> Result<(u16, Vec<u8>), String> {
    use std::future::Future;
    let mut rd = buf;
    let mut read = std::pin::pin!(read_answer(&mut rd, 1 << 20));
    // A slice never waits: one poll reads it all.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match read.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok((head, body))) => Ok((head.status, body)),
        std::task::Poll::Ready(Err(ReadFailure::Broken(head, _, e))) => {
            Err(format!("HTTP {}: {e}", head.status))
        }
        std::task::Poll::Ready(Err(ReadFailure::NoAnswer(e))) => Err(e),
        std::task::Poll::Pending => Err("the reader waited".into()),
    }
}

/// Why reading an answer stopped short.
enum ReadFailure {
    /// Nothing usable arrived: the text says what happened.
    NoAnswer(String),
    /// The head arrived, its body broke off.
    Broken(Head, Vec<u8>, String),
}

async fn read_answer<R: AsyncRead + Unpin>(
    rd: &mut R,
    max_body: usize,
) -> Result<(Head, Vec<u8>), ReadFailure> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let head = loop {
        match parse_head(&buf) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(e) => return Err(ReadFailure::NoAnswer(e)),
        }
        match rd.read(&mut chunk).await {
            Ok(0) => {
                return Err(ReadFailure::NoAnswer(
                    "the connection closed before an answer".into(),
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ReadFailure::NoAnswer(format!("reading the answer: {e}"))),
        }
    };
    buf.drain(..head.len);
    // Chunked: the complete chunks decoded so far, and where the next one starts in `buf`.
    let mut decoded = Vec::new();
    let mut at = 0;
    loop {
        match head.framing {
            Framing::Length(n) if buf.len() as u64 >= n => {
                buf.truncate(n as usize);
                return Ok((head, buf));
            }
            Framing::Chunked => match dechunk_more(&buf, &mut at, &mut decoded) {
                Ok(true) => return Ok((head, decoded)),
                Ok(false) => {}
                Err(e) => return Err(ReadFailure::Broken(head, decoded, e)),
            },
            _ => {}
        }
        let body = |buf: Vec<u8>, decoded: Vec<u8>| match head.framing {
            Framing::Chunked => decoded,
            _ => buf,
        };
        if buf.len() > max_body {
            // Enough of it: the status is the answer, the text only explains it.
            let mut b = body(buf, decoded);
            b.truncate(max_body);
            return Ok((head, b));
        }
        match rd.read(&mut chunk).await {
            Ok(0) if head.framing == Framing::Close => return Ok((head, buf)),
            // TLS closed without close_notify: for a body delimited by the close, the end.
            Err(e)
                if head.framing == Framing::Close && e.kind() == io::ErrorKind::UnexpectedEof =>
            {
                return Ok((head, buf))
            }
            Ok(0) => {
                let b = body(buf, decoded);
                return Err(ReadFailure::Broken(
                    head,
                    b,
                    "the connection closed inside the answer".into(),
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                let b = body(buf, decoded);
                return Err(ReadFailure::Broken(
                    head,
                    b,
                    format!("reading the answer: {e}"),
                ));
            }
        }
    }
}

/// Why writing the request stopped.
enum WriteFailure {
    /// The body's own source failed (the file could not be read).
    Source(io::Error),
    /// The connection refused the bytes (reset, broken pipe).
    Socket(io::Error),
}

impl Post {
    /// Sends the request once and reads its answer (see the module's documentation).
    pub(crate) async fn exchange(self) -> Result<Answer, Failure> {
        self.exchange_with(tls).await
    }

    /// [`Post::exchange`] with the TLS configuration `tls` gives.
    async fn exchange_with(
        self,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
    ) -> Result<Answer, Failure> {
        let Post {
            url,
            headers,
            mut body,
            connect_timeout,
            max_body,
        } = self;
        let conn = connect(&url, connect_timeout, tls).await?;
        let (mut rd, mut wr) = tokio::io::split(conn);
        let head = request_head(&url, &headers);
        let send = async move {
            wr.write_all(&head).await.map_err(WriteFailure::Socket)?;
            while let Some(c) = body.next().await {
                let c = c.map_err(WriteFailure::Source)?;
                wr.write_all(&c).await.map_err(WriteFailure::Socket)?;
            }
            wr.flush().await.map_err(WriteFailure::Socket)?;
            // The write half stays open: some servers take a half-close for an abort.
            Ok::<_, WriteFailure>(wr)
        };
        let answer = read_answer(&mut rd, max_body);
        tokio::pin!(send, answer);
        let mut sending = true;
        let mut reset: Option<String> = None;
        let mut _open = None;
        let got = loop {
            tokio::select! {
                r = &mut send, if sending => {
                    sending = false;
                    match r {
                        Ok(w) => _open = Some(w),
                        Err(WriteFailure::Source(e)) => {
                            return Err((Outcome::Dropped, format!("reading the body: {e}")));
                        }
                        Err(WriteFailure::Socket(e)) => reset = Some(e.to_string()),
                    }
                }
                r = &mut answer => break r,
                _ = tokio::time::sleep(ANSWER_AFTER_RESET), if reset.is_some() => {
                    return Err((
                        Outcome::Dropped,
                        format!(
                            "sending the body: {}; no answer within {} s",
                            reset.unwrap_or_default(),
                            ANSWER_AFTER_RESET.as_secs()
                        ),
                    ));
                }
            }
        };
        match got {
            Ok((h, body)) => Ok((h.status, h.retry_after, Bytes::from(body))),
            // A refusal is a refusal even when its text is cut short.
            Err(ReadFailure::Broken(h, body, _)) if !(200..300).contains(&h.status) => {
                Ok((h.status, h.retry_after, Bytes::from(body)))
            }
            Err(ReadFailure::Broken(h, _, e)) => Err((
                Outcome::Dropped,
                format!("HTTP {} answer broken off: {e}", h.status),
            )),
            Err(ReadFailure::NoAnswer(e)) => Err((
                Outcome::Dropped,
                match reset {
                    Some(w) => format!("sending the body: {w}; {e}"),
                    None => e,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn heads_are_parsed_with_their_framing_and_interim_answers_skipped() {
        let h =
            parse_head(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 12\r\n\r\n<Error/>").unwrap();
        assert_eq!(
            h,
            Some(Head {
                status: 403,
                retry_after: None,
                framing: Framing::Length(12),
                len: 46
            })
        );
        let h = parse_head(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Slow Down\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 503);
        assert_eq!(h.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(
            parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .unwrap()
                .framing,
            Framing::Length(0)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 400 Bad\r\n\r\n")
                .unwrap()
                .unwrap()
                .framing,
            Framing::Close
        );
        assert_eq!(parse_head(b"HTTP/1.1 403 Forb").unwrap(), None);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
                .is_err()
        );
        let h =
            parse_head(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: gzip\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(h.unwrap().unwrap().framing, Framing::Close);
        let h = parse_head(
            b"HTTP/1.1 400 Bad\r\nContent-Length: 9\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        );
        assert_eq!(h.unwrap().unwrap().framing, Framing::Chunked);
    }

    #[test]
    fn chunked_bodies_decode_only_when_complete() {
        let full = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(full).unwrap(), (b"hello world".to_vec(), true));
        assert_eq!(dechunk(&full[..20]).unwrap(), (b"hello".to_vec(), false));
        assert_eq!(dechunk(&full[..12]).unwrap(), (Vec::new(), false));
        assert!(dechunk(b"zz\r\n").is_err());
        assert_eq!(dechunk(b"ffffff\r\nabc").unwrap(), (Vec::new(), false));
        assert!(dechunk(b"ffffffffffffffff\r\n").is_err());
    }

    /// A TLS server on 127.0.0.1 with the test certificate (`tests/testdata/tls`) that reads
    /// the whole request and answers `answer`; returns its port and the request it read.
    async fn tls_server(answer: &'static str) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let cert =
            CertificateDer::from(include_bytes!("../../tests/testdata/tls/leaf.der").to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            include_bytes!("../../tests/testdata/tls/leaf.key.der").to_vec(),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return Vec::new();
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.ends_with(b"--end--") {
                    break;
                }
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            got
        });
        (port, task)
    }

    fn post(url: &str, body: &'static [u8]) -> Post {
        Post {
            url: url::Url::parse(url).unwrap(),
            headers: vec![("Content-Length", body.len().to_string())],
            body: futures_util::stream::iter([Ok(Bytes::from_static(body))]).boxed(),
            connect_timeout: Duration::from_secs(5),
            max_body: 1 << 20,
        }
    }

    fn test_roots() -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                include_bytes!("../../tests/testdata/tls/ca.der").to_vec(),
            ))
            .map_err(|e| e.to_string())?;
        let c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(c))
    }

    #[tokio::test]
    async fn uploads_go_over_tls_to_a_server_the_roots_trust() {
        let (port, server) = tls_server("HTTP/1.1 204 No Content\r\nETag: \"x\"\r\n\r\n").await;
        let (status, _, body) = post(&format!("https://localhost:{port}/b?k=1"), b"form --end--")
            .exchange_with(test_roots)
            .await
            .unwrap();
        assert_eq!((status, body.len()), (204, 0));
        let got = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(
            got.starts_with(&format!(
                "POST /b?k=1 HTTP/1.1\r\nHost: localhost:{port}\r\n"
            )),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\nform --end--"), "{got}");
    }

    #[tokio::test]
    async fn a_server_the_roots_do_not_trust_is_a_connect_failure() {
        let (port, _server) = tls_server("HTTP/1.1 204 No Content\r\n\r\n").await;
        let (outcome, message) = post(&format!("https://127.0.0.1:{port}/"), b"--end--")
            .exchange()
            .await
            .unwrap_err();
        assert_eq!(outcome, Outcome::Connect);
        assert!(message.contains("TLS handshake"), "{message}");
    }

    #[tokio::test]
    async fn answers_are_read_whole_and_capped_keeping_their_status() {
        let chunked: &[u8] = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\n<Err\r\n3\r\nor>\r\n0\r\n\r\n";
        let (h, body) = read_answer(&mut &chunked[..], 1 << 20).await.ok().unwrap();
        assert_eq!((h.status, body.as_slice()), (403, &b"<Error>"[..]));
        // A reader that hands out one byte at a time decodes the same.
        struct OneByte<'a>(&'a [u8]);
        impl AsyncRead for OneByte<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                if let Some((b, rest)) = self.0.split_first() {
                    buf.put_slice(&[*b]);
                    self.0 = rest;
                }
                std::task::Poll::Ready(Ok(()))
            }
        }
        let (h, body) = read_answer(&mut OneByte(chunked), 1 << 20)
            .await
            .ok()
            .unwrap();
        assert_eq!((h.status, body.as_slice()), (403, &b"<Error>"[..]));
        // Over the cap: the status stands, the text is cut.
        let big = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 100000\r\n\r\n{}",
            "x".repeat(100_000)
        );
        let (h, body) = read_answer(&mut big.as_bytes(), 1000).await.ok().unwrap();
        assert_eq!((h.status, body.len()), (400, 1000));
        // Closed inside a Content-Length body: the head and what came.
        let cut: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 50\r\n\r\n<Error>";
        match read_answer(&mut &cut[..], 1 << 20).await {
            Err(ReadFailure::Broken(h, body, _)) => {
                assert_eq!((h.status, body.as_slice()), (403, &b"<Error>"[..]))
            }
            _ => panic!("a body cut short is Broken"),
        }
    }

    #[test]
    fn the_request_head_names_the_host_target_and_closes() {
        let url =
            url::Url::parse("https://bucket.s3.af-south-1.amazonaws.com:8443/up?x=1").unwrap();
        let h = request_head(&url, &[("Content-Length", "10".into())]);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "POST /up?x=1 HTTP/1.1\r\nHost: bucket.s3.af-south-1.amazonaws.com:8443\r\n\
             Content-Length: 10\r\nConnection: close\r\n\r\n"
        );
        let url = url::Url::parse("http://[::1]/").unwrap();
        let h = String::from_utf8(request_head(&url, &[])).unwrap();
        assert!(h.starts_with("POST / HTTP/1.1\r\nHost: [::1]\r\n"), "{h}");
    }
}
