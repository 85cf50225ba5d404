//! AWS Signature Version 4 (SPEC §3.6, credential kinds): the agent signs
//! with placeholder keys; the gateway checks nothing of that signature,
//! drops it, and signs the request it forwards with the real key. Pure:
//! the time comes in.
//!
//! The region and service are those of the agent's own signature scope
//! (its SDK derives them from the endpoint: `bedrock-runtime.…` signs as
//! `bedrock`), else those the host names. The payload hash is the one the
//! agent declared in `x-amz-content-sha256` (S3: a hash, `UNSIGNED-PAYLOAD`,
//! or the unsigned streaming form with trailers); a wrong one fails at AWS,
//! which checks it. Without one, the gateway hashes the body itself.

use http::HeaderValue;
use onecli_policy::SecretValue;
use pingora_http::RequestHeader;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The SHA-256 of nothing: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Query parameters of a presigned URL: dropped, the request is signed in
/// its headers instead.
const PRESIGN_PARAMS: [&str; 7] = [
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
];

/// A service the host names and the one a signature names agree: the
/// same, or a signing name of the host's service (`iot` hosts sign as
/// `iotdata`).
fn same_service(host_service: &str, signed: &str) -> bool {
    host_service == signed
        || signed.strip_suffix("-fips") == Some(host_service)
        || host_service.strip_suffix("-fips") == Some(signed)
        || matches!(
            (host_service, signed),
            ("iot", "iotdata") | ("s3", "s3-object-lambda" | "s3express" | "s3-outposts")
        )
}

/// Declared payload hashes that leave the body as the agent sent it.
const PASS_THROUGH_PAYLOADS: [&str; 2] = ["UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"];

const SIGNED_CHUNKS: &str = "a body whose chunks are signed (x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD) cannot be signed again by the OneCLI gateway: let the AWS SDK send UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER, as it does over HTTPS by default";
const BAD_PAYLOAD_HASH: &str = "x-amz-content-sha256 must be a SHA-256 in hex, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER";
const NO_SCOPE: &str = "the request names no AWS region and service, in its signature or its host";
const BAD_HEADER_VALUE: &str = "a header the request signs holds characters other than visible ASCII, spaces and tabs: the OneCLI gateway does not sign what AWS might read differently";
const PAYLOAD_MISMATCH: &str = "x-amz-content-sha256 is not the SHA-256 of the body";
const CUSTOMER_HOST: &str = "this host serves what an AWS customer deployed (an API, a load balancer, an instance): the OneCLI gateway signs for it only when the secret's host pattern names it exactly";
const SCOPE_MISMATCH: &str = "the request's signature names another AWS service or region than its host: the OneCLI gateway signs with the stored key only for the service and region the host names";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// The body must be hashed before the request can be signed.
    #[error("the request body must be read to sign it")]
    NeedsBody,
    /// Chunk signatures in the body are chained to the agent's signature.
    #[error("{}", SIGNED_CHUNKS)]
    SignedChunks,
    #[error("{}", BAD_PAYLOAD_HASH)]
    BadPayloadHash,
    #[error("{}", NO_SCOPE)]
    NoScope,
    #[error("{}", SCOPE_MISMATCH)]
    ScopeMismatch,
    #[error("{}", BAD_HEADER_VALUE)]
    BadHeaderValue,
    #[error("{}", PAYLOAD_MISMATCH)]
    PayloadMismatch,
    #[error("{}", CUSTOMER_HOST)]
    CustomerHost,
}

impl SignError {
    /// What the agent is told (400).
    pub fn message(&self) -> &'static str {
        match self {
            SignError::NeedsBody => "the request body must be read to sign it",
            SignError::SignedChunks => SIGNED_CHUNKS,
            SignError::BadPayloadHash => BAD_PAYLOAD_HASH,
            SignError::NoScope => NO_SCOPE,
            SignError::ScopeMismatch => SCOPE_MISMATCH,
            SignError::BadHeaderValue => BAD_HEADER_VALUE,
            SignError::PayloadMismatch => PAYLOAD_MISMATCH,
            SignError::CustomerHost => CUSTOMER_HOST,
        }
    }
}

/// A real key to sign with.
pub struct Key<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a SecretValue,
    pub session_token: Option<&'a SecretValue>,
    /// The secret names one host (no `*`): it may sign for hosts whose
    /// content AWS customers control.
    pub exact_host: bool,
}

/// Services whose hosts serve what an AWS customer deploys (an API, a load
/// balancer, an instance, a search domain): such a host can log a request,
/// headers and signature included. A key signs for them only when its
/// secret names the host itself.
const CUSTOMER_HOSTS: [&str; 7] = [
    "execute-api",
    "elb",
    "compute",
    "compute-1",
    "es",
    "aoss",
    "appsync-api",
];

/// What the payload hash comes from when the agent declared none.
pub enum Body<'a> {
    /// Read and held: hashed.
    Known(&'a [u8]),
    /// Still to stream: fine only if the request has no body.
    Unread,
}

/// UTC time as SigV4 writes it: (`20150830T123600Z`, `20150830`).
pub fn amz_date(now: time::OffsetDateTime) -> (String, String) {
    let now = now.to_offset(time::UtcOffset::UTC);
    let day = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let full = format!(
        "{day}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    (full, day)
}

/// Signs `req` (origin-form, its `Host` set) for `host` with `key`; the
/// signature, which the gateway keeps out of what comes back.
pub fn sign(
    req: &mut RequestHeader,
    host: &str,
    key: &Key<'_>,
    body: Body<'_>,
    now: time::OffsetDateTime,
) -> Result<String, SignError> {
    let agent = agent_signature(req);
    strip_presigned_query(req);
    let named = scope_of_host(host);
    let (region, service) = match (&agent, &named) {
        (Some(a), _) => (a.region.clone(), a.service.clone()),
        (None, Some(named)) => named.clone(),
        (None, None) => return Err(SignError::NoScope),
    };
    // A signature is good for the service it names, wherever it is sent:
    // one for STS sent to a host that logs requests (an API Gateway, an
    // instance) could be replayed at STS. The key signs only for the
    // service the host is, and in its region when it names one.
    if let Some((host_region, host_service)) = &named {
        let region_named = host.split('.').any(|l| l == host_region.as_str())
            || host.contains(&format!("s3-{host_region}."));
        if !same_service(host_service, &service) || (region_named && *host_region != region) {
            return Err(SignError::ScopeMismatch);
        }
        if !key.exact_host && CUSTOMER_HOSTS.contains(&host_service.as_str()) {
            return Err(SignError::CustomerHost);
        }
    }
    let payload = payload_hash(req, &service, body)?;
    let (amz_date, day) = amz_date(now);
    req.remove_header("authorization");
    req.remove_header("x-amz-security-token");
    set(req, "x-amz-date", &amz_date, false);
    if let Some(token) = key.session_token {
        set(req, "x-amz-security-token", token.expose(), true);
    }
    let signed = signed_headers(req, agent.as_ref().map(|a| a.signed_headers.as_slice()));
    let canonical = canonical_request(req, &service, &signed, &payload)?;
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let signing_key = signing_key(key.secret_access_key, &day, &region, &service);
    let signature = hex::encode(hmac(&*signing_key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        key.access_key_id,
        signed.join(";")
    );
    set(req, "authorization", &authorization, true);
    Ok(signature)
}

fn set(req: &mut RequestHeader, name: &'static str, value: &str, sensitive: bool) {
    // Every value set here is built from checked ASCII.
    if let Ok(mut value) = HeaderValue::from_str(value) {
        value.set_sensitive(sensitive);
        let _ = req.insert_header(name, value);
    }
}

/// The scope and signed headers of the agent's signature, in the
/// `Authorization` header or a presigned URL's query.
struct AgentSignature {
    region: String,
    service: String,
    signed_headers: Vec<String>,
}

fn agent_signature(req: &RequestHeader) -> Option<AgentSignature> {
    let (credential, signed) = match req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(ALGORITHM))
    {
        Some(fields) => {
            let field = |name: &str| {
                fields
                    .split(',')
                    .filter_map(|f| f.trim().split_once('='))
                    .find(|(k, _)| k.trim() == name)
                    .map(|(_, v)| v.trim().to_owned())
            };
            (
                field("Credential")?,
                field("SignedHeaders").unwrap_or_default(),
            )
        }
        None => {
            let query = query_pairs(req);
            let get = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| String::from_utf8_lossy(&percent_decode(v)).into_owned())
            };
            (
                get("X-Amz-Credential")?,
                get("X-Amz-SignedHeaders").unwrap_or_default(),
            )
        }
    };
    // AKID/20150830/us-east-1/service/aws4_request
    let mut parts = credential.rsplit('/');
    let (terminator, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if terminator != "aws4_request" || !ok(service) || !ok(region) {
        return None;
    }
    Some(AgentSignature {
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
    })
}

/// The region and signing name a host under `amazonaws.com` names:
/// `s3.us-west-2.amazonaws.com`, `bucket.s3.us-west-2.amazonaws.com`,
/// `sts.amazonaws.com` (global: us-east-1).
pub fn scope_of_host(host: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let inner = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let labels: Vec<&str> = inner.split('.').collect();
    let is_region = |l: &str| {
        let parts: Vec<&str> = l.split('-').collect();
        parts.len() >= 3
            && parts[0].len() == 2
            && parts[0].bytes().all(|b| b.is_ascii_lowercase())
            && parts.last().is_some_and(|n| n.parse::<u8>().is_ok())
    };
    let (service, region) = match labels.iter().rposition(|l| is_region(l)) {
        // `search-d.us-east-1.es`, `id.us-east-1.aoss`: the service after.
        Some(i) if i + 1 < labels.len() => (labels[i + 1], labels[i]),
        Some(0) => return None,
        Some(i) => (labels[i - 1], labels[i]),
        None => {
            let last = *labels.last()?;
            // The legacy `s3-us-west-2.amazonaws.com`.
            match last.strip_prefix("s3-").filter(|r| is_region(r)) {
                Some(region) => ("s3", region),
                None => (last, "us-east-1"),
            }
        }
    };
    // Buckets and legacy S3 endpoints: `s3-us-west-2`, `s3-external-1`.
    let service = if service.starts_with("s3-") || labels.contains(&"s3") {
        "s3"
    } else {
        match service {
            "bedrock-runtime" | "bedrock-agent-runtime" | "bedrock-agent" => "bedrock",
            "email" => "ses",
            other => other,
        }
    };
    Some((region.to_owned(), service.to_owned()))
}

fn payload_hash(
    req: &mut RequestHeader,
    service: &str,
    body: Body<'_>,
) -> Result<String, SignError> {
    if let Some(declared) = req.headers.get("x-amz-content-sha256") {
        let declared = declared
            .to_str()
            .map_err(|_| SignError::BadPayloadHash)?
            .to_owned();
        if declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit()) {
            let declared = declared.to_ascii_lowercase();
            // A body the gateway holds is the one signed for.
            if let Body::Known(bytes) = body {
                if hex::encode(Sha256::digest(bytes)) != declared {
                    return Err(SignError::PayloadMismatch);
                }
            }
            set(req, "x-amz-content-sha256", &declared, false);
            return Ok(declared);
        }
        if declared == "UNSIGNED-PAYLOAD" {
            if let Body::Known(bytes) = body {
                // Held: signed for exactly this body.
                let hash = hex::encode(Sha256::digest(bytes));
                set(req, "x-amz-content-sha256", &hash, false);
                return Ok(hash);
            }
        }
        if PASS_THROUGH_PAYLOADS.contains(&declared.as_str()) {
            return Ok(declared);
        }
        if declared.starts_with("STREAMING-") {
            return Err(SignError::SignedChunks);
        }
        return Err(SignError::BadPayloadHash);
    }
    let hash = match body {
        Body::Known(bytes) => hex::encode(Sha256::digest(bytes)),
        Body::Unread if has_no_body(req) => EMPTY_SHA256.to_owned(),
        Body::Unread => return Err(SignError::NeedsBody),
    };
    // S3 wants the hash in a header as well.
    if service == "s3" {
        set(req, "x-amz-content-sha256", &hash, false);
    }
    Ok(hash)
}

/// No `Transfer-Encoding` and no `Content-Length` but 0.
pub fn has_no_body(req: &RequestHeader) -> bool {
    !req.headers.contains_key("transfer-encoding")
        && req
            .headers
            .get("content-length")
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// The headers to sign, sorted: what the agent signed that is still there,
/// and always `host` and the `x-amz-*` headers the signature rests on.
fn signed_headers(req: &RequestHeader, agent: Option<&[String]>) -> Vec<String> {
    let present = |name: &str| req.headers.contains_key(name);
    let mut names: Vec<String> = match agent {
        Some(list) => list
            .iter()
            .filter(|h| h.as_str() != "authorization" && present(h))
            .cloned()
            .collect(),
        None => req
            .headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("x-amz-") || k == "content-type" || k == "content-md5")
            .collect(),
    };
    for always in [
        "host",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ] {
        if present(always) && !names.iter().any(|n| n == always) {
            names.push(always.to_owned());
        }
    }
    names.sort();
    names.dedup();
    names
}

fn canonical_request(
    req: &RequestHeader,
    service: &str,
    signed: &[String],
    payload: &str,
) -> Result<String, SignError> {
    let raw = req.raw_path();
    let split = raw.iter().position(|&b| b == b'?').unwrap_or(raw.len());
    let path = String::from_utf8_lossy(&raw[..split]);
    let uri = if service.starts_with("s3") {
        // S3 signs the path decoded and encoded once, nothing dropped.
        if path.is_empty() {
            "/".to_owned()
        } else {
            uri_encode(percent_decode(&path), true)
        }
    } else {
        // Every other service: empty segments dropped, then encoded again.
        uri_encode(collapse_slashes(&path), true)
    };
    let mut out = String::with_capacity(256);
    out.push_str(req.method.as_str());
    out.push('\n');
    out.push_str(&uri);
    out.push('\n');
    out.push_str(&canonical_query(req));
    out.push('\n');
    for name in signed {
        let mut values = Vec::new();
        for value in req.headers.get_all(name.as_str()) {
            let bytes = value.as_bytes();
            // Only what every reader folds the same way is signed.
            if !bytes
                .iter()
                .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
            {
                return Err(SignError::BadHeaderValue);
            }
            let text = String::from_utf8_lossy(bytes);
            values.push(
                text.split([' ', '\t'])
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(payload);
    Ok(out)
}

fn collapse_slashes(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = String::from("/");
    out.push_str(&segments.join("/"));
    if path.len() > 1 && path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The query's pairs, as sent (still percent-encoded).
fn query_pairs(req: &RequestHeader) -> Vec<(String, String)> {
    let raw = req.raw_path();
    let Some(i) = raw.iter().position(|&b| b == b'?') else {
        return Vec::new();
    };
    String::from_utf8_lossy(&raw[i + 1..])
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// Each name and value decoded and encoded again the way SigV4 encodes
/// (unreserved characters only), sorted by name, then value.
fn canonical_query(req: &RequestHeader) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(req)
        .into_iter()
        .map(|(k, v)| {
            (
                uri_encode(percent_decode(&k), false),
                uri_encode(percent_decode(&v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A presigned URL's own signature leaves the query: the request is signed
/// in its headers.
fn strip_presigned_query(req: &mut RequestHeader) {
    let raw = req.raw_path().to_vec();
    let Some(i) = raw.iter().position(|&b| b == b'?') else {
        return;
    };
    let query = String::from_utf8_lossy(&raw[i + 1..]).into_owned();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default().to_ascii_lowercase();
            !PRESIGN_PARAMS.contains(&name.as_str())
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return;
    }
    let mut target = raw[..i].to_vec();
    if !kept.is_empty() {
        target.push(b'?');
        target.extend_from_slice(kept.join("&").as_bytes());
    }
    let _ = req.set_raw_path(&target);
}

pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// SigV4's URI encoding: unreserved characters as they are (and `/` when
/// `keep_slash`), every other byte `%XX`.
fn uri_encode(s: impl AsRef<[u8]>, keep_slash: bool) -> String {
    let mut out = String::new();
    for &b in s.as_ref() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn signing_key(
    secret: &SecretValue,
    day: &str,
    region: &str,
    service: &str,
) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new(String::with_capacity(4 + secret.len()));
    seed.push_str("AWS4");
    seed.push_str(secret.expose());
    let k_date = Zeroizing::new(hmac(seed.as_bytes(), day.as_bytes()));
    let k_region = Zeroizing::new(hmac(&*k_date, region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&*k_region, service.as_bytes()));
    Zeroizing::new(hmac(&*k_service, b"aws4_request"))
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = Zeroizing::new([0u8; 64]);
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| {
        let mut p = Zeroizing::new([0u8; 64]);
        for (o, k) in p.iter_mut().zip(block.iter()) {
            *o = k ^ byte;
        }
        p
    };
    let (inner_pad, outer_pad) = (pad(0x36), pad(0x5c));
    let inner = Sha256::new()
        .chain_update(inner_pad.as_slice())
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_pad.as_slice())
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(ts: &str) -> time::OffsetDateTime {
        // 20150830T123600Z
        let n = |r: std::ops::Range<usize>| ts[r].parse::<u32>().expect("digits");
        let date = time::Date::from_calendar_date(
            n(0..4) as i32,
            time::Month::try_from(n(4..6) as u8).expect("month"),
            n(6..8) as u8,
        )
        .expect("date");
        date.with_hms(n(9..11) as u8, n(11..13) as u8, n(13..15) as u8)
            .expect("time")
            .assume_utc()
    }

    fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    fn signature_of(r: &RequestHeader) -> String {
        let auth = r
            .headers
            .get("authorization")
            .expect("signed")
            .to_str()
            .expect("ascii");
        auth.rsplit("Signature=")
            .next()
            .expect("signature")
            .to_owned()
    }

    fn sign_as_example(r: &mut RequestHeader, body: Body<'_>) {
        let secret = SecretValue::new(SECRET.into());
        let key = Key {
            access_key_id: AKID,
            secret_access_key: &secret,
            session_token: None,
            exact_host: false,
        };
        // The agent's placeholder signature names the suite's scope.
        r.insert_header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=PLACEHOLDER/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )
        .expect("header");
        // The suite's made-up service is checked against no host.
        sign(r, "example.internal", &key, body, at("20150830T123600Z")).expect("sign");
    }

    /// AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite).
    #[test]
    fn the_aws_test_suite_signatures_come_out() {
        let mut get = req("GET", "/", &[("host", "example.amazonaws.com")]);
        sign_as_example(&mut get, Body::Unread);
        assert_eq!(
            signature_of(&get),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(
            get.headers["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(get.headers["x-amz-date"], "20150830T123600Z");

        let mut post = req("POST", "/", &[("host", "example.amazonaws.com")]);
        sign_as_example(&mut post, Body::Unread);
        assert_eq!(
            signature_of(&post),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );

        // get-vanilla-query-order-key-case: sorted by name, then value.
        let mut query = req(
            "GET",
            "/?Param2=value2&Param1=value1",
            &[("host", "example.amazonaws.com")],
        );
        sign_as_example(&mut query, Body::Unread);
        assert_eq!(
            signature_of(&query),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn the_payload_hash_is_the_declared_one_or_the_body_s() {
        let secret = SecretValue::new(SECRET.into());
        let key = Key {
            access_key_id: AKID,
            secret_access_key: &secret,
            session_token: None,
            exact_host: false,
        };
        let now = at("20150830T123600Z");
        let s3 = |extra: &[(&str, &str)]| {
            let mut h = vec![
                ("host", "s3.us-east-1.amazonaws.com"),
                ("content-length", "5"),
            ];
            h.extend_from_slice(extra);
            req("PUT", "/bucket/key", &h)
        };
        // Declared: kept as declared.
        let mut r = s3(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        sign(
            &mut r,
            "s3.us-east-1.amazonaws.com",
            &key,
            Body::Unread,
            now,
        )
        .expect("unsigned payload");
        assert!(r.headers["authorization"]
            .to_str()
            .expect("ascii")
            .contains("x-amz-content-sha256"));
        // A body that streams and is not declared must be read first.
        let mut r = s3(&[]);
        assert_eq!(
            sign(
                &mut r,
                "s3.us-east-1.amazonaws.com",
                &key,
                Body::Unread,
                now
            ),
            Err(SignError::NeedsBody)
        );
        let mut r = s3(&[]);
        sign(
            &mut r,
            "s3.us-east-1.amazonaws.com",
            &key,
            Body::Known(b"hello"),
            now,
        )
        .expect("hashed");
        assert_eq!(
            r.headers["x-amz-content-sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        // Chunks signed against the agent's signature cannot be re-signed.
        let mut r = s3(&[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")]);
        assert!(matches!(
            sign(
                &mut r,
                "s3.us-east-1.amazonaws.com",
                &key,
                Body::Unread,
                now
            ),
            Err(SignError::SignedChunks)
        ));
        let mut r = s3(&[("x-amz-content-sha256", "nonsense")]);
        assert_eq!(
            sign(
                &mut r,
                "s3.us-east-1.amazonaws.com",
                &key,
                Body::Unread,
                now
            ),
            Err(SignError::BadPayloadHash)
        );
    }

    #[test]
    fn the_agent_s_signature_and_token_never_go_upstream() {
        let secret = SecretValue::new(SECRET.into());
        let token = SecretValue::new("real-session-token".into());
        let key = Key {
            access_key_id: "AKIAREALKEYID0000000",
            secret_access_key: &secret,
            session_token: Some(&token),
            exact_host: false,
        };
        let mut r = req(
            "GET",
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=PLACEHOLDER%2F20250101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=abc&X-Amz-Security-Token=placeholder&versionId=3",
            &[("host", "s3.eu-west-1.amazonaws.com")],
        );
        sign(
            &mut r,
            "s3.eu-west-1.amazonaws.com",
            &key,
            Body::Unread,
            at("20261201T080000Z"),
        )
        .expect("sign");
        assert_eq!(r.raw_path(), b"/b/k?versionId=3");
        assert_eq!(r.headers["x-amz-security-token"], "real-session-token");
        assert!(r.headers["x-amz-security-token"].is_sensitive());
        let auth = r.headers["authorization"].to_str().expect("ascii");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAREALKEYID0000000/20261201/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "), "{auth}");
    }

    #[test]
    fn a_signature_for_another_service_than_the_host_is_refused() {
        let secret = SecretValue::new(SECRET.into());
        let key = Key {
            access_key_id: AKID,
            secret_access_key: &secret,
            session_token: None,
            exact_host: false,
        };
        let now = at("20261201T080000Z");
        let signed_as = |scope: &str, host: &str| {
            let mut r = req("GET", "/", &[("host", host)]);
            r.insert_header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=P/20261201/{scope}/aws4_request, SignedHeaders=host, Signature=00"),
            )
            .expect("header");
            sign(&mut r, host, &key, Body::Unread, now).map(|_| ())
        };
        // An STS signature sent to a host that could log and replay it.
        for host in [
            "abc123defg.execute-api.us-east-1.amazonaws.com",
            "ec2-1-2-3-4.compute-1.amazonaws.com",
            "sts.s3.us-east-1.amazonaws.com",
        ] {
            assert_eq!(
                signed_as("us-east-1/sts", host),
                Err(SignError::ScopeMismatch),
                "{host}"
            );
        }
        // Another region than the host names.
        assert_eq!(
            signed_as("eu-west-1/s3", "s3.us-east-1.amazonaws.com"),
            Err(SignError::ScopeMismatch)
        );
        // What the host is.
        assert_eq!(signed_as("us-east-1/sts", "sts.amazonaws.com"), Ok(()));
        assert_eq!(
            signed_as("eu-west-1/sts", "sts.amazonaws.com"),
            Ok(()),
            "a global endpoint names no region"
        );
        assert_eq!(
            signed_as(
                "us-east-1/bedrock",
                "bedrock-runtime.us-east-1.amazonaws.com"
            ),
            Ok(())
        );
        assert_eq!(
            signed_as("us-west-2/iotdata", "abc-ats.iot.us-west-2.amazonaws.com"),
            Ok(())
        );
        // A customer's API: only for a secret that names that host.
        let api = "abc123defg.execute-api.us-east-1.amazonaws.com";
        assert_eq!(
            signed_as("us-east-1/execute-api", api),
            Err(SignError::CustomerHost)
        );
        let exact = Key {
            exact_host: true,
            ..key
        };
        let mut r = req("GET", "/", &[("host", api)]);
        r.insert_header("authorization", "AWS4-HMAC-SHA256 Credential=P/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00")
            .expect("header");
        assert!(sign(&mut r, api, &exact, Body::Unread, now).is_ok());
        // Hosts outside amazonaws.com (MinIO, LocalStack): the operator's pattern decides.
        assert_eq!(signed_as("us-east-1/s3", "minio.internal"), Ok(()));
    }

    #[test]
    fn what_aws_might_read_differently_is_not_signed() {
        let secret = SecretValue::new(SECRET.into());
        let key = Key {
            access_key_id: AKID,
            secret_access_key: &secret,
            session_token: None,
            exact_host: false,
        };
        let now = at("20261201T080000Z");
        let host = "s3.us-east-1.amazonaws.com";
        let put = |headers: &[(&str, &str)]| {
            let mut h = vec![("host", host), ("content-length", "5")];
            h.extend_from_slice(headers);
            let mut r = req("PUT", "/b/k", &h);
            r.insert_header("authorization", "AWS4-HMAC-SHA256 Credential=P/20261201/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-meta-a;x-amz-content-sha256, Signature=00")
                .expect("header");
            r
        };
        // A non-breaking space, which some readers fold and others keep.
        let mut r = put(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        r.insert_header(
            "x-amz-meta-a",
            http::HeaderValue::from_bytes(b"a\xc2\xa0b").expect("value"),
        )
        .expect("header");
        assert_eq!(
            sign(&mut r, host, &key, Body::Unread, now),
            Err(SignError::BadHeaderValue)
        );
        // Spaces and tabs fold to one space, as AWS folds them.
        let mut r = put(&[
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-meta-a", "a \t  b"),
        ]);
        assert!(sign(&mut r, host, &key, Body::Unread, now).is_ok());
        // A held body is signed for itself: a declared hash must be its own,
        // and an unsigned payload becomes its hash.
        let other = "0000000000000000000000000000000000000000000000000000000000000000";
        let mut r = put(&[("x-amz-content-sha256", other), ("x-amz-meta-a", "a")]);
        assert_eq!(
            sign(&mut r, host, &key, Body::Known(b"hello"), now),
            Err(SignError::PayloadMismatch)
        );
        let mut r = put(&[
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-meta-a", "a"),
        ]);
        sign(&mut r, host, &key, Body::Known(b"hello"), now).expect("signed");
        assert_eq!(
            r.headers["x-amz-content-sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        // A presigned URL's scope is read decoded, for a host that names none.
        let mut r = req(
            "GET",
            "/b/k?X-Amz-Credential=P%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=00",
            &[("host", "minio.internal")],
        );
        sign(&mut r, "minio.internal", &key, Body::Unread, now).expect("signed");
        assert!(r.headers["authorization"]
            .to_str()
            .expect("ascii")
            .contains("/us-east-1/s3/aws4_request"));
    }

    #[test]
    fn a_signature_in_a_body_is_replaced_across_chunks() {
        let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let body =
            format!("<Error><SignatureProvided>{sig}</SignatureProvided><X>{sig}</X></Error>");
        for split in [0, 1, 30, 40, 60, 100, body.len()] {
            let mut scrub = crate::inject::BodyScrub::new(sig).expect("scrub");
            let (a, b) = body.as_bytes().split_at(split.min(body.len()));
            let mut out = scrub.feed(a, false);
            out.extend(scrub.feed(b, false));
            out.extend(scrub.feed(&[], true));
            let out = String::from_utf8(out).expect("utf8");
            assert_eq!(out.len(), body.len(), "same length");
            assert!(!out.contains(sig), "{split}: {out}");
            assert_eq!(out.matches("onecli-redacted").count(), 2);
        }
    }

    #[test]
    fn hosts_name_their_region_and_service() {
        let scope = |h: &str| scope_of_host(h).map(|(r, s)| format!("{r}/{s}"));
        assert_eq!(
            scope("s3.us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2/s3")
        );
        assert_eq!(
            scope("my-bucket.s3.eu-central-1.amazonaws.com").as_deref(),
            Some("eu-central-1/s3")
        );
        assert_eq!(
            scope("bedrock-runtime.us-east-1.amazonaws.com").as_deref(),
            Some("us-east-1/bedrock")
        );
        assert_eq!(scope("sts.amazonaws.com").as_deref(), Some("us-east-1/sts"));
        assert_eq!(
            scope("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2/s3")
        );
        assert_eq!(
            scope("s3-external-1.amazonaws.com").as_deref(),
            Some("us-east-1/s3")
        );
        assert_eq!(
            scope("search-logs-x.eu-west-1.es.amazonaws.com").as_deref(),
            Some("eu-west-1/es")
        );
        assert_eq!(
            scope("abc.iot.us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2/iot")
        );
        assert_eq!(scope("example.com"), None);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
