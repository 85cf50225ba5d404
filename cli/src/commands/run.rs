//! `onecli run [--agent ID] [--gateway HOST[:PORT]] [--no-ca] [--dry-run] -- CMD [ARGS…]`
//! (SPEC §7, COMPAT.md §`onecli run`): the agent's container config, made
//! right for a local process, then `exec` — the command takes over this
//! process: same PID, terminal, signals and exit code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};

use super::{exit, CliError};
use crate::client::{config_value, encode, home_dir, ApiArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The agent (identifier) whose identity and secrets the command gets; default: the
    /// configured agent, else the default agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// The gateway as this machine reaches it: HOST or HOST:PORT (default: the API host, port 10255).
    #[arg(long, env = "ONECLI_GATEWAY")]
    pub gateway: Option<String>,
    /// Do not write or point at the gateway CA (the command trusts it some other way).
    #[arg(long)]
    pub no_ca: bool,
    /// Print what would run, as JSON, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// Agents `onecli run` knows: the command name, the framework name the
/// skill endpoint takes, and where the agent reads skills from.
const KNOWN_AGENTS: [(&str, &str, &str); 6] = [
    ("claude", "claude", ".claude/skills"),
    ("cursor", "cursor", ".cursor/skills"),
    ("agent", "cursor", ".cursor/skills"),
    ("codex", "codex", ".agents/skills"),
    ("hermes", "hermes", ".hermes/skills"),
    ("opencode", "opencode", ".opencode/skills"),
];

/// Variables pointed at the bundle of system roots plus the gateway CA.
const BUNDLE_VARS: [&str; 7] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "DENO_CERT",
    "AWS_CA_BUNDLE",
    "CARGO_HTTP_CAINFO",
];

const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Placeholder keys an agent needs to start; the gateway replaces them.
const PLACEHOLDERS: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_API_KEY",
];

/// With AWS placeholders from the config, what would make an AWS SDK use
/// the operator's own credentials, or send their session token, instead.
const AWS_OWN_CREDENTIALS: [&str; 12] = [
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
];

/// Whether a variable holds an operator's credential, or says where one
/// is (`ONECLI_API_KEY`, `ONECLI_SECRET_KEY`, `ONECLI_GATEWAY_TOKEN_FILE`,
/// …): never passed on to the agent, which could use it to change its own
/// rules or read the secrets.
fn is_operator_credential(name: &str) -> bool {
    name.strip_prefix("ONECLI_").is_some_and(|rest| {
        ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
            .iter()
            .any(|word| rest.contains(word))
    })
}

struct Plan {
    binary: PathBuf,
    args: Vec<OsString>,
    agent: String,
    gateway: String,
    env: BTreeMap<String, String>,
    /// Inherited variables taken away from the agent.
    removed: Vec<String>,
    files: Vec<(PathBuf, &'static str, String)>,
}

pub fn run(args: RunArgs) -> Result<(), CliError> {
    let api_args = &args.api;
    let program = args.command[0].clone();
    let binary = which(&program).ok_or_else(|| {
        CliError::new(
            exit::NO_COMMAND,
            format!("command not found: {}", program.to_string_lossy()),
        )
    })?;
    let api = api_args.client()?;
    let agent = args.agent.clone().or_else(|| config_value("agent"));
    let query = agent
        .as_deref()
        .map(|a| format!("?agent={}", encode(a)))
        .unwrap_or_default();
    let config = api
        .call("GET", &format!("/v1/container-config{query}"), None)
        .map_err(|e| match e.exit_code {
            exit::NOT_FOUND => CliError::new(
                exit::NOT_FOUND,
                format!(
                    "no agent \"{}\": create it with `onecli agents create`",
                    agent.as_deref().unwrap_or("default")
                ),
            ),
            _ => e,
        })?;
    let gateway = gateway_address(args.gateway.as_deref(), &api.host);
    let known = KNOWN_AGENTS
        .iter()
        .find(|(name, _, _)| Path::new(&program).file_name().is_some_and(|f| f == *name));
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));

    let mut env = BTreeMap::new();
    for (key, value) in config["env"].as_object().into_iter().flatten() {
        let Some(value) = value.as_str() else {
            continue;
        };
        let value = match key.as_str() {
            "HTTPS_PROXY" | "HTTP_PROXY" | "https_proxy" | "http_proxy" => {
                rewrite_proxy(value, &gateway)
            }
            // The CA lives elsewhere outside a container.
            "NODE_EXTRA_CA_CERTS" => continue,
            k if PLACEHOLDERS.contains(&k) && known.is_none() => continue,
            _ => value.to_owned(),
        };
        env.insert(key.clone(), value);
    }
    // A real provider key in the operator's shell is never inherited: the
    // gateway injects the stored one, and the agent holds a placeholder.
    for key in PLACEHOLDERS {
        if std::env::var_os(key).is_some() {
            env.entry(key.to_owned())
                .or_insert_with(|| "placeholder".to_owned());
        }
    }
    // Loopback always, then what the operator listed (`--no-proxy` on the
    // control service): local and MCP services are reached directly.
    let mut hosts = vec!["localhost", "127.0.0.1", "::1"];
    for host in config["env"]["NO_PROXY"].as_str().unwrap_or("").split(',') {
        let host = host.trim();
        if !host.is_empty() && !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let no_proxy = hosts.join(",");
    env.insert("NO_PROXY".into(), no_proxy.clone());
    env.insert("no_proxy".into(), no_proxy);
    let agent_name = agent.clone().unwrap_or_else(|| "default".into());
    env.insert("ONECLI_AGENT_NAME".into(), agent_name.clone());
    env.insert("ONECLI_URL".into(), api.host.clone());

    let mut files = Vec::new();
    if !args.no_ca {
        let ca = config["caCertificate"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ca_path = home_dir().join("gateway-ca.pem");
        let bundle_path = home_dir().join("ca-bundle.pem");
        env.insert("NODE_EXTRA_CA_CERTS".into(), ca_path.display().to_string());
        for var in BUNDLE_VARS {
            env.insert(var.into(), bundle_path.display().to_string());
        }
        let mut bundle = SYSTEM_BUNDLES
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(&ca);
        files.push((ca_path, "ca", ca));
        files.push((bundle_path, "ca-bundle", bundle));
    }
    if let Some((_, framework, dir)) = known {
        let skill = api.call_text(
            "GET",
            &format!(
                "/v1/skill/gateway?agent_framework={framework}&agent={}",
                encode(&agent_name)
            ),
            None,
        )?;
        files.push((
            home.join(dir).join("onecli-gateway").join("SKILL.md"),
            "skill",
            skill,
        ));
    }
    // Codex with a ChatGPT login: a home of its own holding the placeholder
    // login (the user's settings come along; their own login stays put).
    let codex_auth = config["codexAuthJson"].as_str();
    if let (Some((_, "codex", _)), Some(auth)) = (known, codex_auth) {
        let codex_home = home_dir().join("codex");
        env.insert("CODEX_HOME".into(), codex_home.display().to_string());
        files.push((codex_home.join("auth.json"), "codex-login", auth.to_owned()));
        let theirs = std::env::var_os("CODEX_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".codex"));
        if !codex_home.join("config.toml").exists() {
            if let Ok(settings) = std::fs::read_to_string(theirs.join("config.toml")) {
                files.push((codex_home.join("config.toml"), "codex-config", settings));
            }
        }
    }
    let aws_placeholders = env.contains_key("AWS_ACCESS_KEY_ID");
    let plan = Plan {
        binary,
        args: args.command[1..].to_vec(),
        agent: agent_name,
        gateway,
        env,
        removed: std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| {
                is_operator_credential(name)
                    || (aws_placeholders && AWS_OWN_CREDENTIALS.contains(&name.as_str()))
            })
            .collect(),
        files,
    };

    if args.dry_run {
        crate::output::line(format_args!(
            "{}",
            serde_json::to_string_pretty(&dry_run(&plan)).unwrap_or_default()
        ));
        return Ok(());
    }
    for (path, purpose, content) in &plan.files {
        write_if_changed(path, content, *purpose != "skill").map_err(|e| {
            CliError::new(
                exit::GENERAL,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
    }
    let mut command = std::process::Command::new(&plan.binary);
    for name in &plan.removed {
        command.env_remove(name);
    }
    let error = command.args(&plan.args).envs(&plan.env).exec();
    Err(CliError::new(
        exit::NO_COMMAND,
        format!("cannot run {}: {error}", plan.binary.display()),
    ))
}

/// The plan as COMPAT.md's dry-run JSON, the token masked.
fn dry_run(plan: &Plan) -> Value {
    let env: serde_json::Map<String, Value> = plan
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(mask_token(v))))
        .collect();
    json!({
        "dry_run": true,
        "binary": plan.binary.display().to_string(),
        "args": plan.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "agent": plan.agent,
        "gateway": plan.gateway,
        "env": env,
        "removed": plan.removed,
        "files": plan.files.iter().map(|(path, purpose, _)| json!({ "path": path.display().to_string(), "purpose": purpose })).collect::<Vec<_>>(),
    })
}

/// `aoc_0123…` → `aoc_****` wherever it appears.
fn mask_token(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("aoc_") {
        out.push_str(&rest[..i]);
        out.push_str("aoc_****");
        rest = rest[i + 4..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

/// `http://x:TOKEN@host.docker.internal:10255` → the same for `gateway`.
fn rewrite_proxy(url: &str, gateway: &str) -> String {
    match url.rsplit_once('@') {
        Some((userinfo, _)) => format!("{userinfo}@{gateway}"),
        None => url.to_owned(),
    }
}

/// `--gateway` as HOST or HOST:PORT; default the API host's host, port 10255.
pub(crate) fn gateway_address(flag: Option<&str>, api_host: &str) -> String {
    let host = |s: &str| {
        s.rsplit_once(':')
            .map_or(s.to_owned(), |(h, _)| h.to_owned())
    };
    match flag {
        Some(g) if g.contains(':') && !g.ends_with(']') => g.to_owned(),
        Some(g) => format!("{g}:10255"),
        None => {
            let authority = api_host
                .split("://")
                .nth(1)
                .unwrap_or(api_host)
                .split('/')
                .next()
                .unwrap_or("127.0.0.1");
            format!("{}:10255", host(authority))
        }
    }
}

fn which(program: &OsString) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return is_executable(p).then(|| p.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|c| is_executable(c))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Writes `content` unless the file already holds it; `private`: dir 0700,
/// file 0600.
fn write_if_changed(path: &Path, content: &str, private: bool) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    if private {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let tmp = path.with_extension("tmp");
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, content.as_bytes())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_rewritten_for_a_local_process() {
        let url = "http://x:aoc_ab12@host.docker.internal:10255";
        assert_eq!(
            rewrite_proxy(url, "127.0.0.1:10255"),
            "http://x:aoc_ab12@127.0.0.1:10255"
        );
        assert_eq!(
            gateway_address(None, "http://127.0.0.1:10254"),
            "127.0.0.1:10255"
        );
        assert_eq!(
            gateway_address(None, "http://control.lan:8080/base"),
            "control.lan:10255"
        );
        assert_eq!(gateway_address(Some("gw.lan"), "http://x"), "gw.lan:10255");
        assert_eq!(
            gateway_address(Some("gw.lan:9000"), "http://x"),
            "gw.lan:9000"
        );
    }

    #[test]
    fn tokens_are_masked() {
        assert_eq!(
            mask_token("http://x:aoc_0123abcdef@h:1"),
            "http://x:aoc_****@h:1"
        );
        assert_eq!(mask_token("no token"), "no token");
    }
}
