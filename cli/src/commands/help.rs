//! `onecli help [COMMAND…]`: the usual help at a terminal; for scripts and
//! agents (stdout not a terminal, or `--json`) every command under the one
//! named, with its arguments, as JSON.

use clap::{Args, CommandFactory};
use serde_json::{json, Value};

use super::{Cli, CliError};
use crate::output::OutputArgs;

#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The command to describe, e.g. `secrets create` (default: all).
    command: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: HelpArgs) -> Result<(), CliError> {
    let mut root = Cli::command();
    root.build();
    let mut found = &root;
    for name in &args.command {
        found = found.find_subcommand(name).ok_or_else(|| {
            CliError::new(
                super::exit::GENERAL,
                format!("no command {:?}: see `onecli help`", args.command.join(" ")),
            )
        })?;
    }
    if !args.output.json() {
        let mut command = found.clone();
        crate::output::line(command.render_long_help().to_string().trim_end());
        return Ok(());
    }
    let mut commands = Vec::new();
    let prefix = args.command.join(" ");
    leaves(found, &prefix, &mut commands);
    let value = json!({
        "name": "onecli",
        "version": env!("CARGO_PKG_VERSION"),
        "description": root.get_about().map(|a| a.to_string()),
        "commands": commands,
    });
    crate::output::line(serde_json::to_string_pretty(&value).unwrap_or_default());
    Ok(())
}

/// Every command under `command` that runs something, with its arguments.
fn leaves(command: &clap::Command, path: &str, out: &mut Vec<Value>) {
    let subcommands: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .collect();
    if subcommands.is_empty() {
        out.push(describe(command, path));
        return;
    }
    for sub in subcommands {
        let name = if path.is_empty() {
            sub.get_name().to_owned()
        } else {
            format!("{path} {}", sub.get_name())
        };
        leaves(sub, &name, out);
    }
}

fn describe(command: &clap::Command, path: &str) -> Value {
    let args: Vec<Value> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let name = match a.get_long() {
                Some(long) => format!("--{long}"),
                None => format!("<{}>", a.get_id()),
            };
            let aliases: Vec<String> = a
                .get_visible_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(|alias| format!("--{alias}"))
                .collect();
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_owned())
                .collect();
            let mut arg = json!({
                "name": name,
                "required": a.is_required_set(),
                "description": a.get_help().map(|h| h.to_string()),
            });
            if !aliases.is_empty() {
                arg["aliases"] = json!(aliases);
            }
            if !values.is_empty() && values != ["true", "false"] {
                arg["values"] = json!(values);
            }
            arg
        })
        .collect();
    json!({
        "name": path,
        "description": command.get_about().map(|a| a.to_string()),
        "args": args,
    })
}
