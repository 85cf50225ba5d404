//! Holding a request for human approval (SPEC §6 step 2): its body is read
//! and kept, a review (credentials left out) goes to the approvals hub, and
//! the request waits for a decision, the timeout, or its client leaving.

use std::collections::HashSet;
use std::time::Duration;

use onecli_policy::approval::{
    ApprovalBroker, ApprovalDecision, ApprovalOutcome, ApprovalRequest, BODY_PREVIEW,
};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

/// The most a held request may carry: it waits in memory.
pub const MAX_HELD_BODY: usize = 16 * 1024 * 1024;
/// Requests held at once: with [`MAX_HELD_BODY`], at most 512 MiB waiting.
pub const MAX_HELD: usize = 32;
/// Requests one agent may have held at once, so that one agent cannot take
/// every slot from the others.
pub const MAX_HELD_PER_AGENT: usize = 8;

/// The slots for held requests, in total and per agent.
pub type HeldSlots = crate::slots::Slots<String>;

/// Slots for [`MAX_HELD`] requests, [`MAX_HELD_PER_AGENT`] of one agent.
pub fn held_slots() -> HeldSlots {
    HeldSlots::new(MAX_HELD, MAX_HELD_PER_AGENT)
}

/// Headers a reviewer never sees, on top of those the secrets inject.
const NEVER_SHOWN: [&str; 5] = [
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "cookie",
    "proxy-connection",
];

pub enum Held {
    Approved,
    /// The hub could not be reached.
    Unavailable,
    Denied {
        id: String,
    },
    TimedOut {
        id: String,
    },
    /// The client went away while the request waited.
    ClientGone,
}

/// Reads the whole request body, or `None` when it is over `max` bytes.
pub async fn read_body_up_to(
    session: &mut Session,
    max: usize,
) -> pingora_core::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// What the reviewer sees: the agent's request as it arrived, minus
/// credentials and whatever the gateway injects.
pub fn review(
    original: &RequestHeader,
    url: String,
    host: &str,
    injected_headers: &[String],
    body: &[u8],
) -> ApprovalRequest {
    let hidden: HashSet<String> = NEVER_SHOWN
        .iter()
        .map(|h| h.to_string())
        .chain(injected_headers.iter().cloned())
        .collect();
    let headers = original
        .headers
        .iter()
        .filter(|(name, _)| !hidden.contains(name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let preview = (!body.is_empty())
        .then(|| String::from_utf8_lossy(&body[..body.len().min(BODY_PREVIEW)]).into_owned());
    ApprovalRequest {
        project: onecli_policy::model::default_project(),
        method: original.method.as_str().to_owned(),
        url,
        host: host.to_owned(),
        path: original.uri.path().to_owned(),
        headers,
        body_preview: preview,
        agent_id: String::new(),
        agent_name: String::new(),
        agent_identifier: String::new(),
        timeout_secs: 0,
    }
}

/// Registers `review` and waits.
pub async fn hold(
    broker: &dyn ApprovalBroker,
    session: &mut Session,
    review: ApprovalRequest,
    timeout: Duration,
) -> Held {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let id = broker.submit(
        review,
        Box::new(move |decision| {
            let _ = tx.send(decision);
        }),
    );
    let outcome = tokio::select! {
        outcome = rx => match outcome {
            Ok(ApprovalOutcome::Decided(ApprovalDecision::Approve)) => Held::Approved,
            Ok(ApprovalOutcome::Unavailable) => Held::Unavailable,
            // Decided deny, or the hub dropped it: never forward.
            _ => Held::Denied { id: id.clone() },
        },
        _ = tokio::time::sleep(timeout) => Held::TimedOut { id: id.clone() },
        _ = client_gone(session) => Held::ClientGone,
    };
    if matches!(outcome, Held::TimedOut { .. } | Held::ClientGone) {
        broker.withdraw(&id);
    }
    outcome
}

/// Resolves when the client closes its side; the body was already read.
async fn client_gone(session: &mut Session) {
    if session.as_mut().read_body_or_idle(true).await.is_err() {
        return;
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_leave_credentials_out() {
        let mut req = RequestHeader::build("POST", b"/v1/messages?x=1", None).expect("req");
        for (k, v) in [
            ("authorization", "Bearer agent"),
            ("x-api-key", "k"),
            ("proxy-authorization", "Basic t"),
            ("x-custom-key", "c"),
            ("content-type", "application/json"),
        ] {
            req.insert_header(k, v).expect("header");
        }
        let body = vec![b'a'; BODY_PREVIEW + 10];
        let r = review(
            &req,
            "https://api.test/v1/messages?x=1".into(),
            "api.test",
            &["x-custom-key".into()],
            &body,
        );
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["content-type"]);
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.body_preview.map(|p| p.len()), Some(BODY_PREVIEW));
        assert_eq!(
            review(&req, String::new(), "h", &[], b"").body_preview,
            None
        );
    }
}
