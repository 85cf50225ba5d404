//! Structured logs with `tracing`; Pingora's `log` records are bridged in.
//! Nothing logged anywhere includes a secret value or a proxy token.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Copy, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The servers' logging flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging (ONECLI_LOG overrides the filter).
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn init(format: LogFormat, verbose: bool) {
    let default = if verbose {
        "debug"
    } else {
        "info,pingora_core=warn,pingora_proxy=warn"
    };
    let filter = EnvFilter::try_from_env("ONECLI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // One filter, so that what the EnvFilter rules out is never even built:
    // h2 opens trace spans on every poll, and a second, dynamic filter on top
    // made the registry track them all (a tenth of the gateway's CPU).
    // The guard only removes records, so it carries the EnvFilter's hint.
    let hint = Filter::<tracing_subscriber::Registry>::max_level_hint(&filter);
    let guard = filter_fn(|meta| !is_pingora_debug(meta.target(), meta.level()))
        .with_max_level_hint(hint.unwrap_or(LevelFilter::TRACE));
    let result = tracing_subscriber::registry()
        .with(fmt.with_filter(filter.and(guard)))
        .try_init();
    if let Err(error) = result {
        eprintln!("onecli: logging is unavailable: {error}");
    }
}

/// Pingora's debug and trace records print whole upstream requests, query
/// strings included, and an injected credential may sit in a query string:
/// they are dropped whatever the filter asks for.
fn is_pingora_debug(target: &str, level: &Level) -> bool {
    target.starts_with("pingora") && *level > Level::INFO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_debug_is_never_logged() {
        assert!(is_pingora_debug("pingora_proxy::proxy_h2", &Level::DEBUG));
        assert!(is_pingora_debug("pingora_core::connectors", &Level::TRACE));
        assert!(!is_pingora_debug("pingora_proxy", &Level::WARN));
        assert!(!is_pingora_debug("onecli_gateway::proxy", &Level::DEBUG));
    }
}
