//! Guidance errors (SPEC §6, COMPAT.md): when the gateway injected nothing
//! and the upstream refuses the request for want of credentials, the agent
//! gets a body that says what to do instead of the service's own error:
//! `credential_not_found` with a link that opens the dashboard's connect
//! page, or `access_restricted` when credentials exist but not for this agent.

use bytes::Bytes;
use serde_json::json;

use crate::inject::percent_encode;

/// What the agent is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guidance {
    CredentialNotFound,
    AccessRestricted,
}

/// How much of a 400 body is read to judge whether it is about credentials.
const SNIFF_LIMIT: usize = 4096;

/// Rewrites one response body, chunk by chunk (`response_body_filter`).
pub struct BodyRewrite {
    /// The replacement body.
    guidance: Bytes,
    /// 401/403 are always replaced; a 400 only when it reads like an auth failure.
    always: bool,
    buffered: Vec<u8>,
    /// A 400 that turned out to be about something else: stream it unchanged.
    passing_through: bool,
}

impl BodyRewrite {
    /// `None` when the status is not one that guidance replaces.
    pub fn for_status(status: u16, guidance: Bytes) -> Option<BodyRewrite> {
        let always = match status {
            401 | 403 => true,
            400 => false,
            _ => return None,
        };
        Some(BodyRewrite {
            guidance,
            always,
            buffered: Vec::new(),
            passing_through: false,
        })
    }

    /// Whether the header can already say the body is the gateway's JSON.
    pub fn replaces_for_sure(&self) -> bool {
        self.always
    }

    /// Takes the upstream's chunk and puts in its place what the client gets.
    pub fn on_chunk(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if self.passing_through {
            return;
        }
        if let Some(chunk) = body.take() {
            if !self.always {
                self.buffered.extend_from_slice(&chunk);
                if self.buffered.len() > SNIFF_LIMIT {
                    // Too long to be an auth error body: hand it over as it was.
                    self.passing_through = true;
                    *body = Some(Bytes::from(std::mem::take(&mut self.buffered)));
                    return;
                }
            }
        }
        if end_of_stream {
            *body = Some(if self.always || looks_like_auth_failure(&self.buffered) {
                self.guidance.clone()
            } else {
                Bytes::from(std::mem::take(&mut self.buffered))
            });
        }
    }
}

/// A 400 body that is really about a missing or bad credential.
pub fn looks_like_auth_failure(body: &[u8]) -> bool {
    const HINTS: [&str; 10] = [
        "api key",
        "api_key",
        "apikey",
        "x-api-key",
        "authentication",
        "unauthorized",
        "unauthenticated",
        "authorization",
        "credential",
        "access token",
    ];
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIFF_LIMIT)]).to_ascii_lowercase();
    HINTS.iter().any(|h| text.contains(h))
}

/// The JSON body for `guidance`. `dashboard_url` has no trailing slash.
pub fn body(
    guidance: Guidance,
    host: &str,
    path: &str,
    agent_identifier: &str,
    project: &str,
    dashboard_url: &str,
) -> Bytes {
    // Links name the agent's project, so that a dashboard showing another
    // one switches (an admin) or refuses (another project's session)
    // instead of adding the key in the wrong place. The default project's
    // links stay as they always were.
    let in_project = if project == onecli_policy::model::DEFAULT_PROJECT {
        String::new()
    } else {
        format!("&project={}", percent_encode(project))
    };
    let value = match guidance {
        Guidance::CredentialNotFound => json!({
            "error": "credential_not_found",
            "message": format!(
                "No credentials configured for {host} in OneCLI. Show the user the secret_url link (append &source=agent&agent_name=$ONECLI_AGENT_NAME) so they can add them, then retry once they have. Do not ask for the key itself."
            ),
            "hostname": host,
            "path": path,
            "secret_url": format!(
                "{dashboard_url}/connections/custom?create=generic&host={}&path=%2F%2A{in_project}",
                percent_encode(host)
            ),
        }),
        Guidance::AccessRestricted => json!({
            "error": "access_restricted",
            "message": format!(
                "OneCLI holds credentials for {host}, but this agent may not use them. Ask the user to grant access at manage_url. Do not retry until they have."
            ),
            "hostname": host,
            "path": path,
            "manage_url": format!("{dashboard_url}/agents?manage={}{in_project}", percent_encode(agent_identifier)),
        }),
    };
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rewrite: &mut BodyRewrite, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut body = Some(Bytes::copy_from_slice(chunk));
            rewrite.on_chunk(&mut body, i + 1 == chunks.len());
            out.extend_from_slice(body.as_deref().unwrap_or_default());
        }
        out
    }

    #[test]
    fn unauthorized_bodies_are_replaced() {
        let mut r = BodyRewrite::for_status(401, Bytes::from_static(b"GUIDANCE")).expect("401");
        assert!(r.replaces_for_sure());
        assert_eq!(run(&mut r, &[b"{\"error\":", b"\"nope\"}"]), b"GUIDANCE");
    }

    #[test]
    fn a_400_is_replaced_only_when_it_is_about_credentials() {
        let mut r = BodyRewrite::for_status(400, Bytes::from_static(b"GUIDANCE")).expect("400");
        assert_eq!(
            run(&mut r, &[b"{\"error\":\"invalid ", b"API key\"}"]),
            b"GUIDANCE"
        );
        let mut r = BodyRewrite::for_status(400, Bytes::from_static(b"GUIDANCE")).expect("400");
        assert_eq!(
            run(&mut r, &[b"{\"error\":\"bad ", b"json\"}"]),
            b"{\"error\":\"bad json\"}"
        );
        let long = vec![b'x'; SNIFF_LIMIT + 10];
        let mut r = BodyRewrite::for_status(400, Bytes::from_static(b"GUIDANCE")).expect("400");
        assert_eq!(
            run(&mut r, &[&long, b" api key"]),
            [long.as_slice(), b" api key"].concat()
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        assert!(BodyRewrite::for_status(200, Bytes::new()).is_none());
        assert!(BodyRewrite::for_status(404, Bytes::new()).is_none());
    }

    #[test]
    fn bodies_follow_compat() {
        let v: serde_json::Value = serde_json::from_slice(&body(
            Guidance::CredentialNotFound,
            "api.x.com",
            "/v1/m",
            "claude",
            "default",
            "http://localhost:10254",
        ))
        .expect("json");
        assert_eq!(v["error"], "credential_not_found");
        assert_eq!(v["hostname"], "api.x.com");
        assert_eq!(
            v["secret_url"],
            "http://localhost:10254/connections/custom?create=generic&host=api.x.com&path=%2F%2A"
        );
        let v: serde_json::Value = serde_json::from_slice(&body(
            Guidance::AccessRestricted,
            "h",
            "/",
            "claude",
            "p-2",
            "http://d",
        ))
        .expect("json");
        assert_eq!(v["error"], "access_restricted");
        assert_eq!(v["manage_url"], "http://d/agents?manage=claude&project=p-2");
    }
}
