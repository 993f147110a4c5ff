//! The S3 browser-POST receiver (`POST /s3/{bucket}`), verifying forms like S3 does.
//!
//! - `Content-Length` is required (chunked bodies get `411 MissingContentLength`);
//! - the body must be `multipart/form-data` (`400 MalformedPOSTRequest` otherwise);
//! - fields are read in order up to the part named `file`; fields after it are ignored, as
//!   S3 ignores them (so a field sent after the file is "missing");
//! - the fields are checked by [`sigv4::verify_fields`] (signature, expiry, conditions, extra
//!   fields) as soon as the file part begins: a refusal is answered then, with the file
//!   unread, and the connection closed (as S3 does); else the file is streamed to a
//!   temporary file (never held in memory) and its size checked against
//!   `content-length-range`;
//! - success answers `success_action_status` (200, or 201 with a `PostResponse` XML body)
//!   or 204 by default; refusals answer S3's XML error.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::sigv4::{self, S3Error};
use super::state::{self, short_hash, FormInfo, Job, Shared};
use super::{asr, fault_response, AttemptKey, Injected};

/// A file name for a key: the key itself when it is plain, else a hash of it.
pub(crate) fn safe_name(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 200
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        key.to_string()
    } else {
        format!("key-{}", short_hash(&[key.as_bytes()]))
    }
}

fn xml_error(e: &S3Error, request_id: &str) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        e.to_xml(request_id),
    )
        .into_response()
}

/// Per-field size cap (S3 caps the form outside the file at 20 KB).
const MAX_FIELD: usize = 20 * 1024;

pub(crate) async fn post_object(
    State(sh): State<Arc<Shared>>,
    Path(bucket): Path<String>,
    req: Request,
) -> Response {
    let request_id = sh.random(16).to_ascii_uppercase();
    let fail = |e: S3Error| xml_error(&e, &request_id);
    if !req.headers().contains_key(header::CONTENT_LENGTH) {
        return fail(S3Error::new(
            411,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        ));
    }
    if bucket != state::BUCKET {
        return fail(S3Error::new(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist",
        ));
    }
    let malformed = || {
        S3Error::new(
            400,
            "MalformedPOSTRequest",
            "The body of your POST request is not well-formed multipart/form-data.",
        )
    };
    let mut mp = match axum::extract::Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(_) => return fail(malformed()),
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_string();
                if name == "file" {
                    return receive_file(&sh, &bucket, fields, f, &request_id).await;
                }
                let mut f = f;
                let mut v = Vec::new();
                loop {
                    match f.chunk().await {
                        Ok(Some(c)) => {
                            v.extend_from_slice(&c);
                            if v.len() > MAX_FIELD {
                                return fail(S3Error::new(
                                    400,
                                    "MaxPostPreDataLengthExceeded",
                                    "Your POST request fields preceding the upload file were too large.",
                                ));
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return fail(malformed()),
                    }
                }
                fields.push((name, String::from_utf8_lossy(&v).into_owned()));
            }
            Ok(None) => break,
            Err(_) => return fail(malformed()),
        }
    }
    fail(S3Error::new(
        400,
        "InvalidArgument",
        "POST requires exactly one file upload per request.",
    ))
}

async fn receive_file(
    sh: &Arc<Shared>,
    bucket: &str,
    fields: Vec<(String, String)>,
    mut file: axum::extract::multipart::Field<'_>,
    request_id: &str,
) -> Response {
    let fail = |e: S3Error| xml_error(&e, request_id);
    let bucket = bucket.to_string();
    let verified = sigv4::verify_fields(
        &fields,
        &bucket,
        state::REGION,
        "s3",
        SystemTime::now(),
        |ak| (ak == sh.s3_creds.access_key_id).then(|| sh.s3_creds.clone()),
    );
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            // Refused on the fields alone: answered before the file is read, as S3 does; the
            // connection is then closed with the rest of the body unread.
            let form_key = fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("key"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut r = fail(e);
            r.extensions_mut().insert(AttemptKey(short_hash(&[
                b"s3-refused",
                bucket.as_bytes(),
                form_key.as_bytes(),
            ])));
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    let limit = verified
        .length_range
        .map_or(sh.cfg.max_upload_bytes, |r| r.1);

    // Stream the file to disk (only while it fits), hashing it for the attempt key.
    let tmp = sh.upload_dir.join(format!(".part-{}", sh.random(16)));
    let mut out = match tokio::fs::File::create(&tmp).await {
        Ok(f) => Some(f),
        Err(_) => {
            return fail(S3Error::new(
                500,
                "InternalError",
                "cannot store the upload",
            ));
        }
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut broken = false;
    let started = std::time::Instant::now();
    loop {
        match file.chunk().await {
            Ok(Some(c)) => {
                hasher.update(&c);
                size += c.len() as u64;
                if let Some(rate) = sh.cfg.upload_bytes_per_sec.filter(|&r| r > 0) {
                    // A slow uplink: the body is read no faster than `rate` (TCP holds the
                    // sender back meanwhile).
                    let due = std::time::Duration::from_secs_f64(size as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                if size > limit {
                    out = None;
                }
                if let Some(o) = out.as_mut() {
                    if o.write_all(&c).await.is_err() {
                        broken = true;
                        out = None;
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    if let Some(o) = out.as_mut() {
        if o.flush().await.is_err() {
            broken = true;
        }
    }
    drop(out);
    let form_key = fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("key"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let file_hash = hasher.finalize();
    let attempt = short_hash(&[b"s3", bucket.as_bytes(), form_key.as_bytes(), &file_hash]);
    let with_key = |mut r: Response, fault: Option<super::FaultKind>| {
        r.extensions_mut().insert(AttemptKey(attempt.clone()));
        if let Some(f) = fault {
            r.extensions_mut().insert(Injected(f));
        }
        r
    };
    let remove_tmp = || {
        let _ = std::fs::remove_file(&tmp);
    };
    if broken {
        remove_tmp();
        return with_key(
            fail(S3Error::new(
                400,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            )),
            None,
        );
    }
    if let Err(e) = verified.check_length(size) {
        remove_tmp();
        return with_key(fail(e), None);
    }
    // Faults are drawn after the body was read, and have no side effect.
    if let Some(kind) = sh.decide_fault(&format!("/s3/{bucket}"), &attempt) {
        if kind.fails() {
            remove_tmp();
            return with_key(
                fault_response(kind, sh.cfg.faults.retry_after_secs),
                Some(kind),
            );
        }
        tokio::time::sleep(sh.cfg.faults.latency).await;
    }
    let dest = sh.upload_dir.join(safe_name(&verified.key));
    if tokio::fs::rename(&tmp, &dest).await.is_err() {
        remove_tmp();
        return with_key(
            fail(S3Error::new(
                500,
                "InternalError",
                "cannot store the upload",
            )),
            None,
        );
    }
    start_job(sh, &verified.key, dest);
    let etag = format!("\"{}\"", short_hash(&[&file_hash]));
    let status = fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("success_action_status"))
        .map(|(_, v)| v.trim().to_string());
    let resp = match status.as_deref() {
        Some("200") => (StatusCode::OK, [(header::ETAG, etag)]).into_response(),
        Some("201") => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{base}/s3/{bucket}/{key}</Location><Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{etag}</ETag></PostResponse>",
                base = sh.base_url,
                bucket = sigv4::xml_escape(&bucket),
                key = sigv4::xml_escape(&verified.key),
                etag = sigv4::xml_escape(&etag),
            );
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/xml".to_string()),
                    (header::ETAG, etag),
                ],
                body,
            )
                .into_response()
        }
        _ => (StatusCode::NO_CONTENT, [(header::ETAG, etag)]).into_response(),
    };
    with_key(resp, None)
}

/// Registers (or replaces) the job for an accepted upload and analyses it in the background.
fn start_job(sh: &Arc<Shared>, key: &str, path: std::path::PathBuf) {
    let now = Instant::now();
    let (id, form) = {
        let mut g = sh.lock();
        let form = g.forms.get(key).cloned().unwrap_or(FormInfo {
            org_id: sh.cfg.org_id.clone(),
            language: None,
            diarization: false,
            vela: false,
        });
        // Above 2^53, like the vendor's ids: f64 cannot hold them.
        let id = (1u64 << 57) | (g.rng.u64(..) >> 8);
        let done_word = match sh.cfg.done_word {
            super::DoneWord::Complete => "complete",
            super::DoneWord::Completed => "completed",
            _ => {
                if sh.cfg.faults.draw_bit(sh.cfg.seed, key) {
                    "completed"
                } else {
                    "complete"
                }
            }
        };
        g.jobs.insert(
            key.to_string(),
            Job {
                form: form.clone(),
                id,
                uploaded_at: now,
                uploaded_wall: SystemTime::now(),
                analysis: None,
                ready_at: None,
                done_word,
            },
        );
        (id, form)
    };
    let sh = sh.clone();
    let key = key.to_string();
    let thr = super::threshold(&sh);
    tokio::spawn(async move {
        let res = tokio::task::spawn_blocking(move || asr::analyze_path(&path, thr))
            .await
            .map_err(|_| "analysis panicked".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .and_then(|s| {
                if s.seconds() > sh.cfg.async_max_seconds {
                    Err(format!(
                        "audio is {:.3} s long; asynchronous requests take at most {} s",
                        s.seconds(),
                        sh.cfg.async_max_seconds
                    ))
                } else {
                    Ok(s)
                }
            });
        let secs = res.as_ref().map(|s| s.seconds()).unwrap_or(0.0);
        let speed = if sh.cfg.async_speed.is_finite() && sh.cfg.async_speed > 0.0 {
            sh.cfg.async_speed
        } else {
            60.0
        };
        let work =
            sh.cfg.async_base_delay + std::time::Duration::from_secs_f64((secs / speed).min(1e7));
        let mut g = sh.lock();
        if form.vela {
            *g.vela_used_secs.entry(form.org_id.clone()).or_insert(0.0) += secs;
        }
        if let Some(job) = g.jobs.get_mut(&key) {
            if job.id == id {
                job.ready_at = Some(job.uploaded_at + sh.scaled(work));
                job.analysis = Some(res);
            }
        }
    });
}
