//! Rate limits shared through a real Redis by several limiters, each one
//! standing for a gateway: exact counts under concurrency, all-or-nothing
//! across rules, `Retry-After`, and the local fallback with its share while
//! Redis is killed or hung, then back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onecli_gateway::metrics::GatewayMetrics;
use onecli_gateway::rate_limit::resp::{Connection, Reply};
use onecli_gateway::rate_limit::shared::{KEY_PREFIX, LIVE_GATEWAYS_KEY};
use onecli_gateway::rate_limit::{MonotonicClock, RateLimiter, RateLimits, RedisLimiter};
use onecli_policy::model::{PolicyDoc, RateWindow, RuleAction, RuleDoc};
use onecli_policy::{Rule, Snapshot};

use crate::redis_server::RedisServer;

/// A generous bound for a check against a dead or hung Redis: it gives up
/// after 50 ms, so only a hang reaches this.
const NO_HANG: Duration = Duration::from_secs(5);

struct Gateway {
    limits: RateLimits,
    redis: Arc<RedisLimiter>,
    metrics: Arc<GatewayMetrics>,
}

/// A gateway that waits long for Redis: these tests count, and a loaded
/// machine must not turn a slow answer into a fallback.
fn gateway(redis: &RedisServer) -> Arc<Gateway> {
    gateway_with_budget(redis, Duration::from_secs(10))
}

fn gateway_with_budget(redis: &RedisServer, budget: Duration) -> Arc<Gateway> {
    let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
    let shared = Arc::new(RedisLimiter::new(redis.url(), metrics.clone()).with_budget(budget));
    let local = RateLimiter::new(Arc::new(MonotonicClock::default()), 1000);
    Arc::new(Gateway {
        limits: RateLimits::new(local, Some(shared.clone())),
        redis: shared,
        metrics,
    })
}

/// Rules for every agent: `(name, limit per minute)`.
fn snapshot(rules: &[(&str, u32)]) -> Arc<Snapshot> {
    let rules = rules
        .iter()
        .map(|(name, limit)| RuleDoc {
            id: format!("id of {name}"),
            name: (*name).into(),
            host_pattern: "*".into(),
            path_pattern: "*".into(),
            methods: vec![],
            agent_id: None,
            project: onecli_policy::model::default_project(),
            action: RuleAction::RateLimit {
                limit: *limit,
                window: RateWindow::Minute,
            },
            enabled: true,
        })
        .collect();
    let doc = PolicyDoc {
        rules,
        ..PolicyDoc::default()
    };
    Arc::new(Snapshot::compile(doc).expect("valid"))
}

fn all(snapshot: &Snapshot) -> Vec<&Rule> {
    snapshot.rules().iter().collect()
}

/// One request: `Ok` or the refusing rule's name and `Retry-After`.
async fn check(gateway: &Gateway, agent: &str, rules: &[&Rule]) -> Result<(), (String, u64)> {
    tokio::time::timeout(NO_HANG, gateway.limits.check(agent, rules))
        .await
        .expect("a check never hangs")
        .map_err(|l| (l.rule.name.clone(), l.retry_after_secs))
}

async fn redis_call(redis: &RedisServer, args: &[&str]) -> Reply {
    let mut conn = Connection::open(&redis.url()).await.expect("connect");
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    conn.call(&args).await.expect("call")
}

/// Gateways in the live set.
async fn live(redis: &RedisServer) -> i64 {
    match redis_call(redis, &["ZCARD", LIVE_GATEWAYS_KEY]).await {
        Reply::Integer(n) => n,
        other => panic!("ZCARD: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_sharing_one_redis_pass_exactly_the_limit() {
    let redis = RedisServer::start();
    let gateways: Vec<_> = (0..3).map(|_| gateway(&redis)).collect();
    let snap = snapshot(&[("ten a minute", 10)]);
    let mut tasks = Vec::new();
    for agent in ["agent-a", "agent-b", "agent-c"] {
        for i in 0..30 {
            let (gateway, snap) = (gateways[i % 3].clone(), snap.clone());
            tasks.push(tokio::spawn(async move {
                (agent, check(&gateway, agent, &all(&snap)).await)
            }));
        }
    }
    let mut passed = std::collections::BTreeMap::new();
    for task in tasks {
        let (agent, result) = task.await.expect("task");
        match result {
            Ok(()) => *passed.entry(agent).or_insert(0) += 1,
            Err((_, retry_after)) => assert!(
                (1..=6).contains(&retry_after),
                "a slot frees every 6 s: Retry-After {retry_after}"
            ),
        }
    }
    let fallbacks: Vec<u64> = gateways
        .iter()
        .map(|g| g.metrics.rate_limit_fallback.get())
        .collect();
    assert_eq!(fallbacks, [0, 0, 0], "Redis was slower than the budget");
    assert_eq!(
        passed.into_iter().collect::<Vec<_>>(),
        [("agent-a", 10), ("agent-b", 10), ("agent-c", 10)]
    );
}

#[tokio::test]
async fn a_request_refused_by_one_rule_counts_against_none() {
    let redis = RedisServer::start();
    let (one, other) = (gateway(&redis), gateway(&redis));
    let snap = snapshot(&[("roomy", 10), ("tight", 1)]);
    let rules = all(&snap);
    assert_eq!(check(&one, "a", &rules).await, Ok(()));
    for gateway in [&one, &other].repeat(10) {
        let (rule, _) = check(gateway, "a", &rules)
            .await
            .expect_err("tight refuses");
        assert_eq!(rule, "tight");
    }
    // roomy counted only the first request: 9 left, on either gateway.
    let roomy: Vec<&Rule> = rules
        .iter()
        .copied()
        .filter(|r| r.name == "roomy")
        .collect();
    for gateway in [&one, &other, &one].repeat(3) {
        assert_eq!(check(gateway, "a", &roomy).await, Ok(()));
    }
    assert!(check(&other, "a", &roomy).await.is_err());
    assert_eq!(one.metrics.rate_limit_fallback.get(), 0);
}

#[tokio::test]
async fn retry_after_is_exact_and_keys_expire_with_their_limit() {
    let redis = RedisServer::start();
    let (one, other) = (gateway(&redis), gateway(&redis));
    let snap = snapshot(&[("five a minute", 5)]);
    let rules = all(&snap);
    for gateway in [&one, &other, &one, &other, &one] {
        assert_eq!(check(gateway, "a", &rules).await, Ok(()));
    }
    for gateway in [&one, &other] {
        assert_eq!(
            check(gateway, "a", &rules).await,
            Err(("five a minute".to_owned(), 12)),
            "one slot frees every 60/5 s; a refusal consumes nothing"
        );
    }
    // One key, for this rule and agent, that lives until its theoretical
    // arrival time: one minute from the first request.
    let pattern = format!("{KEY_PREFIX}*");
    let Reply::Array(Some(keys)) = redis_call(&redis, &["KEYS", &pattern]).await else {
        panic!("KEYS answers an array");
    };
    let [Reply::Bulk(Some(key))] = &keys[..] else {
        panic!("one key: {keys:?}");
    };
    let key = String::from_utf8(key.clone()).expect("ASCII key");
    assert!(
        !key.contains("five") && !key.contains("agent"),
        "ids are hashed: {key}"
    );
    let Reply::Integer(ttl) = redis_call(&redis, &["PTTL", &key]).await else {
        panic!("PTTL answers an integer");
    };
    assert!(
        (50_000..=60_000).contains(&ttl),
        "expires with its limit: {ttl} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_each_gateway_counts_its_share_until_it_returns() {
    let mut redis = RedisServer::start();
    let gateways: Vec<_> = (0..3).map(|_| gateway(&redis)).collect();
    for gateway in &gateways {
        assert!(gateway.redis.refresh().await, "presence");
    }
    assert!(gateways[0].redis.refresh().await);
    assert_eq!(gateways[0].redis.gateways(), 3, "three live gateways");
    let snap = snapshot(&[("ten a minute", 10)]);
    let rules = all(&snap);
    assert_eq!(check(&gateways[0], "warm", &rules).await, Ok(()));

    redis.kill();
    let one = &gateways[0];
    let mut passed = 0;
    for _ in 0..10 {
        if check(one, "fresh", &rules).await.is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 3, "10 a minute shared by 3 gateways: 3 each");
    assert_eq!(one.metrics.rate_limit_fallback.get(), 10);
    assert!(!one.redis.in_use());
    assert_eq!(one.metrics.rate_limit_store_in_use.get(), 0);
    assert!(!one.redis.refresh().await, "Redis is still away");
    assert_eq!(one.redis.gateways(), 3, "the last known count is kept");

    redis.restart();
    assert!(one.redis.refresh().await, "Redis is back");
    assert!(one.redis.in_use());
    assert_eq!(one.metrics.rate_limit_store_in_use.get(), 1);
    // Counted in Redis again: exactly the limit across all three, although
    // the others never noticed the restart (their idle connections died).
    let again = snapshot(&[("ten a minute, again", 10)]);
    let rules = all(&again);
    let mut passed = 0;
    for i in 0..30 {
        if check(&gateways[i % 3], "fresh", &rules).await.is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 10);
    assert_eq!(
        one.metrics.rate_limit_fallback.get(),
        10,
        "no more fallbacks"
    );
    for gateway in &gateways[1..] {
        assert_eq!(gateway.metrics.rate_limit_fallback.get(), 0);
    }
}

#[tokio::test]
async fn a_hung_redis_costs_a_request_the_budget_not_a_hang() {
    let redis = RedisServer::start();
    // The gateway's default bound, which this test is about.
    let one = gateway_with_budget(&redis, onecli_gateway::rate_limit::shared::BUDGET);
    let snap = snapshot(&[("two a minute", 2)]);
    let rules = all(&snap);
    assert_eq!(check(&one, "a", &rules).await, Ok(()));
    redis.pause(true);
    let started = Instant::now();
    let result = check(&one, "b", &rules).await;
    let waited = started.elapsed();
    redis.pause(false);
    assert_eq!(result, Ok(()), "counted locally");
    assert_eq!(one.metrics.rate_limit_fallback.get(), 1);
    assert!(!one.redis.in_use());
    // While away, requests do not wait on Redis at all.
    assert_eq!(check(&one, "b", &rules).await, Ok(()));
    assert_eq!(one.metrics.rate_limit_fallback.get(), 2);
    eprintln!("a check against a hung Redis answered after {waited:?}");
}

#[tokio::test]
async fn the_presence_loop_brings_counting_back_and_leaves_at_shutdown() {
    let mut redis = RedisServer::start();
    let one = gateway(&redis);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let keeper = {
        let redis = one.redis.clone();
        tokio::spawn(async move { redis.keep_presence(shutdown).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while live(&redis).await != 1 {
        assert!(Instant::now() < deadline, "never joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snap = snapshot(&[("ten a minute", 10)]);
    let rules = all(&snap);
    redis.kill();
    assert_eq!(check(&one, "a", &rules).await, Ok(()));
    assert!(!one.redis.in_use());
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !one.redis.in_use() {
        assert!(
            Instant::now() < deadline,
            "the loop never brought Redis back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).expect("loop running");
    keeper.await.expect("loop ended");
    assert_eq!(live(&redis).await, 0, "left at shutdown");
}
