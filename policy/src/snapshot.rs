//! The compiled, immutable policy the gateway enforces: validated patterns,
//! injection recipes and lookup indices built once per version, so a request
//! costs a hash lookup and a few comparisons.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::host_index::HostIndex;
use crate::model::{InjectionDoc, PolicyDoc, PolicyMode, RuleAction, SecretKind, SecretMode};
use crate::pattern::{HostPattern, PathPattern};
use crate::rules::{Decision, RequestFacts, RuleIndex};
use crate::secret::SecretValue;
use crate::{canonical, credential};

pub type TokenHash = [u8; 32];

/// SHA-256 of a proxy token: how snapshots name agents without holding
/// usable tokens.
pub fn token_sha256(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// One problem found while compiling a policy document. `item` locates it
/// (`secrets[2]`), `field` names the field when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub item: String,
    pub field: Option<&'static str>,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field {
            Some(field) => write!(f, "{}.{}: {}", self.item, field, self.message),
            None => write!(f, "{}: {}", self.item, self.message),
        }
    }
}

#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    agents: Vec<Agent>,
    agents_by_token: HashMap<TokenHash, usize>,
    secrets: Vec<Secret>,
    /// Secrets by host pattern.
    secret_hosts: HostIndex,
    rules: Vec<Rule>,
    rule_index: RuleIndex,
    passthrough: Vec<HostPattern>,
}

#[derive(Debug)]
pub struct Agent {
    /// Position in the snapshot: rules refer to agents by it.
    index: usize,
    pub id: String,
    /// The project's id: whose secrets and rules apply, whose log and
    /// approvals feed its requests go to.
    pub project: String,
    /// The project's number in this snapshot: what secrets and rules compare.
    pub(crate) project_index: u32,
    pub name: String,
    pub identifier: String,
    pub is_default: bool,
    pub policy_mode: PolicyMode,
    /// `None`: every secret (mode `all`); otherwise the indices it may use.
    visible_secrets: Option<HashSet<usize>>,
}

#[derive(Debug)]
pub struct Secret {
    pub id: String,
    /// Only agents of this project (its number in the snapshot) get it.
    project: u32,
    pub name: String,
    pub kind: SecretKind,
    pub host: HostPattern,
    pub path: PathPattern,
    pub ops: Vec<InjectOp>,
    /// Also injected into plain HTTP (never on port 443).
    pub allow_plaintext: bool,
    value: SecretValue,
    /// An AWS session token, signed into the request with the key.
    session_token: Option<SecretValue>,
    /// A ChatGPT login: the gateway's answer to the agent's refresh.
    refresh_answer: Option<String>,
}

impl Secret {
    /// The credential, for the injection site only: an API key, a token,
    /// an AWS secret access key, a ChatGPT login's access token.
    pub fn value(&self) -> &SecretValue {
        &self.value
    }

    /// The session token of temporary AWS credentials.
    pub fn session_token(&self) -> Option<&SecretValue> {
        self.session_token.as_ref()
    }

    /// A ChatGPT login (Codex), which the gateway also answers refreshes for.
    pub fn is_chatgpt_login(&self) -> bool {
        self.refresh_answer.is_some()
    }

    /// For a ChatGPT login: the token endpoint's answer an agent gets when
    /// it refreshes its placeholder login (placeholder tokens only).
    pub fn refresh_answer(&self) -> Option<&str> {
        self.refresh_answer.as_deref()
    }
}

/// The header a ChatGPT login names its account in.
pub const CHATGPT_ACCOUNT_HEADER: &str = "chatgpt-account-id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPresence {
    None,
    /// Secrets exist for the host, none the agent may use.
    HiddenFromAgent,
    Visible,
}

/// One step of an injection recipe. A secret's steps run in the order
/// set header, remove header, set query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectOp {
    /// Replace the header (lowercase name) with the formatted value.
    SetHeader {
        name: String,
        format: ValueFormat,
    },
    RemoveHeader {
        name: String,
    },
    /// Replace the query parameter with the formatted value.
    SetQuery {
        name: String,
        format: ValueFormat,
    },
    /// Rewrite the upstream path (never the one rules judged).
    SetPath(PathRewrite),
    /// Make sure the comma-separated list header `name` (lowercase) holds
    /// `token`, keeping what the agent listed: a flag the service requires
    /// with this kind of credential.
    AddToList {
        name: String,
        token: String,
    },
    /// Replace the header with a value that is no secret (an account id).
    SetHeaderText {
        name: String,
        value: String,
    },
    /// Sign the request with AWS Signature Version 4 as this key (the
    /// secret's value is the secret access key), after every other step;
    /// the agent's own signature is dropped.
    SignAws {
        access_key_id: String,
    },
}

/// How a secret goes into the upstream path.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    /// A path starting with `prefix` has the secret from there up to the
    /// next `/` (or the end).
    Segment { prefix: String },
    /// The first match of `regex` is replaced by `parts` joined with the
    /// secret, `$N` in each part standing for a capture.
    Regex {
        regex: regex::Regex,
        parts: Vec<String>,
    },
}

impl PartialEq for PathRewrite {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Segment { prefix: a }, Self::Segment { prefix: b }) => a == b,
            (Self::Regex { regex: a, parts: p }, Self::Regex { regex: b, parts: q }) => {
                a.as_str() == b.as_str() && p == q
            }
            _ => false,
        }
    }
}

impl Eq for PathRewrite {}

impl PathRewrite {
    /// The path with the secret in it, or `None` when the path does not
    /// take it (another prefix, no match). `path` has no query.
    pub fn apply(&self, path: &str, value: &SecretValue) -> Option<zeroize::Zeroizing<String>> {
        let value = value.expose();
        match self {
            PathRewrite::Segment { prefix } => {
                let rest = path.strip_prefix(prefix.as_str())?;
                let end = rest.find('/').unwrap_or(rest.len());
                let mut out = String::with_capacity(path.len() + value.len());
                out.push_str(prefix);
                out.push_str(value);
                out.push_str(&rest[end..]);
                Some(zeroize::Zeroizing::new(out))
            }
            PathRewrite::Regex { regex, parts } => {
                let captures = regex.captures(path)?;
                let whole = captures.get(0)?;
                let mut out = String::with_capacity(path.len() + value.len());
                out.push_str(&path[..whole.start()]);
                // Each part expanded on its own: a capture (the agent's
                // text) can never place the secret.
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(value);
                    }
                    captures.expand(part, &mut out);
                }
                out.push_str(&path[whole.end()..]);
                // What leaves must still be an origin-form path.
                out.starts_with('/').then(|| zeroize::Zeroizing::new(out))
            }
        }
    }
}

/// Characters a secret may hold to travel in a path segment: RFC 3986's
/// unreserved and sub-delimiters, `:` and `@`. No `/`, `?`, `#`, `%`.
pub fn is_path_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b))
}

/// The longest a path pattern's compiled program may be.
const PATH_REGEX_SIZE: usize = 64 * 1024;

/// A format such as `Bearer {value}`, split around its one `{value}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFormat {
    prefix: String,
    suffix: String,
}

impl ValueFormat {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.split_once("{value}") {
            Some((prefix, suffix)) if !suffix.contains("{value}") => Ok(ValueFormat {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
            }),
            Some(_) => Err(format!(
                "format {raw:?} must contain {{value}} exactly once"
            )),
            None => Err(format!("format {raw:?} must contain {{value}}")),
        }
    }

    fn plain() -> Self {
        ValueFormat {
            prefix: String::new(),
            suffix: String::new(),
        }
    }

    fn bearer() -> Self {
        ValueFormat {
            prefix: "Bearer ".to_owned(),
            suffix: String::new(),
        }
    }

    /// The formatted credential, zeroized when dropped.
    pub fn render(&self, value: &SecretValue) -> zeroize::Zeroizing<String> {
        let v = value.expose();
        let mut out = String::with_capacity(self.prefix.len() + v.len() + self.suffix.len());
        out.push_str(&self.prefix);
        out.push_str(v);
        out.push_str(&self.suffix);
        zeroize::Zeroizing::new(out)
    }
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub host: HostPattern,
    /// The pattern with its literals canonical: what grants match.
    pub path: PathPattern,
    /// The pattern lower-cased, empty segments and a trailing slash
    /// dropped: what restrictions match ([`crate::canonical`]).
    pub broad_path: PathPattern,
    pub methods: Vec<String>,
    pub agent: Option<usize>,
    /// Only agents of this project (its number in the snapshot) obey it.
    pub(crate) project: u32,
    pub action: RuleAction,
}

/// Anthropic OAuth tokens go in `authorization: Bearer`, API keys in `x-api-key`.
const ANTHROPIC_OAUTH_PREFIX: &str = "sk-ant-oat";
/// The `anthropic-beta` flag Anthropic's API requires with an OAuth token
/// (a Claude subscription login) instead of an API key.
pub const ANTHROPIC_OAUTH_BETA: &str = "oauth-2025-04-20";

impl Snapshot {
    /// Validates a document and builds the indices. Every problem is
    /// reported, not just the first.
    pub fn compile(doc: PolicyDoc) -> Result<Snapshot, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut err = |item: String, field: Option<&'static str>, message: String| {
            errors.push(ValidationError {
                item,
                field,
                message,
            })
        };

        // Projects are compared by number: interned as they come.
        let mut projects: HashMap<String, u32> = HashMap::new();
        let mut project_of = |name: &str| -> u32 {
            let next = projects.len() as u32;
            *projects.entry(name.to_owned()).or_insert(next)
        };

        let mut secrets = Vec::with_capacity(doc.secrets.len());
        let mut secret_index = HashMap::new();
        // By position in the document, as `secret_index` counts.
        let mut secret_projects = Vec::with_capacity(doc.secrets.len());
        for (i, s) in doc.secrets.into_iter().enumerate() {
            secret_projects.push(s.project.clone());
            let item = format!("secrets[{i}]");
            if secret_index.insert(s.id.clone(), i).is_some() {
                err(
                    item.clone(),
                    Some("id"),
                    format!("duplicate secret id {:?}", s.id),
                );
            }
            if s.value.is_empty() {
                err(
                    item.clone(),
                    Some("value"),
                    "the secret value is empty".into(),
                );
            }
            let host = HostPattern::parse(&s.host_pattern)
                .map_err(|e| err(item.clone(), Some("host_pattern"), e.to_string()));
            // A grant: matched exactly against the canonical path.
            let path = PathPattern::parse(&s.path_pattern)
                .and_then(|_| PathPattern::parse(&canonical::exact_pattern(&s.path_pattern)))
                .map_err(|e| err(item.clone(), Some("path_pattern"), e.to_string()));
            let ops = injection_ops(s.kind, &s.value, s.injection.as_ref())
                .map_err(|e| err(item.clone(), Some("injection"), e));
            let refresh_answer = (s.kind == SecretKind::Openai
                && credential::is_chatgpt_login(&s.value))
            .then(|| credential::ChatgptLogin::parse(&s.value).ok())
            .flatten()
            .map(|login| login.refresh_answer());
            if let (Ok(host), Ok(path), Ok((ops, value, session_token))) = (host, path, ops) {
                secrets.push(Secret {
                    project: project_of(&s.project),
                    id: s.id,
                    name: s.name,
                    kind: s.kind,
                    host,
                    path,
                    ops,
                    allow_plaintext: s.allow_plaintext,
                    value,
                    session_token,
                    refresh_answer,
                });
            }
        }

        let mut agents = Vec::with_capacity(doc.agents.len());
        let mut agents_by_token = HashMap::with_capacity(doc.agents.len());
        let mut agent_index = HashMap::new();
        let mut identifiers = HashSet::new();
        for (i, a) in doc.agents.into_iter().enumerate() {
            let item = format!("agents[{i}]");
            if !crate::is_valid_identifier(&a.identifier) {
                err(
                    item.clone(),
                    Some("identifier"),
                    format!("{:?} must match ^[a-z0-9][a-z0-9-]{{0,49}}$", a.identifier),
                );
            }
            // Identifiers are unique within a project.
            if !identifiers.insert((a.project.clone(), a.identifier.clone())) {
                err(
                    item.clone(),
                    Some("identifier"),
                    format!("duplicate identifier {:?}", a.identifier),
                );
            }
            if agent_index.insert(a.id.clone(), i).is_some() {
                err(
                    item.clone(),
                    Some("id"),
                    format!("duplicate agent id {:?}", a.id),
                );
            }
            if agents_by_token.insert(a.token_sha256, i).is_some() {
                err(
                    item.clone(),
                    Some("token"),
                    "two agents share one token".into(),
                );
            }
            let project_index = project_of(&a.project);
            let visible_secrets = match a.secret_mode {
                SecretMode::All => None,
                SecretMode::Selective => {
                    let mut set = HashSet::new();
                    for id in &a.secret_ids {
                        match secret_index.get(id) {
                            Some(&idx) if secret_projects.get(idx) == Some(&a.project) => {
                                set.insert(idx);
                            }
                            Some(_) => err(
                                item.clone(),
                                Some("secrets"),
                                format!("secret {id:?} belongs to another project"),
                            ),
                            None => err(
                                item.clone(),
                                Some("secrets"),
                                format!("unknown secret id {id:?}"),
                            ),
                        }
                    }
                    Some(set)
                }
            };
            agents.push(Agent {
                index: i,
                project_index,
                project: a.project,
                id: a.id,
                name: a.name,
                identifier: a.identifier,
                is_default: a.is_default,
                policy_mode: a.policy_mode,
                visible_secrets,
            });
        }

        let mut rules = Vec::new();
        for (i, r) in doc.rules.into_iter().enumerate() {
            let item = format!("rules[{i}]");
            let host = HostPattern::parse(&r.host_pattern)
                .map_err(|e| err(item.clone(), Some("host_pattern"), e.to_string()));
            let path = PathPattern::parse(&r.path_pattern)
                .map_err(|e| err(item.clone(), Some("path_pattern"), e.to_string()))
                .and_then(|_| {
                    let exact = PathPattern::parse(&canonical::exact_pattern(&r.path_pattern));
                    let broad = PathPattern::parse(&canonical::broaden_pattern(&r.path_pattern));
                    exact
                        .and_then(|e| Ok((e, broad?)))
                        .map_err(|e| err(item.clone(), Some("path_pattern"), e.to_string()))
                });
            let project = project_of(&r.project);
            let agent = match &r.agent_id {
                None => Ok(None),
                Some(id) => match agent_index.get(id) {
                    Some(&i) if agents[i].project_index == project => Ok(Some(i)),
                    Some(_) => {
                        err(
                            item.clone(),
                            Some("agent"),
                            format!("agent {id:?} belongs to another project"),
                        );
                        Err(())
                    }
                    None => {
                        err(item.clone(), Some("agent"), format!("unknown agent {id:?}"));
                        Err(())
                    }
                },
            };
            for m in &r.methods {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    err(
                        item.clone(),
                        Some("methods"),
                        format!("{m:?} is not an upper-case HTTP method"),
                    );
                }
            }
            if let RuleAction::RateLimit { limit: 0, .. } = r.action {
                err(
                    item.clone(),
                    Some("rate_limit"),
                    "the limit must be at least 1".into(),
                );
            }
            if let (Ok(host), Ok((path, broad_path)), Ok(agent)) = (host, path, agent) {
                if r.enabled {
                    rules.push(Rule {
                        id: r.id,
                        name: r.name,
                        host,
                        path,
                        broad_path,
                        methods: r.methods,
                        agent,
                        project,
                        action: r.action,
                    });
                }
            }
        }

        let mut passthrough = Vec::new();
        for (i, h) in doc.passthrough_hosts.iter().enumerate() {
            match HostPattern::parse(h) {
                Ok(p) => passthrough.push(p),
                Err(e) => err(format!("passthrough_hosts[{i}]"), None, e.to_string()),
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }

        // Least specific first, so that when several secrets set the same
        // header, the most specific one is applied last and wins.
        secrets.sort_by_key(|s| (s.host.exact_host().is_some(), path_specificity(&s.path)));
        let mut secret_hosts = HostIndex::default();
        for (i, s) in secrets.iter().enumerate() {
            secret_hosts.insert(i, &s.host);
        }
        // Agents refer to secrets by index: remap after the sort.
        let new_index: HashMap<&str, usize> = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let old_to_id: HashMap<usize, &str> = secret_index
            .iter()
            .map(|(id, &i)| (i, id.as_str()))
            .collect();
        for agent in &mut agents {
            if let Some(visible) = &mut agent.visible_secrets {
                *visible = visible
                    .iter()
                    .filter_map(|old| old_to_id.get(old).and_then(|id| new_index.get(id)).copied())
                    .collect();
            }
        }

        Ok(Snapshot {
            version: doc.version,
            agents,
            agents_by_token,
            secrets,
            secret_hosts,
            rule_index: RuleIndex::build(&rules),
            rules,
            passthrough,
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What the rules say about a request by `agent` (SPEC §6).
    pub fn evaluate(&self, agent: &Agent, req: RequestFacts<'_>) -> Decision<'_> {
        self.rule_index
            .evaluate(&self.rules, agent, agent.index, req)
    }

    pub fn agent_by_token_hash(&self, hash: &TokenHash) -> Option<&Agent> {
        self.agents_by_token.get(hash).map(|&i| &self.agents[i])
    }

    /// The secrets to inject for `agent` on this request, least specific
    /// first. `host` must be normalized ([`crate::normalize_host`]).
    ///
    /// Credentials travel over TLS only: on a plaintext request (`tls`
    /// false) only secrets that opt in (`allow_plaintext`) are injected,
    /// and never on port 443. Naming a port in the host pattern is no
    /// consent to cleartext.
    pub fn injections<'a>(
        &'a self,
        agent: &'a Agent,
        host: &'a str,
        port: u16,
        tls: bool,
        path: &'a str,
    ) -> impl Iterator<Item = &'a Secret> + 'a {
        // Most requests match zero or one secret: this rarely allocates.
        let mut indices: Vec<usize> = self
            .secret_hosts
            .candidates(host)
            .filter(move |&i| {
                let s = &self.secrets[i];
                s.project == agent.project_index
                    && s.host.matches(host, port)
                    && (tls || (s.allow_plaintext && port != 443))
                    && s.path.matches(path)
                    && agent
                        .visible_secrets
                        .as_ref()
                        .is_none_or(|v| v.contains(&i))
            })
            .collect();
        indices.sort_unstable();
        indices.into_iter().map(move |i| &self.secrets[i])
    }

    /// The first ChatGPT login `agent` may use, wherever it is injected.
    pub fn chatgpt_login(&self, agent: &Agent) -> Option<&Secret> {
        self.secrets.iter().enumerate().find_map(|(i, s)| {
            (s.project == agent.project_index
                && s.is_chatgpt_login()
                && agent
                    .visible_secrets
                    .as_ref()
                    .is_none_or(|v| v.contains(&i)))
            .then_some(s)
        })
    }

    /// Whether any secret for the host exists, and whether `agent` may use
    /// one: tells `credential_not_found` from `access_restricted`.
    pub fn secret_presence(&self, agent: &Agent, host: &str, port: u16) -> SecretPresence {
        let mut presence = SecretPresence::None;
        for i in self.secret_hosts.candidates(host) {
            // Another project's secrets do not exist for this agent.
            let secret = &self.secrets[i];
            if secret.project != agent.project_index || !secret.host.matches(host, port) {
                continue;
            }
            if agent
                .visible_secrets
                .as_ref()
                .is_none_or(|v| v.contains(&i))
            {
                return SecretPresence::Visible;
            }
            presence = SecretPresence::HiddenFromAgent;
        }
        presence
    }

    pub fn is_passthrough(&self, host: &str, port: u16) -> bool {
        self.passthrough.iter().any(|p| p.matches(host, port))
    }
}

fn path_specificity(p: &PathPattern) -> usize {
    match p {
        PathPattern::Any => 0,
        PathPattern::Prefix(s) | PathPattern::Subtree(s) => 1 + s.len(),
        PathPattern::Segments(s) => 1 + s.len() * 8,
        PathPattern::Exact(s) => 10_000 + s.len(),
    }
}

/// A secret's recipe, the value it injects and, for AWS, its session token.
type Recipe = (Vec<InjectOp>, SecretValue, Option<SecretValue>);

fn injection_ops(
    kind: SecretKind,
    value: &str,
    injection: Option<&InjectionDoc>,
) -> Result<Recipe, String> {
    let plain = |ops: Vec<InjectOp>| (ops, SecretValue::new(value.to_owned()), None);
    let header = |name: &str, format: ValueFormat| InjectOp::SetHeader {
        name: name.to_owned(),
        format,
    };
    let remove = |name: &str| InjectOp::RemoveHeader {
        name: name.to_owned(),
    };
    Ok(match kind {
        SecretKind::Anthropic if value.starts_with(ANTHROPIC_OAUTH_PREFIX) => plain(vec![
            header("authorization", ValueFormat::bearer()),
            remove("x-api-key"),
            InjectOp::AddToList {
                name: "anthropic-beta".into(),
                token: ANTHROPIC_OAUTH_BETA.into(),
            },
        ]),
        SecretKind::Anthropic => plain(vec![
            header("x-api-key", ValueFormat::plain()),
            remove("authorization"),
        ]),
        SecretKind::Openai if credential::is_chatgpt_login(value) => {
            let login = credential::ChatgptLogin::parse(value)?;
            let ops = vec![
                header("authorization", ValueFormat::bearer()),
                InjectOp::SetHeaderText {
                    name: CHATGPT_ACCOUNT_HEADER.into(),
                    value: login.account_id.clone(),
                },
            ];
            (ops, SecretValue::new(login.access_token.to_string()), None)
        }
        SecretKind::Openai => plain(vec![header("authorization", ValueFormat::bearer())]),
        SecretKind::Aws => {
            let Some(InjectionDoc::Aws { access_key_id }) = injection else {
                return Err("an aws secret needs an access_key_id".into());
            };
            if !credential::is_access_key_id(access_key_id) {
                return Err(format!("{access_key_id:?} is not an AWS access key id"));
            }
            let key = credential::AwsKey::split(value);
            // The join checks what the split found.
            credential::AwsKey::join(key.secret_access_key, key.session_token)?;
            let ops = vec![InjectOp::SignAws {
                access_key_id: access_key_id.clone(),
            }];
            (
                ops,
                SecretValue::new(key.secret_access_key.to_owned()),
                key.session_token.map(|t| SecretValue::new(t.to_owned())),
            )
        }
        SecretKind::Generic => plain(match injection {
            None => return Err("a generic secret needs a header_name or a param_name".into()),
            Some(InjectionDoc::Header { name, format }) => {
                if !is_header_name(name) {
                    return Err(format!("{name:?} is not a valid header name"));
                }
                vec![header(
                    &name.to_ascii_lowercase(),
                    ValueFormat::parse(format)?,
                )]
            }
            Some(InjectionDoc::Query { name, format }) => {
                if name.is_empty() || name.contains(['&', '=', '#', ' ']) {
                    return Err(format!("{name:?} is not a valid query parameter name"));
                }
                vec![InjectOp::SetQuery {
                    name: name.clone(),
                    format: ValueFormat::parse(format)?,
                }]
            }
            Some(path @ (InjectionDoc::PathTemplate { .. } | InjectionDoc::PathRegex { .. })) => {
                if !is_path_safe(value) {
                    return Err("a secret injected into the path may hold only letters, digits and -._~!$&'()*+,;=:@".into());
                }
                vec![InjectOp::SetPath(path_rewrite(path)?)]
            }
            Some(InjectionDoc::Aws { .. }) => {
                return Err("an access_key_id goes with type aws, not generic".into())
            }
        }),
    })
}

fn path_rewrite(doc: &InjectionDoc) -> Result<PathRewrite, String> {
    match doc {
        InjectionDoc::PathTemplate { template } => {
            let format = ValueFormat::parse(template)?;
            if !format.suffix.is_empty() {
                return Err(format!(
                    "pathTemplate {template:?} must end with {{value}}: the secret takes the rest of its segment"
                ));
            }
            if !format.prefix.starts_with('/') {
                return Err(format!("pathTemplate {template:?} must start with /"));
            }
            Ok(PathRewrite::Segment {
                prefix: format.prefix,
            })
        }
        InjectionDoc::PathRegex {
            pattern,
            replacement,
        } => {
            let regex = regex::RegexBuilder::new(pattern)
                .size_limit(PATH_REGEX_SIZE)
                .build()
                .map_err(|e| format!("pathRegex: {e}"))?;
            let parts: Vec<String> = replacement.split("{value}").map(str::to_owned).collect();
            if parts.len() < 2 {
                return Err("pathReplacement must contain {value}".into());
            }
            if !replacement.starts_with('/') && regex.as_str().starts_with('^') {
                return Err(
                    "pathReplacement of a pattern anchored at the start must start with /".into(),
                );
            }
            Ok(PathRewrite::Regex { regex, parts })
        }
        _ => Err("not a path injection".into()),
    }
}

/// RFC 9110 token characters; also refuses the headers the gateway owns.
fn is_header_name(name: &str) -> bool {
    const RESERVED: [&str; 6] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "proxy-authorization",
    ];
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests;
