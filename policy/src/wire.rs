//! The wire envelope for policy documents: `OCPS` magic, a little-endian
//! schema version and payload length, then the postcard-encoded
//! [`PolicyDoc`]. The size cap is checked before any decoding.

use crate::model::PolicyDoc;

pub const MAGIC: [u8; 4] = *b"OCPS";
/// Bump on any change to the shape of [`PolicyDoc`]; the golden-bytes test
/// fails first to remind you.
/// 2: secrets carry `allow_plaintext`.
/// 3: agents, secrets and rules carry their project.
/// 4: secrets may be injected into the path.
/// 5: AWS keys (SigV4 signing).
pub const SCHEMA_VERSION: u16 = 5;
/// Generous for 100k rules and 10k secrets, small enough to refuse garbage.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;
const HEADER_LEN: usize = 4 + 2 + 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a OneCLI policy envelope (bad magic)")]
    BadMagic,
    #[error("envelope is truncated")]
    Truncated,
    #[error(
        "policy schema version {0} was written by a newer OneCLI (this one reads {SCHEMA_VERSION})"
    )]
    NewerSchema(u16),
    #[error("policy schema version {0} is not supported")]
    UnsupportedSchema(u16),
    #[error("policy payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte cap")]
    TooLarge(usize),
    #[error("policy payload length does not match the envelope")]
    LengthMismatch,
    #[error("policy payload does not decode: {0}")]
    Decode(String),
    #[error("policy payload does not encode: {0}")]
    Encode(String),
}

pub fn encode(doc: &PolicyDoc) -> Result<Vec<u8>, WireError> {
    let payload = postcard::to_stdvec(doc).map_err(|e| WireError::Encode(e.to_string()))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(WireError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<PolicyDoc, WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
            WireError::BadMagic
        } else {
            WireError::Truncated
        });
    }
    if bytes[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version > SCHEMA_VERSION {
        return Err(WireError::NewerSchema(version));
    }
    if version != SCHEMA_VERSION {
        return Err(WireError::UnsupportedSchema(version));
    }
    let len = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(WireError::TooLarge(len));
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(WireError::LengthMismatch);
    }
    postcard::from_bytes(payload).map_err(|e| WireError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests;
