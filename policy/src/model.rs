//! The policy document: the data model of SPEC §5 as it travels between
//! processes (postcard, see `wire`). Plain serde data with patterns as text;
//! [`crate::Snapshot::compile`] validates it into the form the gateway uses.
//! Both the producer (control service, policy file) and the consumer
//! (gateway) compile it, so neither trusts the other's validation.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The project everything belongs to unless it says otherwise: single-user
/// installations, policy files and data written before projects existed.
pub const DEFAULT_PROJECT: &str = "default";

/// [`DEFAULT_PROJECT`], for `#[serde(default = …)]`.
pub fn default_project() -> String {
    DEFAULT_PROJECT.to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDoc {
    /// Monotonic version; a gateway never swaps in an older one.
    pub version: u64,
    pub agents: Vec<AgentDoc>,
    pub secrets: Vec<SecretDoc>,
    pub rules: Vec<RuleDoc>,
    /// Hosts whose CONNECT tunnels are passed through untouched (no
    /// interception, no injection): certificate-pinned clients, mTLS.
    pub passthrough_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDoc {
    pub id: String,
    /// The project (its id) the agent belongs to: it sees that project's
    /// secrets and obeys its rules, and no other's.
    pub project: String,
    pub name: String,
    pub identifier: String,
    /// SHA-256 of the access token (`aoc_…`): the token itself never travels.
    pub token_sha256: [u8; 32],
    pub is_default: bool,
    pub secret_mode: SecretMode,
    /// Secret ids the agent may use when `secret_mode` is `Selective`.
    pub secret_ids: Vec<String>,
    pub policy_mode: PolicyMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecretMode {
    #[default]
    All,
    Selective,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    #[default]
    Allow,
    Deny,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDoc {
    pub id: String,
    /// Injected only for agents of this project.
    pub project: String,
    pub name: String,
    pub kind: SecretKind,
    /// The plaintext, zeroized when the document is dropped.
    pub value: Zeroizing<String>,
    pub host_pattern: String,
    pub path_pattern: String,
    pub injection: Option<InjectionDoc>,
    /// Injected into plain-HTTP requests too (never on port 443). Off by
    /// default: credentials travel over TLS only.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl std::fmt::Debug for SecretDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretDoc")
            .field("id", &self.id)
            .field("project", &self.project)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("value", &"<redacted>")
            .field("host_pattern", &self.host_pattern)
            .field("path_pattern", &self.path_pattern)
            .field("injection", &self.injection)
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    Anthropic,
    Openai,
    Generic,
    /// An AWS secret access key: requests are signed (SigV4), not sent it.
    Aws,
}

/// How a generic secret is injected: a header or a query parameter, each
/// with a format in which `{value}` stands for the secret, or the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InjectionDoc {
    Header {
        name: String,
        format: String,
    },
    Query {
        name: String,
        format: String,
    },
    /// `/bot{value}`: a path starting with the part before `{value}` has
    /// the secret in place of everything from there up to the next `/`.
    PathTemplate {
        template: String,
    },
    /// The first match of `pattern` in the path is replaced by
    /// `replacement`, in which `$N` stands for a capture and `{value}` for
    /// the secret.
    PathRegex {
        pattern: String,
        replacement: String,
    },
    /// An AWS key pair: the secret's value is the secret access key (and,
    /// after a newline, a session token: [`crate::credential::AwsKey`]).
    Aws {
        access_key_id: String,
    },
}

/// The fields that say how a generic secret is injected, as the API and
/// the policy file take them (formats default to `{value}`).
#[derive(Default)]
pub struct InjectionFields {
    pub header_name: Option<String>,
    pub value_format: Option<String>,
    pub param_name: Option<String>,
    pub param_format: Option<String>,
    pub path_template: Option<String>,
    pub path_regex: Option<String>,
    pub path_replacement: Option<String>,
    pub access_key_id: Option<String>,
}

/// Why [`InjectionFields`] name no single way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionFieldsError {
    /// `path_regex` without `path_replacement`, or the other way round.
    HalfARegex,
    /// More than one of header, parameter, template and regex.
    SeveralWays,
}

impl InjectionFields {
    /// The one injection the fields describe, or none.
    pub fn into_doc(self) -> Result<Option<InjectionDoc>, InjectionFieldsError> {
        let regex = match (self.path_regex, self.path_replacement) {
            (Some(pattern), Some(replacement)) => Some(InjectionDoc::PathRegex {
                pattern,
                replacement,
            }),
            (None, None) => None,
            _ => return Err(InjectionFieldsError::HalfARegex),
        };
        let format = |f: Option<String>| f.unwrap_or_else(|| "{value}".into());
        let header = self.header_name.map(|name| InjectionDoc::Header {
            name,
            format: format(self.value_format),
        });
        let query = self.param_name.map(|name| InjectionDoc::Query {
            name,
            format: format(self.param_format),
        });
        let template = self
            .path_template
            .map(|template| InjectionDoc::PathTemplate { template });
        let aws = self
            .access_key_id
            .map(|access_key_id| InjectionDoc::Aws { access_key_id });
        let mut given = [header, query, template, regex, aws].into_iter().flatten();
        match (given.next(), given.next()) {
            (one, None) => Ok(one),
            _ => Err(InjectionFieldsError::SeveralWays),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleDoc {
    pub id: String,
    /// Applies only to agents of this project.
    pub project: String,
    pub name: String,
    pub host_pattern: String,
    pub path_pattern: String,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    /// `None`: the rule applies to every agent of its project.
    pub agent_id: Option<String>,
    pub action: RuleAction,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleAction {
    Block,
    Allow,
    ManualApproval,
    RateLimit { limit: u32, window: RateWindow },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateWindow {
    Minute,
    Hour,
    Day,
}

impl RateWindow {
    pub fn name(self) -> &'static str {
        match self {
            RateWindow::Minute => "minute",
            RateWindow::Hour => "hour",
            RateWindow::Day => "day",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            RateWindow::Minute => 60,
            RateWindow::Hour => 3_600,
            RateWindow::Day => 86_400,
        }
    }
}
