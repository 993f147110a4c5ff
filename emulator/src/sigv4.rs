//! AWS Signature Version 4 for browser-style S3 `POST` uploads: signing a POST policy and
//! verifying an upload form against it, the way S3 does.
//!
//! This is the protocol behind the vendor's presigned upload forms (`POST /asr/async/upload`
//! answers `{"url", "fields"}`; the client posts every field verbatim, then the file as the
//! last part named `file`). It is public so that tests can sign forms for any S3
//! implementation (for example `s3s` with its own access key and secret), not only for the
//! emulator.
//!
//! The algorithm (AWS "Authenticating Requests in Browser-Based Uploads Using POST"):
//! - the policy is a JSON document `{"expiration": "<ISO 8601 UTC>", "conditions": [...]}`;
//!   its base64 encoding is both the `policy` form field and the string to sign;
//! - the signing key is the SigV4 chain `HMAC("AWS4" + secret, yyyymmdd)` → region → service
//!   → `"aws4_request"`; the signature is the lowercase hex HMAC-SHA256 of the base64 policy;
//! - the form carries `x-amz-algorithm` (`AWS4-HMAC-SHA256`), `x-amz-credential`
//!   (`<access key>/<yyyymmdd>/<region>/<service>/aws4_request`), `x-amz-date`
//!   (`yyyymmddTHHMMSSZ`), optionally `x-amz-security-token`, and `x-amz-signature`; the
//!   policy names each of them in an exact-match condition.
//!
//! S3 checks, in this order here: required fields present (`policy`, `key`, the signature
//! fields), algorithm, credential, security token, signature, policy syntax, expiry, every
//! condition, no form field left outside the conditions, and (once the file has been read)
//! `content-length-range`. Each refusal is an [`S3Error`] carrying S3's code and status.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm name SigV4 POST uploads use.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key, its secret and an optional session token (temporary credentials).
///
/// `Debug` shows the access key id only; the secret and the token are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The public access key id, e.g. `AKIAIOSFODNN7EXAMPLE`.
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: String,
    /// The session token of temporary credentials, sent as `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl Credentials {
    /// Credentials without a session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// The same credentials with a session token.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One condition of a POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The form field (name without `$`) must equal the value exactly.
    /// Serialised as `["eq", "$field", "value"]`.
    Eq(String, String),
    /// The form field must start with the prefix (an empty prefix allows any value).
    /// Serialised as `["starts-with", "$field", "prefix"]`.
    StartsWith(String, String),
    /// The uploaded file's size in bytes must lie in the inclusive range.
    ContentLengthRange(u64, u64),
}

impl Condition {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Condition::Eq(f, v) => serde_json::json!(["eq", format!("${f}"), v]),
            Condition::StartsWith(f, v) => serde_json::json!(["starts-with", format!("${f}"), v]),
            Condition::ContentLengthRange(a, b) => {
                serde_json::json!(["content-length-range", a, b])
            }
        }
    }
}

/// A signed POST form: the fields to send verbatim (in this order) before the file part.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedPost {
    /// Form fields in the order they are to be sent; the file follows them as `file`.
    pub fields: Vec<(String, String)>,
    /// The policy JSON before base64 (for inspection and tests).
    pub policy_json: String,
}

impl fmt::Debug for PresignedPost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.fields.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PresignedPost")
            .field("fields", &names)
            .finish_non_exhaustive()
    }
}

impl PresignedPost {
    /// The value of the field `name` (ASCII case-insensitive), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Signs a SigV4 POST policy dated now. See [`presign_post_at`].
pub fn presign_post(
    creds: &Credentials,
    region: &str,
    bucket: &str,
    key: &str,
    expires_at: SystemTime,
    content_length_range: Option<RangeInclusive<u64>>,
    extra_conditions: &[Condition],
) -> PresignedPost {
    presign_post_at(
        creds,
        region,
        "s3",
        bucket,
        key,
        SystemTime::now(),
        expires_at,
        content_length_range,
        extra_conditions,
    )
}

/// Signs a SigV4 POST policy for `service` (normally `"s3"`) dated `now`.
///
/// The policy holds `{"bucket": bucket}`, `["eq", "$key", key]`, the optional
/// `content-length-range`, the `extra_conditions`, and exact matches for `x-amz-algorithm`,
/// `x-amz-credential`, `x-amz-date` and (when the credentials have one)
/// `x-amz-security-token`. The fields returned are `key`, those four, `policy` and
/// `x-amz-signature`; fields named by `Eq` extra conditions are added after `key` with their
/// value so that the form satisfies its own policy.
#[allow(clippy::too_many_arguments)]
pub fn presign_post_at(
    creds: &Credentials,
    region: &str,
    service: &str,
    bucket: &str,
    key: &str,
    now: SystemTime,
    expires_at: SystemTime,
    content_length_range: Option<RangeInclusive<u64>>,
    extra_conditions: &[Condition],
) -> PresignedPost {
    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let credential = format!(
        "{}/{}/{}/{}/aws4_request",
        creds.access_key_id, date, region, service
    );
    let mut conditions = vec![
        serde_json::json!({ "bucket": bucket }),
        Condition::Eq("key".into(), key.into()).to_json(),
    ];
    if let Some(r) = &content_length_range {
        conditions.push(Condition::ContentLengthRange(*r.start(), *r.end()).to_json());
    }
    for c in extra_conditions {
        conditions.push(c.to_json());
    }
    conditions.push(serde_json::json!({ "x-amz-algorithm": ALGORITHM }));
    conditions.push(serde_json::json!({ "x-amz-credential": credential }));
    conditions.push(serde_json::json!({ "x-amz-date": amz_date }));
    if let Some(t) = &creds.session_token {
        conditions.push(serde_json::json!({ "x-amz-security-token": t }));
    }
    let policy = serde_json::json!({
        "expiration": iso8601_millis(expires_at),
        "conditions": conditions,
    });
    let policy_json = policy.to_string();
    let policy_b64 = B64.encode(policy_json.as_bytes());
    let signature = sign_policy(&creds.secret_access_key, date, region, service, &policy_b64);
    let mut fields = vec![("key".to_string(), key.to_string())];
    for c in extra_conditions {
        if let Condition::Eq(f, v) = c {
            fields.push((f.clone(), v.clone()));
        }
    }
    fields.push(("x-amz-algorithm".into(), ALGORITHM.into()));
    fields.push(("x-amz-credential".into(), credential));
    fields.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(t) = &creds.session_token {
        fields.push(("x-amz-security-token".into(), t.clone()));
    }
    fields.push(("policy".into(), policy_b64));
    fields.push(("x-amz-signature".into(), signature));
    PresignedPost {
        fields,
        policy_json,
    }
}

/// Signs a policy in the SigV2-style field layout: `key`, `AWSAccessKeyId`, `policy`,
/// `signature` (see [`sign_policy_v2`]) and `x-amz-security-token` when the credentials have
/// one. The policy holds the bucket, `["eq", "$key", key]`, the optional
/// `content-length-range`, the extra conditions and the security token; fields named by `Eq`
/// extra conditions are added after `key`.
pub fn presign_post_v2(
    creds: &Credentials,
    bucket: &str,
    key: &str,
    expires_at: SystemTime,
    content_length_range: Option<RangeInclusive<u64>>,
    extra_conditions: &[Condition],
) -> PresignedPost {
    let mut conditions = vec![
        serde_json::json!({ "bucket": bucket }),
        Condition::Eq("key".into(), key.into()).to_json(),
    ];
    if let Some(r) = &content_length_range {
        conditions.push(Condition::ContentLengthRange(*r.start(), *r.end()).to_json());
    }
    for c in extra_conditions {
        conditions.push(c.to_json());
    }
    if let Some(t) = &creds.session_token {
        conditions.push(serde_json::json!({ "x-amz-security-token": t }));
    }
    let policy_json = serde_json::json!({
        "expiration": iso8601_millis(expires_at),
        "conditions": conditions,
    })
    .to_string();
    let policy_b64 = B64.encode(policy_json.as_bytes());
    let mut fields = vec![
        ("AWSAccessKeyId".to_string(), creds.access_key_id.clone()),
        ("key".to_string(), key.to_string()),
    ];
    for c in extra_conditions {
        if let Condition::Eq(f, v) = c {
            fields.push((f.clone(), v.clone()));
        }
    }
    fields.extend([
        ("policy".to_string(), policy_b64.clone()),
        (
            "signature".to_string(),
            sign_policy_v2(&creds.secret_access_key, &policy_b64),
        ),
    ]);
    if let Some(t) = &creds.session_token {
        fields.push(("x-amz-security-token".into(), t.clone()));
    }
    PresignedPost {
        fields,
        policy_json,
    }
}

/// The SigV4 signing key: `HMAC("AWS4" + secret, date)` → `region` → `service` → `"aws4_request"`.
/// `date` is `yyyymmdd`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The lowercase hex SigV4 signature of a base64 POST policy.
pub fn sign_policy(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    policy_b64: &str,
) -> String {
    hex::encode(hmac(
        &signing_key(secret, date, region, service),
        policy_b64.as_bytes(),
    ))
}

/// The base64 HMAC-SHA256 of a policy with the bare secret, for the SigV2-style field layout
/// (`AWSAccessKeyId`, `signature`). Real SigV2 uses HMAC-SHA1; this emulator keeps the field
/// names and uses SHA-256 (clients pass the fields verbatim and never compute them).
pub fn sign_policy_v2(secret: &str, policy_b64: &str) -> String {
    B64.encode(hmac(secret.as_bytes(), policy_b64.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A refusal in S3's terms: the HTTP status, S3's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    /// HTTP status, e.g. 403.
    pub status: u16,
    /// S3's error code, e.g. `SignatureDoesNotMatch`.
    pub code: &'static str,
    /// A human-readable message in S3's wording.
    pub message: String,
}

impl S3Error {
    /// A new error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        S3Error {
            status,
            code,
            message: message.into(),
        }
    }

    /// The S3 XML error document.
    pub fn to_xml(&self, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId><HostId>emulator</HostId></Error>",
            self.code,
            xml_escape(&self.message),
            xml_escape(request_id)
        )
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for S3Error {}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a successful field check established; the file's size is checked later with
/// [`VerifiedForm::check_length`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedForm {
    /// The object key from the form.
    pub key: String,
    /// The policy's `content-length-range`, if any.
    pub length_range: Option<(u64, u64)>,
    /// The access key id that signed the form.
    pub access_key_id: String,
}

impl VerifiedForm {
    /// S3's size check: `EntityTooLarge` / `EntityTooSmall` (400) outside the policy's range.
    pub fn check_length(&self, size: u64) -> Result<(), S3Error> {
        check_length(self.length_range, size)
    }
}

/// `content-length-range` as S3 applies it.
pub fn check_length(range: Option<(u64, u64)>, size: u64) -> Result<(), S3Error> {
    if let Some((min, max)) = range {
        if size > max {
            return Err(S3Error::new(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
            ));
        }
        if size < min {
            return Err(S3Error::new(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
            ));
        }
    }
    Ok(())
}

fn missing(name: &str) -> S3Error {
    S3Error::new(
        400,
        "InvalidArgument",
        format!(
            "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
        ),
    )
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn policy_failed(cond: &serde_json::Value) -> S3Error {
    S3Error::new(
        403,
        "AccessDenied",
        format!("Invalid according to Policy: Policy Condition failed: {cond}"),
    )
}

/// Verifies the form fields that came BEFORE the `file` part (S3 ignores fields after it),
/// for an upload to `bucket`, against the credentials that `lookup` returns for the form's
/// access key, at time `now`.
///
/// Both layouts are accepted: SigV4 (`x-amz-signature`, region and service from the
/// credential scope must equal `region` / `service`) and the SigV2-style layout
/// (`AWSAccessKeyId` + `signature`, see [`sign_policy_v2`]).
pub fn verify_fields(
    fields: &[(String, String)],
    bucket: &str,
    region: &str,
    service: &str,
    now: SystemTime,
    lookup: impl Fn(&str) -> Option<Credentials>,
) -> Result<VerifiedForm, S3Error> {
    let policy_b64 = field(fields, "policy").ok_or_else(|| missing("policy"))?;
    let key = field(fields, "key").ok_or_else(|| missing("key"))?;
    let v4 = field(fields, "x-amz-signature").is_some();
    let creds;
    if v4 {
        let signature = field(fields, "x-amz-signature").unwrap_or_default();
        let algorithm =
            field(fields, "x-amz-algorithm").ok_or_else(|| missing("x-amz-algorithm"))?;
        let credential =
            field(fields, "x-amz-credential").ok_or_else(|| missing("x-amz-credential"))?;
        let amz = field(fields, "x-amz-date").ok_or_else(|| missing("x-amz-date"))?;
        if algorithm != ALGORITHM {
            return Err(S3Error::new(
                400,
                "InvalidArgument",
                format!("Unsupported algorithm {algorithm}; expected {ALGORITHM}"),
            ));
        }
        let parts: Vec<&str> = credential.split('/').collect();
        let [ak, date, cregion, cservice, term] = parts.as_slice() else {
            return Err(S3Error::new(
                400,
                "InvalidArgument",
                "Invalid credential: the credential must have the form <key>/<date>/<region>/<service>/aws4_request",
            ));
        };
        if *term != "aws4_request" || date.len() != 8 {
            return Err(S3Error::new(
                400,
                "InvalidArgument",
                "Invalid credential scope",
            ));
        }
        if *cregion != region {
            return Err(S3Error::new(
                400,
                "AuthorizationHeaderMalformed",
                format!("the region '{cregion}' is wrong; expecting '{region}'"),
            ));
        }
        if *cservice != service {
            return Err(S3Error::new(
                400,
                "AuthorizationHeaderMalformed",
                format!("the service '{cservice}' is wrong; expecting '{service}'"),
            ));
        }
        if parse_amz_date(amz).is_none() {
            return Err(S3Error::new(400, "InvalidArgument", "Invalid x-amz-date"));
        }
        creds = lookup(ak).ok_or_else(invalid_access_key)?;
        check_token(&creds, fields)?;
        let expected = sign_policy(&creds.secret_access_key, date, region, service, policy_b64);
        // The scope date must be the date of x-amz-date.
        if !amz.starts_with(date) || !ct_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(signature_mismatch());
        }
    } else {
        let signature = field(fields, "signature").ok_or_else(|| missing("x-amz-signature"))?;
        let ak = field(fields, "AWSAccessKeyId").ok_or_else(|| missing("AWSAccessKeyId"))?;
        creds = lookup(ak).ok_or_else(invalid_access_key)?;
        check_token(&creds, fields)?;
        let expected = sign_policy_v2(&creds.secret_access_key, policy_b64);
        if !ct_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(signature_mismatch());
        }
    }

    let json = B64
        .decode(policy_b64.as_bytes())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .ok_or_else(|| {
            S3Error::new(
                400,
                "InvalidPolicyDocument",
                "Invalid Policy: Invalid JSON.",
            )
        })?;
    let expiration = json
        .get("expiration")
        .and_then(|e| e.as_str())
        .and_then(parse_iso8601)
        .ok_or_else(|| {
            S3Error::new(
                400,
                "InvalidPolicyDocument",
                "Invalid Policy: Policy missing expiration.",
            )
        })?;
    if now > expiration {
        return Err(S3Error::new(
            403,
            "AccessDenied",
            "Invalid according to Policy: Policy expired.",
        ));
    }
    let conditions = json
        .get("conditions")
        .and_then(|c| c.as_array())
        .ok_or_else(|| {
            S3Error::new(
                400,
                "InvalidPolicyDocument",
                "Invalid Policy: Policy missing conditions.",
            )
        })?;

    let value_of = |name: &str| -> Option<&str> {
        if name.eq_ignore_ascii_case("bucket") {
            Some(bucket)
        } else {
            field(fields, name)
        }
    };
    let mut covered: Vec<String> = Vec::new();
    let mut length_range = None;
    for cond in conditions {
        match cond {
            serde_json::Value::Object(map) => {
                for (name, v) in map {
                    let want = v.as_str().ok_or_else(|| invalid_condition(cond))?;
                    covered.push(name.to_ascii_lowercase());
                    if value_of(name) != Some(want) {
                        return Err(policy_failed(cond));
                    }
                }
            }
            serde_json::Value::Array(items) => {
                let op = items
                    .first()
                    .and_then(|o| o.as_str())
                    .ok_or_else(|| invalid_condition(cond))?;
                if op.eq_ignore_ascii_case("content-length-range") {
                    let n = |i: usize| {
                        items.get(i).and_then(|x| {
                            x.as_u64()
                                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                        })
                    };
                    match (n(1), n(2), items.len()) {
                        (Some(a), Some(b), 3) => length_range = Some((a, b)),
                        _ => return Err(invalid_condition(cond)),
                    }
                    continue;
                }
                let (Some(target), Some(want), 3) = (
                    items.get(1).and_then(|x| x.as_str()),
                    items.get(2).and_then(|x| x.as_str()),
                    items.len(),
                ) else {
                    return Err(invalid_condition(cond));
                };
                let name = target
                    .strip_prefix('$')
                    .ok_or_else(|| invalid_condition(cond))?;
                covered.push(name.to_ascii_lowercase());
                let got = value_of(name);
                let ok = match op.to_ascii_lowercase().as_str() {
                    "eq" => got == Some(want),
                    "starts-with" => got.is_some_and(|g| g.starts_with(want)),
                    _ => return Err(invalid_condition(cond)),
                };
                if !ok {
                    return Err(policy_failed(cond));
                }
            }
            _ => return Err(invalid_condition(cond)),
        }
    }
    for (name, _) in fields {
        let lower = name.to_ascii_lowercase();
        let exempt = matches!(
            lower.as_str(),
            "x-amz-signature" | "policy" | "file" | "signature" | "awsaccesskeyid"
        ) || lower.starts_with("x-ignore-");
        if !exempt && !covered.contains(&lower) {
            return Err(S3Error::new(
                403,
                "AccessDenied",
                format!("Invalid according to Policy: Extra input fields: {name}"),
            ));
        }
    }
    Ok(VerifiedForm {
        key: key.to_string(),
        length_range,
        access_key_id: creds.access_key_id.clone(),
    })
}

/// [`verify_fields`] then [`check_length`] for a file of `file_size` bytes.
pub fn verify_post(
    fields: &[(String, String)],
    file_size: u64,
    bucket: &str,
    region: &str,
    service: &str,
    now: SystemTime,
    lookup: impl Fn(&str) -> Option<Credentials>,
) -> Result<VerifiedForm, S3Error> {
    let v = verify_fields(fields, bucket, region, service, now, lookup)?;
    v.check_length(file_size)?;
    Ok(v)
}

fn check_token(creds: &Credentials, fields: &[(String, String)]) -> Result<(), S3Error> {
    if let Some(t) = &creds.session_token {
        match field(fields, "x-amz-security-token") {
            Some(got) if ct_eq(got.as_bytes(), t.as_bytes()) => {}
            _ => {
                return Err(S3Error::new(
                    400,
                    "InvalidToken",
                    "The provided token is malformed or otherwise invalid.",
                ))
            }
        }
    }
    Ok(())
}

fn invalid_access_key() -> S3Error {
    S3Error::new(
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    )
}

fn signature_mismatch() -> S3Error {
    S3Error::new(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
}

fn invalid_condition(cond: &serde_json::Value) -> S3Error {
    S3Error::new(
        400,
        "InvalidPolicyDocument",
        format!("Invalid Policy: Invalid Condition: {cond}"),
    )
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- dates (UTC, no time-zone database needed) ----

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTC calendar fields of a time: (year, month, day, hour, minute, second, millisecond).
pub(crate) fn utc_fields(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u32;
    (
        y,
        m,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis(),
    )
}

/// `yyyymmddTHHMMSSZ`.
pub fn amz_date(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = utc_fields(t);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// `yyyy-mm-ddTHH:MM:SS.sssZ`, the policy's `expiration` format.
pub fn iso8601_millis(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = utc_fields(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn from_fields(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Option<SystemTime> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(u64::from(ms)))
}

/// Parses `yyyy-mm-ddTHH:MM:SS[.fff]Z`.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-');
    let (y, mo, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let (h, mi, sec) = (num(tp.next()?)?, num(tp.next()?)?, num(tp.next()?)?);
    if tp.next().is_some() {
        return None;
    }
    let ms = match frac {
        Some(f) => {
            let digits: String = f.chars().take(3).collect();
            let v = num(&digits)?;
            v * 10u32.pow(3 - digits.len() as u32)
        }
        None => 0,
    };
    from_fields(y, mo, d, h, mi, sec, ms)
}

/// Parses `yyyymmddTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.is_ascii() || s.as_bytes().get(8) != Some(&b'T') || !s.ends_with('Z') {
        return None;
    }
    from_fields(
        num(&s[0..4])?,
        num(&s[4..6])?,
        num(&s[6..8])?,
        num(&s[9..11])?,
        num(&s[11..13])?,
        num(&s[13..15])?,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_matches_aws_documented_example() {
        // AWS SigV4 docs, "Examples of how to derive a signing key": secret
        // wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam.
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000) + Duration::from_millis(123);
        let iso = iso8601_millis(t);
        assert_eq!(parse_iso8601(&iso), Some(t));
        let amz = amz_date(t);
        assert_eq!(
            parse_amz_date(&amz),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        );
        assert_eq!(iso8601_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
    }

    fn creds() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "secret").with_session_token("tok")
    }

    fn lookup(ak: &str) -> Option<Credentials> {
        (ak == "AKIDEXAMPLE").then(creds)
    }

    #[test]
    fn signed_form_verifies_and_tampering_fails() {
        let now = SystemTime::now();
        let p = presign_post_at(
            &creds(),
            "af-south-1",
            "s3",
            "b",
            "k.wav",
            now,
            now + Duration::from_secs(60),
            Some(1..=100),
            &[],
        );
        let ok = verify_post(&p.fields, 10, "b", "af-south-1", "s3", now, lookup);
        assert_eq!(ok.map(|v| v.key), Ok("k.wav".to_string()));
        let big = verify_post(&p.fields, 101, "b", "af-south-1", "s3", now, lookup);
        assert_eq!(big.map_err(|e| e.code), Err("EntityTooLarge"));
        let wrong_bucket = verify_post(&p.fields, 10, "c", "af-south-1", "s3", now, lookup);
        assert_eq!(wrong_bucket.map_err(|e| e.code), Err("AccessDenied"));
        let later = now + Duration::from_secs(61);
        let expired = verify_post(&p.fields, 10, "b", "af-south-1", "s3", later, lookup);
        assert_eq!(expired.map_err(|e| e.code), Err("AccessDenied"));
        let mut t = p.fields.clone();
        for (n, v) in &mut t {
            if n == "x-amz-signature" {
                v.replace_range(0..1, if v.starts_with('0') { "1" } else { "0" });
            }
        }
        let bad = verify_post(&t, 10, "b", "af-south-1", "s3", now, lookup);
        assert_eq!(bad.map_err(|e| e.code), Err("SignatureDoesNotMatch"));
        let mut extra = p.fields.clone();
        extra.insert(1, ("acl".into(), "public-read".into()));
        let e = verify_post(&extra, 10, "b", "af-south-1", "s3", now, lookup);
        assert_eq!(e.map_err(|e| e.code), Err("AccessDenied"));
    }

    /// AWS's published SigV4 POST example ("Example: Browser-Based Upload using HTTP POST
    /// (Using AWS Signature Version 4)"): policy, credentials and signature as published.
    const AWS_POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";

    #[test]
    fn aws_published_post_example() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            sign_policy(secret, "20151229", "us-east-1", "s3", AWS_POLICY),
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
        let f = |a: &str, b: &str| (a.to_string(), b.to_string());
        let fields = vec![
            f("key", "user/user1/photo.jpg"),
            f("acl", "public-read"),
            f(
                "success_action_redirect",
                "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
            ),
            f("Content-Type", "image/jpeg"),
            f("x-amz-meta-uuid", "14365123651274"),
            f("x-amz-server-side-encryption", "AES256"),
            f(
                "X-Amz-Credential",
                "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
            ),
            f("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            f("X-Amz-Date", "20151229T000000Z"),
            f("x-amz-meta-tag", ""),
            f("Policy", AWS_POLICY),
            f(
                "X-Amz-Signature",
                "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e",
            ),
        ];
        let lookup =
            |ak: &str| (ak == "AKIAIOSFODNN7EXAMPLE").then(|| Credentials::new(ak, secret));
        let now = parse_iso8601("2015-12-29T00:00:00.000Z").unwrap();
        let v = verify_fields(
            &fields,
            "sigv4examplebucket",
            "us-east-1",
            "s3",
            now,
            lookup,
        );
        assert_eq!(v.map(|v| v.key), Ok("user/user1/photo.jpg".to_string()));
        // Outside the key prefix the policy allows.
        let mut other = fields.clone();
        other[0].1 = "user/user2/photo.jpg".into();
        let v = verify_fields(&other, "sigv4examplebucket", "us-east-1", "s3", now, lookup);
        assert_eq!(v.map_err(|e| e.code), Err("AccessDenied"));
        // After the policy's expiration (2015-12-30T12:00:00Z).
        let late = parse_iso8601("2015-12-30T12:00:01.000Z").unwrap();
        let v = verify_fields(
            &fields,
            "sigv4examplebucket",
            "us-east-1",
            "s3",
            late,
            lookup,
        );
        assert_eq!(
            v.map_err(|e| e.message),
            Err("Invalid according to Policy: Policy expired.".to_string())
        );
    }
}
