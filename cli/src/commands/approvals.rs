//! `onecli approvals …`: `watch` shows held requests as they arrive and
//! takes a decision from the keyboard.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use clap::Subcommand;
use serde_json::{json, Value};

use super::{CliError, Target};
use crate::client::{encode, Api, ApiArgs};
use crate::output::{DryRunArg, ListArgs, Out};

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for a decision now.
    List(ListArgs),
    /// Let a held request through.
    Approve {
        #[command(flatten)]
        request: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Refuse a held request.
    Deny {
        #[command(flatten)]
        request: Target,
        #[command(flatten)]
        dry: DryRunArg,
    },
    /// Show requests as they arrive and decide each: y approves, n denies, s skips.
    Watch,
}

pub fn run(command: ApprovalsCommand, api: &ApiArgs, out: Out) -> Result<(), CliError> {
    let api = api.client()?;
    match command {
        ApprovalsCommand::List(list) => {
            let pending = api.call("GET", "/v1/approvals/pending?wait=0", None)?;
            let hint = format!("Decide in the dashboard → {}/approvals", api.host);
            out.list(
                &pending["requests"],
                &[
                    ("ID", "id"),
                    ("METHOD", "method"),
                    ("URL", "url"),
                    ("AGENT", "agent"),
                    ("EXPIRES", "expiresAt"),
                ],
                &list,
                &hint,
            )?;
        }
        ApprovalsCommand::Approve { request, dry } => {
            decide(&api, request.get(), "approve", dry.dry_run, out)?
        }
        ApprovalsCommand::Deny { request, dry } => {
            decide(&api, request.get(), "deny", dry.dry_run, out)?
        }
        ApprovalsCommand::Watch => watch(&api, out)?,
    }
    Ok(())
}

fn decide(api: &Api, id: &str, decision: &str, dry_run: bool, out: Out) -> Result<(), CliError> {
    let result = api.change(
        dry_run,
        "POST",
        &format!("/v1/approvals/{}/decision", encode(id)),
        Some(&json!({ "decision": decision })),
    )?;
    let value = json!({ "id": id, "decision": decision });
    if dry_run {
        out.dry_run(&format!("Would {decision} request"), value, result);
        return Ok(());
    }
    let past = if decision == "approve" {
        "approved"
    } else {
        "denied"
    };
    out.done(&value, &format!("{past} {id}"));
    Ok(())
}

fn watch(api: &Api, out: Out) -> Result<(), CliError> {
    let mut seen: HashSet<String> = HashSet::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    eprintln!("watching for requests that need approval (Ctrl-C to stop)");
    loop {
        let exclude: Vec<&str> = seen.iter().map(String::as_str).collect();
        let path = if exclude.is_empty() {
            "/v1/approvals/pending".to_owned()
        } else {
            format!(
                "/v1/approvals/pending?exclude={}",
                encode(&exclude.join(","))
            )
        };
        let pending = api.call("GET", &path, None)?;
        for request in pending["requests"].as_array().into_iter().flatten() {
            let Some(id) = request["id"].as_str().map(str::to_owned) else {
                continue;
            };
            seen.insert(id.clone());
            show(request, out.json);
            let answer = loop {
                // On stderr: stdout may be JSON lines for a script.
                eprint!("approve? [y]es / [n]o / [s]kip: ");
                let _ = std::io::stderr().flush();
                match lines.next() {
                    Some(Ok(line)) => match line.trim().to_ascii_lowercase().as_str() {
                        "y" | "yes" => break Some("approve"),
                        "n" | "no" => break Some("deny"),
                        "s" | "skip" => break None,
                        _ => continue,
                    },
                    // The keyboard is gone: stop watching.
                    _ => return Ok(()),
                }
            };
            if let Some(decision) = answer {
                match decide(api, &id, decision, false, out) {
                    Ok(()) => {}
                    Err(e) => eprintln!("onecli: {}", e.message),
                }
            }
        }
    }
}

fn show(request: &Value, json: bool) {
    if json {
        crate::output::line(format_args!("{request}"));
        return;
    }
    crate::output::line("");
    crate::output::line(format_args!(
        "{} {}",
        request["method"].as_str().unwrap_or("?"),
        request["url"].as_str().unwrap_or("?")
    ));
    crate::output::line(format_args!(
        "  agent: {}",
        request["agent"]["externalId"].as_str().unwrap_or("?")
    ));
    if let Some(preview) = request["bodyPreview"].as_str() {
        let short: String = preview.chars().take(300).collect();
        crate::output::line(format_args!("  body: {short}"));
    }
}
