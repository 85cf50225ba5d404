//! Entry points for the fuzz targets in `fuzz/` (and for the tests that
//! replay their committed corpora on the project's own toolchain): each
//! takes arbitrary bytes, runs them through the parser an agent or an
//! upstream reaches, and panics only when a property the code promises
//! does not hold.

use bytes::Bytes;
use onecli_policy::SecretValue;
use pingora_http::RequestHeader;

use crate::proxy::{canonical_request, prepare_upstream_request, Target};
use crate::{auth, guidance, head, inject, sigv4};

/// The first request head of a connection, its CONNECT authority and its
/// `Proxy-Authorization`.
pub fn request_head(data: &[u8]) {
    if let Ok(Some(parsed)) = head::parse(data) {
        assert!(parsed.len <= data.len());
        let _ = head::split_authority(&parsed.target);
        let _ = head::parse_authority(&parsed.target, 443);
        if let Some(value) = parsed.proxy_authorization {
            let _ = auth::token_hash(&value);
        }
    }
    if let Ok(Some(parsed)) = head::parse_response(data) {
        assert!(parsed.len <= data.len());
    }
}

/// `Proxy-Authorization` values: never a token hash for what holds none.
pub fn proxy_authorization(data: &[u8]) {
    let _ = auth::token_hash(data);
}

/// The guidance rewrite of an upstream refusal, the body arriving in the
/// chunks the input says: a replaced body is the guidance, a kept one is
/// the upstream's, byte for byte.
pub fn guidance_rewrite(data: &[u8]) {
    let Some((&[status_hi, status_lo, cut], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let status = 400 + (u16::from(status_hi) << 8 | u16::from(status_lo)) % 10;
    let guidance = Bytes::from_static(b"{\"error\":\"credential_not_found\"}");
    let Some(mut rewrite) = guidance::BodyRewrite::for_status(status, guidance.clone()) else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let mut out = Vec::new();
    for (chunk, end) in [(&rest[..cut], false), (&rest[cut..], true)] {
        let mut body = Some(Bytes::copy_from_slice(chunk));
        rewrite.on_chunk(&mut body, end);
        out.extend_from_slice(body.as_deref().unwrap_or_default());
    }
    assert!(
        out == rest || out == guidance,
        "a body is either kept or replaced"
    );
    let _ = guidance::looks_like_auth_failure(rest);
}

/// A request an agent sends to an AWS host, signed: signing never panics,
/// the agent's own signature never survives it, and the signature never
/// comes back through the body scrubber, however the body is cut.
pub fn sigv4(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let target = if target.starts_with('/') { target } else { "/" };
    let Ok(mut req) = RequestHeader::build(method, target.as_bytes(), None) else {
        return;
    };
    for line in lines.by_ref().take(20) {
        if let Some((name, value)) = line.split_once(':') {
            let _ = req.append_header(name.trim().to_owned(), value.trim());
        }
    }
    let _ = req.insert_header("host", "s3.us-east-1.amazonaws.com");
    let secret = SecretValue::new("fuzz/Secret+Key0123456789".into());
    let token = SecretValue::new("fuzz-session-token".into());
    let key = sigv4::Key {
        access_key_id: "AKIAFUZZKEY000000000",
        secret_access_key: &secret,
        session_token: Some(&token),
        exact_host: false,
    };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let body = data.get(data.len() / 2..).unwrap_or_default();
    if let Ok(signature) = sigv4::sign(
        &mut req,
        "s3.us-east-1.amazonaws.com",
        &key,
        sigv4::Body::Known(body),
        now,
    ) {
        let auth = req.headers["authorization"].to_str().unwrap_or_default();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAFUZZKEY000000000/"));
        assert_eq!(req.headers.get_all("authorization").iter().count(), 1);
        let mut scrub = inject::BodyScrub::new(&signature).unwrap_or_else(|| unreachable!());
        let cut = data.len() % (data.len() / 3 + 1);
        let echoed = [data, signature.as_bytes(), data].concat();
        let mut out = scrub.feed(&echoed[..cut.min(echoed.len())], false);
        out.extend(scrub.feed(&echoed[cut.min(echoed.len())..], true));
        assert_eq!(out.len(), echoed.len());
        assert!(!out
            .windows(signature.len())
            .any(|w| w == signature.as_bytes()));
    }
}

/// One request through the gateway's handling of its head, as the agent
/// holding `token` sends it inside a TLS tunnel to `host:port`: the target
/// forwarded upstream and the ids of the secrets injected, or the refusal's
/// code. For the property that no spelling injects outside a secret's scope.
pub fn forward(
    snapshot: &onecli_policy::Snapshot,
    token: &onecli_policy::TokenHash,
    method: &str,
    target: &str,
    host: &str,
    port: u16,
) -> Result<(String, Vec<String>), &'static str> {
    let mut req =
        RequestHeader::build(method, target.as_bytes(), None).map_err(|_| "unparsable")?;
    canonical_request(&mut req).map_err(|refusal| refusal.code())?;
    let target = Target {
        host: onecli_policy::normalize_host(host).into_owned(),
        port,
        tls: true,
    };
    let injected =
        prepare_upstream_request(&mut req, &target, snapshot, token, inject::Body::Unread)
            .map_err(|refusal| refusal.code())?;
    Ok((
        String::from_utf8_lossy(req.raw_path()).into_owned(),
        injected.secret_ids,
    ))
}
