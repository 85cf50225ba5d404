//! What commands print. JSON for scripts and agents: with `--json`, and by
//! default when standard output is not a terminal (as OneCLI's CLI always
//! prints JSON); tables and sentences for people at a terminal, or with
//! `--table`. Lists take `--fields`, `--quiet` and `--max`, with the
//! meanings OneCLI's CLI gives them.

use std::io::{IsTerminal, Write};

use clap::Args;
use serde_json::{json, Map, Value};

use crate::commands::CliError;

/// Writes a line to stdout. A closed pipe (`onecli … | head`) ends the
/// output quietly instead of with a panic.
pub fn line(text: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn pretty(value: &Value) {
    line(serde_json::to_string_pretty(value).unwrap_or_default());
}

/// How a command prints: `--json`, `--table`, else by what stdout is.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Print JSON (the default when standard output is not a terminal).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print tables and sentences, also when standard output is not a terminal.
    #[arg(long, global = true, conflicts_with = "json")]
    pub table: bool,
}

impl OutputArgs {
    pub fn json(&self) -> bool {
        self.json || (!self.table && !std::io::stdout().is_terminal())
    }

    pub fn out(&self) -> Out {
        Out { json: self.json() }
    }
}

/// What a list command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Only these fields of each item, as the API names them (e.g. id,name,hostPattern).
    #[arg(long, value_delimiter = ',', value_name = "FIELD,…")]
    pub fields: Vec<String>,
    /// Only this field's values, one a line.
    #[arg(long, value_name = "FIELD")]
    pub quiet: Option<String>,
    /// At most N items (0: all).
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
}

/// What a command showing one item takes.
#[derive(Debug, Clone, Default, Args)]
pub struct GetArgs {
    /// Only these fields, as the API names them.
    #[arg(long, value_delimiter = ',', value_name = "FIELD,…")]
    pub fields: Vec<String>,
}

/// `--dry-run`, on every command that changes something.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct DryRunArg {
    /// Check the change with the control service and say what it would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A table's columns: (header, JSON key).
pub type Columns<'a> = &'a [(&'a str, &'a str)];

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// A list: `{"hint","data":[…]}` as JSON (OneCLI's shape), the bare
    /// items with `--fields`, one value a line with `--quiet`, else a table.
    pub fn list(
        &self,
        items: &Value,
        columns: Columns,
        args: &ListArgs,
        hint: &str,
    ) -> Result<(), CliError> {
        let mut items: Vec<Value> = items.as_array().cloned().unwrap_or_default();
        if let Some(max) = args.max.filter(|m| *m > 0) {
            items.truncate(max);
        }
        if let Some(field) = &args.quiet {
            known_fields(&items, std::slice::from_ref(field))?;
            for item in &items {
                match item.get(field) {
                    None => {}
                    Some(Value::String(s)) => line(s),
                    Some(other) => line(other),
                }
            }
            return Ok(());
        }
        if !args.fields.is_empty() {
            known_fields(&items, &args.fields)?;
            let picked: Vec<Value> = items.iter().map(|i| pick(i, &args.fields)).collect();
            if self.json {
                pretty(&Value::Array(picked));
            } else {
                let headers: Vec<String> = args.fields.iter().map(|f| f.to_uppercase()).collect();
                let columns: Vec<(&str, &str)> = headers
                    .iter()
                    .zip(&args.fields)
                    .map(|(h, f)| (h.as_str(), f.as_str()))
                    .collect();
                table(&picked, &columns);
            }
            return Ok(());
        }
        if self.json {
            pretty(&json!({ "hint": hint, "data": items }));
        } else {
            table(&items, columns);
        }
        Ok(())
    }

    /// One item, narrowed by `--fields`.
    pub fn item(&self, value: &Value, columns: Columns, args: &GetArgs) -> Result<(), CliError> {
        if args.fields.is_empty() {
            self.show(value, columns);
            return Ok(());
        }
        let items = std::slice::from_ref(value);
        known_fields(items, &args.fields)?;
        let picked = pick(value, &args.fields);
        if self.json {
            pretty(&picked);
        } else {
            for field in &args.fields {
                line(format_args!("{field}: {}", cell(&picked, field)));
            }
        }
        Ok(())
    }

    /// A value as JSON, or as a table with these columns.
    pub fn show(&self, value: &Value, columns: Columns) {
        if self.json {
            pretty(value);
        } else {
            match value {
                Value::Array(items) => table(items, columns),
                other => table(std::slice::from_ref(other), columns),
            }
        }
    }

    /// A change made: `value` as JSON, else one sentence.
    pub fn done(&self, value: &Value, sentence: &str) {
        if self.json {
            pretty(value);
        } else {
            line(sentence);
        }
    }

    /// A change checked and not made. `payload` is what was sent (with any
    /// secret value masked), `result` what the control service answered.
    pub fn dry_run(&self, description: &str, payload: Value, result: Value) {
        if self.json {
            pretty(&json!({
                "dry_run": true,
                "description": description,
                "payload": payload,
                "result": result,
            }));
        } else {
            line(format_args!(
                "dry run: {} (the control service accepted it; nothing changed)",
                description.to_lowercase()
            ));
        }
    }
}

/// `value` with only `fields`; fields it lacks are left out.
fn pick(value: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(v) = value.get(field) {
            out.insert(field.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// A field no item has is a typo: say so, rather than print nothing (an
/// agent polling `--quiet hostPatern` would wait forever).
fn known_fields(items: &[Value], fields: &[String]) -> Result<(), CliError> {
    let Some(first) = items.first().and_then(Value::as_object) else {
        return Ok(());
    };
    for field in fields {
        if !items.iter().any(|i| i.get(field).is_some()) {
            let names: Vec<&str> = first.keys().map(String::as_str).collect();
            return Err(CliError::new(
                crate::commands::exit::GENERAL,
                format!("no field {field:?}: the fields are {}", names.join(", ")),
            ));
        }
    }
    Ok(())
}

fn cell(row: &Value, key: &str) -> String {
    match &row[key] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], columns: Columns) {
    let widths: Vec<usize> = columns
        .iter()
        .map(|(header, key)| {
            rows.iter()
                .map(|r| cell(r, key).chars().count())
                .chain([header.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let render = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    line(render(columns.iter().map(|(h, _)| h.to_string()).collect()));
    for row in rows {
        line(render(columns.iter().map(|(_, k)| cell(row, k)).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_the_fields_asked() {
        let v = json!({ "id": "1", "name": "A", "hostPattern": "h" });
        let picked = pick(&v, &["hostPattern".into(), "id".into(), "nope".into()]);
        assert_eq!(
            serde_json::to_string(&picked).expect("json"),
            r#"{"hostPattern":"h","id":"1"}"#
        );
    }

    #[test]
    fn an_unknown_field_is_an_error_unless_the_list_is_empty() {
        let items = [json!({ "id": "1" }), json!({ "id": "2", "extra": 1 })];
        assert!(known_fields(&items, &["extra".into()]).is_ok());
        let error = known_fields(&items, &["hostPatern".into()]).expect_err("a typo");
        assert!(
            error.message.contains("\"hostPatern\""),
            "{}",
            error.message
        );
        assert!(known_fields(&[], &["anything".into()]).is_ok());
    }
}
