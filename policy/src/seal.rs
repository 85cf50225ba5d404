//! Sealing: AES-256-GCM (BoringSSL) with the record or message it belongs
//! to as associated data. The one format for secrets at rest in the control
//! store and for policy documents travelling to gateways:
//! `nonce (12) || ciphertext || tag (16)`. The caller brings the nonce, so
//! this stays a pure function.

use boring::symm::{decrypt_aead, encrypt_aead, Cipher};
use zeroize::Zeroizing;

pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("a sealed value does not open: wrong key, or the data was altered")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The 32-byte key. No `Debug` output of the bytes, no `Display`.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

impl SealingKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealingKey(Zeroizing::new(bytes))
    }

    /// `nonce` must never repeat under one key: draw it from a CSPRNG.
    pub fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0[..],
            Some(&nonce),
            context,
            plaintext,
            &mut tag,
        )
        .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Open);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0[..],
            Some(nonce),
            context,
            ciphertext,
            tag,
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Open)
    }
}

/// The associated data of a sealed policy document.
pub const POLICY_CONTEXT: &[u8] = b"onecli-policy-document";

/// How far a policy's issue time may be from the receiver's clock: a
/// captured policy cannot be replayed later, even to a gateway that holds
/// none yet.
pub const POLICY_FRESHNESS_MS: u64 = 5 * 60 * 1000;

impl SealingKey {
    /// A policy envelope for the wire, sealed with the time it was issued.
    pub fn seal_policy(
        &self,
        nonce: [u8; NONCE_LEN],
        issued_ms: u64,
        envelope: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut plaintext = Zeroizing::new(Vec::with_capacity(8 + envelope.len()));
        plaintext.extend_from_slice(&issued_ms.to_le_bytes());
        plaintext.extend_from_slice(envelope);
        self.seal(nonce, POLICY_CONTEXT, &plaintext)
    }

    /// The issue time and the envelope of a sealed policy.
    pub fn open_policy(&self, sealed: &[u8]) -> Result<(u64, Zeroizing<Vec<u8>>), SealError> {
        let plaintext = self.open(POLICY_CONTEXT, sealed)?;
        if plaintext.len() < 8 {
            return Err(SealError::Open);
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&plaintext[..8]);
        Ok((
            u64::from_le_bytes(issued),
            Zeroizing::new(plaintext[8..].to_vec()),
        ))
    }
}

/// The associated data of an approval decision: bound to its request.
pub fn approval_context(id: &str) -> Vec<u8> {
    [b"onecli-approval:".as_slice(), id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = SealingKey::from_bytes([7; 32]);
        let sealed = key
            .seal([1; NONCE_LEN], b"secret-1", b"sk-live-value")
            .expect("seal");
        assert!(
            !sealed.windows(13).any(|w| w == b"sk-live-value"),
            "plaintext visible"
        );
        assert_eq!(
            &key.open(b"secret-1", &sealed).expect("open")[..],
            b"sk-live-value"
        );
        assert_eq!(key.open(b"secret-2", &sealed), Err(SealError::Open));
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(key.open(b"secret-1", &tampered), Err(SealError::Open));
        assert_eq!(
            SealingKey::from_bytes([8; 32]).open(b"secret-1", &sealed),
            Err(SealError::Open)
        );
        assert_eq!(key.open(b"secret-1", &sealed[..10]), Err(SealError::Open));
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn policies_carry_their_issue_time() {
        let key = SealingKey::from_bytes([7; 32]);
        let sealed = key
            .seal_policy([2; NONCE_LEN], 1234, b"envelope")
            .expect("seal");
        let (issued, envelope) = key.open_policy(&sealed).expect("open");
        assert_eq!((issued, &envelope[..]), (1234, &b"envelope"[..]));
        let other = key
            .seal([2; NONCE_LEN], b"onecli-approval:x", b"{}")
            .expect("seal");
        assert_eq!(
            key.open_policy(&other),
            Err(SealError::Open),
            "contexts do not mix"
        );
    }
}
