//! `onecli doctor`: is everything an agent needs in place?

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};

use super::{exit, CliError};
use crate::client::{config_value, home_dir, ApiArgs};

pub fn run(api: &ApiArgs, gateway: Option<&str>, json: bool) -> Result<(), CliError> {
    let mut checks: Vec<(&str, bool, String)> = Vec::new();
    let host = api.host();
    let client = api.client();
    let reachable = client
        .as_ref()
        .map(|c| c.call("GET", "/v1/health", None).is_ok())
        .unwrap_or(false)
        || matches!(client.as_ref().err().map(|e| e.exit_code), Some(exit::AUTH));
    checks.push(("control service reachable", reachable, host.clone()));
    let key_ok = client
        .as_ref()
        .is_ok_and(|c| c.call("GET", "/v1/agents", None).is_ok());
    checks.push(("API key accepted", key_ok, "onecli auth status".into()));
    let gateway = super::run::gateway_address(gateway, &host);
    let gateway_ok = http_status(
        &gateway,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ) == Some(200);
    checks.push(("gateway ready", gateway_ok, gateway.clone()));
    let ca = home_dir().join("gateway-ca.pem");
    let ca_pem = std::fs::read_to_string(&ca).unwrap_or_default();
    checks.push((
        "CA written",
        ca_pem.contains("BEGIN CERTIFICATE"),
        ca.display().to_string(),
    ));
    let bundle = std::fs::read_to_string(home_dir().join("ca-bundle.pem")).unwrap_or_default();
    checks.push((
        "CA in the bundle",
        !ca_pem.is_empty() && bundle.contains(ca_pem.trim()),
        home_dir().join("ca-bundle.pem").display().to_string(),
    ));
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
        tunnel_ok,
        agent.unwrap_or_else(|| "default".into()),
    ));

    let all_ok = checks.iter().all(|(_, ok, _)| *ok);
    if json {
        let list: Vec<Value> = checks
            .iter()
            .map(|(name, ok, detail)| json!({ "check": name, "ok": ok, "detail": detail }))
            .collect();
        crate::output::line(format_args!(
            "{}",
            serde_json::to_string_pretty(&json!({ "ok": all_ok, "checks": list }))
                .unwrap_or_default()
        ));
    } else {
        for (name, ok, detail) in &checks {
            crate::output::line(format_args!(
                "{} {name} ({detail})",
                if *ok { "ok  " } else { "FAIL" }
            ));
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err(CliError::new(
            exit::GENERAL,
            "some checks failed (CA files appear after the first `onecli run`)",
        ))
    }
}

/// The status of one raw HTTP/1.1 exchange with `addr`.
fn http_status(addr: &str, request: &str) -> Option<u16> {
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
