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

    /// `sk-a••••••••wxyz`: what an API may show of a stored value.
    pub fn preview(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return "••••••••".to_owned();
        }
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}••••••••{tail}")
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
    fn preview_masks_the_middle() {
        assert_eq!(
            SecretValue::new("sk-ant-api03-abcdefwxyz".into()).preview(),
            "sk-a••••••••wxyz"
        );
        assert_eq!(SecretValue::new("short".into()).preview(), "••••••••");
    }
}
