//! Reference matchers and request generators shared by the property tests
//! of `onecli-policy` and `onecli-gateway` (issue 17).
#![allow(dead_code)]

use onecli_policy::model::{
    default_project, AgentDoc, InjectionDoc, PolicyMode, RuleAction, RuleDoc, SecretDoc,
    SecretKind, SecretMode,
};
use onecli_policy::{token_sha256, PolicyDoc};
use proptest::prelude::*;
use regex::Regex;
use zeroize::Zeroizing;

// ---- Reference matchers, from the pattern's text -------------------------

/// `host[:port]` (no IPv6 here): `*` is one or more of any character.
pub fn reference_host(pattern: &str, host: &str, port: u16) -> bool {
    let lower = pattern.to_ascii_lowercase();
    let (name, wanted_port) = match lower.rsplit_once(':') {
        Some((name, p)) => (name, Some(p.parse::<u16>().expect("generated port"))),
        None => (lower.as_str(), None),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let re = format!("(?s)^{}$", regex::escape(name).replace(r"\*", ".+"));
    wanted_port.is_none_or(|p| p == port) && Regex::new(&re).expect("regex").is_match(host)
}

/// SPEC §5.4's path forms; the query never counts.
pub fn reference_path(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let stars = pattern.matches('*').count();
    let re = if pattern == "*" || pattern == "/*" {
        "(?s)^.*$".to_owned()
    } else if let Some(base) = pattern.strip_suffix("/*").filter(|b| !b.contains('*')) {
        format!("(?s)^{}(/.*)?$", regex::escape(base))
    } else if stars == 1 && pattern.ends_with('*') {
        format!("(?s)^{}.*$", regex::escape(&pattern[..pattern.len() - 1]))
    } else if stars == 0 {
        format!("(?s)^{}$", regex::escape(pattern))
    } else {
        let segments: Vec<String> = pattern[1..]
            .split('/')
            .map(|s| match s {
                "*" => "[^/]+".to_owned(),
                literal => regex::escape(literal),
            })
            .collect();
        format!("(?s)^/{}$", segments.join("/"))
    };
    Regex::new(&re).expect("regex").is_match(path)
}

/// The path as an origin that decodes it reads it: every escape decoded
/// once, dot segments resolved (RFC 3986 §5.2.4).
pub fn origin_view(target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

// ---- Generators ----------------------------------------------------------

pub fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("ab"),
        Just("api"),
        Just("x-y"),
        Just("0")
    ]
    .prop_map(str::to_owned)
}

pub fn host() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
}

/// Exact hosts, `*.host`, a `*` anywhere in one, each maybe with a port.
pub fn host_pattern() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        host(),
        host().prop_map(|h| format!("*.{h}")),
        (host(), any::<prop::sample::Index>()).prop_map(|(h, at)| {
            let at = at.index(h.len() + 1);
            format!("{}*{}", &h[..at], &h[at..])
        }),
    ];
    let port = prop_oneof![Just(None), Just(Some(443u16)), Just(Some(8443u16))];
    (name, port).prop_map(|(name, port)| match port {
        Some(p) => format!("{name}:{p}"),
        None => name,
    })
}

/// A request's host as an agent may spell it: any case, a final dot.
pub fn request_host() -> impl Strategy<Value = String> {
    (
        host(),
        any::<bool>(),
        prop::collection::vec(any::<bool>(), 12),
    )
        .prop_map(|(h, dot, upper)| {
            let mut spelled: String = h
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                .collect();
            if dot {
                spelled.push('.');
            }
            spelled
        })
}

pub fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(443u16), Just(8443u16), Just(80u16)]
}

pub fn pattern_segment() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("ab"), Just("v1"), Just("*")].prop_map(str::to_owned)
}

/// `*`, `/p/*`, `/p*`, exact paths and segment globs.
pub fn path_pattern() -> impl Strategy<Value = String> {
    let segments = || prop::collection::vec(pattern_segment(), 1..4);
    prop_oneof![
        Just("*".to_owned()),
        Just("/*".to_owned()),
        segments().prop_map(|s| format!("/{}", s.join("/"))),
        segments().prop_map(|s| format!("/{}/*", s.join("/").replace('*', "x"))),
        segments().prop_map(|s| format!("/{}*", s.join("/").replace('*', "x"))),
    ]
}

/// Request paths spelled every way an agent might: escapes (decodable
/// and not), dot segments, empty segments, parameters, case, a query.
pub fn request_target() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("a"),
        Just("b"),
        Just("ab"),
        Just("v1"),
        Just("x"),
        Just("A"),
        Just("%61"),
        Just("%41b"),
        Just("%2e"),
        Just("%2E%2E"),
        Just("."),
        Just(".."),
        Just(""),
        Just("a;p"),
        Just("%2F"),
        Just("a%2fb"),
        Just("%3B"),
        Just("x%20y"),
        Just("%25"),
        Just("%5C"),
        Just("\\"),
    ];
    (
        prop::collection::vec(segment, 0..5),
        prop_oneof![Just(""), Just("?q=1"), Just("?/a/b"), Just("?"), Just("/")],
    )
        .prop_map(|(segments, tail)| format!("/{}{tail}", segments.join("/")))
}

pub fn agent() -> AgentDoc {
    AgentDoc {
        id: "agent".into(),
        project: default_project(),
        name: "agent".into(),
        identifier: "agent".into(),
        token_sha256: token_sha256("token"),
        is_default: true,
        secret_mode: SecretMode::All,
        secret_ids: vec![],
        policy_mode: PolicyMode::Allow,
    }
}

pub fn secret(i: usize, host_pattern: String, path_pattern: String) -> SecretDoc {
    SecretDoc {
        id: format!("s{i}"),
        project: default_project(),
        name: format!("s{i}"),
        kind: SecretKind::Generic,
        value: Zeroizing::new(format!("value-{i}")),
        host_pattern,
        path_pattern,
        injection: Some(InjectionDoc::Header {
            name: format!("x-s{i}"),
            format: "{value}".into(),
        }),
        allow_plaintext: false,
    }
}

pub fn rule(i: usize, host_pattern: String, path_pattern: String, methods: Vec<String>) -> RuleDoc {
    RuleDoc {
        id: format!("r{i}"),
        project: default_project(),
        name: format!("r{i}"),
        host_pattern,
        path_pattern,
        methods,
        agent_id: None,
        action: RuleAction::Block,
        enabled: true,
    }
}

pub fn policy_doc() -> impl Strategy<Value = PolicyDoc> {
    let secrets = prop::collection::vec((host_pattern(), path_pattern()), 0..4);
    let rules = prop::collection::vec(
        (
            host_pattern(),
            path_pattern(),
            prop::collection::vec(prop_oneof![Just("GET"), Just("POST")], 0..2),
        ),
        0..3,
    );
    (
        any::<u64>(),
        secrets,
        rules,
        prop::collection::vec(host(), 0..2),
    )
        .prop_map(|(version, secrets, rules, passthrough_hosts)| PolicyDoc {
            version,
            agents: vec![agent()],
            secrets: secrets
                .into_iter()
                .enumerate()
                .map(|(i, (h, p))| secret(i, h, p))
                .collect(),
            rules: rules
                .into_iter()
                .enumerate()
                .map(|(i, (h, p, m))| rule(i, h, p, m.into_iter().map(str::to_owned).collect()))
                .collect(),
            passthrough_hosts,
        })
}
