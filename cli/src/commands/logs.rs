//! `onecli logs [--agent ID] [--limit N] [--follow]`: the audit log.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::CliError;
use crate::client::{encode, ApiArgs};
use crate::output::{ListArgs, OutputArgs};

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    list: ListArgs,
    /// Only this agent (id or identifier).
    #[arg(long)]
    pub agent: Option<String>,
    /// How many of the latest records to fetch.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Keep printing new records as they come.
    #[arg(long, short)]
    pub follow: bool,
}

const COLUMNS: [(&str, &str); 8] = [
    ("TIME", "time"),
    ("AGENT", "agent"),
    ("METHOD", "method"),
    ("HOST", "host"),
    ("PATH", "path"),
    ("STATUS", "status"),
    ("OUTCOME", "outcome"),
    ("RULE", "ruleName"),
];

pub fn run(args: LogsArgs) -> Result<(), CliError> {
    let api = args.api.client()?;
    let out = args.output.out();
    let json = out.json;
    let agent = args
        .agent
        .as_deref()
        .map(|a| format!("&agent={}", encode(a)))
        .unwrap_or_default();
    let records = api.call(
        "GET",
        &format!("/v1/logs?limit={}{agent}", args.limit),
        None,
    )?;
    // Oldest first reads like a log.
    let mut records: Vec<Value> = records.as_array().cloned().unwrap_or_default();
    records.reverse();
    if args.follow && json {
        // A stream: the backlog on one line, then a record a line.
        crate::output::line(Value::Array(records.clone()));
    } else {
        let hint = format!("See the activity → {}/activity", api.host);
        out.list(&Value::Array(records.clone()), &COLUMNS, &args.list, &hint)?;
    }
    if !args.follow {
        return Ok(());
    }
    let mut since = records
        .last()
        .and_then(|r| r["unixMs"].as_u64())
        .map_or(0, |ms| ms + 1);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let fresh = api.call(
            "GET",
            &format!("/v1/logs?limit=1000&since={since}{agent}"),
            None,
        )?;
        let mut fresh: Vec<Value> = fresh.as_array().cloned().unwrap_or_default();
        fresh.reverse();
        for record in &fresh {
            if json {
                crate::output::line(format_args!("{record}"));
            } else {
                let line: Vec<String> = COLUMNS
                    .iter()
                    .map(|(_, k)| {
                        record[*k]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| record[*k].to_string())
                    })
                    .collect();
                crate::output::line(format_args!("{}", line.join("  ")));
            }
        }
        if let Some(last) = fresh.last().and_then(|r| r["unixMs"].as_u64()) {
            since = last + 1;
        }
    }
}
