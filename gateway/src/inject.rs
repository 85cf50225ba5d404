//! Credential injection (SPEC §3.6): applies the recipes of the matching
//! secrets to the upstream request. Header values are replaced, never merged.

use http::HeaderValue;
use onecli_policy::{InjectOp, Secret};
use pingora_http::{RequestHeader, ResponseHeader};
use zeroize::Zeroizing;

use crate::sigv4;
pub use crate::sigv4::Body;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    /// The secret's formatted value is not a valid header value (say, a
    /// newline in it). The name is the secret's, never its value.
    #[error("secret {secret:?} cannot be sent in header {header}: the value contains characters not allowed in a header")]
    BadHeaderValue { secret: String, header: String },
    #[error("the request target cannot carry secret {secret:?} as a query parameter")]
    BadTarget { secret: String },
    #[error("the request target cannot carry secret {secret:?} in its path")]
    BadPath { secret: String },
    /// The agent's AWS request cannot be signed as it is (a 400).
    #[error("secret {secret:?}: {error}")]
    Sign {
        secret: String,
        error: crate::sigv4::SignError,
    },
}

/// What an injection did, for the audit log and for scrubbing responses.
#[derive(Default)]
pub struct Injected {
    /// Ids of the secrets applied, in order.
    pub secret_ids: Vec<String>,
    /// Credentials placed in the URL (query string or path),
    /// percent-encoded as sent and as the plain value: an upstream may
    /// reflect them in a redirect, which must not reach the agent.
    pub url_values: Vec<Zeroizing<String>>,
    /// Headers the secrets set or removed: a reviewer never sees them.
    pub header_names: Vec<String>,
    /// An AWS signature the gateway made: good for its request for minutes,
    /// so kept out of response headers and bodies (AWS's
    /// `SignatureDoesNotMatch` quotes it).
    pub signature: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field("secret_ids", &self.secret_ids)
            .field(
                "url_values",
                &format_args!("<{} redacted>", self.url_values.len()),
            )
            .finish()
    }
}

/// Applies `secrets` in order; an AWS signature last, over everything
/// else. `body` is the request's, when it was read before.
pub fn apply<'a>(
    req: &mut RequestHeader,
    secrets: impl Iterator<Item = &'a Secret>,
    host: &str,
    body: Body<'_>,
) -> Result<Injected, InjectError> {
    let mut injected = Injected::default();
    let mut signer: Option<(&Secret, &str)> = None;
    for secret in secrets {
        // A path template that does not fit the path injects nothing.
        let mut applied = false;
        for op in &secret.ops {
            applied |= !matches!(op, InjectOp::SetPath(_));
            match op {
                InjectOp::SetHeader { name, format } => {
                    let bad = || InjectError::BadHeaderValue {
                        secret: secret.name.clone(),
                        header: name.clone(),
                    };
                    let rendered = format.render(secret.value());
                    let mut value = HeaderValue::from_str(&rendered).map_err(|_| bad())?;
                    value.set_sensitive(true);
                    req.insert_header(name.clone(), value).map_err(|_| bad())?;
                    injected.header_names.push(name.clone());
                }
                InjectOp::RemoveHeader { name } => {
                    req.remove_header(name.as_str());
                    injected.header_names.push(name.clone());
                }
                InjectOp::SetQuery { name, format } => {
                    let rendered = format.render(secret.value());
                    let encoded = Zeroizing::new(percent_encode(&rendered));
                    let target = Zeroizing::new(set_query_param(req.raw_path(), name, &encoded));
                    req.set_raw_path(&target)
                        .map_err(|_| InjectError::BadTarget {
                            secret: secret.name.clone(),
                        })?;
                    for plain in [rendered, Zeroizing::new(secret.value().expose().to_owned())] {
                        if !plain.is_empty()
                            && *plain != *encoded
                            && !injected.url_values.contains(&plain)
                        {
                            injected.url_values.push(plain);
                        }
                    }
                    injected.url_values.push(encoded);
                }
                InjectOp::AddToList { name, token } => {
                    let listed: Vec<String> = req
                        .headers
                        .get_all(name.as_str())
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(','))
                        .map(|item| item.trim().to_owned())
                        .filter(|item| !item.is_empty())
                        .collect();
                    if !listed.iter().any(|item| item.eq_ignore_ascii_case(token)) {
                        let mut all = listed;
                        all.push(token.clone());
                        put_header(req, secret, name, &all.join(","))?;
                    }
                }
                InjectOp::SetHeaderText { name, value } => {
                    put_header(req, secret, name, value)?;
                    injected.header_names.push(name.clone());
                }
                // One signature: the first key that applies signs.
                InjectOp::SignAws { access_key_id } => {
                    if signer.is_none() {
                        signer = Some((secret, access_key_id));
                    } else {
                        applied = false;
                    }
                }
                InjectOp::SetPath(rewrite) => {
                    let target = req.raw_path().to_vec();
                    let split = target
                        .iter()
                        .position(|&b| b == b'?')
                        .unwrap_or(target.len());
                    let Ok(path) = std::str::from_utf8(&target[..split]) else {
                        continue;
                    };
                    // A path the template does not fit keeps its placeholder.
                    let Some(mut rewritten) = rewrite.apply(path, secret.value()) else {
                        continue;
                    };
                    rewritten.push_str(&String::from_utf8_lossy(&target[split..]));
                    req.set_raw_path(rewritten.as_bytes())
                        .map_err(|_| InjectError::BadPath {
                            secret: secret.name.clone(),
                        })?;
                    applied = true;
                    // Path-safe values travel as they are.
                    let plain = Zeroizing::new(secret.value().expose().to_owned());
                    if !injected.url_values.contains(&plain) {
                        injected.url_values.push(plain);
                    }
                }
            }
        }
        if applied {
            injected.secret_ids.push(secret.id.clone());
        }
    }
    if let Some((secret, access_key_id)) = signer {
        let key = sigv4::Key {
            access_key_id,
            secret_access_key: secret.value(),
            session_token: secret.session_token(),
            exact_host: secret.host.is_exact(),
        };
        let signature = sigv4::sign(req, host, &key, body, time::OffsetDateTime::now_utc())
            .map_err(|error| InjectError::Sign {
                secret: secret.name.clone(),
                error,
            })?;
        let signature = Zeroizing::new(signature);
        injected.url_values.push(signature.clone());
        injected.signature = Some(signature);
        injected.header_names.extend([
            "authorization".to_owned(),
            "x-amz-security-token".to_owned(),
        ]);
    }
    Ok(injected)
}

/// Sets a header that holds no secret value; an error names the secret.
fn put_header(
    req: &mut RequestHeader,
    secret: &Secret,
    name: &str,
    value: &str,
) -> Result<(), InjectError> {
    let bad = || InjectError::BadHeaderValue {
        secret: secret.name.clone(),
        header: name.to_owned(),
    };
    let value = HeaderValue::from_str(value).map_err(|_| bad())?;
    req.insert_header(name.to_owned(), value)
        .map_err(|_| bad())?;
    Ok(())
}

/// Whether injecting `secrets` into a request that has a body needs the
/// body first: an AWS signature over a body the agent declared no hash for.
pub fn needs_body<'a>(req: &RequestHeader, mut secrets: impl Iterator<Item = &'a Secret>) -> bool {
    !req.headers.contains_key("x-amz-content-sha256")
        && secrets.any(|s| {
            s.ops
                .iter()
                .any(|op| matches!(op, InjectOp::SignAws { .. }))
        })
}

/// Replaces credentials the gateway put in the URL (query or path)
/// wherever the upstream reflected them into a response header: every value of every
/// header (`Location`, `Content-Location`, `Link` and `Refresh` carry URLs;
/// any other may echo the request), read as bytes, so that no second value
/// and no non-UTF-8 value slips through. A URL still works through the
/// gateway, which injects the real value again.
pub fn scrub_reflected(resp: &mut ResponseHeader, url_values: &[Zeroizing<String>]) {
    if url_values.is_empty() {
        return;
    }
    let reflects = |value: &[u8]| {
        url_values
            .iter()
            .any(|q| !q.is_empty() && find(value, q.as_bytes()).is_some())
    };
    let names: Vec<http::HeaderName> = resp
        .headers
        .iter()
        .filter(|(_, value)| reflects(value.as_bytes()))
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        let values: Vec<Vec<u8>> = resp
            .headers
            .get_all(&name)
            .iter()
            .map(|value| {
                let mut scrubbed = value.as_bytes().to_vec();
                for q in url_values {
                    scrubbed = replace_all(&scrubbed, q.as_bytes(), REDACTED.as_bytes());
                }
                scrubbed
            })
            .collect();
        resp.remove_header(&name);
        for value in values {
            // Replacing bytes of a valid header value with ASCII keeps it
            // valid; a value that somehow is not is dropped, never kept.
            if let Ok(value) = http::HeaderValue::from_bytes(&value) {
                let _ = resp.append_header(name.clone(), value);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(i) = find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

pub const REDACTED: &str = "onecli-redacted";

/// Replaces a value (an AWS signature) in a streamed response body with a
/// marker of the same length, so the body keeps its framing. A match split
/// across chunks is found: the last bytes that could start one wait for
/// the next chunk.
pub struct BodyScrub {
    needle: Zeroizing<Vec<u8>>,
    held: Vec<u8>,
}

impl BodyScrub {
    pub fn new(value: &str) -> Option<BodyScrub> {
        (!value.is_empty()).then(|| BodyScrub {
            needle: Zeroizing::new(value.as_bytes().to_vec()),
            held: Vec::new(),
        })
    }

    /// The scrubbed bytes of `chunk` that may go out now (all at the end).
    pub fn feed(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        let n = self.needle.len();
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(chunk);
        let keep = if end { 0 } else { n - 1 };
        let limit = data.len().saturating_sub(keep);
        let marker: Vec<u8> = REDACTED
            .bytes()
            .chain(std::iter::repeat(b'-'))
            .take(n)
            .collect();
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < limit {
            match data[i..limit].iter().position(|&b| b == self.needle[0]) {
                None => {
                    out.extend_from_slice(&data[i..limit]);
                    i = limit;
                }
                Some(at) => {
                    out.extend_from_slice(&data[i..i + at]);
                    i += at;
                    if data[i..].starts_with(&self.needle) {
                        out.extend_from_slice(&marker);
                        i += n;
                    } else {
                        out.push(data[i]);
                        i += 1;
                    }
                }
            }
        }
        self.held = data[i.min(data.len())..].to_vec();
        if end {
            out.append(&mut self.held);
        }
        out
    }
}

/// `path?query` with `name` set to `encoded_value`: existing parameters of
/// that name are dropped, the new one appended.
fn set_query_param(target: &[u8], name: &str, encoded_value: &str) -> Vec<u8> {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    let encoded_name = percent_encode(name);
    let mut out = Vec::with_capacity(target.len() + name.len() + encoded_value.len() + 2);
    out.extend_from_slice(path);
    out.push(b'?');
    if let Some(query) = query {
        for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
            if key == name.as_bytes() || key == encoded_name.as_bytes() {
                continue;
            }
            out.extend_from_slice(pair);
            out.push(b'&');
        }
    }
    out.extend_from_slice(encoded_name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(encoded_value.as_bytes());
    out
}

/// RFC 3986 unreserved characters pass; everything else is `%XX`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use onecli_policy::model::{InjectionDoc, SecretDoc, SecretKind};
    use onecli_policy::{PolicyDoc, Snapshot};

    fn snapshot(secrets: Vec<(SecretKind, &str, Option<InjectionDoc>)>) -> Snapshot {
        let secrets = secrets
            .into_iter()
            .enumerate()
            .map(|(i, (kind, value, injection))| SecretDoc {
                project: onecli_policy::model::default_project(),
                id: format!("s{i}"),
                name: format!("s{i}"),
                kind,
                value: zeroize::Zeroizing::new(value.into()),
                host_pattern: "h.test".into(),
                path_pattern: "*".into(),
                injection,
                allow_plaintext: false,
            })
            .collect();
        Snapshot::compile(PolicyDoc {
            secrets,
            ..PolicyDoc::default()
        })
        .expect("valid")
    }

    fn request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).expect("req");
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).expect("header");
        }
        req
    }

    fn header(req: &RequestHeader, name: &str) -> Vec<String> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    macro_rules! case {
        ($kind:expr, $value:expr, $inj:expr, $target:expr, [$(($k:expr, $v:expr)),*] => $want_target:expr, [$(($wk:expr, $wv:expr)),*], absent [$($absent:expr),*]) => {{
            let snap = snapshot(vec![($kind, $value, $inj)]);
            let mut req = request($target, &[$(($k, $v)),*]);
            apply(&mut req, snap.secrets().iter(), "api.test", Body::Unread).expect("applies");
            assert_eq!(String::from_utf8_lossy(req.raw_path()), $want_target);
            $( assert_eq!(header(&req, $wk), vec![$wv.to_string()], "header {}", $wk); )*
            $( assert!(header(&req, $absent).is_empty(), "{} should be gone", $absent); )*
        }};
    }

    fn hdr(name: &str, format: &str) -> Option<InjectionDoc> {
        Some(InjectionDoc::Header {
            name: name.into(),
            format: format.into(),
        })
    }

    fn query(name: &str, format: &str) -> Option<InjectionDoc> {
        Some(InjectionDoc::Query {
            name: name.into(),
            format: format.into(),
        })
    }

    #[test]
    fn recipes() {
        case!(SecretKind::Anthropic, "sk-ant-api03-k", None, "/v1/messages", [("authorization", "Bearer agent"), ("x-api-key", "placeholder")]
            => "/v1/messages", [("x-api-key", "sk-ant-api03-k")], absent ["authorization"]);
        case!(SecretKind::Anthropic, "sk-ant-oat01-t", None, "/v1/messages", [("x-api-key", "placeholder")]
            => "/v1/messages", [("authorization", "Bearer sk-ant-oat01-t")], absent ["x-api-key"]);
        case!(SecretKind::Anthropic, "sk-ant-oat01-t", None, "/v1/messages", []
            => "/v1/messages", [("authorization", "Bearer sk-ant-oat01-t"), ("anthropic-beta", "oauth-2025-04-20")], absent []);
        // The agent's own betas stay, the OAuth flag joins them once.
        case!(SecretKind::Anthropic, "sk-ant-oat01-t", None, "/v1/messages", [("anthropic-beta", "prompt-caching-2024-07-31")]
            => "/v1/messages", [("anthropic-beta", "prompt-caching-2024-07-31,oauth-2025-04-20")], absent []);
        case!(SecretKind::Anthropic, "sk-ant-oat01-t", None, "/v1/messages", [("anthropic-beta", "a-1, oauth-2025-04-20")]
            => "/v1/messages", [("anthropic-beta", "a-1, oauth-2025-04-20")], absent []);
        // API keys need no flag.
        case!(SecretKind::Anthropic, "sk-ant-api03-k", None, "/v1/messages", []
            => "/v1/messages", [("x-api-key", "sk-ant-api03-k")], absent ["anthropic-beta"]);
        case!(SecretKind::Openai, "sk-proj", None, "/v1/chat", [("authorization", "Bearer a"), ("Authorization", "Bearer b")]
            => "/v1/chat", [("authorization", "Bearer sk-proj")], absent []);
        case!(SecretKind::Generic, "ghp", hdr("Authorization", "token {value}"), "/user", []
            => "/user", [("authorization", "token ghp")], absent []);
        case!(SecretKind::Generic, "k1", hdr("X-Api-Key", "{value}"), "/", [("x-api-key", "agent-sent")]
            => "/", [("x-api-key", "k1")], absent []);
        case!(SecretKind::Generic, "a b&c", query("key", "{value}"), "/maps?q=1&key=agent&z", []
            => "/maps?q=1&z&key=a%20b%26c", [], absent []);
        case!(SecretKind::Generic, "v", query("api_key", "pre-{value}"), "/x", []
            => "/x?api_key=pre-v", [], absent []);
    }

    #[test]
    fn a_value_with_a_newline_is_refused_without_echoing_it() {
        let snap = snapshot(vec![(
            SecretKind::Generic,
            "line1\nline2",
            hdr("x-k", "{value}"),
        )]);
        let mut req = request("/", &[]);
        let err =
            apply(&mut req, snap.secrets().iter(), "api.test", Body::Unread).expect_err("refused");
        assert!(!err.to_string().contains("line1"), "{err}");
    }

    #[test]
    fn reflected_query_credentials_are_scrubbed_from_redirects() {
        let snap = snapshot(vec![(SecretKind::Generic, "k&y", query("key", "{value}"))]);
        let mut req = request("/maps", &[]);
        let injected =
            apply(&mut req, snap.secrets().iter(), "api.test", Body::Unread).expect("applies");
        assert_eq!(injected.secret_ids, ["s0"]);
        let mut resp = ResponseHeader::build(302, None).expect("resp");
        resp.insert_header("location", "https://h.test/maps/?key=k%26y&z=1")
            .expect("header");
        resp.insert_header("link", "<https://h.test/?key=k%26y>; rel=next")
            .expect("header");
        resp.append_header("link", "<https://h.test/?key=k%26y&p=2>; rel=last")
            .expect("header");
        resp.insert_header("x-echo", "key=k&y").expect("header");
        resp.append_header(
            "x-raw",
            http::HeaderValue::from_bytes(b"\xffkey=k%26y").expect("obs-text"),
        )
        .expect("header");
        scrub_reflected(&mut resp, &injected.url_values);
        assert_eq!(
            resp.headers.get("location").expect("kept"),
            "https://h.test/maps/?key=onecli-redacted&z=1"
        );
        let links: Vec<&[u8]> = resp
            .headers
            .get_all("link")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(
            links,
            [
                &b"<https://h.test/?key=onecli-redacted>; rel=next"[..],
                &b"<https://h.test/?key=onecli-redacted&p=2>; rel=last"[..]
            ],
            "every value"
        );
        assert_eq!(
            resp.headers.get("x-echo").expect("kept"),
            "key=onecli-redacted",
            "the plain value too, in any header"
        );
        assert_eq!(
            resp.headers.get("x-raw").expect("kept").as_bytes(),
            b"\xffkey=onecli-redacted",
            "values that are not UTF-8 too"
        );
    }

    #[test]
    fn injected_header_values_are_marked_sensitive() {
        let snap = snapshot(vec![(SecretKind::Openai, "sk", None)]);
        let mut req = request("/", &[]);
        apply(&mut req, snap.secrets().iter(), "api.test", Body::Unread).expect("applies");
        assert!(req
            .headers
            .get("authorization")
            .expect("set")
            .is_sensitive());
    }

    #[test]
    fn path_secrets_rewrite_the_path_only_where_it_fits() {
        let template = Some(InjectionDoc::PathTemplate {
            template: "/bot{value}".into(),
        });
        let snap = snapshot(vec![(SecretKind::Generic, "123:ABC", template)]);
        let mut req = request("/botPLACEHOLDER/getMe?offset=1", &[]);
        let injected =
            apply(&mut req, snap.secrets().iter(), "api.test", Body::Unread).expect("applies");
        assert_eq!(
            String::from_utf8_lossy(req.raw_path()),
            "/bot123:ABC/getMe?offset=1",
            "the query stays"
        );
        assert_eq!(injected.secret_ids, ["s0"]);
        assert_eq!(
            injected
                .url_values
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["123:ABC"],
            "scrubbed from reflections"
        );
        // A path the template does not fit: nothing injected, nothing recorded.
        let mut req = request("/getMe", &[]);
        let injected =
            apply(&mut req, snap.secrets().iter(), "api.test", Body::Unread).expect("applies");
        assert_eq!(String::from_utf8_lossy(req.raw_path()), "/getMe");
        assert!(injected.secret_ids.is_empty() && injected.url_values.is_empty());
    }
}
