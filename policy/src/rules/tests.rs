use crate::model::{AgentDoc, PolicyDoc, PolicyMode, RateWindow, RuleAction, RuleDoc, SecretMode};
use crate::rules::Decision;
use crate::snapshot::{token_sha256, Snapshot};
use crate::CanonicalRequest;

fn agent(id: &str, mode: PolicyMode) -> AgentDoc {
    AgentDoc {
        project: crate::model::default_project(),
        id: id.into(),
        name: id.into(),
        identifier: id.into(),
        token_sha256: token_sha256(id),
        is_default: false,
        secret_mode: SecretMode::All,
        secret_ids: vec![],
        policy_mode: mode,
    }
}

fn rule(
    name: &str,
    agent: Option<&str>,
    host: &str,
    path: &str,
    methods: &[&str],
    action: RuleAction,
) -> RuleDoc {
    RuleDoc {
        project: crate::model::default_project(),
        id: name.into(),
        name: name.into(),
        host_pattern: host.into(),
        path_pattern: path.into(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
        agent_id: agent.map(str::to_owned),
        action,
        enabled: true,
    }
}

fn snapshot(agents: Vec<AgentDoc>, rules: Vec<RuleDoc>) -> Snapshot {
    Snapshot::compile(PolicyDoc {
        agents,
        rules,
        ..PolicyDoc::default()
    })
    .expect("valid")
}

/// The decision as `action:rule` (`allow`, `allow+rl:a,b`, `block:x`, `default`, `approval:x`).
fn decide(snap: &Snapshot, agent: &str, method: &str, host: &str, path: &str) -> String {
    let a = snap
        .agent_by_token_hash(&token_sha256(agent))
        .expect("agent");
    let canonical = CanonicalRequest::new(method, path, []).expect("canonical");
    let req = canonical.facts(host, 443);
    let names = |rules: &[&crate::Rule]| {
        rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    match snap.evaluate(a, req) {
        Decision::Allow { rate_limits } if rate_limits.is_empty() => "allow".into(),
        Decision::Allow { rate_limits } => format!("allow+rl:{}", names(&rate_limits)),
        Decision::Block(r) => format!("block:{}", r.name),
        Decision::BlockByDefault => "default".into(),
        Decision::NeedsApproval { rule, rate_limits } if rate_limits.is_empty() => {
            format!("approval:{}", rule.name)
        }
        Decision::NeedsApproval { rule, rate_limits } => {
            format!("approval:{}+rl:{}", rule.name, names(&rate_limits))
        }
    }
}

fn per_hour(limit: u32) -> RuleAction {
    RuleAction::RateLimit {
        limit,
        window: RateWindow::Hour,
    }
}

#[test]
fn each_row_of_spec_section_6() {
    let snap = snapshot(
        vec![agent("a", PolicyMode::Allow), agent("d", PolicyMode::Deny)],
        vec![
            rule(
                "no-delete",
                None,
                "api.test",
                "*",
                &["DELETE"],
                RuleAction::Block,
            ),
            rule(
                "ask",
                None,
                "api.test",
                "/admin/*",
                &[],
                RuleAction::ManualApproval,
            ),
            rule("hourly", None, "limited.test", "*", &[], per_hour(5)),
            rule("open", Some("d"), "open.test", "*", &[], RuleAction::Allow),
            rule("off", None, "off.test", "*", &[], RuleAction::Block),
        ],
    );
    // 1. block
    assert_eq!(
        decide(&snap, "a", "DELETE", "api.test", "/x"),
        "block:no-delete"
    );
    // 2. manual approval
    assert_eq!(
        decide(&snap, "a", "GET", "api.test", "/admin/users"),
        "approval:ask"
    );
    // 3. rate limit (counted by the gateway)
    assert_eq!(
        decide(&snap, "a", "GET", "limited.test", "/"),
        "allow+rl:hourly"
    );
    // 4. deny mode without a matching allow or rate_limit rule
    assert_eq!(decide(&snap, "d", "GET", "elsewhere.test", "/"), "default");
    assert_eq!(decide(&snap, "d", "GET", "open.test", "/"), "allow");
    assert_eq!(
        decide(&snap, "d", "GET", "limited.test", "/"),
        "allow+rl:hourly"
    );
    // 5. otherwise allow
    assert_eq!(decide(&snap, "a", "GET", "api.test", "/x"), "allow");
    assert_eq!(decide(&snap, "a", "GET", "elsewhere.test", "/"), "allow");
}

#[test]
fn disabled_rules_are_ignored() {
    let mut off = rule("off", None, "*", "*", &[], RuleAction::Block);
    off.enabled = false;
    let snap = snapshot(vec![agent("a", PolicyMode::Allow)], vec![off]);
    assert_eq!(decide(&snap, "a", "GET", "x.test", "/"), "allow");
}

#[test]
fn precedence_when_several_rules_match() {
    let snap = snapshot(
        vec![agent("a", PolicyMode::Deny)],
        vec![
            rule("allow-all", None, "*", "*", &[], RuleAction::Allow),
            rule("limit", None, "*", "*", &[], per_hour(100)),
            rule(
                "ask-posts",
                None,
                "*",
                "*",
                &["POST"],
                RuleAction::ManualApproval,
            ),
            rule("no-deletes", None, "*", "*", &["DELETE"], RuleAction::Block),
        ],
    );
    assert_eq!(
        decide(&snap, "a", "DELETE", "x.test", "/"),
        "block:no-deletes"
    );
    assert_eq!(
        decide(&snap, "a", "POST", "x.test", "/"),
        "approval:ask-posts+rl:limit"
    );
    assert_eq!(decide(&snap, "a", "GET", "x.test", "/"), "allow+rl:limit");
}

#[test]
fn an_agent_rule_shadows_the_same_all_agents_rule() {
    let snap = snapshot(
        vec![agent("a", PolicyMode::Allow), agent("b", PolicyMode::Allow)],
        vec![
            rule(
                "everyone-blocked",
                None,
                "api.test",
                "/v1/*",
                &["POST"],
                RuleAction::Block,
            ),
            rule(
                "a-may",
                Some("a"),
                "api.test",
                "/v1/*",
                &["POST"],
                RuleAction::Allow,
            ),
            // Different path: no shadowing.
            rule("everyone-limited", None, "api.test", "*", &[], per_hour(10)),
        ],
    );
    assert_eq!(
        decide(&snap, "a", "POST", "api.test", "/v1/x"),
        "allow+rl:everyone-limited"
    );
    assert_eq!(
        decide(&snap, "b", "POST", "api.test", "/v1/x"),
        "block:everyone-blocked"
    );
}

#[test]
fn agent_rules_do_not_touch_other_agents() {
    let snap = snapshot(
        vec![agent("a", PolicyMode::Allow), agent("b", PolicyMode::Allow)],
        vec![rule(
            "a-no-slack",
            Some("a"),
            "*.slack.com",
            "*",
            &[],
            RuleAction::Block,
        )],
    );
    assert_eq!(
        decide(&snap, "a", "GET", "app.slack.com", "/"),
        "block:a-no-slack"
    );
    assert_eq!(decide(&snap, "b", "GET", "app.slack.com", "/"), "allow");
}

#[test]
fn the_three_agents_operators_describe() {
    let snap = snapshot(
        vec![
            agent("email", PolicyMode::Allow),
            agent("code", PolicyMode::Deny),
            agent("research", PolicyMode::Allow),
        ],
        vec![
            rule(
                "no-delete",
                Some("email"),
                "gmail.googleapis.com",
                "*",
                &["DELETE"],
                RuleAction::Block,
            ),
            rule(
                "no-trash",
                Some("email"),
                "gmail.googleapis.com",
                "/gmail/v1/users/*/messages/*/trash",
                &[],
                RuleAction::Block,
            ),
            rule(
                "github-api",
                Some("code"),
                "api.github.com",
                "*",
                &[],
                RuleAction::Allow,
            ),
            rule(
                "github",
                Some("code"),
                "github.com",
                "*",
                &[],
                RuleAction::Allow,
            ),
            rule(
                "read-only",
                Some("research"),
                "*",
                "*",
                &["POST", "PUT", "PATCH", "DELETE"],
                RuleAction::Block,
            ),
            rule("hourly", Some("research"), "*", "*", &[], per_hour(100)),
        ],
    );
    assert_eq!(
        decide(
            &snap,
            "email",
            "GET",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages"
        ),
        "allow"
    );
    assert_eq!(
        decide(
            &snap,
            "email",
            "DELETE",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages/1"
        ),
        "block:no-delete"
    );
    assert_eq!(
        decide(
            &snap,
            "email",
            "POST",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages/1/trash"
        ),
        "block:no-trash"
    );
    assert_eq!(
        decide(&snap, "code", "POST", "api.github.com", "/repos/a/b/issues"),
        "allow"
    );
    assert_eq!(
        decide(&snap, "code", "GET", "github.com", "/a/b.git/info/refs"),
        "allow"
    );
    assert_eq!(
        decide(&snap, "code", "POST", "slack.com", "/api/chat.postMessage"),
        "default"
    );
    assert_eq!(
        decide(&snap, "research", "GET", "en.wikipedia.org", "/wiki/Rust"),
        "allow+rl:hourly"
    );
    assert_eq!(
        decide(&snap, "research", "POST", "en.wikipedia.org", "/w/api.php"),
        "block:read-only"
    );
}

#[test]
fn ports_in_host_patterns_and_queries_in_paths() {
    let snap = snapshot(
        vec![agent("a", PolicyMode::Allow)],
        vec![
            rule(
                "admin-port",
                None,
                "h.test:8443",
                "*",
                &[],
                RuleAction::Block,
            ),
            rule("exact", None, "q.test", "/v1/x", &[], RuleAction::Block),
        ],
    );
    let a = snap.agent_by_token_hash(&token_sha256("a")).expect("agent");
    let at = |host, port, path| {
        let canonical = CanonicalRequest::new("GET", path, []).expect("canonical");
        snap.evaluate(a, canonical.facts(host, port))
    };
    assert!(matches!(at("h.test", 8443, "/"), Decision::Block(_)));
    assert!(matches!(at("h.test", 443, "/"), Decision::Allow { .. }));
    assert!(matches!(at("q.test", 443, "/v1/x?y=1"), Decision::Block(_)));
}

#[test]
fn restrictions_catch_every_spelling_grants_only_the_exact_one() {
    let snap = snapshot(
        vec![agent("a", PolicyMode::Allow), agent("d", PolicyMode::Deny)],
        vec![
            rule(
                "admin",
                None,
                "api.test",
                "/admin/*",
                &[],
                RuleAction::Block,
            ),
            rule(
                "no-delete",
                None,
                "api.test",
                "*",
                &["DELETE"],
                RuleAction::Block,
            ),
            rule("no-get", None, "get.test", "*", &["GET"], RuleAction::Block),
            rule(
                "ask",
                None,
                "api.test",
                "/approve/*",
                &[],
                RuleAction::ManualApproval,
            ),
            rule("hourly", None, "api.test", "/limited", &[], per_hour(1)),
            rule(
                "public",
                Some("d"),
                "api.test",
                "/public/*",
                &["GET"],
                RuleAction::Allow,
            ),
            rule("metered", Some("d"), "m.test", "/Metered", &[], per_hour(9)),
        ],
    );
    for path in [
        "/admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/ADMIN/x",
        "/admin;foo/x",
        "/Admin/",
        "/admin",
    ] {
        assert_eq!(
            decide(&snap, "a", "GET", "api.test", path),
            "block:admin",
            "{path}"
        );
    }
    for method in ["DELETE", "delete", "Delete"] {
        assert_eq!(
            decide(&snap, "a", method, "api.test", "/x"),
            "block:no-delete"
        );
    }
    assert_eq!(decide(&snap, "a", "HEAD", "get.test", "/x"), "block:no-get");
    assert_eq!(decide(&snap, "a", "get", "get.test", "/x"), "block:no-get");
    assert_eq!(decide(&snap, "a", "POST", "get.test", "/x"), "allow");
    for path in ["/approve/x", "/%61pprove/x", "/APPROVE//x"] {
        assert_eq!(
            decide(&snap, "a", "GET", "api.test", path),
            "approval:ask",
            "{path}"
        );
    }
    for path in [
        "/limited",
        "/%6cimited",
        "/limited/",
        "/LIMITED",
        "//limited;x",
    ] {
        assert_eq!(
            decide(&snap, "a", "GET", "api.test", path),
            "allow+rl:hourly",
            "{path}"
        );
    }
    // A method override header is the method, for restrictions.
    let a = snap.agent_by_token_hash(&token_sha256("a")).expect("agent");
    let overridden = CanonicalRequest::new("POST", "/x", [&b"DELETE"[..]]).expect("canonical");
    assert!(matches!(
        snap.evaluate(a, overridden.facts("api.test", 443)),
        Decision::Block(r) if r.name == "no-delete"
    ));
    // Grants are narrow: only the spelling the rule names.
    assert_eq!(decide(&snap, "d", "GET", "api.test", "/public/x"), "allow");
    assert_eq!(
        decide(&snap, "d", "GET", "api.test", "/%70ublic/x"),
        "allow"
    );
    for (method, path) in [
        ("GET", "/PUBLIC/x"),
        ("GET", "//public/x"),
        ("GET", "/public;x/y"),
        ("get", "/public/x"),
        ("HEAD", "/public/x"),
    ] {
        assert_eq!(
            decide(&snap, "d", method, "api.test", path),
            "default",
            "{method} {path}"
        );
    }
    // A rate limit counts every spelling but lets a deny-mode agent through
    // only on the one it names.
    assert_eq!(
        decide(&snap, "d", "GET", "m.test", "/Metered"),
        "allow+rl:metered"
    );
    assert_eq!(decide(&snap, "d", "GET", "m.test", "/metered"), "default");
}

fn in_project(project: &str, mut agent: AgentDoc) -> AgentDoc {
    agent.project = project.into();
    agent
}

fn rule_in(project: &str, mut rule: RuleDoc) -> RuleDoc {
    rule.project = project.into();
    rule
}

#[test]
fn rules_for_every_agent_stay_in_their_project() {
    let snap = snapshot(
        vec![
            in_project("p1", agent("one", PolicyMode::Allow)),
            in_project("p2", agent("two", PolicyMode::Deny)),
        ],
        vec![
            rule_in(
                "p1",
                rule("p1-block", None, "api.test", "*", &[], RuleAction::Block),
            ),
            rule_in(
                "p1",
                rule("p1-allow", None, "open.test", "*", &[], RuleAction::Allow),
            ),
            rule_in(
                "p2",
                rule("p2-limit", None, "api.test", "*", &[], per_hour(5)),
            ),
        ],
    );
    assert_eq!(
        decide(&snap, "one", "GET", "api.test", "/x"),
        "block:p1-block"
    );
    // Another project's block does not reach p2, nor its allow: p2 is in
    // deny mode and only its own rule lets it through.
    assert_eq!(
        decide(&snap, "two", "GET", "api.test", "/x"),
        "allow+rl:p2-limit"
    );
    assert_eq!(decide(&snap, "two", "GET", "open.test", "/x"), "default");
    assert_eq!(decide(&snap, "one", "GET", "open.test", "/x"), "allow");
}

#[test]
fn a_rule_cannot_name_another_projects_agent() {
    let errors = Snapshot::compile(PolicyDoc {
        agents: vec![in_project("p1", agent("one", PolicyMode::Allow))],
        rules: vec![rule_in(
            "p2",
            rule("x", Some("one"), "api.test", "*", &[], RuleAction::Block),
        )],
        ..PolicyDoc::default()
    })
    .expect_err("refused");
    assert!(errors[0].message.contains("another project"), "{errors:?}");
}
