//! Properties (issue 17): the host and path matchers agree with reference
//! implementations (regular expressions built from SPEC §5.4's text of
//! each pattern), and the wire encoding and the policy seal round-trip.
//! The gateway's tests add that no spelling of a request gets a secret
//! injected outside its scope.

mod shared;

use onecli_policy::seal::SealingKey;
use onecli_policy::{
    normalize_host, token_sha256, wire, CanonicalRequest, HostPattern, PathPattern, PolicyDoc,
    Snapshot,
};
use proptest::prelude::*;
use shared::*;

// ---- Properties ------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn host_patterns_match_as_the_reference_does(
        pattern in host_pattern(),
        spelled in request_host(),
        port in port(),
    ) {
        let compiled = HostPattern::parse(&pattern).expect("generated patterns are valid");
        let host = normalize_host(&spelled);
        let reference_host_form = spelled.to_ascii_lowercase();
        let reference_host_form = reference_host_form.strip_suffix('.').unwrap_or(&reference_host_form);
        prop_assert_eq!(
            compiled.matches(&host, port),
            reference_host(&pattern, reference_host_form, port),
            "{} against {}:{}", pattern, spelled, port
        );
    }

    #[test]
    fn path_patterns_match_as_the_reference_does(
        pattern in path_pattern(),
        target in request_target(),
    ) {
        let compiled = PathPattern::parse(&pattern).expect("generated patterns are valid");
        prop_assert_eq!(
            compiled.matches(&target),
            reference_path(&pattern, &target),
            "{} against {}", pattern, target
        );
    }

    #[test]
    fn the_wire_encoding_and_the_policy_seal_round_trip(doc in policy_doc(), nonce in any::<[u8; 12]>(), issued in any::<u64>()) {
        let bytes = wire::encode(&doc).expect("encodes");
        prop_assert_eq!(wire::decode(&bytes).expect("decodes"), doc);
        let key = SealingKey::from_bytes([9; 32]);
        let sealed = key.seal_policy(nonce, issued, &bytes).expect("seals");
        let (at, opened) = key.open_policy(&sealed).expect("opens");
        prop_assert_eq!(at, issued);
        prop_assert_eq!(opened.as_slice(), bytes.as_slice());
        // One flipped bit anywhere and it does not open.
        let mut tampered = sealed.clone();
        let at = (issued as usize) % tampered.len();
        tampered[at] ^= 1;
        prop_assert!(key.open_policy(&tampered).is_err());
    }

    /// Restrictions match broadly: a block rule that covers the path as
    /// the origin reads it blocks every spelling the gateway forwards.
    #[test]
    fn a_block_rule_covers_every_spelling_of_what_it_names(
        rule_path in path_pattern(),
        spelled_host in request_host(),
        target in request_target(),
    ) {
        let host = normalize_host(&spelled_host).into_owned();
        let doc = PolicyDoc {
            version: 1,
            agents: vec![agent()],
            secrets: vec![],
            rules: vec![rule(0, host.clone(), rule_path.clone(), vec![])],
            passthrough_hosts: vec![],
        };
        let snapshot = Snapshot::compile(doc).expect("valid");
        let agent = snapshot.agent_by_token_hash(&token_sha256("token")).expect("agent");
        let Ok(canonical) = CanonicalRequest::new("GET", &target, []) else {
            return Ok(());
        };
        let read_by_origin = origin_view(&canonical.path.exact);
        if reference_path(&rule_path, &read_by_origin) {
            let decision = snapshot.evaluate(agent, canonical.facts(&host, 443));
            prop_assert!(
                matches!(decision, onecli_policy::Decision::Block(_)),
                "{} not blocked for {} (read by the origin as {}): {:?}",
                rule_path, target, read_by_origin, decision
            );
        }
    }
}
