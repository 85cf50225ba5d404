//! Rate limits counted in Redis (`--rate-limit-store`), so that every
//! gateway using the same store enforces one limit together.
//!
//! Each request that falls under rate_limit rules runs one Lua script: GCRA
//! over all of its (rule, agent) keys at once, all-or-nothing, on Redis'
//! own clock (`TIME`), so gateways' clocks and races between them do not
//! matter. A request waits at most [`BUDGET`] for it. When Redis errs or is
//! slow, the gateway counts locally with its share of each limit (the limit
//! divided by the live gateways it last heard of), says so once, and a
//! background loop tries Redis again every [`RETRY_EVERY`]; its answer
//! brings counting back. The same loop keeps this gateway's entry in the set
//! of live gateways, which is how each one knows its share.
//!
//! Pingora runs one single-threaded runtime per thread, and a socket is
//! driven by the runtime it was made on: connections are pooled per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use onecli_policy::model::RuleAction;
use onecli_policy::Rule;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::resp::{Connection, Reply, RespError};
use super::{Limited, RateLimiter};
use crate::config::RedisUrl;
use crate::metrics::GatewayMetrics;

/// The longest a request waits on Redis (connecting and the script)
/// unless the gateway is told otherwise.
pub const BUDGET: Duration = Duration::from_millis(50);
/// How often a gateway renews its entry among the live ones.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(2);
/// How long an entry lives unrenewed: a gateway that died stops counting
/// after this.
pub const PRESENCE_TTL: Duration = Duration::from_secs(6);
/// While Redis is away, how often the background loop tries it again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long the background loop waits for an answer before it calls Redis
/// away (requests have their own, shorter bound).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle connections kept per thread.
const POOL_KEEP: usize = 16;

pub const KEY_PREFIX: &str = "onecli:rl:";
pub const LIVE_GATEWAYS_KEY: &str = "onecli:gateways";

/// GCRA over every key of one request, or over none.
const GCRA: &str = r#"
-- KEYS[i]: one (rule, agent) key; ARGV[2i-1], ARGV[2i]: its emission
-- interval and burst tolerance, in microseconds. Each key holds its
-- theoretical arrival time on Redis' clock and expires when it passes.
-- Returns {0, 0} when the request passes and counts against every key,
-- or {i, wait}: key i refused it (the longest wait of all), a request
-- passes in wait microseconds, and nothing was counted.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next_tats = {}
local worst, worst_at = 0, 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  if tat - now > tolerance then
    local wait = tat - tolerance - now
    if wait > worst then worst, worst_at = wait, i end
  else
    next_tats[i] = tat + interval
  end
end
if worst_at > 0 then return {worst_at, worst} end
for i, key in ipairs(KEYS) do
  local ttl = math.max(1, math.ceil((next_tats[i] - now) / 1000))
  redis.call('SET', key, string.format('%.0f', next_tats[i]), 'PX', string.format('%d', ttl))
end
return {0, 0}
"#;

/// Joins (or leaves) the set of live gateways; returns how many are live.
const PRESENCE: &str = r#"
-- KEYS[1]: live gateways, each scored by when its entry expires (ms on
-- Redis' clock). ARGV[1]: this gateway; ARGV[2]: entry lifetime (ms);
-- ARGV[3]: '1' to join or stay, '0' to leave.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
local n = redis.call('ZCARD', KEYS[1])
if n > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"#;

/// A script and its SHA-1, the name `EVALSHA` runs it by.
struct Script {
    body: &'static str,
    sha1: String,
}

impl Script {
    fn new(body: &'static str) -> Script {
        Script {
            body,
            sha1: hex(&boring::sha::sha1(body.as_bytes())),
        }
    }
}

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));
static PRESENCE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PRESENCE));

/// Tells limiters apart in the per-thread pools (tests run several).
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static POOLS: RefCell<HashMap<u64, Vec<Connection>>> = RefCell::new(HashMap::new());
}

pub struct RedisLimiter {
    url: RedisUrl,
    pool: u64,
    /// This gateway's entry among the live ones.
    instance: String,
    metrics: Arc<GatewayMetrics>,
    in_use: AtomicBool,
    /// Live gateways, as last heard from Redis (kept while it is away).
    gateways: AtomicU32,
    /// The longest a request waits on Redis.
    budget: Duration,
}

/// One rate_limit rule of a request, in the script's units.
struct Limit<'a> {
    rule: &'a Rule,
    interval_us: u64,
    tolerance_us: u64,
}

impl RedisLimiter {
    pub fn new(url: RedisUrl, metrics: Arc<GatewayMetrics>) -> RedisLimiter {
        metrics.rate_limit_store_in_use.set(1);
        metrics.rate_limit_gateways.set(1);
        RedisLimiter {
            url,
            pool: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            instance: hex(&rand::random::<[u8; 16]>()),
            metrics,
            // Until Redis says otherwise: the first request tries it.
            in_use: AtomicBool::new(true),
            gateways: AtomicU32::new(1),
            budget: BUDGET,
        }
    }

    /// Requests wait at most `budget` on Redis (`--rate-limit-store-timeout`).
    pub fn with_budget(mut self, budget: Duration) -> RedisLimiter {
        self.budget = budget.max(Duration::from_millis(1));
        self
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Whether requests are counted in Redis now.
    pub fn in_use(&self) -> bool {
        self.in_use.load(Ordering::Acquire)
    }

    /// Live gateways, as last heard (at least 1).
    pub fn gateways(&self) -> u32 {
        self.gateways.load(Ordering::Acquire).max(1)
    }

    /// Counts one request by `agent_id` against every rule in `rules` (or
    /// against none), in Redis; in `local`, with this gateway's share of
    /// each limit, when Redis is away.
    pub async fn check<'a>(
        &self,
        agent_id: &str,
        rules: &[&'a Rule],
        local: &RateLimiter,
    ) -> Result<(), Limited<'a>> {
        let limits: Vec<Limit<'a>> = rules.iter().filter_map(|&rule| limit(rule)).collect();
        if limits.is_empty() {
            return Ok(());
        }
        if self.in_use() {
            match tokio::time::timeout(self.budget, self.count(agent_id, &limits)).await {
                Ok(Ok(verdict)) => return verdict,
                Ok(Err(error)) => self.mark_away(&error),
                Err(_) => self.mark_away(&format_args!(
                    "no answer within {} ms",
                    self.budget.as_millis()
                )),
            }
        }
        self.metrics.rate_limit_fallback.inc();
        local.check_share(agent_id, rules, self.gateways())
    }

    async fn count<'a>(
        &self,
        agent_id: &str,
        limits: &[Limit<'a>],
    ) -> Result<Result<(), Limited<'a>>, RespError> {
        let agent = digest(agent_id);
        let keys: Vec<String> = limits
            .iter()
            .map(|l| format!("{KEY_PREFIX}{{{agent}}}:{}", digest(&l.rule.id)))
            .collect();
        let numbers: Vec<String> = limits
            .iter()
            .flat_map(|l| [l.interval_us.to_string(), l.tolerance_us.to_string()])
            .collect();
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let numbers: Vec<&[u8]> = numbers.iter().map(|n| n.as_bytes()).collect();
        let reply = self.eval(&GCRA_SCRIPT, &keys, &numbers).await?;
        let Reply::Array(Some(items)) = reply else {
            return Err(RespError::Unexpected("the rate-limit script"));
        };
        match items[..] {
            [Reply::Integer(0), _] => Ok(Ok(())),
            [Reply::Integer(at), Reply::Integer(wait_us)]
                if at >= 1 && (at as usize) <= limits.len() && wait_us > 0 =>
            {
                Ok(Err(Limited {
                    rule: limits[at as usize - 1].rule,
                    retry_after_secs: (wait_us as u64).div_ceil(1_000_000).max(1),
                }))
            }
            _ => Err(RespError::Unexpected("the rate-limit script")),
        }
    }

    /// Renews this gateway's entry among the live ones and learns how many
    /// there are. An answer brings counting back to Redis; none sends it
    /// away. Returns whether Redis answered.
    pub async fn refresh(&self) -> bool {
        match tokio::time::timeout(PROBE_TIMEOUT, self.presence(true)).await {
            Ok(Ok(live)) => {
                let live = u32::try_from(live).unwrap_or(u32::MAX).max(1);
                self.gateways.store(live, Ordering::Release);
                self.metrics.rate_limit_gateways.set(i64::from(live));
                self.mark_back();
                true
            }
            Ok(Err(error)) => {
                self.mark_away(&error);
                false
            }
            Err(_) => {
                self.mark_away(&"no answer within a second");
                false
            }
        }
    }

    /// Takes this gateway's entry out of the live ones (at shutdown).
    pub async fn leave(&self) {
        let _ = tokio::time::timeout(PROBE_TIMEOUT, self.presence(false)).await;
    }

    async fn presence(&self, join: bool) -> Result<i64, RespError> {
        let ttl = PRESENCE_TTL.as_millis().to_string();
        let join: &[u8] = if join { b"1" } else { b"0" };
        let reply = self
            .eval(
                &PRESENCE_SCRIPT,
                &[LIVE_GATEWAYS_KEY.as_bytes()],
                &[self.instance.as_bytes(), ttl.as_bytes(), join],
            )
            .await?;
        match reply {
            Reply::Integer(n) => Ok(n),
            _ => Err(RespError::Unexpected("the presence script")),
        }
    }

    /// Renews presence every [`PRESENCE_EVERY`] (every [`RETRY_EVERY`] while
    /// Redis is away) until shutdown, then leaves.
    pub async fn keep_presence(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.refresh().await;
            let wait = if self.in_use() {
                PRESENCE_EVERY
            } else {
                RETRY_EVERY
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.leave().await;
    }

    /// Runs a script by its SHA-1, sending its body only when Redis does not
    /// know it (first use, or after a restart).
    async fn eval(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Reply, RespError> {
        let mut conn = match self.pooled() {
            Some(conn) => conn,
            None => Connection::open(&self.url).await?,
        };
        let nkeys = keys.len().to_string();
        let mut command: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        command.extend([&b"EVALSHA"[..], script.sha1.as_bytes(), nkeys.as_bytes()]);
        command.extend_from_slice(keys);
        command.extend_from_slice(args);
        let mut reply = conn.call(&command).await?;
        if matches!(&reply, Reply::Error(e) if e.starts_with("NOSCRIPT")) {
            command[0] = b"EVAL";
            command[1] = script.body.as_bytes();
            reply = conn.call(&command).await?;
        }
        self.give_back(conn);
        match reply {
            Reply::Error(message) => Err(RespError::Refused {
                command: "a script",
                message,
            }),
            reply => Ok(reply),
        }
    }

    fn pooled(&self) -> Option<Connection> {
        POOLS
            .try_with(|pools| {
                let mut pools = pools.borrow_mut();
                let pool = pools.get_mut(&self.pool)?;
                std::iter::from_fn(|| pool.pop()).find(Connection::is_reusable)
            })
            .ok()
            .flatten()
    }

    fn give_back(&self, conn: Connection) {
        let _ = POOLS.try_with(|pools| {
            let mut pools = pools.borrow_mut();
            let pool = pools.entry(self.pool).or_default();
            if pool.len() < POOL_KEEP {
                pool.push(conn);
            }
        });
    }

    /// Redis failed us: count locally from now on, and say so once.
    fn mark_away(&self, error: &dyn Display) {
        if self.in_use.swap(false, Ordering::AcqRel) {
            self.metrics.rate_limit_store_in_use.set(0);
            tracing::warn!(
                %error,
                store = %self.url,
                gateways = self.gateways(),
                "rate-limit store unavailable: counting locally, each limit divided among the live gateways, until it answers again"
            );
        }
    }

    /// Redis answered: count there again, and say so once.
    fn mark_back(&self) {
        if !self.in_use.swap(true, Ordering::AcqRel) {
            self.metrics.rate_limit_store_in_use.set(1);
            tracing::info!(store = %self.url, gateways = self.gateways(), "rate-limit store answers again: counting there");
        }
    }
}

fn limit(rule: &Rule) -> Option<Limit<'_>> {
    let RuleAction::RateLimit { limit, window } = rule.action else {
        return None;
    };
    let window_us = window.seconds() * 1_000_000;
    let interval_us = window_us / u64::from(limit.max(1));
    Some(Limit {
        rule,
        interval_us,
        tolerance_us: window_us - interval_us,
    })
}

/// Ids become fixed-length hex in keys: any id is safe in a key, and
/// `{agent}` is a hash tag, so one request's keys share a cluster slot.
fn digest(id: &str) -> String {
    hex(&boring::sha::sha256(id.as_bytes())[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps the gateway's presence among the live ones, as a Pingora
/// background service.
pub struct PresenceKeeper(pub Arc<RedisLimiter>);

#[async_trait]
impl BackgroundService for PresenceKeeper {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.keep_presence(shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_length_hex_whatever_the_ids() {
        let weird = digest("rule id with spaces, {braces}, \r\n and ünïcode");
        assert_eq!(weird.len(), 32);
        assert!(weird.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(digest("a"), digest("b"));
    }

    #[test]
    fn scripts_are_named_by_their_sha1() {
        assert_eq!(
            Script::new("return 1").sha1,
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}
