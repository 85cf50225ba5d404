//! `onecli doctor`: is everything an agent needs in place?

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};

use super::{exit, CliError};
use crate::client::{config_value, home_dir, ApiArgs};
use crate::output::OutputArgs;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The gateway as this machine reaches it (default: the API host, port 10255).
    #[arg(long, env = "ONECLI_GATEWAY")]
    gateway: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: DoctorArgs) -> Result<(), CliError> {
    let api = &args.api;
    let gateway = args.gateway.as_deref();
    let json = args.output.json();
    let mut checks: Vec<(&str, Check, String)> = Vec::new();
    let host = api.host();
    let client = api.client();
    let reachable = client
        .as_ref()
        .map(|c| c.call("GET", "/v1/health", None).is_ok())
        .unwrap_or(false)
        || matches!(client.as_ref().err().map(|e| e.exit_code), Some(exit::AUTH));
    checks.push(("control service reachable", reachable.into(), host.clone()));
    let key_ok = client
        .as_ref()
        .is_ok_and(|c| c.call("GET", "/v1/agents", None).is_ok());
    checks.push((
        "API key accepted",
        key_ok.into(),
        match client.as_ref() {
            Err(e) if e.exit_code == exit::AUTH => e.message.clone(),
            _ => "onecli auth status".into(),
        },
    ));
    let gateway = super::run::gateway_address(gateway, &host);
    let gateway_ok = http_status(
        &gateway,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ) == Some(200);
    checks.push(("gateway ready", gateway_ok.into(), gateway.clone()));
    // The CA files are `onecli run`'s: absent before the first run, which is
    // no fault; present but not the gateway's current CA is one.
    let served_ca = client
        .as_ref()
        .ok()
        .and_then(|c| c.call_text("GET", "/v1/gateway/ca", None).ok())
        .unwrap_or_default();
    let ca = home_dir().join("gateway-ca.pem");
    let bundle = home_dir().join("ca-bundle.pem");
    match std::fs::read_to_string(&ca) {
        Err(_) => checks.push((
            "CA written",
            Check::Note,
            format!("{}: written by the first `onecli run`", ca.display()),
        )),
        Ok(ca_pem) => {
            let current = !served_ca.trim().is_empty() && ca_pem.trim() == served_ca.trim();
            checks.push((
                "CA written",
                Check::from(current),
                if current {
                    ca.display().to_string()
                } else {
                    format!(
                        "{}: not the gateway's CA; `onecli run` rewrites it",
                        ca.display()
                    )
                },
            ));
            let in_bundle = std::fs::read_to_string(&bundle)
                .is_ok_and(|b| ca_pem.contains("BEGIN CERTIFICATE") && b.contains(ca_pem.trim()));
            checks.push((
                "CA in the bundle",
                Check::from(in_bundle),
                bundle.display().to_string(),
            ));
        }
    }
    // The agent's token opens a tunnel at the gateway.
    let agent = config_value("agent");
    let token_ok = client.as_ref().ok().and_then(|c| {
        let q = agent
            .as_deref()
            .map(|a| format!("?agent={a}"))
            .unwrap_or_default();
        c.call("GET", &format!("/v1/container-config{q}"), None)
            .ok()
    });
    let tunnel_ok = token_ok.as_ref().and_then(|config| config["env"]["HTTPS_PROXY"].as_str().map(str::to_owned)).is_some_and(|proxy| {
        use base64::Engine;
        let userinfo = proxy.split("://").nth(1).and_then(|r| r.rsplit_once('@')).map(|(u, _)| u.to_owned()).unwrap_or_default();
        let auth = base64::engine::general_purpose::STANDARD.encode(userinfo);
        let connect = format!("CONNECT onecli-doctor.invalid:443 HTTP/1.1\r\nHost: onecli-doctor.invalid:443\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
        http_status(&gateway, &connect) == Some(200)
    });
    checks.push((
        "agent token accepted by the gateway",
        tunnel_ok.into(),
        agent.unwrap_or_else(|| "default".into()),
    ));

    let all_ok = checks.iter().all(|(_, check, _)| *check != Check::Fail);
    if json {
        let list: Vec<Value> = checks
            .iter()
            .map(|(name, check, detail)| {
                json!({ "check": name, "ok": *check != Check::Fail, "note": *check == Check::Note, "detail": detail })
            })
            .collect();
        crate::output::line(format_args!(
            "{}",
            serde_json::to_string_pretty(&json!({ "ok": all_ok, "checks": list }))
                .unwrap_or_default()
        ));
    } else {
        for (name, check, detail) in &checks {
            let mark = match check {
                Check::Ok => "ok  ",
                Check::Note => "--  ",
                Check::Fail => "FAIL",
            };
            crate::output::line(format_args!("{mark} {name} ({detail})"));
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err(CliError::new(exit::GENERAL, "some checks failed"))
    }
}

/// One check's outcome: a `Note` is something not there yet that is no
/// fault (the CA files before the first `onecli run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Ok,
    Note,
    Fail,
}

impl From<bool> for Check {
    fn from(ok: bool) -> Check {
        if ok {
            Check::Ok
        } else {
            Check::Fail
        }
    }
}

/// The status of one raw HTTP/1.1 exchange with `addr`.
pub(super) fn http_status(addr: &str, request: &str) -> Option<u16> {
    let addr = addr.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}
