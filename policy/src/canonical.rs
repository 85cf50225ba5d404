//! One canonical request for every decision (SPEC §6.0).
//!
//! An agent may be hostile and will try every spelling of a request that a
//! rule forbids: `/%61dmin`, `//admin`, `/ADMIN`, `/admin;x`, `/admin%2fx`,
//! `delete` for `DELETE`, `HEAD` for `GET`. So rules, secrets' path scopes,
//! approvals and limits all judge one form, the one that is also forwarded:
//!
//! - **Decoded**: percent-encoded unreserved characters (`A-Z a-z 0-9 - . _
//!   ~`) are decoded; other escapes are kept, their hex upper-cased. Both
//!   spellings mean the same resource (RFC 3986 §6.2.2).
//! - **Refused** (400) when the matcher and an origin could read the path
//!   differently: an encoded `/` or `\` (`%2F`, `%5C`), a raw `\`, an
//!   escaped percent that forms another escape (`%2561`, decoded twice by
//!   some servers), an encoded control character, a malformed escape, a
//!   byte outside printable ASCII, and `.` or `..` segments (also as `%2e`
//!   and before a `;parameter`, which servers such as Tomcat drop).
//! - **Restrictions match broadly** (block, manual approval, rate-limit
//!   counting): against [`CanonicalPath::broad`], the path lower-cased,
//!   each segment's `;parameters` dropped, empty segments and a trailing
//!   slash removed, and with the request's method upper-cased, `HEAD`
//!   counting as `GET` too, and a method-override header's method
//!   ([`broad_methods`]).
//! - **Grants match narrowly** (a secret's path scope, an `allow` rule,
//!   a `rate_limit` rule's allowance in deny mode): against
//!   [`CanonicalPath::exact`] and the method exactly as sent.

use std::fmt::Write as _;

use crate::rules::RequestFacts;

/// Why a path cannot be judged safely. Answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    NotAbsolute,
    BadEscape,
    EncodedSeparator,
    Backslash,
    DoubleEncoded,
    EncodedControl,
    NotPrintable,
    DotSegment,
}

impl Ambiguous {
    /// What is wrong, for the agent's error message.
    pub fn reason(self) -> &'static str {
        match self {
            Ambiguous::NotAbsolute => "the path does not start with '/'",
            Ambiguous::BadEscape => "the path has a malformed percent escape",
            Ambiguous::EncodedSeparator => {
                "the path encodes a '/' or a '\\' (%2F, %5C), which origins read differently"
            }
            Ambiguous::Backslash => "the path has a backslash, which some origins read as '/'",
            Ambiguous::DoubleEncoded => {
                "the path escapes a percent sign that forms another escape (%25XX)"
            }
            Ambiguous::EncodedControl => "the path encodes a control character",
            Ambiguous::NotPrintable => "the path has a character outside printable ASCII",
            Ambiguous::DotSegment => "the path has . or .. segments",
        }
    }
}

impl std::fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Ambiguous {}

/// A request path (without its query) in the two forms decisions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Unreserved escapes decoded, other escapes upper-cased, otherwise as
    /// sent: what is forwarded, and what grants match.
    pub exact: String,
    /// `exact` lower-cased, `;parameters` dropped from each segment, empty
    /// segments and a trailing slash removed: what restrictions match.
    pub broad: String,
}

/// A request's method and path in canonical form: owns what
/// [`RequestFacts`] borrows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// As sent (grants match it exactly).
    pub method: String,
    pub path: CanonicalPath,
    /// [`broad_methods`] of it (restrictions match any).
    pub broad_methods: Vec<String>,
}

impl CanonicalRequest {
    /// `target` is origin-form (`/path?query`); the query is not judged.
    /// `overrides` are the values of the [`METHOD_OVERRIDE_HEADERS`].
    pub fn new<'a>(
        method: &str,
        target: &str,
        overrides: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<CanonicalRequest, Ambiguous> {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        Ok(CanonicalRequest {
            method: method.to_owned(),
            path: canonical_path(path)?,
            broad_methods: broad_methods(method, overrides),
        })
    }

    pub fn facts<'a>(&'a self, host: &'a str, port: u16) -> RequestFacts<'a> {
        RequestFacts {
            method: &self.method,
            host,
            port,
            path: &self.path.exact,
            broad_path: &self.path.broad,
            broad_methods: &self.broad_methods,
        }
    }
}

/// The canonical form of `path` (a request target's path, no query).
pub fn canonical_path(path: &str) -> Result<CanonicalPath, Ambiguous> {
    if !path.starts_with('/') {
        return Err(Ambiguous::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut exact = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Ambiguous::BadEscape);
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' | b'\\' => return Err(Ambiguous::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(Ambiguous::EncodedControl),
                    b'%' if bytes.get(i + 3).copied().and_then(hex).is_some()
                        && bytes.get(i + 4).copied().and_then(hex).is_some() =>
                    {
                        return Err(Ambiguous::DoubleEncoded)
                    }
                    c if is_unreserved(c) => exact.push(char::from(c)),
                    c => {
                        let _ = write!(exact, "%{c:02X}");
                    }
                }
                i += 3;
            }
            b'\\' => return Err(Ambiguous::Backslash),
            0x21..=0x7e => {
                exact.push(char::from(b));
                i += 1;
            }
            _ => return Err(Ambiguous::NotPrintable),
        }
    }
    let mut broad = String::with_capacity(exact.len());
    for segment in exact.split('/') {
        let (name, _params) = segment.split_once(';').unwrap_or((segment, ""));
        if name == "." || name == ".." {
            return Err(Ambiguous::DotSegment);
        }
        if name.is_empty() {
            continue;
        }
        broad.push('/');
        broad.extend(name.chars().map(|c| c.to_ascii_lowercase()));
    }
    if broad.is_empty() {
        broad.push('/');
    }
    Ok(CanonicalPath { exact, broad })
}

/// The methods a restriction rule treats `method` as: upper-cased, `GET`
/// for `HEAD` (the same resource, without its body), and each method an
/// override header names (`X-HTTP-Method-Override`, `X-HTTP-Method`,
/// `X-Method-Override`, which many frameworks obey).
pub fn broad_methods<'a>(
    method: &str,
    overrides: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<String> {
    let mut methods = vec![method.to_ascii_uppercase()];
    for value in overrides {
        let named = String::from_utf8_lossy(value).trim().to_ascii_uppercase();
        if !named.is_empty() {
            methods.push(named);
        }
    }
    if methods.iter().any(|m| m == "HEAD") {
        methods.push("GET".to_owned());
    }
    methods.sort();
    methods.dedup();
    methods
}

/// The request headers whose values [`broad_methods`] reads.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// A path pattern's text in the broad form: literal parts decoded like a
/// request path, lower-cased, empty segments and a trailing slash dropped.
pub(crate) fn broaden_pattern(raw: &str) -> String {
    let raw = raw.trim();
    if raw == "*" || !raw.starts_with('/') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let decoded = canonical_path(&format!("/{segment}"))
            .map(|c| c.exact[1..].to_owned())
            .unwrap_or_else(|_| segment.to_owned());
        out.push_str(&decoded.to_ascii_lowercase());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A path pattern's literal parts decoded like a request path (exact form).
pub(crate) fn exact_pattern(raw: &str) -> String {
    let raw = raw.trim();
    if !raw.starts_with('/') {
        return raw.to_owned();
    }
    canonical_path(raw).map_or_else(|_| raw.to_owned(), |c| c.exact)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(path: &str) -> (String, String) {
        let c = canonical_path(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        (c.exact, c.broad)
    }

    #[test]
    fn spellings_of_one_path_share_the_broad_form() {
        for spelling in [
            "/admin/x",
            "/%61dmin/x",
            "/%61%64%6D%69%6e/x",
            "//admin/x",
            "/ADMIN/x",
            "/admin;foo/x",
            "/admin/x/",
            "/admin//x",
            "/Admin;jsessionid=1/X;y",
        ] {
            assert_eq!(both(spelling).1, "/admin/x", "{spelling}");
        }
    }

    #[test]
    fn the_exact_form_decodes_only_unreserved_characters() {
        assert_eq!(both("/%61dmin/%7euser/a%2dz").0, "/admin/~user/a-z");
        assert_eq!(both("/a%3ab%3Fc%20d").0, "/a%3Ab%3Fc%20d");
        assert_eq!(both("//ADMIN;x/").0, "//ADMIN;x/");
        assert_eq!(both("/").1, "/");
        assert_eq!(both("///").1, "/");
        // A literal percent sign that forms no escape stays.
        assert_eq!(both("/100%25").0, "/100%25");
        assert_eq!(both("/100%25x").0, "/100%25x");
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for (path, why) in [
            ("/admin%2fx", Ambiguous::EncodedSeparator),
            ("/admin%2Fx", Ambiguous::EncodedSeparator),
            ("/public/..%2fprivate", Ambiguous::EncodedSeparator),
            ("/public/..%5cprivate", Ambiguous::EncodedSeparator),
            ("/public\\..\\private", Ambiguous::Backslash),
            ("/a/../b", Ambiguous::DotSegment),
            ("/a/./b", Ambiguous::DotSegment),
            ("/a/%2e%2e/b", Ambiguous::DotSegment),
            ("/a/%2E/b", Ambiguous::DotSegment),
            ("/a/..;x/b", Ambiguous::DotSegment),
            ("/a/..", Ambiguous::DotSegment),
            ("/%2561dmin", Ambiguous::DoubleEncoded),
            ("/a%00b", Ambiguous::EncodedControl),
            ("/a%0d%0ab", Ambiguous::EncodedControl),
            ("/a%zz", Ambiguous::BadEscape),
            ("/a%4", Ambiguous::BadEscape),
            ("/caf\u{e9}", Ambiguous::NotPrintable),
            ("/a b", Ambiguous::NotPrintable),
            ("admin", Ambiguous::NotAbsolute),
            ("*", Ambiguous::NotAbsolute),
        ] {
            assert_eq!(canonical_path(path), Err(why), "{path}");
        }
        for path in ["/..", "/a/%2E./b", "/a/.%2e", "/.;x"] {
            assert_eq!(canonical_path(path), Err(Ambiguous::DotSegment), "{path}");
        }
        // Dots inside a name are no segment of their own.
        for path in [
            "/a/.well-known/x",
            "/a/..b",
            "/a/b.",
            "/v1.2/x",
            "/a/...",
            "/a/;x",
        ] {
            assert_eq!(both(path).0, path);
        }
    }

    #[test]
    fn methods_broaden_for_restrictions() {
        let none: [&[u8]; 0] = [];
        assert_eq!(broad_methods("delete", none), ["DELETE"]);
        assert_eq!(broad_methods("HEAD", none), ["GET", "HEAD"]);
        assert_eq!(broad_methods("head", none), ["GET", "HEAD"]);
        assert_eq!(
            broad_methods("POST", [&b" delete "[..]]),
            ["DELETE", "POST"]
        );
    }

    #[test]
    fn patterns_broaden_like_paths() {
        assert_eq!(broaden_pattern("/Admin/"), "/admin");
        assert_eq!(broaden_pattern("//%61dmin//x"), "/admin/x");
        assert_eq!(broaden_pattern("*"), "*");
        assert_eq!(broaden_pattern("/"), "/");
        assert_eq!(exact_pattern("/%61pi/V1"), "/api/V1");
    }
}
