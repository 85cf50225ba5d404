//! The policy file (`onecli gateway --policy FILE`): TOML in the model of
//! SPEC §5, turned into a [`PolicyDoc`] and compiled. Errors name the file,
//! the line and what is wrong. Pure: the caller reads the file and provides
//! environment lookups for `value_env` / `token_env`.

use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use crate::model::{
    AgentDoc, InjectionFields, InjectionFieldsError, PolicyDoc, PolicyMode, RateWindow, RuleAction,
    RuleDoc, SecretDoc, SecretKind, SecretMode,
};
use crate::snapshot::{token_sha256, Snapshot};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    passthrough_hosts: Vec<String>,
    #[serde(default)]
    agents: Vec<Spanned<RawAgent>>,
    #[serde(default)]
    secrets: Vec<Spanned<RawSecret>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    identifier: String,
    token: Option<Zeroizing<String>>,
    token_env: Option<String>,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    secret_mode: SecretMode,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    policy_mode: PolicyMode,
}

impl std::fmt::Debug for RawAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAgent")
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    id: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: SecretKind,
    value: Option<Zeroizing<String>>,
    value_env: Option<String>,
    host_pattern: String,
    #[serde(default = "any_path")]
    path_pattern: String,
    header_name: Option<String>,
    value_format: Option<String>,
    param_name: Option<String>,
    param_format: Option<String>,
    path_template: Option<String>,
    path_regex: Option<String>,
    path_replacement: Option<String>,
    /// Type `aws`: the key id; `value` is the secret access key.
    access_key_id: Option<String>,
    session_token_env: Option<String>,
    #[serde(default)]
    allow_plaintext: bool,
}

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSecret")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<String>,
    name: String,
    host_pattern: String,
    #[serde(default = "any_path")]
    path_pattern: String,
    #[serde(default)]
    methods: Vec<String>,
    /// An agent identifier; absent = all agents.
    agent: Option<String>,
    action: RawAction,
    rate_limit: Option<u32>,
    window: Option<RateWindow>,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawAction {
    Block,
    Allow,
    ManualApproval,
    RateLimit,
}

fn any_path() -> String {
    "*".to_owned()
}

fn yes() -> bool {
    true
}

/// A problem in a policy file, located by line when it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Parses and compiles a policy file. `file` is only used in messages;
/// `env` resolves `value_env` and `token_env`.
pub fn compile_policy_file(
    file: &str,
    text: &str,
    version: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Snapshot, Vec<ConfigError>> {
    let (doc, lines) = parse_policy_file(file, text, version, env)?;
    Snapshot::compile(doc).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| ConfigError {
                file: file.to_owned(),
                line: lines.line_of(&e.item),
                message: e.to_string(),
            })
            .collect()
    })
}

/// Where each item (`secrets[2]`) starts in the file.
#[derive(Debug, Default)]
pub struct ItemLines(Vec<(String, usize)>);

impl ItemLines {
    pub fn line_of(&self, item: &str) -> Option<usize> {
        self.0.iter().find(|(i, _)| i == item).map(|(_, l)| *l)
    }
}

pub fn parse_policy_file(
    file: &str,
    text: &str,
    version: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PolicyDoc, ItemLines), Vec<ConfigError>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            file: file.to_owned(),
            line: e.span().map(|s| line_at(text, s.start)),
            message: e.message().trim().to_owned(),
        }]
    })?;

    let mut errors = Vec::new();
    let mut lines = ItemLines::default();
    let mut fail = |line: usize, item: &str, message: String| {
        errors.push(ConfigError {
            file: file.to_owned(),
            line: Some(line),
            message: format!("{item}: {message}"),
        })
    };

    let mut secrets = Vec::new();
    for (i, spanned) in raw.secrets.into_iter().enumerate() {
        let item = format!("secrets[{i}]");
        let line = line_at(text, spanned.span().start);
        lines.0.push((item.clone(), line));
        let s = spanned.into_inner();
        let value = match (s.value, &s.value_env) {
            (Some(v), None) => v,
            (None, Some(var)) => match env(var) {
                Some(v) => Zeroizing::new(v),
                None => {
                    fail(
                        line,
                        &item,
                        format!("value_env: environment variable {var} is not set"),
                    );
                    continue;
                }
            },
            _ => {
                fail(line, &item, "set exactly one of value and value_env".into());
                continue;
            }
        };
        let fields = InjectionFields {
            header_name: s.header_name,
            value_format: s.value_format,
            param_name: s.param_name,
            param_format: s.param_format,
            path_template: s.path_template,
            path_regex: s.path_regex,
            path_replacement: s.path_replacement,
            access_key_id: s.access_key_id,
        };
        // An AWS session token rides in the value, after the key.
        let value = match (&s.session_token_env, s.kind) {
            (None, _) => value,
            (Some(var), SecretKind::Aws) => {
                let joined = env(var)
                    .ok_or_else(|| {
                        format!("session_token_env: environment variable {var} is not set")
                    })
                    .and_then(|token| crate::credential::AwsKey::join(&value, Some(&token)));
                match joined {
                    Ok(joined) => joined,
                    Err(e) => {
                        fail(line, &item, e);
                        continue;
                    }
                }
            }
            (Some(_), _) => {
                fail(line, &item, "session_token_env goes with type aws".into());
                continue;
            }
        };
        let injection = match fields.into_doc() {
            Ok(injection) => injection,
            Err(e) => {
                let why = match e {
                    InjectionFieldsError::HalfARegex => {
                        "path_regex and path_replacement go together"
                    }
                    InjectionFieldsError::SeveralWays => {
                        "set one of header_name, param_name, path_template, path_regex and access_key_id"
                    }
                };
                fail(line, &item, why.into());
                continue;
            }
        };
        secrets.push(SecretDoc {
            project: crate::model::default_project(),
            id: s.id.unwrap_or_else(|| s.name.clone()),
            name: s.name,
            kind: s.kind,
            value,
            host_pattern: s.host_pattern,
            path_pattern: s.path_pattern,
            injection,
            allow_plaintext: s.allow_plaintext,
        });
    }

    let mut agents = Vec::new();
    for (i, spanned) in raw.agents.into_iter().enumerate() {
        let item = format!("agents[{i}]");
        let line = line_at(text, spanned.span().start);
        lines.0.push((item.clone(), line));
        let a = spanned.into_inner();
        let token = match (a.token, &a.token_env) {
            (Some(t), None) => t,
            (None, Some(var)) => match env(var) {
                Some(t) => Zeroizing::new(t),
                None => {
                    fail(
                        line,
                        &item,
                        format!("token_env: environment variable {var} is not set"),
                    );
                    continue;
                }
            },
            _ => {
                fail(line, &item, "set exactly one of token and token_env".into());
                continue;
            }
        };
        if !crate::is_valid_agent_token(&token) {
            fail(
                line,
                &item,
                "token: must be aoc_ followed by 64 hex digits".into(),
            );
            continue;
        }
        agents.push(AgentDoc {
            project: crate::model::default_project(),
            id: a.identifier.clone(),
            name: a.name,
            identifier: a.identifier,
            token_sha256: token_sha256(&token),
            is_default: a.default,
            secret_mode: a.secret_mode,
            secret_ids: a.secrets,
            policy_mode: a.policy_mode,
        });
    }

    let mut rules = Vec::new();
    for (i, spanned) in raw.rules.into_iter().enumerate() {
        let item = format!("rules[{i}]");
        let line = line_at(text, spanned.span().start);
        lines.0.push((item.clone(), line));
        let r = spanned.into_inner();
        let action = match (r.action, r.rate_limit, r.window) {
            (RawAction::RateLimit, Some(limit), Some(window)) => {
                RuleAction::RateLimit { limit, window }
            }
            (RawAction::RateLimit, _, _) => {
                fail(
                    line,
                    &item,
                    "a rate_limit rule needs rate_limit and window".into(),
                );
                continue;
            }
            (_, Some(_), _) | (_, _, Some(_)) => {
                fail(
                    line,
                    &item,
                    "rate_limit and window belong to rate_limit rules only".into(),
                );
                continue;
            }
            (RawAction::Block, None, None) => RuleAction::Block,
            (RawAction::Allow, None, None) => RuleAction::Allow,
            (RawAction::ManualApproval, None, None) => RuleAction::ManualApproval,
        };
        rules.push(RuleDoc {
            project: crate::model::default_project(),
            id: r.id.unwrap_or_else(|| r.name.clone()),
            name: r.name,
            host_pattern: r.host_pattern,
            path_pattern: r.path_pattern,
            methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            agent_id: r.agent,
            action,
            enabled: r.enabled,
        });
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let doc = PolicyDoc {
        version,
        agents,
        secrets,
        rules,
        passthrough_hosts: raw.passthrough_hosts,
    };
    Ok((doc, lines))
}

fn line_at(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests;
