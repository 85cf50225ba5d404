//! Entry points for the fuzz targets in `fuzz/` (and for the tests that
//! replay their committed corpora on the project's own toolchain).

use crate::credential::{AwsKey, ChatgptLogin};
use crate::pattern::{HostPattern, PathPattern};
use crate::seal::SealingKey;
use crate::{canonical_path, wire};

/// Host and path patterns compiled from the first line, matched against
/// the second: matching never panics, and an exact host pattern matches
/// its own host.
pub fn patterns(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, subject) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(host) = HostPattern::parse(pattern) {
        let _ = host.matches(subject, 443);
        if host.is_exact() && !pattern.contains(':') {
            // Hosts reach matching normalized, as the gateway does it: lower
            // case, no final dot, no brackets.
            let own = crate::normalize_host(pattern.trim());
            assert!(host.matches(&own, 443), "{pattern:?}");
        }
    }
    if let Ok(path) = PathPattern::parse(pattern) {
        let _ = path.matches(subject);
    }
    let _ = canonical_path(subject);
}

/// The TOML policy file: parsed and, when it parses, compiled.
pub fn policy_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::compile_policy_file("fuzz.toml", text, 1, &|_| Some("env-value".into()));
}

/// The wire envelope and sealed policies: decoding never panics, and what
/// decodes encodes back to bytes that decode to the same document.
pub fn wire_and_seal(data: &[u8]) {
    if let Ok(doc) = wire::decode(data) {
        let again = wire::encode(&doc).map(|bytes| wire::decode(&bytes));
        assert_eq!(again, Ok(Ok(doc)));
    }
    let key = SealingKey::from_bytes([7; 32]);
    let _ = key.open_policy(data);
    let _ = key.open(b"context", data);
}

/// Credentials with parts: a Codex auth.json and an AWS key and token.
/// Parsing never panics nor quotes the text in its errors.
pub fn credentials(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match ChatgptLogin::parse(&text) {
        Ok(login) => {
            let again = ChatgptLogin::parse(&login.to_json()).map(|l| l.account_id);
            assert_eq!(again.as_deref(), Ok(login.account_id.as_str()));
            let _ = login.placeholder_auth_json();
            let _ = login.access_expires_at();
        }
        Err(message) => assert!(text.len() < 24 || !message.contains(&*text)),
    }
    let key = AwsKey::split(&text);
    if let Ok(joined) = AwsKey::join(key.secret_access_key, key.session_token) {
        let again = AwsKey::split(&joined);
        assert_eq!(again.secret_access_key, key.secret_access_key);
    }
}
