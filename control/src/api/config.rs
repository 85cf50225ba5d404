//! Health, the gateway CA, the gateway URL, container config (what the SDK's
//! `applyContainerConfig` adds to `docker run`) and the agent skill file.

use hyper::{Method, StatusCode};
use onecli_policy::model::SecretKind;
use serde_json::{json, Map, Value};

use super::{json_response, not_found, ok, response, Api, ApiError, ApiResult, Call};
use crate::store::{SecretRecord, StoreError};

/// Where containers find the CA the SDK writes and mounts.
pub const CONTAINER_CA_PATH: &str = "/tmp/onecli-gateway-ca.pem";
/// What an agent's AWS SDK signs as: shaped like a key id, and no key.
pub const AWS_PLACEHOLDER_KEY_ID: &str = "AKIAONECLIPLACEHOLDER";

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["openapi.json"]) => ok(openapi()),
        (&Method::GET, ["health"]) => ok(&json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": crate::ids::now_rfc3339(),
        })),
        (&Method::GET, ["gateway", "ca"]) => Ok(response(
            StatusCode::OK,
            "application/x-pem-file",
            ca_pem(api)?,
        )),
        (&Method::GET, ["gateway-url"]) => ok(&json!({ "url": api.config.public_url })),
        (&Method::GET, ["container-config"]) => container_config(api, call).await,
        (&Method::GET, ["skill", "gateway"]) => {
            // `agent` (ours): only the services that agent may use.
            let agent = call.query("agent").map(str::to_owned);
            let secrets = api
                .read(&call.scope, move |s| {
                    let secrets = s.secrets()?;
                    let Some(identifier) = agent else {
                        return Ok(secrets);
                    };
                    let agent = s
                        .agent_by_identifier(&identifier)?
                        .ok_or(StoreError::NotFound("agent"))?;
                    Ok(secrets
                        .into_iter()
                        .filter(|sec| {
                            agent.secret_mode == onecli_policy::model::SecretMode::All
                                || agent.secret_ids.contains(&sec.id)
                        })
                        .collect())
                })
                .await?;
            let framework = call.query("agent_framework").unwrap_or("claude");
            Ok(response(
                StatusCode::OK,
                "text/markdown; charset=utf-8",
                skill(framework, &secrets),
            ))
        }
        _ => Err(not_found(call)),
    }
}

fn ca_pem(api: &Api) -> Result<String, ApiError> {
    std::fs::read_to_string(&api.config.ca_cert).map_err(|_| {
        ApiError::Unavailable(
            "The gateway CA is not available yet: start the gateway once to generate it.".into(),
        )
    })
}

async fn container_config(api: &Api, call: &Call) -> ApiResult {
    let agent = call.query("agent").map(str::to_owned);
    let lookup = agent.clone();
    // A write: the default agent may be created here, and the gateways
    // must know it before its token is handed out.
    let found = api
        .write(&call.scope, move |s| {
            let agent = match &lookup {
                Some(identifier) => match s.agent_by_identifier(identifier)? {
                    Some(a) => a,
                    None => return Ok(None),
                },
                None => s.default_agent()?,
            };
            let token = s.agent_token(&agent)?;
            let secrets: Vec<SecretRecord> = s
                .secrets()?
                .into_iter()
                .filter(|sec| {
                    agent.secret_mode == onecli_policy::model::SecretMode::All
                        || agent.secret_ids.contains(&sec.id)
                })
                .collect();
            // Codex's placeholder login, for the first ChatGPT login it may use.
            let codex = match secrets.iter().find(|sec| sec.chatgpt_login) {
                Some(login) => s.chatgpt_placeholder(&login.id)?,
                None => None,
            };
            Ok::<_, StoreError>(Some((agent.identifier.clone(), token, secrets, codex)))
        })
        .await?;
    let Some((identifier, token, secrets, codex_auth)) = found else {
        let identifier = agent.unwrap_or_default();
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "error": format!("No agent with identifier \"{identifier}\" exists. Create it first (POST /v1/agents) or omit ?agent= for the default agent."),
                "code": "AGENT_NOT_FOUND",
                "agentIdentifier": identifier,
            }),
        ));
    };
    let proxy = format!(
        "http://x:{}@{}",
        token.as_str(),
        api.config.container_gateway
    );
    let mut env = Map::new();
    for key in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(key.into(), Value::String(proxy.clone()));
    }
    let no_proxy = no_proxy(&api.config.no_proxy);
    env.insert("NO_PROXY".into(), no_proxy.clone().into());
    env.insert("no_proxy".into(), no_proxy.into());
    env.insert("NODE_EXTRA_CA_CERTS".into(), CONTAINER_CA_PATH.into());
    env.insert("NODE_USE_ENV_PROXY".into(), "1".into());
    env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
    env.insert("GIT_HTTP_PROXY_AUTHMETHOD".into(), "basic".into());
    let anthropic_oauth = secrets
        .iter()
        .any(|s| s.kind == SecretKind::Anthropic && s.anthropic_oauth);
    let placeholder = if anthropic_oauth {
        "CLAUDE_CODE_OAUTH_TOKEN"
    } else {
        "ANTHROPIC_API_KEY"
    };
    env.insert(placeholder.into(), "placeholder".into());
    // A ChatGPT login alone: Codex would take an API key over it.
    if secrets
        .iter()
        .any(|s| s.kind == SecretKind::Openai && !s.chatgpt_login)
    {
        env.insert("OPENAI_API_KEY".into(), "placeholder".into());
    }
    // AWS SDKs sign with these; the gateway signs again with the real key.
    if secrets.iter().any(|s| s.kind == SecretKind::Aws) {
        env.insert("AWS_ACCESS_KEY_ID".into(), AWS_PLACEHOLDER_KEY_ID.into());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), "placeholder".into());
    }
    tracing::debug!(agent = %identifier, project = %call.scope.project, "container config served");
    let mut config = json!({
        "env": env,
        "caCertificate": ca_pem(api)?,
        "caCertificateContainerPath": CONTAINER_CA_PATH,
    });
    // Beside COMPAT's fields: the auth.json `onecli run -- codex` writes.
    if let Some(auth) = codex_auth {
        config["codexAuthJson"] = Value::String(auth);
    }
    ok(&config)
}

/// Loopback, then the operator's hosts: what agents reach without the gateway.
pub fn no_proxy(extra: &[String]) -> String {
    let mut hosts = vec!["localhost", "127.0.0.1", "::1"];
    for host in extra {
        if !hosts.contains(&host.as_str()) {
            hosts.push(host);
        }
    }
    hosts.join(",")
}

/// The skill file that teaches an agent to work behind the gateway
/// (COMPAT.md §skill), listing the services actually configured.
pub fn skill(framework: &str, secrets: &[SecretRecord]) -> String {
    let mut services = String::new();
    for s in secrets {
        services.push_str(&format!("- `{}` ({})\n", s.host_pattern, s.name));
    }
    if services.is_empty() {
        services
            .push_str("- none yet: any service you call will answer with a link to connect it.\n");
    }
    // A Claude subscription login rather than an API key.
    let claude_login = if secrets
        .iter()
        .any(|s| s.kind == SecretKind::Anthropic && s.anthropic_oauth)
    {
        "Claude is reached with the user's subscription login: `CLAUDE_CODE_OAUTH_TOKEN` holds a placeholder that the gateway replaces with the real token (and the flags it needs). Keep it as it is; do not run a login flow or ask for a token.\n\n"
    } else {
        ""
    };
    let aws = if secrets.iter().any(|s| s.kind == SecretKind::Aws) {
        "AWS is reached with placeholder keys: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are placeholders, and the gateway signs each request again with the real key. Use the AWS SDK or CLI as usual with them; do not look for other credentials.\n\n"
    } else {
        ""
    };
    let codex = if secrets.iter().any(|s| s.chatgpt_login) {
        "ChatGPT (Codex) is reached with the user's login: the `auth.json` you hold is a placeholder, and its refresh token is managed by OneCLI. Keep it as it is; do not run `codex login` or ask for a token.\n\n"
    } else {
        ""
    };
    format!(
        "---\nname: onecli-gateway\ndescription: Use when calling external APIs ({framework}): requests go through the OneCLI gateway, which adds credentials; never ask for API keys.\n---\n\n\
# Working behind the OneCLI gateway\n\n\
Your HTTP(S) traffic goes through the OneCLI gateway, which adds the right credentials for each service. \
Call the real API URLs directly and send no auth headers of your own: any placeholder key in your environment is replaced on the way.\n\n\
## Services configured\n\n{services}\n{claude_login}{aws}{codex}\
## When a request fails\n\n\
- `credential_not_found` or `app_not_connected`: show the user the link from the error (`secret_url`), with `&source=agent&agent_name=$ONECLI_AGENT_NAME` appended, \
and ask them to connect the service. If they cannot open the link (no browser on this machine), they can add the key from their own terminal, for example \
`onecli secrets create --name Stripe --type generic --value 'sk_…' --host-pattern api.stripe.com --header-name Authorization --value-format 'Bearer {{value}}'`: \
they type the key there, never into this conversation. \
Then poll `onecli secrets list --fields hostPattern --quiet hostPattern` every five seconds, for up to two minutes, and retry once the host appears.\n\
- `access_restricted`: credentials exist but this agent may not use them; show the user `manage_url`.\n\
- `blocked_by_policy`, `blocked_by_default_policy`, `manual_approval_denied`: a policy said no. Respect it; do not retry or work around it.\n\
- `rate_limited`: wait for `Retry-After` seconds before trying again.\n\n\
## Never\n\n\
- ask the user for API keys or tokens, or put keys in commands or files;\n\
- print or log the proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`): they hold your gateway token.\n"
    )
}

/// The methods docs/openapi.yaml gives the path of `segments` (after
/// `/v1/`), a `{name}` there standing for any one segment.
pub fn methods_of(segments: &[String]) -> Vec<&'static str> {
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let Some(paths) = openapi()["paths"].as_object() else {
        return Vec::new();
    };
    let fits = |template: &str| {
        let Some(rest) = template.strip_prefix("/v1/") else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(segments)
                .all(|(part, segment)| part.starts_with('{') || part == segment)
    };
    METHODS
        .into_iter()
        .filter(|method| {
            let key = method.to_ascii_lowercase();
            paths
                .iter()
                .any(|(template, item)| fits(template) && item.get(&key).is_some())
        })
        .collect()
}

/// docs/openapi.yaml, the API's description, as JSON (read once).
pub fn openapi() -> &'static Value {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_yaml::from_str(include_str!("../../../docs/openapi.yaml"))
            .unwrap_or_else(|_| json!({ "openapi": "3.1.0", "info": {}, "paths": {} }))
    });
    &DOC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_methods_of_a_path_come_from_the_description() {
        let of = |path: &str| {
            let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
            methods_of(&segments)
        };
        assert_eq!(of("agents"), ["GET", "POST"]);
        assert!(of("agents/some-id").contains(&"DELETE"));
        assert!(of("no-such-thing").is_empty());
        assert!(of("agents/some-id/and/more/than/any").is_empty());
    }

    /// The description parses, and every route the dispatchers answer is
    /// in it: a route added without its description fails here.
    #[test]
    fn the_openapi_description_parses_and_names_every_route() {
        let doc: Value = serde_yaml::from_str(include_str!("../../../docs/openapi.yaml"))
            .expect("docs/openapi.yaml parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let sources = [
            include_str!("agents.rs"),
            include_str!("secrets.rs"),
            include_str!("rules.rs"),
            include_str!("approvals.rs"),
            include_str!("config.rs"),
            include_str!("gateways.rs"),
            include_str!("logs.rs"),
            include_str!("projects.rs"),
        ];
        let mut checked = 0;
        for source in sources {
            // `(&Method::GET, ["agents", id, "secrets"])` → GET /v1/agents/{…}/secrets
            for (i, _) in source.match_indices("(&Method::") {
                let arm = &source[i..];
                let Some(end) = arm.find("])") else { continue };
                let arm = &arm[..end];
                let Some((method, segments)) = arm
                    .strip_prefix("(&Method::")
                    .and_then(|a| a.split_once(", ["))
                else {
                    continue;
                };
                if segments.contains("..") {
                    continue;
                }
                let path: Vec<String> = segments
                    .split(',')
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(
                        |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                            Some(literal) => literal.to_owned(),
                            None => "{}".to_owned(),
                        },
                    )
                    .collect();
                let found = paths.iter().any(|(p, item)| {
                    let parts: Vec<&str> = p.trim_start_matches("/v1/").split('/').collect();
                    parts.len() == path.len()
                        && parts
                            .iter()
                            .zip(&path)
                            .all(|(a, b)| a == b || (b == "{}" && a.starts_with('{')))
                        && item.get(method.to_ascii_lowercase()).is_some()
                });
                assert!(
                    found,
                    "{method} /v1/{} is not in docs/openapi.yaml",
                    path.join("/")
                );
                checked += 1;
            }
        }
        assert!(
            checked > 30,
            "only {checked} routes found: the test lost track of the code"
        );
    }
}
