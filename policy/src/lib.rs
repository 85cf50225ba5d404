//! The shared language of OneCLI: the policy model, its compiled snapshot,
//! host and path patterns, the wire envelope and the secret type.
//!
//! Pure data and pure functions: no IO, no async, no clock, no randomness
//! (callers bring nonces).

pub mod approval;
pub mod audit;
pub mod canonical;
pub mod config;
pub mod credential;
#[doc(hidden)]
pub mod fuzzing;
mod host_index;
pub mod model;
pub mod pattern;
pub mod rules;
pub mod seal;
pub mod secret;
pub mod snapshot;
pub mod wire;

pub use canonical::{canonical_path, Ambiguous, CanonicalPath, CanonicalRequest};
pub use model::PolicyDoc;
pub use pattern::{normalize_host, HostPattern, PathPattern};
pub use rules::{Decision, RequestFacts};
pub use secret::SecretValue;
pub use snapshot::{
    is_path_safe, token_sha256, Agent, InjectOp, PathRewrite, Rule, Secret, SecretPresence,
    Snapshot, TokenHash, ValueFormat,
};

/// Agent identifiers: `^[a-z0-9][a-z0-9-]{0,49}$`.
pub fn is_valid_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=50).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Agent access tokens: `aoc_` followed by 64 lowercase hex digits.
pub fn is_valid_agent_token(s: &str) -> bool {
    s.strip_prefix("aoc_").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["a", "0", "claude-code", "a-b-c", &"a".repeat(50)] {
            assert!(is_valid_identifier(ok), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", &"a".repeat(51), "ä"] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn agent_tokens() {
        assert!(is_valid_agent_token(&format!("aoc_{}", "0a".repeat(32))));
        assert!(!is_valid_agent_token(&format!("aoc_{}", "0A".repeat(32))));
        assert!(!is_valid_agent_token(&format!("oc_{}", "0a".repeat(32))));
        assert!(!is_valid_agent_token("aoc_short"));
    }
}
