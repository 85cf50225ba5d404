use super::*;
use crate::model::{AgentDoc, PolicyMode, SecretDoc, SecretKind, SecretMode};
use zeroize::Zeroizing;

fn tiny() -> PolicyDoc {
    PolicyDoc {
        version: 3,
        agents: vec![AgentDoc {
            project: crate::model::default_project(),
            id: "a".into(),
            name: "A".into(),
            identifier: "a".into(),
            token_sha256: [7; 32],
            is_default: true,
            secret_mode: SecretMode::All,
            secret_ids: vec![],
            policy_mode: PolicyMode::Allow,
        }],
        secrets: vec![SecretDoc {
            project: crate::model::default_project(),
            id: "s".into(),
            name: "S".into(),
            kind: SecretKind::Openai,
            value: Zeroizing::new("v".into()),
            host_pattern: "h".into(),
            path_pattern: "*".into(),
            injection: None,
            allow_plaintext: true,
        }],
        rules: vec![],
        passthrough_hosts: vec![],
    }
}

/// The exact bytes of schema version 5. If this fails, the wire format
/// changed: bump SCHEMA_VERSION and update the bytes on purpose.
#[test]
fn golden_bytes_of_schema_v5() {
    let bytes = encode(&tiny()).expect("encodes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN);
    assert_eq!(decode(&bytes), Ok(tiny()));
}

const GOLDEN: &str = "4f43505305004c000000030101610764656661756c74014101610707070707070707070707070707070707070707070707070707070707070707010000000101730764656661756c7401530101760168012a00010000";

#[test]
fn round_trips() {
    let doc = tiny();
    assert_eq!(decode(&encode(&doc).expect("encodes")), Ok(doc));
}

#[test]
fn refuses_bad_envelopes() {
    let good = encode(&tiny()).expect("encodes");
    assert_eq!(decode(b"OC"), Err(WireError::Truncated));
    assert_eq!(decode(b"JUNKJUNKJUNK"), Err(WireError::BadMagic));
    let mut newer = good.clone();
    newer[4] = 9;
    assert_eq!(decode(&newer), Err(WireError::NewerSchema(9)));
    let mut old = good.clone();
    old[4] = 0;
    assert_eq!(decode(&old), Err(WireError::UnsupportedSchema(0)));
    let mut huge = good.clone();
    huge[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode(&huge), Err(WireError::TooLarge(_))));
    assert_eq!(
        decode(&good[..good.len() - 1]),
        Err(WireError::LengthMismatch)
    );
    let mut garbage = good.clone();
    let n = garbage.len();
    garbage[10..n].fill(0xff);
    assert!(matches!(decode(&garbage), Err(WireError::Decode(_))));
}
