//! Properties (issue 17), through the gateway's own request handling
//! (`onecli_gateway::fuzzing::forward`: the canonical request, then the
//! upstream request and its injections): no spelling of a request gets a
//! secret injected outside that secret's host and path scope as an origin
//! reads the path, and a block rule covers every spelling of what it names.

#[path = "../../policy/tests/shared/mod.rs"]
mod shared;

use onecli_gateway::fuzzing::forward;
use onecli_policy::{normalize_host, token_sha256, PolicyDoc, Snapshot};
use proptest::prelude::*;
use shared::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_spelling_of_a_request_injects_outside_a_secrets_scope(
        doc in policy_doc(),
        spelled_host in request_host(),
        port in port(),
        target in request_target(),
        method in prop_oneof![Just("GET"), Just("post"), Just("DELETE")],
    ) {
        let scopes: Vec<(String, String)> = doc
            .secrets
            .iter()
            .map(|s| (s.host_pattern.clone(), s.path_pattern.clone()))
            .collect();
        let snapshot = Snapshot::compile(doc).expect("generated policies are valid");
        let Ok((forwarded, injected)) =
            forward(&snapshot, &token_sha256("token"), method, &target, &spelled_host, port)
        else {
            // Refused (400): nothing is forwarded, nothing injected.
            return Ok(());
        };
        let host = normalize_host(&spelled_host);
        let read_by_origin = origin_view(&forwarded);
        for id in injected {
            let i: usize = id[1..].parse().expect("generated ids are s<N>");
            let (host_pattern, path_pattern) = &scopes[i];
            prop_assert!(
                reference_host(host_pattern, &host, port),
                "{} injected for host {}:{}", host_pattern, spelled_host, port
            );
            prop_assert!(
                reference_path(path_pattern, &read_by_origin),
                "{} injected for {} (forwarded {}, read by the origin as {})",
                path_pattern, target, forwarded, read_by_origin
            );
        }
    }
}

/// The property above is not vacuous: `forward` injects a secret in its
/// scope, not outside it, and refuses an ambiguous spelling.
#[test]
fn forward_injects_in_scope_and_refuses_ambiguity() {
    let doc = PolicyDoc {
        version: 1,
        agents: vec![agent()],
        secrets: vec![secret(0, "api.test".into(), "/v1/*".into())],
        rules: vec![],
        passthrough_hosts: vec![],
    };
    let snapshot = Snapshot::compile(doc).expect("valid");
    let token = token_sha256("token");
    let ids = |target: &str| forward(&snapshot, &token, "GET", target, "API.test.", 443);
    assert_eq!(
        ids("/v1/x?q"),
        Ok(("/v1/x?q".to_owned(), vec!["s0".to_owned()]))
    );
    assert_eq!(
        ids("/v%31/x"),
        Ok(("/v1/x".to_owned(), vec!["s0".to_owned()]))
    );
    assert_eq!(ids("/v2/x"), Ok(("/v2/x".to_owned(), vec![])));
    assert!(ids("/v1/%2e%2e/admin").is_err());
    assert!(ids("/v1%2fx").is_err());
}
