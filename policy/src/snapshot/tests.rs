use super::*;
use crate::model::{AgentDoc, RuleDoc, SecretDoc};
use zeroize::Zeroizing;

fn agent(id: &str, token: &str, mode: SecretMode, secrets: &[&str]) -> AgentDoc {
    AgentDoc {
        project: crate::model::default_project(),
        id: id.into(),
        name: id.into(),
        identifier: id.into(),
        token_sha256: token_sha256(token),
        is_default: false,
        secret_mode: mode,
        secret_ids: secrets.iter().map(|s| s.to_string()).collect(),
        policy_mode: PolicyMode::Allow,
    }
}

fn secret(
    id: &str,
    kind: SecretKind,
    value: &str,
    host: &str,
    path: &str,
    inj: Option<InjectionDoc>,
) -> SecretDoc {
    SecretDoc {
        project: crate::model::default_project(),
        id: id.into(),
        name: id.into(),
        kind,
        value: Zeroizing::new(value.into()),
        host_pattern: host.into(),
        path_pattern: path.into(),
        injection: inj,
        allow_plaintext: false,
    }
}

fn header(name: &str, format: &str) -> Option<InjectionDoc> {
    Some(InjectionDoc::Header {
        name: name.into(),
        format: format.into(),
    })
}

fn doc() -> PolicyDoc {
    PolicyDoc {
        version: 7,
        agents: vec![
            agent("all", "tok-all", SecretMode::All, &[]),
            agent("picky", "tok-picky", SecretMode::Selective, &["gh"]),
        ],
        secrets: vec![
            secret(
                "anth",
                SecretKind::Anthropic,
                "sk-ant-api03-key",
                "api.anthropic.com",
                "*",
                None,
            ),
            secret(
                "wild",
                SecretKind::Generic,
                "w-value",
                "*.example.com",
                "*",
                header("X-Key", "{value}"),
            ),
            secret(
                "gh",
                SecretKind::Generic,
                "gh-value",
                "api.github.com",
                "/repos/*",
                header("Authorization", "token {value}"),
            ),
            secret(
                "q",
                SecretKind::Generic,
                "q-value",
                "maps.example.com",
                "*",
                Some(InjectionDoc::Query {
                    name: "key".into(),
                    format: "{value}".into(),
                }),
            ),
        ],
        rules: vec![],
        passthrough_hosts: vec!["pinned.example.net".into()],
    }
}

fn ids<'a>(it: impl Iterator<Item = &'a Secret>) -> Vec<&'a str> {
    it.map(|s| s.id.as_str()).collect()
}

#[test]
fn agents_are_found_by_token_hash_only() {
    let snap = Snapshot::compile(doc()).expect("valid");
    assert_eq!(snap.version(), 7);
    assert_eq!(
        snap.agent_by_token_hash(&token_sha256("tok-all"))
            .map(|a| a.id.as_str()),
        Some("all")
    );
    assert!(snap
        .agent_by_token_hash(&token_sha256("tok-unknown"))
        .is_none());
}

#[test]
fn injections_follow_host_path_and_visibility() {
    let snap = Snapshot::compile(doc()).expect("valid");
    let all = snap
        .agent_by_token_hash(&token_sha256("tok-all"))
        .expect("agent");
    let picky = snap
        .agent_by_token_hash(&token_sha256("tok-picky"))
        .expect("agent");
    assert_eq!(
        ids(snap.injections(all, "api.anthropic.com", 443, true, "/v1/messages")),
        ["anth"]
    );
    assert_eq!(
        ids(snap.injections(all, "a.example.com", 443, true, "/")),
        ["wild"]
    );
    // Wildcard first, the exact host last, so the exact one wins a shared header.
    assert_eq!(
        ids(snap.injections(all, "maps.example.com", 443, true, "/")),
        ["wild", "q"]
    );
    assert_eq!(
        ids(snap.injections(all, "api.github.com", 443, true, "/repos/x?y=1")),
        ["gh"]
    );
    assert!(ids(snap.injections(all, "api.github.com", 443, true, "/user")).is_empty());
    // A scope is a grant: only its own spelling of the path (SPEC §6.0).
    for other in ["/REPOS/x", "//repos/x", "/repos;x/y", "/Repos/x"] {
        assert!(
            ids(snap.injections(all, "api.github.com", 443, true, other)).is_empty(),
            "{other}"
        );
    }
    assert!(ids(snap.injections(all, "example.com", 443, true, "/")).is_empty());
    // Selective: only the assigned secret.
    assert!(ids(snap.injections(picky, "api.anthropic.com", 443, true, "/")).is_empty());
    assert_eq!(
        ids(snap.injections(picky, "api.github.com", 443, true, "/repos/a")),
        ["gh"]
    );
    // Plaintext gets nothing unless the pattern names the port.
    assert!(ids(snap.injections(all, "api.anthropic.com", 443, false, "/")).is_empty());
    assert!(ids(snap.injections(all, "a.example.com", 80, false, "/")).is_empty());
    assert_eq!(
        snap.secret_presence(picky, "api.anthropic.com", 443),
        SecretPresence::HiddenFromAgent
    );
    assert_eq!(
        snap.secret_presence(all, "api.anthropic.com", 443),
        SecretPresence::Visible
    );
    assert_eq!(
        snap.secret_presence(all, "nowhere.test", 443),
        SecretPresence::None
    );
    assert!(snap.is_passthrough("pinned.example.net", 443));
    assert!(!snap.is_passthrough("api.github.com", 443));
}

#[test]
fn typed_secrets_compile_to_recipes() {
    let snap = Snapshot::compile(PolicyDoc {
        secrets: vec![
            secret(
                "key",
                SecretKind::Anthropic,
                "sk-ant-api03-x",
                "a.test",
                "*",
                None,
            ),
            secret(
                "oauth",
                SecretKind::Anthropic,
                "sk-ant-oat01-x",
                "b.test",
                "*",
                None,
            ),
            secret("oai", SecretKind::Openai, "sk-proj-x", "c.test", "*", None),
        ],
        ..PolicyDoc::default()
    })
    .expect("valid");
    let ops = |id: &str| {
        snap.secrets()
            .iter()
            .find(|s| s.id == id)
            .expect(id)
            .ops
            .clone()
    };
    let set = |name: &str, f: &str| InjectOp::SetHeader {
        name: name.into(),
        format: ValueFormat::parse(f).expect("format"),
    };
    let rm = |name: &str| InjectOp::RemoveHeader { name: name.into() };
    assert_eq!(
        ops("key"),
        [set("x-api-key", "{value}"), rm("authorization")]
    );
    assert_eq!(
        ops("oauth"),
        [
            set("authorization", "Bearer {value}"),
            rm("x-api-key"),
            InjectOp::AddToList {
                name: "anthropic-beta".into(),
                token: ANTHROPIC_OAUTH_BETA.into()
            }
        ]
    );
    assert_eq!(ops("oai"), [set("authorization", "Bearer {value}")]);
}

#[test]
fn value_format_renders_around_the_value() {
    let v = SecretValue::new("abc".into());
    assert_eq!(
        *ValueFormat::parse("Bearer {value}").expect("ok").render(&v),
        "Bearer abc"
    );
    assert_eq!(
        *ValueFormat::parse("{value}!").expect("ok").render(&v),
        "abc!"
    );
    assert!(ValueFormat::parse("Bearer").is_err());
    assert!(ValueFormat::parse("{value}{value}").is_err());
}

#[test]
fn every_problem_is_reported() {
    let mut d = doc();
    d.secrets.push(secret(
        "bad",
        SecretKind::Generic,
        "",
        "a b",
        "nope",
        header("Content-Length", "{value}"),
    ));
    d.secrets.push(secret(
        "nohow",
        SecretKind::Generic,
        "v",
        "x.test",
        "*",
        None,
    ));
    d.agents.push(agent(
        "Bad_Id",
        "tok-all",
        SecretMode::Selective,
        &["missing"],
    ));
    d.rules.push(RuleDoc {
        project: crate::model::default_project(),
        id: "r".into(),
        name: "r".into(),
        host_pattern: "*".into(),
        path_pattern: "*".into(),
        methods: vec!["get".into()],
        agent_id: Some("ghost".into()),
        action: RuleAction::Block,
        enabled: true,
    });
    let errors = Snapshot::compile(d).expect_err("invalid");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for want in [
        "secrets[4].value",
        "secrets[4].host_pattern",
        "secrets[4].path_pattern",
        "secrets[4].injection",
        "secrets[5].injection",
        "agents[2].identifier",
        "agents[2].token",
        "agents[2].secrets",
        "rules[0].agent",
        "rules[0].methods",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(want)),
            "missing {want} in {text:#?}"
        );
    }
}

#[test]
fn debug_output_never_contains_secret_values() {
    let snap = Snapshot::compile(doc()).expect("valid");
    let debug = format!("{snap:?} {:?}", doc());
    for value in ["sk-ant-api03-key", "w-value", "gh-value", "q-value"] {
        assert!(!debug.contains(value), "{value} leaked in Debug");
    }
}

#[test]
fn plaintext_injection_needs_the_secrets_consent_and_never_on_443() {
    let mut consenting = secret(
        "consents",
        SecretKind::Generic,
        "v",
        "*.svc",
        "*",
        header("x-key", "{value}"),
    );
    consenting.allow_plaintext = true;
    let snap = Snapshot::compile(PolicyDoc {
        agents: vec![agent("a", "tok", SecretMode::All, &[])],
        secrets: vec![
            // Naming the port is no consent.
            secret(
                "port-named",
                SecretKind::Generic,
                "v",
                "internal.svc:8080",
                "*",
                header("x-key", "{value}"),
            ),
            consenting,
        ],
        ..PolicyDoc::default()
    })
    .expect("valid");
    let a = snap
        .agent_by_token_hash(&token_sha256("tok"))
        .expect("agent");
    assert_eq!(
        ids(snap.injections(a, "internal.svc", 8080, false, "/")),
        ["consents"]
    );
    assert_eq!(
        ids(snap.injections(a, "internal.svc", 8080, true, "/")),
        ["consents", "port-named"]
    );
    assert_eq!(
        ids(snap.injections(a, "internal.svc", 80, false, "/")),
        ["consents"]
    );
    assert!(
        ids(snap.injections(a, "internal.svc", 443, false, "/")).is_empty(),
        "443 is never plaintext"
    );
}

#[test]
fn a_projects_secrets_are_not_another_projects() {
    let mut doc = doc();
    // A second project with an agent of the same identifier and a secret of
    // its own for a host the first project also has.
    let mut other = agent("all", "tok-other", SecretMode::All, &[]);
    other.project = "p2".into();
    other.id = "all-p2".into();
    let mut theirs = secret(
        "theirs",
        SecretKind::Generic,
        "their-value",
        "api.github.com",
        "*",
        header("Authorization", "token {value}"),
    );
    theirs.project = "p2".into();
    let mut only_theirs = secret(
        "only-theirs",
        SecretKind::Generic,
        "only-value",
        "only.p2.test",
        "*",
        header("X-Key", "{value}"),
    );
    only_theirs.project = "p2".into();
    doc.agents.push(other);
    doc.secrets.push(theirs);
    doc.secrets.push(only_theirs);
    let snap = Snapshot::compile(doc).expect("identifiers are unique per project");
    let all = snap
        .agent_by_token_hash(&token_sha256("tok-all"))
        .expect("agent");
    let other = snap
        .agent_by_token_hash(&token_sha256("tok-other"))
        .expect("agent");
    assert_eq!(other.project, "p2");
    assert_eq!(
        ids(snap.injections(all, "api.github.com", 443, true, "/repos/x")),
        ["gh"]
    );
    assert_eq!(
        ids(snap.injections(other, "api.github.com", 443, true, "/repos/x")),
        ["theirs"]
    );
    assert!(ids(snap.injections(other, "a.example.com", 443, true, "/")).is_empty());
    // Another project's secret does not even exist for the agent: no
    // `access_restricted` that would tell it the host is configured.
    assert_eq!(
        snap.secret_presence(all, "only.p2.test", 443),
        SecretPresence::None
    );
    assert_eq!(
        snap.secret_presence(other, "only.p2.test", 443),
        SecretPresence::Visible
    );
}

#[test]
fn selective_agents_cannot_pick_another_projects_secret() {
    let mut doc = doc();
    doc.agents[1].project = "p2".into();
    let errors = Snapshot::compile(doc).expect_err("refused");
    assert!(
        errors.iter().any(|e| e.message.contains("another project")),
        "{errors:?}"
    );
}

#[test]
fn identifiers_repeat_only_across_projects() {
    let mut doc = doc();
    doc.agents[1].identifier = "all".into();
    assert!(Snapshot::compile(doc.clone()).is_err());
    doc.agents[1].project = "p2".into();
    doc.agents[1].secret_mode = SecretMode::All;
    assert!(Snapshot::compile(doc).is_ok());
}

fn path_secret(value: &str, injection: InjectionDoc) -> Result<Snapshot, Vec<ValidationError>> {
    Snapshot::compile(PolicyDoc {
        secrets: vec![secret(
            "path",
            SecretKind::Generic,
            value,
            "api.telegram.org",
            "*",
            Some(injection),
        )],
        ..PolicyDoc::default()
    })
}

fn rewrite(snap: &Snapshot) -> &PathRewrite {
    match &snap.secrets()[0].ops[..] {
        [InjectOp::SetPath(r)] => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn path_templates_replace_the_rest_of_their_segment() {
    let value = SecretValue::new("123:ABC-def_9".into());
    let template = |t: &str| InjectionDoc::PathTemplate { template: t.into() };
    let snap = path_secret("123:ABC-def_9", template("/bot{value}")).expect("valid");
    let r = rewrite(&snap);
    let out = |p: &str| r.apply(p, &value).map(|s| s.to_string());
    assert_eq!(
        out("/botPLACEHOLDER/getMe").as_deref(),
        Some("/bot123:ABC-def_9/getMe")
    );
    assert_eq!(out("/bot").as_deref(), Some("/bot123:ABC-def_9"));
    assert_eq!(out("/botX").as_deref(), Some("/bot123:ABC-def_9"));
    // Anchored at the start: elsewhere in the path it is not a hole.
    assert_eq!(out("/v1/botX/getMe"), None);
    assert_eq!(out("/other"), None);
    for bad in ["/bot{value}/x", "bot{value}", "/bot", "/{value}{value}"] {
        assert!(path_secret("v", template(bad)).is_err(), "{bad}");
    }
}

#[test]
fn path_regexes_replace_the_first_match_with_captures_and_the_value() {
    let value = SecretValue::new("s3cr3t".into());
    let regex = |p: &str, r: &str| InjectionDoc::PathRegex {
        pattern: p.into(),
        replacement: r.into(),
    };
    let snap = path_secret(
        "s3cr3t",
        regex("^/v1/([a-z]+)/key/[^/]+", "/v1/$1/key/{value}"),
    )
    .expect("valid");
    let r = rewrite(&snap);
    assert_eq!(
        r.apply("/v1/items/key/PLACEHOLDER/list", &value)
            .as_deref()
            .map(String::as_str),
        Some("/v1/items/key/s3cr3t/list")
    );
    assert!(r.apply("/v2/items/key/x", &value).is_none());
    // A capture carrying `{value}` (the agent's own text) is not a hole.
    let snap = path_secret("s3cr3t", regex("^/echo/(.*)$", "/echo/$1/{value}")).expect("valid");
    assert_eq!(
        rewrite(&snap)
            .apply("/echo/{value}", &value)
            .as_deref()
            .map(String::as_str),
        Some("/echo/{value}/s3cr3t")
    );
    for (pattern, replacement) in [("(", "/{value}"), ("^/x", "/x"), ("^/x", "x{value}")] {
        assert!(
            path_secret("v", regex(pattern, replacement)).is_err(),
            "{pattern} {replacement}"
        );
    }
}

#[test]
fn values_that_are_not_path_safe_are_refused_for_the_path() {
    let template = InjectionDoc::PathTemplate {
        template: "/bot{value}".into(),
    };
    for bad in ["a/b", "a?b", "a#b", "a%2Fb", "a b", "é"] {
        let errors = path_secret(bad, template.clone()).expect_err("refused");
        assert!(errors[0].message.contains("path"), "{errors:?}");
        // The value is never in the message.
        assert!(!errors[0].message.contains(bad));
    }
}

#[test]
fn aws_keys_sign_and_chatgpt_logins_name_their_account() {
    let aws = |value: &str, id: &str| {
        secret(
            "aws",
            SecretKind::Aws,
            value,
            "*.amazonaws.com",
            "*",
            Some(InjectionDoc::Aws {
                access_key_id: id.into(),
            }),
        )
    };
    let login =
        r#"{"tokens":{"access_token":"at-1","refresh_token":"rt-1","account_id":"acct-9"}}"#;
    let mut d = doc();
    d.agents.truncate(1);
    d.secrets = vec![
        aws("secret-key\nsession-token", "AKIAREALKEY000000000"),
        secret("codex", SecretKind::Openai, login, "chatgpt.com", "*", None),
    ];
    let snap = Snapshot::compile(d).expect("compiles");
    let signer = &snap.secrets()[0];
    assert_eq!(
        signer.ops,
        vec![InjectOp::SignAws {
            access_key_id: "AKIAREALKEY000000000".into()
        }]
    );
    // The key and its token apart.
    assert_eq!(signer.value().expose(), "secret-key");
    assert_eq!(
        signer.session_token().map(|t| t.expose()),
        Some("session-token")
    );
    // A login injects its access token, never the refresh token, and its account.
    let codex = &snap.secrets()[1];
    assert!(codex.is_chatgpt_login() && !signer.is_chatgpt_login());
    let answer = codex.refresh_answer().expect("an answer");
    assert!(
        answer.contains(crate::credential::MANAGED_REFRESH_TOKEN)
            && !answer.contains("at-1")
            && !answer.contains("rt-1")
    );
    assert_eq!(
        snap.chatgpt_login(&snap.agents()[0]).map(|s| s.id.as_str()),
        Some("codex")
    );
    assert_eq!(codex.value().expose(), "at-1");
    assert!(codex.ops.contains(&InjectOp::SetHeaderText {
        name: CHATGPT_ACCOUNT_HEADER.into(),
        value: "acct-9".into()
    }));

    // Another project's agent has no login to refresh.
    let mut d = doc();
    d.agents.truncate(1);
    let mut codex = secret("codex", SecretKind::Openai, login, "chatgpt.com", "*", None);
    codex.project = "other".into();
    d.secrets = vec![codex];
    let snap = Snapshot::compile(d).expect("compiles");
    assert!(snap.chatgpt_login(&snap.agents()[0]).is_none());

    // What does not compile.
    for bad in [
        aws("key", "lower-case-id"),
        secret("aws", SecretKind::Aws, "key", "*.amazonaws.com", "*", None),
        secret(
            "g",
            SecretKind::Generic,
            "key",
            "h",
            "*",
            Some(InjectionDoc::Aws {
                access_key_id: "AKIAREALKEY000000000".into(),
            }),
        ),
        aws("key with space", "AKIAREALKEY000000000"),
        secret(
            "o",
            SecretKind::Openai,
            "{\"tokens\":{}}",
            "chatgpt.com",
            "*",
            None,
        ),
    ] {
        let mut d = doc();
        d.agents.truncate(1);
        d.secrets = vec![bad];
        assert!(Snapshot::compile(d).is_err());
    }
}
