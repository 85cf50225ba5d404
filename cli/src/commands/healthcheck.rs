//! `onecli healthcheck`: a container's HEALTHCHECK, with nothing else in the
//! image. Exit 0 when the control API answers its health check and the
//! gateway is ready (it holds a policy); else 1, with the reason on stderr.

use clap::Args;

use super::{exit, CliError};

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The control API, HOST:PORT ("" when this container runs none).
    #[arg(
        long,
        env = "ONECLI_HEALTHCHECK_API",
        default_value = "127.0.0.1:10254"
    )]
    api: String,
    /// The gateway, HOST:PORT ("" when this container runs none).
    #[arg(
        long,
        env = "ONECLI_HEALTHCHECK_GATEWAY",
        default_value = "127.0.0.1:10255"
    )]
    gateway: String,
}

pub fn run(args: HealthcheckArgs) -> Result<(), CliError> {
    let checks = [
        (&args.api, "/v1/health", "the control API"),
        (&args.gateway, "/readyz", "the gateway"),
    ];
    for (addr, path, what) in checks {
        if addr.is_empty() {
            continue;
        }
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        match super::doctor::http_status(addr, &request) {
            Some(200) => {}
            Some(status) => {
                return Err(CliError::new(
                    exit::GENERAL,
                    format!("{what} at {addr} answered {path} with {status}"),
                ))
            }
            None => {
                return Err(CliError::new(
                    exit::GENERAL,
                    format!("{what} at {addr} does not answer"),
                ))
            }
        }
    }
    Ok(())
}
