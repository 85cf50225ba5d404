//! Every answer the gateway makes itself, in one place: status, headers and
//! a JSON body with an `error` code and a `message` an agent can act on
//! (COMPAT.md). Nothing here ever includes a token or a secret.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No policy snapshot yet.
    NotReady,
    /// Missing or unknown proxy token.
    ProxyAuthRequired,
    BadRequest(&'static str),
    /// Origin-form request for something other than the gateway's own API.
    NotAProxyRequest,
    /// Inside a tunnel, `Host`/`:authority` names another host.
    Misdirected {
        connect_host: String,
    },
    EgressBlocked {
        host: String,
    },
    BadGateway {
        message: String,
    },
    UpstreamTimeout {
        host: String,
    },
    /// A `block` rule matched (SPEC §6 step 1).
    BlockedByPolicy {
        rule_name: String,
        method: String,
        path: String,
        dashboard_url: String,
    },
    /// The agent is in `deny` mode and nothing allows this host (step 4).
    BlockedByDefault {
        method: String,
        host: String,
        path: String,
        dashboard_url: String,
    },
    /// Over a `rate_limit` rule (step 3).
    RateLimited {
        limit: u32,
        window: &'static str,
        retry_after_secs: u64,
    },
    /// A `manual_approval` rule matched and no approvals hub can take it:
    /// the request fails closed (step 2).
    ApprovalUnavailable,
    /// A human denied the held request, or nobody decided in time.
    ManualApprovalDenied {
        approval_id: String,
    },
    /// A request held for approval carries more than the gateway holds.
    PayloadTooLarge,
    /// As many requests wait for approval as the gateway holds at once.
    ApprovalsBusy,
    /// As many bodies are being read to sign their requests as the gateway holds.
    SigningBusy,
    /// A held request's body did not arrive in time.
    RequestTimeout,
    /// The client's address, or all clients, hold as many connections as
    /// the gateway takes (`--max-connections[-per-client]`).
    TooManyConnections,
    /// TRACE and TRACK echo the request, credentials included.
    MethodNotAllowed {
        method: String,
    },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotReady => 503,
            Refusal::ProxyAuthRequired => 407,
            Refusal::BadRequest(_) | Refusal::NotAProxyRequest => 400,
            Refusal::Misdirected { .. } => 421,
            Refusal::EgressBlocked { .. } => 403,
            Refusal::BadGateway { .. } => 502,
            Refusal::UpstreamTimeout { .. } => 504,
            Refusal::BlockedByPolicy { .. } | Refusal::BlockedByDefault { .. } => 403,
            Refusal::RateLimited { .. } => 429,
            Refusal::ApprovalUnavailable => 503,
            Refusal::ManualApprovalDenied { .. } => 403,
            Refusal::PayloadTooLarge => 413,
            Refusal::ApprovalsBusy | Refusal::SigningBusy | Refusal::TooManyConnections => 503,
            Refusal::MethodNotAllowed { .. } => 405,
            Refusal::RequestTimeout => 408,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotReady => "gateway_not_ready",
            Refusal::ProxyAuthRequired => "proxy_authentication_required",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::NotAProxyRequest => "not_a_proxy_request",
            Refusal::Misdirected { .. } => "misdirected_request",
            Refusal::EgressBlocked { .. } => "egress_blocked",
            Refusal::BadGateway { .. } => "bad_gateway",
            Refusal::UpstreamTimeout { .. } => "upstream_timeout",
            Refusal::BlockedByPolicy { .. } => "blocked_by_policy",
            Refusal::BlockedByDefault { .. } => "blocked_by_default_policy",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::ApprovalUnavailable => "approval_unavailable",
            Refusal::ManualApprovalDenied { .. } => "manual_approval_denied",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::ApprovalsBusy => "approvals_busy",
            Refusal::SigningBusy => "signing_busy",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::MethodNotAllowed { .. } => "method_not_allowed",
            Refusal::RequestTimeout => "request_timeout",
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::NotReady => "The OneCLI gateway has no policy loaded yet. Retry shortly.".into(),
            Refusal::ProxyAuthRequired => {
                "OneCLI gateway needs a valid agent token in Proxy-Authorization (Basic, token as password).".into()
            }
            Refusal::BadRequest(why) => format!("Malformed request: {why}."),
            Refusal::NotAProxyRequest => {
                "This is the OneCLI gateway, an HTTP proxy. Send requests through it (HTTPS_PROXY), not to it.".into()
            }
            Refusal::Misdirected { connect_host } => format!(
                "This tunnel was opened for {connect_host}; requests in it must be for that host. Open a new CONNECT for another host."
            ),
            Refusal::EgressBlocked { host } => format!(
                "OneCLI gateway does not connect to {host}: it resolves to a loopback, private or link-local address. An operator can allow it (--allow-egress or --resolve)."
            ),
            Refusal::BadGateway { message } => message.clone(),
            Refusal::UpstreamTimeout { host } => format!("{host} did not answer in time."),
            Refusal::BlockedByPolicy { rule_name, method, path, .. } => format!(
                "Blocked by OneCLI policy rule \"{rule_name}\". {method} {path} is not allowed. Do not retry; if the task needs it, ask the user to change the rule."
            ),
            Refusal::BlockedByDefault { method, host, path, .. } => format!(
                "OneCLI lets this agent reach listed hosts only, and {host} is not listed ({method} {path}). Do not retry; if the task needs it, ask the user to add an allow rule."
            ),
            Refusal::RateLimited { .. } => "This request was rate-limited by an OneCLI policy rule.".into(),
            Refusal::ApprovalUnavailable => {
                "This request needs a human's approval, but no approvals service is reachable from this OneCLI gateway. It was not sent.".into()
            }
            Refusal::ManualApprovalDenied { .. } => {
                "A human reviewed this request in OneCLI and did not approve it (or nobody answered in time). Do not retry it unchanged; ask the user.".into()
            }
            Refusal::PayloadTooLarge => "This request needs approval, and its body is larger than OneCLI holds (16 MiB).".into(),
            Refusal::ApprovalsBusy => "This request needs approval, and too many requests already wait for one. Retry later.".into(),
            Refusal::SigningBusy => "OneCLI gateway reads this request's body to sign it, and too many such requests are in flight. Retry later.".into(),
            Refusal::RequestTimeout => "This request needs approval, and its body did not arrive in time.".into(),
            Refusal::TooManyConnections => "OneCLI gateway holds as many connections from this address (or in all) as it takes. Close idle connections, or retry later.".into(),
            Refusal::MethodNotAllowed { method } => format!(
                "OneCLI gateway does not forward {method}: it echoes the request back, credentials included."
            ),
        }
    }

    pub fn body(&self) -> Bytes {
        let mut body = json!({ "error": self.code(), "message": self.message() });
        match self {
            Refusal::BlockedByPolicy {
                rule_name,
                method,
                path,
                dashboard_url,
            } => {
                body["rule_name"] = json!(rule_name);
                body["method"] = json!(method);
                body["path"] = json!(path);
                body["dashboard_url"] = json!(format!("{dashboard_url}/rules"));
            }
            Refusal::BlockedByDefault {
                method,
                host,
                path,
                dashboard_url,
            } => {
                body["method"] = json!(method);
                body["host"] = json!(host);
                body["path"] = json!(path);
                body["dashboard_url"] = json!(format!("{dashboard_url}/rules"));
            }
            Refusal::RateLimited { limit, window, .. } => {
                body["limit"] = json!(limit);
                body["window"] = json!(window);
            }
            Refusal::ManualApprovalDenied { approval_id } => {
                body["approval_id"] = json!(approval_id);
            }
            _ => {}
        }
        Bytes::from(body.to_string())
    }

    /// Policy answers tell SDKs not to retry on their own (COMPAT.md).
    fn is_policy(&self) -> bool {
        matches!(
            self,
            Refusal::BlockedByPolicy { .. }
                | Refusal::BlockedByDefault { .. }
                | Refusal::RateLimited { .. }
                | Refusal::ApprovalUnavailable
                | Refusal::ManualApprovalDenied { .. }
        )
    }

    /// Whether the client should close the connection after this answer.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Refusal::ProxyAuthRequired | Refusal::BadRequest(_) | Refusal::RequestTimeout
        )
    }

    pub fn response_header(&self, body_len: usize) -> ResponseHeader {
        let mut resp = ResponseHeader::build(self.status(), Some(4))
            .expect("every refusal status is a valid status code");
        // The names and values below are static and valid: inserting cannot fail.
        let _ = resp.insert_header("content-type", "application/json");
        let _ = resp.insert_header("content-length", body_len.to_string());
        if let Refusal::ProxyAuthRequired = self {
            let _ = resp.insert_header("proxy-authenticate", PROXY_AUTHENTICATE);
        }
        if self.closes() {
            let _ = resp.insert_header("connection", "close");
        }
        if self.is_policy() {
            let _ = resp.insert_header("x-should-retry", "false");
        }
        if let Refusal::RateLimited {
            retry_after_secs, ..
        } = self
        {
            let _ = resp.insert_header("retry-after", retry_after_secs.to_string());
        }
        resp
    }

    /// The answer as raw HTTP/1.1 bytes, for the front door, which writes
    /// before any HTTP session exists.
    pub fn to_http1(&self) -> Vec<u8> {
        let body = self.body();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status(),
            reason(self.status()),
            body.len()
        );
        if let Refusal::ProxyAuthRequired = self {
            out.push_str(&format!("proxy-authenticate: {PROXY_AUTHENTICATE}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

pub const PROXY_AUTHENTICATE: &str = "Basic realm=\"OneCLI Gateway\"";

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_with_code_and_message() {
        for r in [
            Refusal::NotReady,
            Refusal::ProxyAuthRequired,
            Refusal::BadRequest("x"),
            Refusal::Misdirected {
                connect_host: "a".into(),
            },
            Refusal::EgressBlocked { host: "h".into() },
            Refusal::BadGateway {
                message: "m".into(),
            },
            Refusal::UpstreamTimeout { host: "h".into() },
            Refusal::ApprovalUnavailable,
            Refusal::MethodNotAllowed {
                method: "TRACE".into(),
            },
        ] {
            let v: serde_json::Value = serde_json::from_slice(&r.body()).expect("json");
            assert_eq!(v["error"], r.code());
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn http1_407_carries_the_realm() {
        let raw = String::from_utf8(Refusal::ProxyAuthRequired.to_http1()).expect("utf8");
        assert!(
            raw.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
            "{raw}"
        );
        assert!(raw.contains("proxy-authenticate: Basic realm=\"OneCLI Gateway\"\r\n"));
        assert!(raw.contains("connection: close\r\n"));
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn policy_bodies_follow_compat() {
        let blocked = Refusal::BlockedByPolicy {
            rule_name: "no deletes".into(),
            method: "DELETE".into(),
            path: "/v1/x".into(),
            dashboard_url: "http://localhost:10254".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&blocked.body()).expect("json");
        assert_eq!(v["error"], "blocked_by_policy");
        assert_eq!(v["rule_name"], "no deletes");
        assert_eq!(v["dashboard_url"], "http://localhost:10254/rules");
        assert!(v["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"no deletes\"") && m.contains("DELETE /v1/x")));
        let h = blocked.response_header(1);
        assert_eq!(
            h.headers.get("x-should-retry").map(|v| v.as_bytes()),
            Some(&b"false"[..])
        );

        let limited = Refusal::RateLimited {
            limit: 5,
            window: "hour",
            retry_after_secs: 42,
        };
        let v: serde_json::Value = serde_json::from_slice(&limited.body()).expect("json");
        assert_eq!(
            (v["limit"].as_u64(), v["window"].as_str()),
            (Some(5), Some("hour"))
        );
        let h = limited.response_header(1);
        assert_eq!(h.status.as_u16(), 429);
        assert_eq!(
            h.headers.get("retry-after").map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
    }
}
