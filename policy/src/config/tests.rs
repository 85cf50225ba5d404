use super::*;

const TOKEN: &str = "aoc_0000000000000000000000000000000000000000000000000000000000000001";

fn no_env(_: &str) -> Option<String> {
    None
}

fn compile(text: &str) -> Result<Snapshot, Vec<ConfigError>> {
    compile_policy_file("policy.toml", text, 1, &no_env)
}

#[test]
fn a_full_file_compiles() {
    let text = format!(
        r#"
passthrough_hosts = ["pinned.example.net"]

[[agents]]
name = "Claude"
identifier = "claude"
token = "{TOKEN}"
secret_mode = "selective"
secrets = ["gh"]
policy_mode = "deny"

[[secrets]]
id = "gh"
name = "GitHub"
type = "generic"
value_env = "GH_TOKEN"
host_pattern = "api.github.com"
header_name = "Authorization"
value_format = "Bearer {{value}}"

[[secrets]]
name = "maps"
type = "generic"
value = "m"
host_pattern = "maps.example.com"
param_name = "key"

[[rules]]
name = "no deletes"
host_pattern = "*"
methods = ["delete"]
action = "block"

[[rules]]
name = "hourly"
host_pattern = "*"
action = "rate_limit"
rate_limit = 100
window = "hour"
"#
    );
    let env = |k: &str| (k == "GH_TOKEN").then(|| "from-env".to_owned());
    let snap = compile_policy_file("p.toml", &text, 4, &env).expect("compiles");
    assert_eq!(snap.version(), 4);
    let agent = snap
        .agent_by_token_hash(&token_sha256(TOKEN))
        .expect("agent");
    assert_eq!(agent.identifier, "claude");
    assert_eq!(agent.policy_mode, PolicyMode::Deny);
    let secrets: Vec<_> = snap
        .injections(agent, "api.github.com", 443, true, "/")
        .collect();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].value().expose(), "from-env");
    assert_eq!(snap.rules().len(), 2);
    assert_eq!(snap.rules()[0].methods, ["DELETE"]);
    assert!(snap.is_passthrough("pinned.example.net", 443));
}

#[test]
fn syntax_errors_carry_the_line() {
    let errors = compile("[[secrets]]\nname = \"x\"\ntype = \n").expect_err("bad");
    assert_eq!(errors[0].line, Some(3), "{errors:?}");
    assert!(
        errors[0].to_string().starts_with("policy.toml:3: "),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    let errors = compile("[[secrets]]\nname = \"x\"\ntype = \"openai\"\nvalue = \"v\"\nhost_pattern = \"h\"\nhots = 1\n")
        .expect_err("bad");
    assert_eq!(errors[0].line, Some(6), "{errors:?}");
    assert!(errors[0].message.contains("hots"), "{errors:?}");
}

#[test]
fn validation_errors_point_at_the_item() {
    let text = "\n\n[[secrets]]\nname = \"ok\"\ntype = \"openai\"\nvalue = \"v\"\nhost_pattern = \"h\"\n\n[[secrets]]\nname = \"bad\"\ntype = \"openai\"\nvalue = \"v\"\nhost_pattern = \"a b\"\n";
    let errors = compile(text).expect_err("bad");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, Some(9), "{errors:?}");
    assert!(
        errors[0].message.contains("secrets[1].host_pattern"),
        "{errors:?}"
    );
}

#[test]
fn missing_env_value_and_bad_token_are_errors() {
    let text = "[[secrets]]\nname = \"x\"\ntype = \"openai\"\nvalue_env = \"NOPE\"\nhost_pattern = \"h\"\n\n[[agents]]\nname = \"a\"\nidentifier = \"a\"\ntoken = \"aoc_short\"\n";
    let errors = compile(text).expect_err("bad");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.contains(":1: secrets[0]: value_env: environment variable NOPE")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|e| e.contains(":7: agents[0]: token")),
        "{text:?}"
    );
    assert!(
        !text.iter().any(|e| e.contains("aoc_short")),
        "token leaked: {text:?}"
    );
}

#[test]
fn rate_limit_fields_are_checked() {
    let errors =
        compile("[[rules]]\nname = \"r\"\nhost_pattern = \"*\"\naction = \"rate_limit\"\n")
            .expect_err("bad");
    assert!(
        errors[0].message.contains("needs rate_limit and window"),
        "{errors:?}"
    );
    let errors = compile(
        "[[rules]]\nname = \"r\"\nhost_pattern = \"*\"\naction = \"block\"\nwindow = \"hour\"\n",
    )
    .expect_err("bad");
    assert!(
        errors[0].message.contains("belong to rate_limit"),
        "{errors:?}"
    );
}

#[test]
fn secrets_can_go_into_the_path() {
    let text = r#"
[[secrets]]
name = "telegram"
type = "generic"
value = "123:ABC"
host_pattern = "api.telegram.org"
path_template = "/bot{value}"

[[secrets]]
name = "keyed"
type = "generic"
value = "k"
host_pattern = "keyed.example.com"
path_regex = "^/v1/key/[^/]+"
path_replacement = "/v1/key/{value}"
"#;
    let snap = compile(text).expect("compiles");
    assert!(snap
        .secrets()
        .iter()
        .all(|s| matches!(s.ops[..], [crate::InjectOp::SetPath(_)])));
    let both = text.replacen(
        "path_template = \"/bot{value}\"",
        "path_template = \"/bot{value}\"\nheader_name = \"X\"",
        1,
    );
    let errors = compile(&both).expect_err("one way in");
    assert!(errors[0].message.contains("one of"), "{errors:?}");
    let half = text.replacen("path_replacement = \"/v1/key/{value}\"", "", 1);
    let errors = compile(&half).expect_err("both halves");
    assert!(errors[0].message.contains("together"), "{errors:?}");
}
