//! Rate limits per rule and agent (SPEC §6 step 3), by GCRA: each key keeps
//! one "theoretical arrival time", so limits are smooth (no double burst at
//! window edges), memory is one number per active key, and a refused
//! request consumes nothing. Time comes from a [`Clock`] so tests do not
//! sleep.
//!
//! [`RateLimits`] is what requests call: this gateway's own counters, or
//! with `--rate-limit-store` the counters in Redis that every gateway using
//! it shares ([`shared`]), with the own ones as the fallback.

pub mod resp;
pub mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use shared::RedisLimiter;

use onecli_policy::model::RuleAction;
use onecli_policy::Rule;

pub trait Clock: Send + Sync {
    /// Monotonic time since an arbitrary start.
    fn now(&self) -> Duration;
}

pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A refusal: which rule, and how long until a request would pass.
#[derive(Debug)]
pub struct Limited<'a> {
    pub rule: &'a Rule,
    /// Whole seconds, rounded up: a retry after this many seconds passes.
    pub retry_after_secs: u64,
}

pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    /// Theoretical arrival time (nanoseconds on the clock) per rule and agent.
    tats: Mutex<HashMap<(String, String), u128>>,
    capacity: usize,
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>, capacity: usize) -> Self {
        RateLimiter {
            clock,
            tats: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Counts one request by `agent_id` against every rule in `rules`, or
    /// against none if any of them refuses it.
    pub fn check<'a>(&self, agent_id: &str, rules: &[&'a Rule]) -> Result<(), Limited<'a>> {
        self.check_share(agent_id, rules, 1)
    }

    /// The same, with each limit divided among `gateways` (at least 1 each):
    /// this gateway's share while the shared store is away.
    pub fn check_share<'a>(
        &self,
        agent_id: &str,
        rules: &[&'a Rule],
        gateways: u32,
    ) -> Result<(), Limited<'a>> {
        let now = self.clock.now().as_nanos();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let mut updates = Vec::with_capacity(rules.len());
        let mut worst: Option<(u128, &'a Rule)> = None;
        for &rule in rules {
            let RuleAction::RateLimit { limit, window } = rule.action else {
                continue;
            };
            let window = u128::from(window.seconds()) * 1_000_000_000;
            let limit = (limit / gateways.max(1)).max(1);
            let interval = window / u128::from(limit);
            let tolerance = window - interval;
            let key = (rule.id.clone(), agent_id.to_owned());
            let tat = tats.get(&key).copied().unwrap_or(now).max(now);
            if tat - now > tolerance {
                let wait = tat - tolerance - now;
                if worst.is_none_or(|(w, _)| wait > w) {
                    worst = Some((wait, rule));
                }
            } else {
                updates.push((key, tat + interval));
            }
        }
        if let Some((wait, rule)) = worst {
            return Err(Limited {
                rule,
                retry_after_secs: wait.div_ceil(1_000_000_000).max(1) as u64,
            });
        }
        if tats.len() + updates.len() > self.capacity {
            // Keys whose time has passed are the same as absent ones.
            tats.retain(|_, tat| *tat > now);
        }
        for (key, tat) in updates {
            if tats.len() >= self.capacity && !tats.contains_key(&key) {
                // Every slot holds a live limit: refuse rather than forget one.
                return Err(Limited {
                    rule: rules[0],
                    retry_after_secs: 1,
                });
            }
            tats.insert(key, tat);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tats.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What requests count against: the gateway's own counters, or the shared
/// store with the own ones as its fallback.
pub struct RateLimits {
    local: RateLimiter,
    shared: Option<Arc<RedisLimiter>>,
}

impl RateLimits {
    pub fn new(local: RateLimiter, shared: Option<Arc<RedisLimiter>>) -> Self {
        RateLimits { local, shared }
    }

    /// Counts one request by `agent_id` against every rule in `rules`, or
    /// against none if any of them refuses it. Without a shared store this
    /// never waits; with one, at most [`shared::BUDGET`].
    pub async fn check<'a>(&self, agent_id: &str, rules: &[&'a Rule]) -> Result<(), Limited<'a>> {
        match &self.shared {
            None => self.local.check(agent_id, rules),
            Some(shared) => shared.check(agent_id, rules, &self.local).await,
        }
    }

    pub fn shared(&self) -> Option<&Arc<RedisLimiter>> {
        self.shared.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onecli_policy::model::{AgentDoc, PolicyDoc, PolicyMode, RateWindow, RuleDoc, SecretMode};
    use onecli_policy::{token_sha256, Snapshot};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct FakeClock(AtomicU64);

    impl FakeClock {
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    fn snapshot(rules: &[(&str, u32, RateWindow)]) -> Snapshot {
        let agent = AgentDoc {
            project: onecli_policy::model::default_project(),
            id: "a".into(),
            name: "a".into(),
            identifier: "a".into(),
            token_sha256: token_sha256("a"),
            is_default: false,
            secret_mode: SecretMode::All,
            secret_ids: vec![],
            policy_mode: PolicyMode::Allow,
        };
        let rules = rules
            .iter()
            .map(|(name, limit, window)| RuleDoc {
                project: onecli_policy::model::default_project(),
                id: (*name).into(),
                name: (*name).into(),
                host_pattern: "*".into(),
                path_pattern: "*".into(),
                methods: vec![],
                agent_id: None,
                action: RuleAction::RateLimit {
                    limit: *limit,
                    window: *window,
                },
                enabled: true,
            })
            .collect();
        Snapshot::compile(PolicyDoc {
            agents: vec![agent],
            rules,
            ..PolicyDoc::default()
        })
        .expect("valid")
    }

    fn limiter(capacity: usize) -> (RateLimiter, Arc<FakeClock>) {
        let clock = Arc::new(FakeClock::default());
        (RateLimiter::new(clock.clone(), capacity), clock)
    }

    #[test]
    fn the_limit_is_reached_with_an_exact_retry_after_and_recovers() {
        let snap = snapshot(&[("five-a-minute", 5, RateWindow::Minute)]);
        let rules: Vec<&Rule> = snap.rules().iter().collect();
        let (limiter, clock) = limiter(100);
        for _ in 0..5 {
            assert!(limiter.check("a", &rules).is_ok());
        }
        let limited = limiter.check("a", &rules).expect_err("sixth is refused");
        assert_eq!(limited.retry_after_secs, 12, "one slot frees every 60/5 s");
        // A refused request consumes nothing: the wait does not grow.
        assert_eq!(
            limiter
                .check("a", &rules)
                .expect_err("still refused")
                .retry_after_secs,
            12
        );
        clock.advance(Duration::from_millis(11_500));
        assert_eq!(
            limiter
                .check("a", &rules)
                .expect_err("not yet")
                .retry_after_secs,
            1
        );
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check("a", &rules).is_ok());
        assert!(limiter.check("a", &rules).is_err());
    }

    #[test]
    fn hammering_gets_the_burst_then_the_steady_rate() {
        let snap = snapshot(&[("hundred-an-hour", 100, RateWindow::Hour)]);
        let rules: Vec<&Rule> = snap.rules().iter().collect();
        let (limiter, clock) = limiter(100);
        let mut passed_at = Vec::new();
        // A request every second for two hours.
        for second in 0..7200u64 {
            if limiter.check("a", &rules).is_ok() {
                passed_at.push(second);
            }
            clock.advance(Duration::from_secs(1));
        }
        // A burst of the limit (plus what refilled while it ran), then
        // exactly one every 36 s: no window edge that suddenly doubles it.
        let burst = passed_at
            .windows(2)
            .take_while(|w| w[1] - w[0] == 1)
            .count()
            + 1;
        assert_eq!(burst, 102);
        assert!(
            passed_at[burst + 1..].windows(2).all(|w| w[1] - w[0] == 36),
            "steady rate"
        );
        assert_eq!(
            passed_at.iter().filter(|&&s| s >= 3600).count(),
            100,
            "100 in the second hour"
        );
    }

    #[test]
    fn agents_have_separate_counters() {
        let snap = snapshot(&[("one-a-day", 1, RateWindow::Day)]);
        let rules: Vec<&Rule> = snap.rules().iter().collect();
        let (limiter, _) = limiter(100);
        assert!(limiter.check("a", &rules).is_ok());
        assert!(limiter.check("b", &rules).is_ok());
        assert_eq!(
            limiter
                .check("a", &rules)
                .expect_err("limited")
                .retry_after_secs,
            86_400
        );
    }

    #[test]
    fn a_request_refused_by_one_rule_counts_against_none() {
        let snap = snapshot(&[
            ("roomy", 10, RateWindow::Minute),
            ("tight", 1, RateWindow::Minute),
        ]);
        let rules: Vec<&Rule> = snap.rules().iter().collect();
        let (limiter, _) = limiter(100);
        assert!(limiter.check("a", &rules).is_ok());
        for _ in 0..20 {
            let limited = limiter.check("a", &rules).expect_err("tight refuses");
            assert_eq!(limited.rule.name, "tight");
        }
        // roomy saw one request, so it still has 9 left.
        let roomy: Vec<&Rule> = rules
            .iter()
            .copied()
            .filter(|r| r.name == "roomy")
            .collect();
        for _ in 0..9 {
            assert!(limiter.check("a", &roomy).is_ok());
        }
        assert!(limiter.check("a", &roomy).is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_are_dropped() {
        let snap = snapshot(&[("one-a-minute", 1, RateWindow::Minute)]);
        let rules: Vec<&Rule> = snap.rules().iter().collect();
        let (limiter, clock) = limiter(3);
        for agent in ["a", "b", "c"] {
            assert!(limiter.check(agent, &rules).is_ok());
        }
        // Full of live limits: a new key is refused, not an old one forgotten.
        assert!(limiter.check("d", &rules).is_err());
        assert!(limiter.check("a", &rules).is_err(), "a's limit was kept");
        clock.advance(Duration::from_secs(60));
        assert!(limiter.check("d", &rules).is_ok(), "expired keys make room");
        assert!(limiter.len() <= 3);
    }

    #[test]
    fn a_share_divides_the_limit_and_never_reaches_zero() {
        let snap = snapshot(&[("ten-a-minute", 10, RateWindow::Minute)]);
        let rules: Vec<&Rule> = snap.rules().iter().collect();
        let (limiter, _) = limiter(100);
        for (agent, gateways, passes) in [("a", 3, 3), ("b", 2, 5), ("c", 40, 1), ("d", 0, 10)] {
            let passed = (0..20)
                .filter(|_| limiter.check_share(agent, &rules, gateways).is_ok())
                .count();
            assert_eq!(passed, passes, "{gateways} gateways");
        }
    }
}
