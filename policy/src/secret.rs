//! The one type that holds a credential's plaintext.

use zeroize::Zeroizing;

/// A credential value. Zeroized on drop, redacted in `Debug`, no `Display`,
/// no `Serialize`: the only way to the bytes is [`SecretValue::expose`],
/// called where a credential is injected into an upstream request.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }

    /// The plaintext. Call it only to build the injected header or query value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `••••••••wxyz`: what an API may show of a stored value. The last
    /// four characters only, and only of a value of 16 or more: enough to
    /// tell two keys apart, too little to narrow a short one down.
    pub fn preview(&self) -> String {
        const MASK: &str = "••••••••";
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 16 {
            return MASK.to_owned();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{MASK}{tail}")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretValue::new("sk-very-secret-1234".into());
        let debug = format!("{s:?} {:?}", vec![s.clone()]);
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn preview_shows_at_most_the_last_four() {
        assert_eq!(
            SecretValue::new("sk-ant-api03-abcdefwxyz".into()).preview(),
            "••••••••wxyz"
        );
        assert_eq!(SecretValue::new("short".into()).preview(), "••••••••");
        assert_eq!(
            SecretValue::new("fifteen-chars-x".into()).preview(),
            "••••••••"
        );
        assert_eq!(
            SecretValue::new("sixteen-chars-xy".into()).preview(),
            "••••••••s-xy"
        );
    }
}
