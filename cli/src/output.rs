//! What commands print: JSON for scripts and agents (`--json`), a plain
//! table for people.

use std::io::Write;

use serde_json::Value;

/// Writes a line to stdout. A closed pipe (`onecli … | head`) ends the
/// output quietly instead of with a panic.
pub fn line(text: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Writes without a newline (prompts).
pub fn part(text: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if write!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Prints `value` as JSON, or `rows` of it as a table with these columns
/// (header, JSON key).
pub fn print(json: bool, value: &Value, columns: &[(&str, &str)]) {
    if json {
        crate::output::line(format_args!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ));
        return;
    }
    let rows: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let cell = |row: &Value, key: &str| match &row[key] {
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
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|(header, key)| {
            rows.iter()
                .map(|r| cell(r, key).chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    crate::output::line(format_args!(
        "{}",
        line(columns.iter().map(|(h, _)| h.to_string()).collect())
    ));
    for row in rows {
        crate::output::line(format_args!(
            "{}",
            line(columns.iter().map(|(_, k)| cell(row, k)).collect())
        ));
    }
}

/// A one-line confirmation, or `value` as JSON.
pub fn done(json: bool, value: &Value, sentence: &str) {
    if json {
        crate::output::line(format_args!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ));
    } else {
        crate::output::line(format_args!("{sentence}"));
    }
}
