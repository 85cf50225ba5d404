use super::*;
use onecli_policy::Snapshot;

fn store(dir: &Path) -> Store {
    Store::open(dir, SealingKey::from_bytes([9; 32])).expect("open")
}

fn secret(name: &str, value: &str, host: &str) -> SecretInput {
    SecretInput {
        name: Some(name.into()),
        kind: Some(SecretKind::Openai),
        value: Some(Zeroizing::new(value.into())),
        host_pattern: Some(host.into()),
        ..SecretInput::default()
    }
}

#[test]
fn agents_are_created_unique_renamed_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let a = s
        .scoped(DEFAULT_PROJECT)
        .create_agent("Claude", "claude", false)
        .expect("create");
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT)
            .create_agent("Other", "claude", false),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT)
            .create_agent("Bad", "Bad_Id", false),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT)
            .create_agent("", "empty-name", false),
        Err(StoreError::Invalid(_))
    ));
    let token = s.scoped(DEFAULT_PROJECT).agent_token(&a).expect("token");
    assert!(onecli_policy::is_valid_agent_token(&token));
    assert_eq!(token_sha256(&token), a.token_sha256);
    s.scoped(DEFAULT_PROJECT)
        .update_agent(&a.id, |r| {
            r.name = "Claude Code".into();
            Ok(())
        })
        .expect("rename");
    assert_eq!(
        s.scoped(DEFAULT_PROJECT).agent(&a.id).expect("get").name,
        "Claude Code"
    );
    let new_token = s
        .scoped(DEFAULT_PROJECT)
        .regenerate_token(&a.id)
        .expect("regenerate");
    assert_ne!(*new_token, *token);
    assert_eq!(
        s.scoped(DEFAULT_PROJECT)
            .agent(&a.id)
            .expect("get")
            .token_sha256,
        token_sha256(&new_token)
    );
    s.scoped(DEFAULT_PROJECT)
        .delete_agent(&a.id)
        .expect("delete");
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT).agent(&a.id),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT).delete_agent(&a.id),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn the_default_agent_is_created_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let a = s.scoped(DEFAULT_PROJECT).default_agent().expect("default");
    assert_eq!(
        (a.name.as_str(), a.identifier.as_str(), a.is_default),
        ("Default Agent", "default", true)
    );
    assert_eq!(
        s.scoped(DEFAULT_PROJECT).default_agent().expect("again").id,
        a.id
    );
    assert_eq!(s.scoped(DEFAULT_PROJECT).agents().expect("list").len(), 1);
}

#[test]
fn secrets_are_validated_and_sealed_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let created = s
        .scoped(DEFAULT_PROJECT)
        .create_secret(secret(
            "OpenAI",
            "sk-proj-PLAINTEXT-abcdef",
            "api.openai.com",
        ))
        .expect("create");
    assert_eq!(created.preview, "••••••••cdef");
    assert_eq!(created.path_pattern, "*");
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT)
            .create_secret(secret("Bad", "v", "a b")),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT)
            .create_secret(secret("Empty", "", "h.test")),
        Err(StoreError::Invalid(_))
    ));
    let generic = SecretInput {
        kind: Some(SecretKind::Generic),
        ..secret("G", "v", "h.test")
    };
    assert!(
        matches!(
            s.scoped(DEFAULT_PROJECT).create_secret(generic),
            Err(StoreError::Invalid(_))
        ),
        "generic needs an injection"
    );
    let agent = s
        .scoped(DEFAULT_PROJECT)
        .create_agent("A", "a", false)
        .expect("agent");
    let token = s
        .scoped(DEFAULT_PROJECT)
        .agent_token(&agent)
        .expect("token");
    drop(s);
    let file = std::fs::read(dir.path().join("onecli.redb")).expect("db file");
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"PLAINTEXT"), "secret value in the clear on disk");
    assert!(!contains(b"sk-p"), "a fragment of the value on disk");
    assert!(
        !contains(token.as_bytes()),
        "agent token in the clear on disk"
    );
    assert!(
        !contains(&token.as_bytes()[4..20]),
        "agent token hex in the clear on disk"
    );
}

#[test]
fn updates_keep_what_they_do_not_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let created = s
        .scoped(DEFAULT_PROJECT)
        .create_secret(secret("OpenAI", "sk-proj-first-value", "api.openai.com"))
        .expect("create");
    let updated = s
        .scoped(DEFAULT_PROJECT)
        .update_secret(
            &created.id,
            SecretInput {
                name: Some("Renamed".into()),
                ..SecretInput::default()
            },
        )
        .expect("rename");
    assert_eq!(updated.preview, created.preview);
    let doc = s.policy_doc().expect("doc");
    assert_eq!(doc.secrets[0].value.as_str(), "sk-proj-first-value");
    assert_eq!(doc.secrets[0].name, "Renamed");
    s.scoped(DEFAULT_PROJECT)
        .update_secret(
            &created.id,
            SecretInput {
                value: Some(Zeroizing::new("sk-proj-second-value".into())),
                ..SecretInput::default()
            },
        )
        .expect("new value");
    assert_eq!(
        s.policy_doc().expect("doc").secrets[0].value.as_str(),
        "sk-proj-second-value"
    );
}

#[test]
fn deletes_cascade_to_assignments_and_agent_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let sec = s
        .scoped(DEFAULT_PROJECT)
        .create_secret(secret("OpenAI", "sk-proj-x", "api.openai.com"))
        .expect("secret");
    let agent = s
        .scoped(DEFAULT_PROJECT)
        .create_agent("A", "a", false)
        .expect("agent");
    s.scoped(DEFAULT_PROJECT)
        .update_agent(&agent.id, |a| {
            a.secret_mode = SecretMode::Selective;
            a.secret_ids = vec![sec.id.clone()];
            Ok(())
        })
        .expect("assign");
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT).update_agent(&agent.id, |a| {
            a.secret_ids = vec!["nope".into()];
            Ok(())
        }),
        Err(StoreError::Invalid(_))
    ));
    let rule = RuleInput {
        name: Some("r".into()),
        host_pattern: Some("*".into()),
        agent_id: Some(Some(agent.id.clone())),
        action: Some(RuleAction::Block),
        ..RuleInput::default()
    };
    let rule = s.scoped(DEFAULT_PROJECT).create_rule(rule).expect("rule");
    s.scoped(DEFAULT_PROJECT)
        .delete_secret(&sec.id)
        .expect("delete secret");
    assert!(s
        .scoped(DEFAULT_PROJECT)
        .agent(&agent.id)
        .expect("agent")
        .secret_ids
        .is_empty());
    s.scoped(DEFAULT_PROJECT)
        .delete_agent(&agent.id)
        .expect("delete agent");
    assert!(matches!(
        s.scoped(DEFAULT_PROJECT).rule(&rule.id),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn rules_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let base = || RuleInput {
        name: Some("r".into()),
        host_pattern: Some("*.x.test".into()),
        action: Some(RuleAction::Block),
        ..RuleInput::default()
    };
    let ok = s
        .scoped(DEFAULT_PROJECT)
        .create_rule(base())
        .expect("valid");
    assert!(ok.enabled);
    for bad in [
        RuleInput {
            host_pattern: Some("a b".into()),
            ..base()
        },
        RuleInput {
            path_pattern: Some("nope".into()),
            ..base()
        },
        RuleInput {
            methods: Some(vec!["get".into()]),
            ..base()
        },
        RuleInput {
            agent_id: Some(Some("ghost".into())),
            ..base()
        },
        RuleInput {
            action: Some(RuleAction::RateLimit {
                limit: 0,
                window: RateWindow::Hour,
            }),
            ..base()
        },
        RuleInput {
            name: None,
            ..base()
        },
    ] {
        assert!(matches!(
            s.scoped(DEFAULT_PROJECT).create_rule(bad),
            Err(StoreError::Invalid(_))
        ));
    }
    let updated = s
        .scoped(DEFAULT_PROJECT)
        .update_rule(
            &ok.id,
            RuleInput {
                enabled: Some(false),
                ..RuleInput::default()
            },
        )
        .expect("update");
    assert!(!updated.enabled);
    assert_eq!(updated.host_pattern, "*.x.test");
}

#[test]
fn every_write_bumps_the_version_and_the_doc_compiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let v0 = s.policy_version().expect("version");
    let agent = s
        .scoped(DEFAULT_PROJECT)
        .create_agent("A", "a", false)
        .expect("agent");
    s.scoped(DEFAULT_PROJECT)
        .create_secret(secret("OpenAI", "sk-proj-x", "api.openai.com"))
        .expect("secret");
    s.scoped(DEFAULT_PROJECT)
        .create_rule(RuleInput {
            name: Some("r".into()),
            host_pattern: Some("*".into()),
            methods: Some(vec!["DELETE".into()]),
            agent_id: Some(Some(agent.id.clone())),
            action: Some(RuleAction::Block),
            ..RuleInput::default()
        })
        .expect("rule");
    assert_eq!(s.policy_version().expect("version"), v0 + 3);
    let (_, key) = s.create_api_key("admin", None).expect("api key");
    assert_eq!(
        s.policy_version().expect("version"),
        v0 + 3,
        "API keys are not policy"
    );
    let found = s.verify_api_key(&key).expect("verify").expect("valid");
    assert_eq!(found.project, None, "an admin key");
    assert!(s.verify_api_key("oc_wrong").expect("verify").is_none());
    let doc = s.policy_doc().expect("doc");
    assert_eq!(doc.version, v0 + 3);
    let snap = Snapshot::compile(doc).expect("compiles");
    assert!(snap.agent_by_token_hash(&agent.token_sha256).is_some());
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, secret_id) = {
        let s = store(dir.path());
        let a = s
            .scoped(DEFAULT_PROJECT)
            .create_agent("A", "a", false)
            .expect("agent");
        let sec = s
            .scoped(DEFAULT_PROJECT)
            .create_secret(secret("OpenAI", "sk-proj-x", "api.openai.com"))
            .expect("secret");
        (a, sec.id)
    };
    let s = store(dir.path());
    assert_eq!(
        s.scoped(DEFAULT_PROJECT)
            .agent(&agent.id)
            .expect("agent")
            .identifier,
        "a"
    );
    assert_eq!(
        s.scoped(DEFAULT_PROJECT)
            .secret(&secret_id)
            .expect("secret")
            .name,
        "OpenAI"
    );
    // A different key is refused at once, not at the first secret.
    drop(s);
    let err = Store::open(dir.path(), SealingKey::from_bytes([1; 32])).expect_err("refused");
    assert!(matches!(err, StoreError::WrongKey), "{err}");
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(store(dir.path()));
    {
        let db = Database::create(dir.path().join("onecli.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("schema_version", SCHEMA_VERSION + 1)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = Store::open(dir.path(), SealingKey::from_bytes([9; 32])).expect_err("refused");
    assert!(matches!(err, StoreError::NewerSchema { .. }));
    assert!(err.to_string().contains("newer OneCLI"), "{err}");
}

fn record(n: u64, agent: &str) -> AuditRecord {
    AuditRecord {
        project: onecli_policy::model::default_project(),
        time: format!("t{n}"),
        unix_ms: n * 1000,
        agent_id: format!("id-{agent}"),
        agent: agent.into(),
        method: "GET".into(),
        host: "h.test".into(),
        path: "/".into(),
        rule_id: None,
        rule_name: None,
        outcome: "forwarded".into(),
        injected: vec![],
        status: 200,
        duration_ms: 1,
    }
}

#[test]
fn the_audit_log_is_bounded_and_read_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let batch: Vec<AuditRecord> = (1..=8)
        .map(|n| record(n, if n % 2 == 0 { "even" } else { "odd" }))
        .collect();
    s.append_audit(&batch[..5], 6).expect("append");
    s.append_audit(&batch[5..], 6).expect("append");
    let all = s
        .scoped(DEFAULT_PROJECT)
        .audit(None, None, 100)
        .expect("read");
    assert_eq!(
        all.iter().map(|r| r.unix_ms / 1000).collect::<Vec<_>>(),
        [8, 7, 6, 5, 4, 3],
        "oldest dropped first"
    );
    let even = s
        .scoped(DEFAULT_PROJECT)
        .audit(Some("even"), None, 100)
        .expect("read");
    assert_eq!(
        even.iter().map(|r| r.unix_ms / 1000).collect::<Vec<_>>(),
        [8, 6, 4]
    );
    assert_eq!(
        s.scoped(DEFAULT_PROJECT)
            .audit(Some("id-odd"), Some(5000), 100)
            .expect("read")
            .len(),
        2,
        "since and agent id"
    );
    assert_eq!(
        s.scoped(DEFAULT_PROJECT)
            .audit(None, None, 2)
            .expect("read")
            .len(),
        2,
        "limit"
    );
    assert_eq!(
        s.policy_version().expect("v"),
        1,
        "the audit log is not policy"
    );
}

#[test]
fn the_file_keeps_no_plaintext_fragment_of_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let value = "sk-proj-PLAINTEXT-abcdef";
    let id = {
        let s = store(dir.path());
        let created = s
            .scoped(DEFAULT_PROJECT)
            .create_secret(secret("OpenAI", value, "api.openai.com"))
            .expect("create");
        assert_eq!(
            s.scoped(DEFAULT_PROJECT)
                .secret(&created.id)
                .expect("get")
                .preview,
            "••••••••cdef"
        );
        assert_eq!(
            s.scoped(DEFAULT_PROJECT).secrets().expect("list")[0].preview,
            "••••••••cdef"
        );
        // What an earlier version wrote: the first and last four in clear.
        let txn = s.db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(SECRETS).expect("table");
            let raw = table
                .get(created.id.as_str())
                .expect("get")
                .expect("row")
                .value()
                .to_vec();
            let mut legacy: serde_json::Value = serde_json::from_slice(&raw).expect("json");
            legacy["preview"] = serde_json::json!("sk-p••••••••cdef");
            let bytes = serde_json::to_vec(&legacy).expect("json");
            table
                .insert(created.id.as_str(), bytes.as_slice())
                .expect("put");
        }
        txn.commit().expect("commit");
        created.id
    };
    let contains = |needle: &[u8]| {
        let file = std::fs::read(dir.path().join("onecli.redb")).expect("db file");
        file.windows(needle.len()).any(|w| w == needle)
    };
    assert!(
        contains("sk-p••".as_bytes()),
        "the legacy record is on disk"
    );
    // Opening again rewrites the record and compacts the file.
    let s = store(dir.path());
    assert_eq!(
        s.scoped(DEFAULT_PROJECT).secret(&id).expect("get").preview,
        "••••••••cdef"
    );
    drop(s);
    assert!(!contains(b"PLAINTEXT"), "the value in clear");
    assert!(!contains("sk-p••".as_bytes()), "the old preview");
    assert!(!contains("••cdef".as_bytes()), "a preview");
    assert!(!contains(b"\"preview\""), "a preview field");
}

#[test]
fn a_dry_run_checks_like_a_write_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    s.scoped(DEFAULT_PROJECT)
        .create_agent("Kept", "kept", false)
        .expect("create");
    let version = s.policy_version().expect("version");
    let created = dry_run(|| s.scoped(DEFAULT_PROJECT).create_agent("New", "new", false))
        .expect("would be created");
    assert_eq!(created.identifier, "new");
    assert!(matches!(
        dry_run(|| s.scoped(DEFAULT_PROJECT).create_agent("Dup", "kept", false)),
        Err(StoreError::Conflict(_))
    ));
    dry_run(|| {
        s.scoped(DEFAULT_PROJECT)
            .create_secret(secret("A", "sk-proj-0123456789abcdef", "api.test"))
    })
    .expect("would be stored");
    let identifiers: Vec<String> = s
        .scoped(DEFAULT_PROJECT)
        .agents()
        .expect("agents")
        .into_iter()
        .map(|a| a.identifier)
        .collect();
    assert_eq!(identifiers, ["kept"]);
    assert!(s
        .scoped(DEFAULT_PROJECT)
        .secrets()
        .expect("secrets")
        .is_empty());
    assert_eq!(s.policy_version().expect("version"), version);
    // After it, writes are made again.
    s.scoped(DEFAULT_PROJECT)
        .create_agent("New", "new", false)
        .expect("create");
    assert_eq!(s.scoped(DEFAULT_PROJECT).agents().expect("agents").len(), 2);
}

#[test]
fn the_operators_gateway_token_replaces_its_predecessor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let generated = s.create_gateway_token("gateway").expect("generated");
    let first = "ogw_operator_first_token_0123456789abcdef";
    let second = "ogw_operator_second_token_0123456789abcdef";
    assert!(s.accept_gateway_token("operator", first).expect("accept"));
    assert!(!s.accept_gateway_token("operator", first).expect("again"));
    assert!(s.verify_gateway_token(first).expect("verify"));
    // The Secret rotated: the old token stops working, the generated one stays.
    assert!(s.accept_gateway_token("operator", second).expect("rotate"));
    assert!(!s.verify_gateway_token(first).expect("verify"));
    assert!(s.verify_gateway_token(second).expect("verify"));
    assert!(s.verify_gateway_token(&generated).expect("verify"));
    assert!(s.accept_gateway_token("operator", "short").is_err());
}

#[test]
fn projects_keep_their_objects_to_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let p2 = s.create_project("Team two", "team-two").expect("project");
    assert!(matches!(
        s.create_project("Again", "team-two"),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.project("team-two").expect("by identifier").id, p2.id);
    let one = s.scoped(DEFAULT_PROJECT);
    let two = s.scoped(&p2.id);
    // The same identifier in two projects: two agents.
    let a1 = one.create_agent("Claude", "claude", false).expect("agent");
    let a2 = two.create_agent("Claude", "claude", false).expect("agent");
    assert!(matches!(
        two.create_agent("Again", "claude", false),
        Err(StoreError::Conflict(_))
    ));
    let sec1 = one
        .create_secret(secret("OpenAI", "sk-proj-one", "api.openai.com"))
        .expect("secret");
    // Nothing of project one is visible, changeable or deletable from two.
    assert_eq!(two.agents().expect("agents").len(), 1);
    assert!(two.secrets().expect("secrets").is_empty());
    assert!(matches!(two.agent(&a1.id), Err(StoreError::NotFound(_))));
    assert!(matches!(two.secret(&sec1.id), Err(StoreError::NotFound(_))));
    assert!(matches!(
        two.delete_agent(&a1.id),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        two.delete_secret(&sec1.id),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        two.update_secret(&sec1.id, SecretInput::default()),
        Err(StoreError::NotFound(_))
    ));
    // Nor can two's agent be given one's secret, or two's rule name one's agent.
    assert!(matches!(
        two.update_agent(&a2.id, |a| {
            a.secret_mode = SecretMode::Selective;
            a.secret_ids = vec![sec1.id.clone()];
            Ok(())
        }),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        two.create_rule(RuleInput {
            name: Some("r".into()),
            host_pattern: Some("*".into()),
            agent_id: Some(Some(a1.id.clone())),
            action: Some(RuleAction::Block),
            ..RuleInput::default()
        }),
        Err(StoreError::Invalid(_))
    ));
    // The snapshot holds both, each in its project.
    let snap = Snapshot::compile(s.policy_doc().expect("doc")).expect("compiles");
    let agent = snap.agent_by_token_hash(&a2.token_sha256).expect("agent");
    assert_eq!(agent.project, p2.id);
    assert_eq!(
        snap.injections(agent, "api.openai.com", 443, true, "/v1")
            .count(),
        0
    );

    // Project keys name their project; deleting a project needs it empty
    // and takes its keys.
    let (record, key) = s.create_api_key("ci", Some(&p2.id)).expect("key");
    assert_eq!(record.project.as_deref(), Some(p2.id.as_str()));
    assert_eq!(
        s.verify_api_key(&key)
            .expect("verify")
            .and_then(|k| k.project),
        Some(p2.id.clone())
    );
    assert!(matches!(
        s.create_api_key("ghost", Some("no-such-project")),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_project(&p2.id),
        Err(StoreError::Conflict(_))
    ));
    two.delete_agent(&a2.id).expect("delete");
    s.delete_project(&p2.id).expect("empty now");
    assert!(s.verify_api_key(&key).expect("verify").is_none());
    assert!(matches!(
        s.delete_project(DEFAULT_PROJECT),
        Err(StoreError::Invalid(_))
    ));
    // A write into a deleted project is refused, not orphaned.
    assert!(matches!(
        two.create_agent("Late", "late", false),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn the_last_admin_key_stays_but_project_keys_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let p2 = s.create_project("Two", "two").expect("project");
    let (admin, _) = s.create_api_key("admin", None).expect("key");
    let (scoped, _) = s.create_api_key("two", Some(&p2.id)).expect("key");
    assert!(matches!(
        s.revoke_api_key(&admin.id),
        Err(StoreError::Invalid(_))
    ));
    s.revoke_api_key(&scoped.id).expect("a project key goes");
}

#[test]
fn data_from_before_projects_lands_in_the_default_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A schema-1 file: records without a project, a key without one.
    {
        let db = Database::create(dir.path().join("onecli.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let mut meta = txn.open_table(META).expect("meta");
            meta.insert("schema_version", 1).expect("insert");
            meta.insert("policy_version", 4).expect("insert");
            let mut agents = txn.open_table(AGENTS).expect("agents");
            let old = serde_json::json!({
                "id": "old-agent", "name": "Old", "identifier": "old",
                "token_sealed": [], "token_sha256": (vec![3u8; 32]), "created_at": "2025-01-01T00:00:00Z",
            });
            agents
                .insert(
                    "old-agent",
                    serde_json::to_vec(&old).expect("json").as_slice(),
                )
                .expect("insert");
            let mut audit = txn.open_table(AUDIT).expect("audit");
            let mut old = serde_json::to_value(record(1, "old")).expect("json");
            old.as_object_mut().expect("object").remove("project");
            audit
                .insert(1, serde_json::to_vec(&old).expect("json").as_slice())
                .expect("insert");
            let mut keys = txn.open_table(API_KEYS).expect("keys");
            let key = serde_json::json!({ "id": "k", "name": "admin", "created_at": "2025-01-01T00:00:00Z" });
            keys.insert(
                hex::encode(token_sha256("oc_old")).as_str(),
                serde_json::to_vec(&key).expect("json").as_slice(),
            )
            .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let s = store(dir.path());
    let agents = s.scoped(DEFAULT_PROJECT).agents().expect("agents");
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].project, DEFAULT_PROJECT);
    let key = s.verify_api_key("oc_old").expect("verify").expect("kept");
    assert_eq!(key.project, None, "keys from before are admin keys");
    assert_eq!(s.projects().expect("projects")[0].identifier, "default");
    let audit = s
        .scoped(DEFAULT_PROJECT)
        .audit(None, None, 10)
        .expect("audit");
    assert_eq!(
        audit.len(),
        1,
        "records from before are the default project's"
    );
    drop(s);
    // Marked as the new schema: an older binary refuses it rather than
    // mixing projects.
    let db = Database::open(dir.path().join("onecli.redb")).expect("db");
    let txn = db.begin_read().expect("txn");
    let meta = txn.open_table(META).expect("meta");
    assert_eq!(
        meta.get("schema_version").expect("get").map(|v| v.value()),
        Some(SCHEMA_VERSION)
    );
}

#[test]
fn each_project_keeps_its_own_audit_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path());
    let mine: Vec<AuditRecord> = (1..=2).map(|n| record(n, "mine")).collect();
    s.append_audit(&mine, 3).expect("append");
    // Another project's agents flood the log.
    let flood: Vec<AuditRecord> = (10..=40)
        .map(|n| {
            let mut r = record(n, "flood");
            r.project = "p2".into();
            r
        })
        .collect();
    s.append_audit(&flood, 3).expect("append");
    let kept = s
        .scoped(DEFAULT_PROJECT)
        .audit(None, None, 100)
        .expect("read");
    assert_eq!(
        kept.iter().map(|r| r.unix_ms / 1000).collect::<Vec<_>>(),
        [2, 1],
        "the default project's records survive"
    );
    let theirs = s.scoped("p2").audit(None, None, 100).expect("read");
    assert_eq!(
        theirs.iter().map(|r| r.unix_ms / 1000).collect::<Vec<_>>(),
        [40, 39, 38],
        "each project's oldest go past its retention"
    );
    // Reopened, the index and the counts are the same.
    drop(s);
    let s = store(dir.path());
    s.append_audit(&[record(3, "mine")], 3).expect("append");
    s.append_audit(&[record(4, "mine")], 3).expect("append");
    let kept = s
        .scoped(DEFAULT_PROJECT)
        .audit(None, None, 100)
        .expect("read");
    assert_eq!(
        kept.iter().map(|r| r.unix_ms / 1000).collect::<Vec<_>>(),
        [4, 3, 2]
    );
}

#[test]
fn a_project_holds_a_bounded_number_of_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path()).with_max_per_project(2);
    let p2 = s.create_project("Two", "two").expect("project");
    let two = s.scoped(&p2.id);
    two.create_agent("A", "a", false).expect("one");
    two.create_agent("B", "b", false).expect("two");
    assert!(matches!(
        two.create_agent("C", "c", false),
        Err(StoreError::Invalid(_))
    ));
    for n in 0..2 {
        two.create_secret(secret(&format!("S{n}"), "sk-proj-x", "api.openai.com"))
            .expect("secret");
    }
    assert!(matches!(
        two.create_secret(secret("S2", "sk-proj-x", "api.openai.com")),
        Err(StoreError::Invalid(_))
    ));
    // The cap is per project: the default project still has room.
    s.scoped(DEFAULT_PROJECT)
        .create_agent("C", "c", false)
        .expect("another project's room");
}

#[test]
fn an_aws_key_and_its_token_change_together_or_apart_as_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let s = store.scoped(DEFAULT_PROJECT);
    let value_of = |id: &str| {
        let doc = store.policy_doc().expect("doc");
        doc.secrets
            .iter()
            .find(|x| x.id == id)
            .expect("secret")
            .value
            .to_string()
    };
    let aws = |value: Option<&str>, token: Option<Option<&str>>| SecretInput {
        name: Some("AWS".into()),
        kind: Some(SecretKind::Aws),
        value: value.map(|v| Zeroizing::new(v.into())),
        host_pattern: Some("*.amazonaws.com".into()),
        injection: Some(Some(InjectionDoc::Aws {
            access_key_id: "AKIAREALKEY000000000".into(),
        })),
        session_token: token.map(|t| t.map(|t| Zeroizing::new(t.into()))),
        ..SecretInput::default()
    };
    let id = s
        .create_secret(aws(Some("key-1"), Some(Some("token-1"))))
        .expect("create")
        .id;
    assert_eq!(value_of(&id), "key-1\ntoken-1");
    // Only the token: the key stays.
    s.update_secret(&id, aws(None, Some(Some("token-2"))))
        .expect("token");
    assert_eq!(value_of(&id), "key-1\ntoken-2");
    // A new key without a token: temporary credentials became long-term.
    s.update_secret(
        &id,
        SecretInput {
            value: Some(Zeroizing::new("key-2".into())),
            ..SecretInput::default()
        },
    )
    .expect("key");
    assert_eq!(value_of(&id), "key-2");
    // From another type: nothing of the old value is read as a key or token.
    let other = s
        .create_secret(secret("OpenAI", "sk-a-0123456789abcdef", "api.openai.com"))
        .expect("openai");
    assert!(
        s.update_secret(&other.id, aws(None, None)).is_err(),
        "a new type needs a new value"
    );
    s.update_secret(&other.id, aws(Some("key-3"), None))
        .expect("retyped");
    assert_eq!(value_of(&other.id), "key-3");
}

#[test]
fn disk_failures_are_told_apart() {
    use std::io::{Error, ErrorKind};
    assert_eq!(
        Error::from(ErrorKind::StorageFull).disk(),
        Some(DiskFault::Full)
    );
    assert_eq!(
        Error::from(ErrorKind::QuotaExceeded).disk(),
        Some(DiskFault::Full)
    );
    assert_eq!(
        Error::from(ErrorKind::ReadOnlyFilesystem).disk(),
        Some(DiskFault::ReadOnly)
    );
    // As redb reports them, from a commit and after one failed.
    let enospc = redb::CommitError::Storage(redb::StorageError::Io(Error::from_raw_os_error(28)));
    assert_eq!(enospc.disk(), Some(DiskFault::Full));
    let erofs =
        redb::TransactionError::Storage(redb::StorageError::Io(Error::from_raw_os_error(30)));
    assert_eq!(erofs.disk(), Some(DiskFault::ReadOnly));
    assert_eq!(redb::Error::PreviousIo.disk(), Some(DiskFault::Failed));
    assert!(matches!(
        db_err(redb::Error::PreviousIo),
        StoreError::Disk {
            fault: DiskFault::Failed,
            ..
        }
    ));
    // Not a disk failure.
    assert_eq!(redb::TableError::TableDoesNotExist("x".into()).disk(), None);
}
