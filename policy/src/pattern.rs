//! Host and path patterns (SPEC §5.4).
//!
//! Patterns are parsed once, when a snapshot is compiled, into forms whose
//! `matches` is a few comparisons: no allocation, no regex.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("host pattern {0:?} may contain at most one '*'")]
    TooManyWildcards(String),
    #[error("host pattern {0:?} contains a character that cannot appear in a host name")]
    BadHostChar(String),
    #[error("port in host pattern {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("path pattern {0:?} must start with '/' or be '*'")]
    PathNotAbsolute(String),
    #[error("path pattern {0:?} must not contain a query string")]
    PathHasQuery(String),
}

/// A host pattern: exact (case-insensitive) or with one `*` standing for one
/// or more characters, optionally restricted to one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPattern {
    /// Lowercased text before the `*` (or the whole host when exact).
    prefix: String,
    /// Lowercased text after the `*`; `None` for an exact pattern.
    suffix: Option<String>,
    port: Option<u16>,
}

impl HostPattern {
    /// One host, no `*`.
    pub fn is_exact(&self) -> bool {
        self.suffix.is_none()
    }

    pub fn parse(raw: &str) -> Result<Self, PatternError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PatternError::Empty);
        }
        let (host, port) = split_host_port(raw).map_err(|()| PatternError::BadPort(raw.into()))?;
        if host.is_empty() {
            return Err(PatternError::Empty);
        }
        let host = host.to_ascii_lowercase();
        // One final dot, as `normalize_host` drops it from requests; a
        // pattern of dots names no host.
        let host = host.strip_suffix('.').unwrap_or(&host);
        if host.bytes().all(|b| b == b'.') {
            return Err(PatternError::Empty);
        }
        if host.matches('*').count() > 1 {
            return Err(PatternError::TooManyWildcards(raw.into()));
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_' | ':');
        if !host.chars().all(allowed) {
            return Err(PatternError::BadHostChar(raw.into()));
        }
        let (prefix, suffix) = match host.split_once('*') {
            Some((p, s)) => (p.to_owned(), Some(s.to_owned())),
            None => (host.to_owned(), None),
        };
        Ok(HostPattern {
            prefix,
            suffix,
            port,
        })
    }

    /// `host` must already be lowercase without a trailing dot (see
    /// [`normalize_host`]); `port` is the request's port.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.suffix {
            None => host == self.prefix,
            Some(suffix) => {
                host.len() > self.prefix.len() + suffix.len()
                    && host.starts_with(self.prefix.as_str())
                    && host.ends_with(suffix.as_str())
            }
        }
    }

    /// The exact host this pattern names, when it has no wildcard: lets the
    /// compiled snapshot index exact patterns in a hash map.
    pub fn exact_host(&self) -> Option<&str> {
        self.suffix.is_none().then_some(self.prefix.as_str())
    }

    /// For `*.example.com` patterns, `.example.com`: the part every match
    /// ends with, starting at a dot. Lets indices key them by suffix.
    pub fn dot_suffix(&self) -> Option<&str> {
        match &self.suffix {
            Some(s) if self.prefix.is_empty() && s.starts_with('.') && s.len() > 1 => Some(s),
            _ => None,
        }
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bracket = self.prefix.contains(':');
        if bracket {
            f.write_str("[")?;
        }
        f.write_str(&self.prefix)?;
        if let Some(s) = &self.suffix {
            write!(f, "*{s}")?;
        }
        if bracket {
            f.write_str("]")?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Splits `host[:port]`, including bracketed IPv6 literals (`[::1]:443`).
/// A bare IPv6 literal (more than one colon, no brackets) has no port.
fn split_host_port(raw: &str) -> Result<(&str, Option<u16>), ()> {
    if let Some(rest) = raw.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(()),
        };
    }
    match raw.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') => Ok((host, Some(parse_port(p)?))),
        _ => Ok((raw, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, ()> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(()),
        Ok(port) => Ok(port),
    }
}

/// Lowercases a request host and strips brackets and a trailing dot, the
/// form [`HostPattern::matches`] expects. Allocates only when it must.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// A path pattern. The query string is never part of a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathPattern {
    /// `*`: every path.
    Any,
    /// `/p/*`: `/p` itself and everything below it, not `/px`.
    Subtree(String),
    /// `/p*`: a plain prefix.
    Prefix(String),
    /// A pattern with `*` standing for exactly one segment, e.g. `/v1/*/messages`.
    Segments(Vec<Segment>),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Segment {
    Literal(String),
    Wildcard,
}

impl PathPattern {
    pub fn parse(raw: &str) -> Result<Self, PatternError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PatternError::Empty);
        }
        if raw == "*" || raw == "/*" {
            return Ok(PathPattern::Any);
        }
        if !raw.starts_with('/') {
            return Err(PatternError::PathNotAbsolute(raw.into()));
        }
        if raw.contains('?') {
            return Err(PatternError::PathHasQuery(raw.into()));
        }
        if let Some(base) = raw.strip_suffix("/*") {
            if !base.contains('*') {
                return Ok(PathPattern::Subtree(base.to_owned()));
            }
        }
        let stars = raw.matches('*').count();
        if stars == 1 && raw.ends_with('*') && !raw.ends_with("/*") {
            return Ok(PathPattern::Prefix(raw.trim_end_matches('*').to_owned()));
        }
        if stars == 0 {
            return Ok(PathPattern::Exact(raw.to_owned()));
        }
        let segments = raw[1..]
            .split('/')
            .map(|s| match s {
                "*" => Segment::Wildcard,
                s => Segment::Literal(s.to_owned()),
            })
            .collect();
        Ok(PathPattern::Segments(segments))
    }

    /// `path` may carry a query string; it is ignored.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        match self {
            PathPattern::Any => true,
            PathPattern::Subtree(base) => match path.strip_prefix(base.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
            PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Segments(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for segment in segments {
                    match (segment, parts.next()) {
                        (Segment::Wildcard, Some(part)) if !part.is_empty() => {}
                        (Segment::Literal(lit), Some(part)) if lit == part => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathPattern::Any => f.write_str("*"),
            PathPattern::Subtree(b) => write!(f, "{b}/*"),
            PathPattern::Prefix(p) => write!(f, "{p}*"),
            PathPattern::Exact(e) => f.write_str(e),
            PathPattern::Segments(segs) => {
                for s in segs {
                    match s {
                        Segment::Wildcard => f.write_str("/*")?,
                        Segment::Literal(l) => write!(f, "/{l}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
