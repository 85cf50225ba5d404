//! Structured logs with `tracing`; Pingora's `log` records are bridged in.
//! Nothing logged anywhere includes a secret value or a proxy token.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(format: LogFormat, verbose: bool) {
    let default = if verbose { "debug" } else { "info,pingora_core=warn,pingora_proxy=warn" };
    let filter = EnvFilter::try_from_env("ONECLI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(error) = result {
        eprintln!("onecli: logging is unavailable: {error}");
    }
}
