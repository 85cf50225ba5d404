//! Agent identity from `Proxy-Authorization` (SPEC §3.2). The token is
//! hashed straight out of the header; only its hash is kept.

use base64::Engine;
use onecli_policy::{token_sha256, TokenHash};
use zeroize::Zeroizing;

/// `Basic base64(user:token)`: the token is the password, or the user name
/// when the password is empty. The scheme name is case-insensitive.
pub fn token_hash(header_value: &[u8]) -> Option<TokenHash> {
    let value = std::str::from_utf8(header_value).ok()?.trim();
    let (scheme, creds) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(creds.trim())
            .ok()?,
    );
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let token = match decoded.split_once(':') {
        Some((user, "")) => user,
        Some((_, password)) => password,
        None => decoded,
    };
    (!token.is_empty()).then(|| token_sha256(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(scheme: &str, creds: &str) -> Vec<u8> {
        format!(
            "{scheme} {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
        .into_bytes()
    }

    #[test]
    fn token_is_the_password_or_the_lone_user() {
        let want = Some(token_sha256("aoc_tok"));
        assert_eq!(token_hash(&basic("Basic", "x:aoc_tok")), want);
        assert_eq!(token_hash(&basic("basic", "x:aoc_tok")), want);
        assert_eq!(token_hash(&basic("BASIC", "x:aoc_tok")), want);
        assert_eq!(token_hash(&basic("Basic", "aoc_tok:")), want);
        assert_eq!(token_hash(&basic("Basic", "aoc_tok")), want);
    }

    #[test]
    fn anything_else_is_no_token() {
        assert_eq!(token_hash(&basic("Bearer", "x:aoc_tok")), None);
        assert_eq!(token_hash(&basic("Basic", ":")), None);
        assert_eq!(token_hash(b"Basic !!!notbase64"), None);
        assert_eq!(token_hash(b"Basic"), None);
        assert_eq!(token_hash(b""), None);
    }
}
