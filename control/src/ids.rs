//! Identifiers, tokens and timestamps, from the system CSPRNG and clock.

use zeroize::Zeroizing;

/// A random UUID (version 4) in its usual text form.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `prefix` + 64 hex digits (256 random bits).
pub fn random_token(prefix: &str) -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; 32]);
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    Zeroizing::new(format!("{prefix}{}", hex::encode(&b[..])))
}

/// An agent's proxy token: `aoc_` + 64 hex.
pub fn agent_token() -> Zeroizing<String> {
    random_token("aoc_")
}

pub fn now_unix_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_id(), id);
        assert!(onecli_policy::is_valid_agent_token(&agent_token()));
        assert!(now_rfc3339().ends_with('Z'));
    }
}
