//! `GET /v1/logs?agent=&since=&limit=`: the audit log, newest first.

use hyper::Method;

use super::{not_found, ok, Api, ApiError, ApiResult, Call};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

pub async fn dispatch(api: &Api, call: &Call, segments: &[&str]) -> ApiResult {
    match (&call.method, segments) {
        (&Method::GET, ["logs"]) => {
            let agent = call
                .query("agent")
                .filter(|a| !a.is_empty())
                .map(str::to_owned);
            let since = call.query("since").map(parse_since).transpose()?;
            let limit = match call.query("limit") {
                Some(l) => l
                    .parse::<usize>()
                    .map_err(|_| ApiError::BadRequest("limit must be a number.".into()))?
                    .clamp(1, MAX_LIMIT),
                None => DEFAULT_LIMIT,
            };
            ok(&api
                .read(&call.scope, move |s| {
                    s.audit(agent.as_deref(), since, limit)
                })
                .await?)
        }
        _ => Err(not_found(call)),
    }
}

/// Unix milliseconds, or an RFC 3339 time.
fn parse_since(s: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::BadRequest("since must be unix milliseconds or an RFC 3339 time.".into())
        })?;
    Ok(u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
}
