//! The dashboard's pages, server-rendered with maud (which escapes every
//! value it prints). No page ever prints a secret value or a token.

use maud::{html, Markup, DOCTYPE};

use crate::store::{AgentRecord, RuleRecord, SecretRecord};

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Approvals,
    Agents,
    Connections,
    Rules,
    Activity,
    Settings,
}

const NAV: [(Section, &str, &str); 7] = [
    (Section::Overview, "/", "Overview"),
    (Section::Approvals, "/approvals", "Approvals"),
    (Section::Agents, "/agents", "Agents"),
    (Section::Connections, "/connections", "Connections"),
    (Section::Rules, "/rules", "Rules"),
    (Section::Activity, "/activity", "Activity"),
    (Section::Settings, "/settings", "Settings"),
];

/// What every signed-in page shows around its content.
pub struct Frame<'a> {
    pub section: Section,
    pub title: &'a str,
    pub csrf: &'a str,
    pub pending_approvals: usize,
    /// The projects the session may show (id, name), and the one it shows.
    pub projects: &'a [(String, String)],
    pub project: &'a str,
}

/// The `<head>` every page shares; `script` for pages that run `app.js`.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · OneCLI" }
            link rel="stylesheet" href="/assets/app.css";
            @if script { script src="/assets/app.js" defer {} }
        }
    }
}

pub fn page(frame: &Frame<'_>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(frame.title, true))
            body {
                nav.side aria-label="Main" {
                    div.brand { "OneCLI" }
                    ul {
                        @for (section, href, label) in NAV {
                            li {
                                a href=(href) aria-current=[(section == frame.section).then_some("page")] {
                                    span { (label) }
                                    @if section == Section::Approvals {
                                        span.badge #pending-badge hidden[frame.pending_approvals == 0]
                                            aria-label="requests waiting" { (frame.pending_approvals) }
                                    }
                                }
                            }
                        }
                    }
                    @if frame.projects.len() > 1 {
                        form.project method="post" action="/project" {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            label {
                                "Project"
                                select name="project" {
                                    @for (id, name) in frame.projects {
                                        option value=(id) selected[id == frame.project] { (name) }
                                    }
                                }
                            }
                            button.quiet type="submit" { "Show" }
                        }
                    } @else if let Some((_, name)) = frame.projects.first() {
                        p.project { "Project: " (name) }
                    }
                    form method="post" action="/sign-out" {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button.quiet type="submit" { "Sign out" }
                    }
                }
                main { (content) }
            }
        }
    }
}

pub fn sign_in(error: Option<&str>, next: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in", false))
            body.bare {
                main.signin {
                    h1 { "Sign in to OneCLI" }
                    @if let Some(error) = error {
                        p.notice.bad role="alert" { (error) }
                    }
                    form.stack.panel method="post" action="/sign-in" {
                        input type="hidden" name="next" value=(next);
                        label {
                            "API key"
                            span.hint { "The admin key is in ~/.onecli/data/api-key. Or run " code { "onecli dashboard" } " for a one-time link." }
                            input type="password" name="key" autocomplete="current-password" required autofocus;
                        }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

pub struct Overview<'a> {
    pub policy_version: u64,
    pub agents: usize,
    pub connections: usize,
    pub rules: usize,
    pub pending_approvals: usize,
    pub api_url: &'a str,
    pub ca_fingerprint: &'a str,
    /// Requests in the last hour, by outcome, most first.
    pub last_hour: Vec<(String, usize)>,
    /// Gateways run apart that are listening for policies now.
    pub remote_gateways: usize,
}

pub fn overview(o: &Overview<'_>) -> Markup {
    html! {
        h1 { "Overview" }
        p.lead { "Agents reach APIs through the gateway; the keys stay here." }
        div.grid {
            div.panel.stat { div.value { (o.agents) } div.label { "agents" } }
            div.panel.stat { div.value { (o.connections) } div.label { "connections" } }
            div.panel.stat { div.value { (o.rules) } div.label { "rules" } }
            div.panel.stat { div.value { (o.pending_approvals) } div.label { "waiting for approval" } }
            div.panel.stat { div.value { "v" (o.policy_version) } div.label { "policy version" } }
            div.panel.stat { div.value { (o.remote_gateways) } div.label { "gateways apart, listening" } }
        }
        h2 { "The last hour" }
        @if o.last_hour.is_empty() {
            div.empty { "No requests in the last hour." }
        } @else {
            table {
                thead { tr { th { "Outcome" } th { "Requests" } } }
                tbody { @for (outcome, n) in &o.last_hour {
                    tr { td { a href={ "/activity?outcome=" (outcome) } { (outcome) } } td { (n) } }
                } }
            }
        }
        h2 { "Start an agent" }
        pre #run { "onecli run -- claude" }
        button.quiet type="button" data-copy="#run" { "Copy command" }
        h2 { "From code, with the official SDK" }
        pre #sdk {
            "import { OneCLI } from \"@onecli-sh/sdk\";\n"
            "const oc = new OneCLI({ url: \"" (o.api_url) "\", apiKey: process.env.ONECLI_API_KEY });\n"
            "await oc.applyContainerConfig(args, { agent: \"default\" });"
        }
        h2 { "The gateway's CA" }
        p {
            "Clients trust the gateway with its CA: "
            a href="/v1/gateway/ca" download="onecli-gateway-ca.pem" { "download it" }
            " (SHA-256 " code { (o.ca_fingerprint) } ")."
        }
    }
}

pub fn agents(
    agents: &[AgentRecord],
    secrets: &[SecretRecord],
    manage: Option<&str>,
    csrf: &str,
    error: Option<&str>,
    gateway: &str,
) -> Markup {
    html! {
        h1 { "Agents" }
        p.lead { "Each agent has its own proxy token, secrets and rules." }
        @if let Some(error) = error { p.notice.bad role="alert" { (error) } }
        @if agents.is_empty() {
            div.empty { "No agents yet. " code { "onecli run -- claude" } " creates the default one." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Identifier" } th { "Secrets" } th { "Reaches" } th { "Proxy token" } th { "Actions" } } }
                tbody {
                    @for a in agents {
                        tr.highlight[manage == Some(a.identifier.as_str())] id={ "agent-" (a.identifier) } {
                            td { (a.name) @if a.is_default { " " span.muted { "(default)" } } }
                            td { code { (a.identifier) } }
                            td { @match a.secret_mode {
                                onecli_policy::model::SecretMode::All => "all",
                                onecli_policy::model::SecretMode::Selective => "selected",
                            } }
                            td {
                                form.inline method="post" action={ "/agents/" (a.id) "/policy-mode" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    label.sr-only for={ "mode-" (a.id) } { "What " (a.name) " may reach" }
                                    select id={ "mode-" (a.id) } name="mode" {
                                        option value="allow" selected[a.policy_mode == onecli_policy::model::PolicyMode::Allow] { "every host" }
                                        option value="deny" selected[a.policy_mode == onecli_policy::model::PolicyMode::Deny] { "listed hosts only" }
                                    }
                                    button.quiet type="submit" { "Save" }
                                }
                            }
                            td {
                                code id={ "token-" (a.id) } data-token-of=(a.id) { "aoc_••••••••" }
                                " "
                                button.quiet type="button" data-reveal=(a.id) { "Reveal" }
                                " "
                                button.quiet type="button" data-copy={ "#token-" (a.id) } { "Copy" }
                                details {
                                    summary { "Container env" }
                                    pre { "HTTPS_PROXY=http://x:<token>@" (gateway) "\nHTTP_PROXY=http://x:<token>@" (gateway) }
                                }
                            }
                            td {
                                details open[manage == Some(a.identifier.as_str())] {
                                    summary { "More" }
                                    form method="post" action={ "/agents/" (a.id) "/rename" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        label { "Name" input name="name" value=(a.name) required; }
                                        button.quiet type="submit" { "Rename" }
                                    }
                                    form method="post" action={ "/agents/" (a.id) "/secrets" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        fieldset {
                                            legend { "Connections it may use" }
                                            label.check {
                                                input type="radio" name="mode" value="all" checked[a.secret_mode == onecli_policy::model::SecretMode::All];
                                                " all"
                                            }
                                            label.check {
                                                input type="radio" name="mode" value="selective" checked[a.secret_mode == onecli_policy::model::SecretMode::Selective];
                                                " only these:"
                                            }
                                            @for s in secrets {
                                                label.check {
                                                    input type="checkbox" name="secret" value=(s.id) checked[a.secret_ids.contains(&s.id)];
                                                    " " (s.name) " " code { (s.host_pattern) }
                                                }
                                            }
                                        }
                                        button.quiet type="submit" { "Save access" }
                                    }
                                    form method="post" action={ "/agents/" (a.id) "/regenerate" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        label.check { input type="checkbox" name="confirm" value="yes"; " The old token stops working" }
                                        button.quiet type="submit" { "New token" }
                                    }
                                    form method="post" action={ "/agents/" (a.id) "/delete" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.quiet type="submit" { "Delete " (a.name) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "New agent" }
        form.stack method="post" action="/agents" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Name" input name="name" required; }
            label { "Identifier" span.hint { "lower-case letters, digits and -" } input name="identifier" required pattern="[a-z0-9][a-z0-9-]{0,49}"; }
            button type="submit" { "Create agent" }
        }
    }
}

pub fn connections(secrets: &[SecretRecord], notice: Option<Markup>, csrf: &str) -> Markup {
    html! {
        h1 { "Connections" }
        p.lead { "Credentials the gateway injects. Values are write-only: never shown again." }
        @if let Some(notice) = notice { (notice) }
        p { a.button href="/connections/custom?create=generic" { "Add a connection" } }
        @if secrets.is_empty() {
            div.empty { "No connections yet." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Type" } th { "Host" } th { "Path" } th { "Value" } th { "Actions" } } }
                tbody {
                    @for s in secrets {
                        tr {
                            td { (s.name) }
                            td { (kind_name(s.kind)) }
                            td { code { (s.host_pattern) } }
                            td { code { (s.path_pattern) } }
                            td { code { (s.preview) } }
                            td {
                                a.button.quiet href={ "/connections/" (s.id) "/edit" } { "Edit" " " span.sr-only { (s.name) } }
                                " "
                                form.inline method="post" action={ "/connections/" (s.id) "/delete" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.quiet type="submit" { "Delete" " " span.sr-only { (s.name) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn kind_name(kind: onecli_policy::model::SecretKind) -> &'static str {
    match kind {
        onecli_policy::model::SecretKind::Anthropic => "anthropic",
        onecli_policy::model::SecretKind::Openai => "openai",
        onecli_policy::model::SecretKind::Generic => "generic",
        onecli_policy::model::SecretKind::Aws => "aws",
    }
}

/// The create form, prefilled from the connect link an agent handed out.
#[derive(Debug, Default, Clone)]
pub struct ConnectForm {
    pub kind: String,
    pub name: String,
    pub host: String,
    pub path: String,
    /// `header`, `param` or `path`.
    pub inject: String,
    pub header: String,
    pub format: String,
    pub param: String,
    pub param_format: String,
    /// `/bot{value}`: the key in the path.
    pub path_template: String,
    /// An AWS key's id (its secret key is the value).
    pub access_key_id: String,
    /// The agent that asked, when it came from an agent's link.
    pub agent_name: Option<String>,
    /// Editing this connection (its value may stay as it is).
    pub editing: Option<String>,
}

pub fn connect(form: &ConnectForm, csrf: &str, error: Option<&str>) -> Markup {
    let kinds = [
        ("generic", "Generic (any API)"),
        ("anthropic", "Anthropic"),
        ("openai", "OpenAI (an API key, or Codex's auth.json)"),
        ("aws", "AWS (requests signed with the key)"),
    ];
    html! {
        h1 { @if form.editing.is_some() { "Edit " (form.name) } @else { "Add a connection" } }
        @if let Some(agent) = &form.agent_name {
            p.notice role="status" {
                "The agent " strong { (agent) } " asked for credentials for "
                code { (form.host) } ". Once you save them it can retry: nothing restarts."
            }
        }
        @if let Some(error) = error {
            p.notice.bad role="alert" { (error) }
        }
        form.stack method="post" action=(form.editing.as_ref().map_or_else(|| "/connections".to_owned(), |id| format!("/connections/{id}"))) {
            input type="hidden" name="csrf" value=(csrf);
            @if let Some(agent) = &form.agent_name {
                input type="hidden" name="agent_name" value=(agent);
            }
            label {
                "Type"
                select name="type" {
                    @for (value, label) in kinds {
                        option value=(value) selected[form.kind == value] { (label) }
                    }
                }
            }
            label { "Name" input name="name" value=(form.name) required; }
            label {
                "Host" span.hint { "api.example.com, *.example.com, optional :port" }
                input name="host" value=(form.host) required;
            }
            label {
                "Path" span.hint { "* for every path, /v1/* for a subtree" }
                input name="path" value=(form.path);
            }
            fieldset data-generic {
                legend { "How the API takes the key" }
                label {
                    "Sent as"
                    select name="inject" {
                        option value="header" selected[form.inject == "header"] { "a header" }
                        option value="param" selected[form.inject == "param"] { "a query parameter" }
                        option value="path" selected[form.inject == "path"] { "part of the path" }
                        @if form.inject == "keep" {
                            option value="keep" selected { "a path pattern (set through the API; kept)" }
                        }
                    }
                }
                label data-inject="header" { "Header name" input name="header" value=(form.header) placeholder="Authorization"; }
                label data-inject="header" {
                    "Header value" span.hint { "{value} stands for the key, e.g. Bearer {value}" }
                    input name="format" value=(form.format) placeholder="{value}";
                }
                label data-inject="param" { "Parameter name" input name="param" value=(form.param) placeholder="key"; }
                label data-inject="param" {
                    "Parameter value" span.hint { "{value} stands for the key" }
                    input name="param_format" value=(form.param_format) placeholder="{value}";
                }
                label data-inject="path" {
                    "Path template"
                    span.hint { "e.g. /bot{value}: the key replaces the rest of that path segment; the agent sends a placeholder there" }
                    input name="path_template" value=(form.path_template) placeholder="/bot{value}";
                }
            }
            fieldset data-aws hidden[form.kind != "aws"] {
                legend { "AWS key" }
                label { "Access key id" input name="access_key_id" value=(form.access_key_id) placeholder="AKIA…"; }
                label {
                    "Session token" span.hint { "For temporary credentials only. Stored encrypted; never shown." }
                    input type="password" name="session_token" autocomplete="off";
                }
                p.hint { "Agents sign with placeholder keys; the gateway signs each request again with this one. The value below is the secret access key." }
            }
            label {
                "Value"
                @if form.editing.is_some() {
                    span.hint { "Leave empty to keep the stored value; it is never shown." }
                    input type="password" name="value" autocomplete="off";
                } @else {
                    span.hint { "Stored encrypted; never shown again." }
                    input type="password" name="value" autocomplete="off" required;
                }
            }
            button type="submit" { "Save connection" }
        }
    }
}

pub fn rules(
    rules: &[RuleRecord],
    agents: &[AgentRecord],
    csrf: &str,
    error: Option<&str>,
) -> Markup {
    let agent_name = |id: &Option<String>| -> String {
        match id {
            None => "all agents".to_owned(),
            Some(id) => agents
                .iter()
                .find(|a| &a.id == id)
                .map_or_else(|| id.clone(), |a| a.name.clone()),
        }
    };
    html! {
        h1 { "Rules" }
        p.lead { "Block, allow, rate-limit or hold requests for approval, by host, path and method. A block wins over everything; an agent's own rule shadows the same rule for all agents." }
        @if let Some(error) = error { p.notice.bad role="alert" { (error) } }
        @if rules.is_empty() {
            div.empty { "No rules: every agent may reach every host (unless it lists hosts only)." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Action" } th { "Host" } th { "Path" } th { "Methods" } th { "Agent" } th { "On" } th { "Actions" } } }
                tbody {
                    @for r in rules {
                        tr id={ "rule-" (r.id) } {
                            td {
                                (r.name)
                                @let shadows = shadowed_for(r, rules, agents);
                                @if !shadows.is_empty() {
                                    br;
                                    span.muted { "not for " (shadows.join(", ")) ": their own rule decides" }
                                }
                            }
                            td { (action_name(&r.action)) }
                            td { code { (r.host_pattern) } }
                            td { code { (r.path_pattern) } }
                            td { @if r.methods.is_empty() { "all" } @else { (r.methods.join(", ")) } }
                            td { (agent_name(&r.agent_id)) }
                            td { @if r.enabled { "yes" } @else { "no" } }
                            td {
                                a.button.quiet href={ "/rules/" (r.id) "/edit" } { "Edit" " " span.sr-only { (r.name) } }
                                " "
                                form.inline method="post" action={ "/rules/" (r.id) "/toggle" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="enabled" value=(if r.enabled { "false" } else { "true" });
                                    button.quiet type="submit" { @if r.enabled { "Disable" } @else { "Enable" } " " span.sr-only { (r.name) } }
                                }
                                form.inline method="post" action={ "/rules/" (r.id) "/delete" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.quiet type="submit" { "Delete" " " span.sr-only { (r.name) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "New rule" }
        (rule_form(None, agents, csrf))
    }
}

/// The form that makes a rule, or with `existing` changes it.
pub fn rule_form(existing: Option<&RuleRecord>, agents: &[AgentRecord], csrf: &str) -> Markup {
    use onecli_policy::model::{RateWindow, RuleAction};
    let action = existing.map(|r| match r.action {
        RuleAction::Block => "block",
        RuleAction::Allow => "allow",
        RuleAction::RateLimit { .. } => "rate_limit",
        RuleAction::ManualApproval => "manual_approval",
    });
    let (limit, window) = match existing.map(|r| &r.action) {
        Some(RuleAction::RateLimit { limit, window }) => (limit.to_string(), *window),
        _ => (String::new(), RateWindow::Hour),
    };
    let agent = existing.and_then(|r| r.agent_id.clone());
    let actions = [
        ("block", "block"),
        ("allow", "allow (for agents that reach listed hosts only)"),
        ("rate_limit", "rate limit"),
        ("manual_approval", "ask a human"),
    ];
    html! {
        form.stack method="post" action=(existing.map_or_else(|| "/rules".to_owned(), |r| format!("/rules/{}", r.id))) {
            input type="hidden" name="csrf" value=(csrf);
            label { "Name" input name="name" value=[existing.map(|r| r.name.as_str())] required; }
            label {
                "Action"
                select name="action" {
                    @for (value, label) in actions {
                        option value=(value) selected[action == Some(value)] { (label) }
                    }
                }
            }
            label { "Host" span.hint { "api.example.com or *.example.com" } input name="host" value=[existing.map(|r| r.host_pattern.as_str())] required; }
            label { "Path" span.hint { "* for every path" } input name="path" value=[existing.map(|r| r.path_pattern.as_str())] placeholder="*"; }
            label { "Methods" span.hint { "comma-separated; empty for all" } input name="methods" value=[existing.map(|r| r.methods.join(", "))] placeholder="DELETE, PUT"; }
            label {
                "Agent"
                select name="agent" {
                    option value="" { "all agents" }
                    @for a in agents { option value=(a.id) selected[agent.as_deref() == Some(a.id.as_str())] { (a.name) } }
                }
            }
            label { "Rate limit" span.hint { "requests per window, for rate limit rules" } input name="limit" value=(limit) inputmode="numeric"; }
            label {
                "Window"
                select name="window" {
                    @for w in [RateWindow::Minute, RateWindow::Hour, RateWindow::Day] {
                        option value=(w.name()) selected[w == window] { (w.name()) }
                    }
                }
            }
            button type="submit" { @if existing.is_some() { "Save rule" } @else { "Create rule" } }
        }
    }
}

/// The agents whose own rule with the same host, path and methods shadows
/// an all-agents rule (as the policy engine decides).
fn shadowed_for(rule: &RuleRecord, rules: &[RuleRecord], agents: &[AgentRecord]) -> Vec<String> {
    if rule.agent_id.is_some() || !rule.enabled {
        return Vec::new();
    }
    let key = |r: &RuleRecord| {
        let mut methods = r.methods.clone();
        methods.sort();
        (r.host_pattern.clone(), r.path_pattern.clone(), methods)
    };
    let mine = key(rule);
    rules
        .iter()
        .filter(|r| r.enabled && key(r) == mine)
        .filter_map(|r| r.agent_id.as_ref())
        .map(|id| {
            agents
                .iter()
                .find(|a| &a.id == id)
                .map_or_else(|| id.clone(), |a| a.name.clone())
        })
        .collect()
}

fn action_name(action: &onecli_policy::model::RuleAction) -> String {
    use onecli_policy::model::RuleAction;
    match action {
        RuleAction::Block => "block".into(),
        RuleAction::Allow => "allow".into(),
        RuleAction::ManualApproval => "ask a human".into(),
        RuleAction::RateLimit { limit, window } => format!("{limit} per {}", window.name()),
    }
}

/// Requests held for a human. The list is rendered here and kept current by
/// `app.js`, which polls `/approvals/feed` and redraws it.
pub fn approvals(pending: &[serde_json::Value], csrf: &str) -> Markup {
    html! {
        h1 { "Approvals" }
        p.lead { "Requests a rule holds until a person decides. The agent waits; credentials are never shown." }
        div #approvals data-csrf=(csrf) aria-live="polite" {
            @if pending.is_empty() {
                div.empty { "Nothing is waiting." }
            }
            @for request in pending {
                (approval_card(request, csrf))
            }
        }
    }
}

fn approval_card(r: &serde_json::Value, csrf: &str) -> Markup {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let id = text(&r["id"]);
    html! {
        article.panel.approval data-id=(id) {
            h2 { code { (text(&r["method"])) " " (text(&r["host"])) (text(&r["path"])) } }
            p.muted {
                "From " strong { (text(&r["agent"]["name"])) } " · "
                time datetime=(text(&r["expiresAt"])) data-left { "until " (text(&r["expiresAt"])) }
            }
            @if let Some(headers) = r["headers"].as_object() {
                details {
                    summary { "Headers (" (headers.len()) ")" }
                    pre { @for (k, v) in headers { (k) ": " (v.as_str().unwrap_or("")) "\n" } }
                }
            }
            @if let Some(body) = r["bodyPreview"].as_str() {
                details { summary { "Body" } pre { (body) } }
            }
            form.inline method="post" action={ "/approvals/" (id) "/approve" } {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Approve" }
            }
            form.inline method="post" action={ "/approvals/" (id) "/deny" } {
                input type="hidden" name="csrf" value=(csrf);
                button.quiet type="submit" { "Deny" }
            }
        }
    }
}

/// The filters of the activity view, as its form and feed take them.
#[derive(Debug, Default, Clone)]
pub struct ActivityFilter {
    pub agent: String,
    pub host: String,
    pub outcome: String,
}

/// The audit log, newest first; `app.js` keeps it current in live mode.
pub fn activity(records: &[onecli_policy::audit::AuditRecord], filter: &ActivityFilter) -> Markup {
    html! {
        h1 { "Activity" }
        p.lead { "Every request the gateway decided, newest first. No values, ever." }
        form.filters method="get" action="/activity" {
            label { "Agent" input name="agent" value=(filter.agent) placeholder="identifier"; }
            label { "Host" input name="host" value=(filter.host) placeholder="api.example.com"; }
            label { "Outcome" input name="outcome" value=(filter.outcome) placeholder="blocked_by_policy"; }
            button type="submit" { "Filter" }
            label.check { input type="checkbox" #live; " Live" }
        }
        table #activity {
            thead { tr { th { "Time" } th { "Agent" } th { "Request" } th { "Outcome" } th { "Status" } th { "Rule" } } }
            tbody {
                @if records.is_empty() {
                    tr { td colspan="6" { div.empty { "Nothing yet." } } }
                }
                @for r in records {
                    tr {
                        td { (r.time) }
                        td { code { (r.agent) } }
                        td { code { (r.method) " " (r.host) (r.path) } }
                        td { (r.outcome) }
                        td { (r.status) }
                        td {
                            @match (&r.rule_id, &r.rule_name) {
                                (Some(id), Some(name)) => a href={ "/rules#rule-" (id) } { (name) },
                                _ => span.muted { "–" },
                            }
                        }
                    }
                }
            }
        }
    }
}

pub struct Settings<'a> {
    pub api_keys: &'a [crate::store::KeyRecord],
    pub gateway_tokens: &'a [crate::store::KeyRecord],
    /// A key just made: (what it is, the key), shown this once.
    pub created: Option<(&'a str, &'a str)>,
    pub error: Option<&'a str>,
    pub ca_fingerprint: &'a str,
    pub version: &'a str,
}

pub fn settings(s: &Settings<'_>, csrf: &str) -> Markup {
    let list = |keys: &[crate::store::KeyRecord], kind: &str, what: &str| {
        html! {
            @if keys.is_empty() {
                div.empty { "None." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Created" } th { "Actions" } } }
                    tbody {
                        @for k in keys {
                            tr {
                                td { (k.name) }
                                td { (k.created_at) }
                                td {
                                    form.inline method="post" action={ "/settings/" (kind) "/" (k.id) "/revoke" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.quiet type="submit" { "Revoke" " " span.sr-only { (what) " " (k.name) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action={ "/settings/" (kind) } {
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input name="name" required; }
                button type="submit" { "Create " (what) }
            }
        }
    };
    html! {
        h1 { "Settings" }
        @if let Some(error) = s.error { p.notice.bad role="alert" { (error) } }
        @if let Some((what, key)) = s.created {
            div.notice.ok role="status" {
                p { "The new " (what) ", shown this once. Keep it somewhere safe." }
                pre #created-key { (key) }
                button.quiet type="button" data-copy="#created-key" { "Copy" }
            }
        }
        h2 { "API keys" }
        p.muted { "For the SDK, the CLI and this dashboard. Revoking one signs everyone out of the dashboard." }
        (list(s.api_keys, "api-keys", "API key"))
        h2 { "Gateway tokens" }
        p.muted { "For gateways run apart (" code { "onecli gateway --control-url" } ")." }
        (list(s.gateway_tokens, "gateway-tokens", "gateway token"))
        h2 { "The gateway's CA" }
        p { a href="/v1/gateway/ca" download="onecli-gateway-ca.pem" { "Download" } " · SHA-256 " code { (s.ca_fingerprint) } }
        h2 { "Version" }
        p { "OneCLI " (s.version) }
    }
}

pub fn not_found() -> Markup {
    html! {
        h1 { "Not found" }
        p { "There is no such page. " a href="/" { "Back to the overview" } "." }
    }
}

/// A short message page for refusals outside a session (bad link, foreign host).
pub fn message(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body.bare { main.signin { h1 { (title) } p { (text) } p { a href="/sign-in" { "Sign in" } } } }
        }
    }
}

/// Escaped text inside a notice, for pages that confirm a change.
pub fn notice(ok: bool, text: Markup) -> Markup {
    html! { p.notice.ok[ok].bad[!ok] role="status" { (text) } }
}
