//! The load driver behind `onecli-load` (BENCH.md): HTTPS requests, either
//! straight to the origin or through an HTTP CONNECT proxy with
//! `Proxy-Authorization`, over HTTP/1.1 or HTTP/2, on kept-alive connections
//! or a new tunnel per request, at fixed concurrency or at a fixed rate.
//! Latencies go into HDR histograms; at a fixed rate they are measured from
//! the moment each request was due, so a stalled server cannot hide its
//! stall (coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use boring::ssl::{SslConnector, SslMethod};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest latency the histograms hold; anything slower is clamped to it.
const MAX_LATENCY: Duration = Duration::from_secs(60);

/// What to load and how.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Host name the requests are for (SNI, `Host`, CONNECT target).
    pub host: String,
    pub port: u16,
    /// Path and query of every request.
    pub path: String,
    /// Where TCP connects: the proxy, or the origin itself when there is none.
    pub connect_to: SocketAddr,
    /// Whether `connect_to` is a CONNECT proxy.
    pub via_proxy: bool,
    /// `user:password` sent as `Proxy-Authorization: Basic`.
    pub proxy_auth: Option<String>,
    /// CA bundle that verifies the server certificate (the gateway's CA when
    /// intercepted, the origin's CA otherwise).
    pub ca_file: PathBuf,
    pub http2: bool,
    /// A new TCP connection, CONNECT and TLS handshake for every request.
    pub new_tunnel: bool,
    /// With `new_tunnel`, keep every tunnel open after its request instead
    /// of closing it: [`run_holding`] hands them all back, idle.
    pub keep_tunnels: bool,
    pub concurrency: usize,
    /// Stop after this many requests (whichever of this and `duration`
    /// comes first).
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    /// Requests per second across all workers; `None` runs flat out.
    pub rate: Option<f64>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Key-exchange groups the client offers (`X25519`,
    /// `X25519MLKEM768:X25519`…); `None` keeps BoringSSL's default, which
    /// leads with the post-quantum hybrid.
    pub curves: Option<String>,
    /// Spread the connections over this many host names, `n0.HOST` …
    /// `n{N-1}.HOST`, in turn (first contact with many hosts: every name
    /// needs its own leaf certificate). 0 or 1: `host` itself.
    pub hosts: usize,
}

/// What a run measured.
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    pub connections: u64,
    pub body_bytes: u64,
    pub elapsed: Duration,
    /// Whole request: from send (or from when it was due) to the last body byte.
    pub latency: Histogram<u64>,
    /// From send (or due) to the response head.
    pub first_byte: Histogram<u64>,
    /// TCP connect + CONNECT + TLS handshake (+ HTTP/2 preface).
    pub connect: Histogram<u64>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Report {
    fn new() -> anyhow::Result<Report> {
        let histogram = || Histogram::new_with_bounds(1, MAX_LATENCY.as_nanos() as u64, 3);
        Ok(Report {
            requests: 0,
            errors: 0,
            statuses: BTreeMap::new(),
            error_kinds: BTreeMap::new(),
            connections: 0,
            body_bytes: 0,
            elapsed: Duration::ZERO,
            latency: histogram()?,
            first_byte: histogram()?,
            connect: histogram()?,
        })
    }

    fn merge(&mut self, other: Report) -> anyhow::Result<()> {
        self.requests += other.requests;
        self.errors += other.errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in other.error_kinds {
            *self.error_kinds.entry(kind).or_default() += n;
        }
        self.connections += other.connections;
        self.body_bytes += other.body_bytes;
        self.latency.add(&other.latency)?;
        self.first_byte.add(&other.first_byte)?;
        self.connect.add(&other.connect)?;
        Ok(())
    }

    fn error(&mut self, kind: String) {
        self.errors += 1;
        *self.error_kinds.entry(kind).or_default() += 1;
    }

    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as JSON (latencies in microseconds).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "statuses": self.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "connections": self.connections,
            "body_bytes": self.body_bytes,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "rps": self.throughput(),
            "latency_us": summary(&self.latency),
            "first_byte_us": summary(&self.first_byte),
            "connect_us": summary(&self.connect),
        })
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} requests in {:.2} s: {:.0} req/s, {} errors, {} connections, {:.1} MiB of bodies\n",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.errors,
            self.connections,
            self.body_bytes as f64 / (1024.0 * 1024.0),
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        out.push_str(&format!("statuses: {}\n", statuses.join(", ")));
        for (kind, n) in &self.error_kinds {
            out.push_str(&format!("error ×{n}: {kind}\n"));
        }
        for (name, h) in [
            ("latency", &self.latency),
            ("first byte", &self.first_byte),
            ("connect", &self.connect),
        ] {
            if h.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{name:>10} µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n",
                micros(h.value_at_quantile(0.5)),
                micros(h.value_at_quantile(0.9)),
                micros(h.value_at_quantile(0.99)),
                micros(h.value_at_quantile(0.999)),
                micros(h.max()),
            ));
        }
        out
    }
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::json!({
        "count": h.len(),
        "mean": h.mean() / 1000.0,
        "p50": micros(h.value_at_quantile(0.5)),
        "p90": micros(h.value_at_quantile(0.9)),
        "p99": micros(h.value_at_quantile(0.99)),
        "p999": micros(h.value_at_quantile(0.999)),
        "max": micros(h.max()),
    })
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let nanos = d.as_nanos().clamp(1, MAX_LATENCY.as_nanos()) as u64;
    h.saturating_record(nanos);
}

/// Hands out request numbers to the workers and says when each is due.
struct Schedule {
    next: AtomicU64,
    start: Instant,
    limit: Option<u64>,
    deadline: Option<Instant>,
    interval: Option<Duration>,
}

impl Schedule {
    /// The next request's due time, or `None` when the run is over.
    fn take(&self) -> Option<Instant> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|limit| n >= limit) {
            return None;
        }
        let due = match self.interval {
            Some(interval) => self.start + interval.mul_f64(n as f64),
            None => Instant::now(),
        };
        if self.deadline.is_some_and(|deadline| due >= deadline) {
            return None;
        }
        Some(due)
    }
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// One host name the load goes to, and what each request to it carries.
struct Target {
    host: String,
    /// `host[:port]`: the `Host` header and the CONNECT target.
    authority: String,
    uri: hyper::Uri,
}

impl Target {
    fn new(host: String, port: u16, path: &str) -> anyhow::Result<Target> {
        let authority = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let uri = format!("https://{authority}{path}")
            .parse()
            .context("request URL")?;
        Ok(Target {
            host,
            authority,
            uri,
        })
    }
}

/// A connection ready for requests, and the host it goes to.
struct Connection {
    sender: Sender,
    target: usize,
}

struct Driver {
    config: LoadConfig,
    tls: SslConnector,
    targets: Vec<Target>,
    /// Connections opened so far: picks the next one's target in turn.
    opened: AtomicU64,
}

impl Driver {
    fn new(config: LoadConfig) -> anyhow::Result<Driver> {
        let mut tls = SslConnector::builder(SslMethod::tls())?;
        tls.set_ca_file(&config.ca_file)
            .with_context(|| format!("reading CA {}", config.ca_file.display()))?;
        tls.set_alpn_protos(if config.http2 {
            b"\x02h2"
        } else {
            b"\x08http/1.1"
        })?;
        if let Some(curves) = &config.curves {
            tls.set_curves_list(curves)
                .with_context(|| format!("key-exchange groups {curves:?}"))?;
        }
        let targets = match config.hosts {
            0 | 1 => vec![Target::new(config.host.clone(), config.port, &config.path)?],
            n => (0..n)
                .map(|i| Target::new(format!("n{i}.{}", config.host), config.port, &config.path))
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(Driver {
            config,
            tls: tls.build(),
            targets,
            opened: AtomicU64::new(0),
        })
    }

    /// TCP, CONNECT when proxied, TLS and the HTTP handshake, to the next
    /// target in turn.
    async fn connect(&self) -> anyhow::Result<Connection> {
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        let index = (n % self.targets.len() as u64) as usize;
        let target = &self.targets[index];
        let mut tcp = TcpStream::connect(self.config.connect_to)
            .await
            .context("TCP connect")?;
        tcp.set_nodelay(true)?;
        if self.config.via_proxy {
            self.tunnel(&mut tcp, &target.authority).await?;
        }
        let tls = tokio_boring::connect(self.tls.configure()?, &target.host, tcp)
            .await
            .map_err(|e| anyhow::anyhow!("TLS handshake: {e}"))?;
        if self.config.http2 && tls.ssl().selected_alpn_protocol() != Some(b"h2") {
            bail!("the server did not agree to HTTP/2 (ALPN)");
        }
        let io = TokioIo::new(tls);
        if self.config.http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .context("HTTP/2 handshake")?;
            tokio::spawn(conn);
            Ok(Connection {
                sender: Sender::H2(sender),
                target: index,
            })
        } else {
            let (sender, conn) = http1::handshake(io).await.context("HTTP/1.1 handshake")?;
            tokio::spawn(conn);
            Ok(Connection {
                sender: Sender::H1(sender),
                target: index,
            })
        }
    }

    /// CONNECT to `authority` (always with its port, as proxies expect).
    async fn tunnel(&self, tcp: &mut TcpStream, authority: &str) -> anyhow::Result<()> {
        let target = match authority.contains(':') {
            true => authority.to_owned(),
            false => format!("{authority}:443"),
        };
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.config.proxy_auth {
            let auth = base64::engine::general_purpose::STANDARD.encode(auth);
            head.push_str(&format!("Proxy-Authorization: Basic {auth}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        // A proxy sends nothing after its 200 until the client speaks, so
        // reading in chunks cannot swallow TLS bytes; a refusal may carry a
        // body, which is why the head is looked for, not expected at the end.
        let mut answer = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if answer.len() > 16 * 1024 {
                bail!("CONNECT answer too long");
            }
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                bail!("proxy closed the connection during CONNECT");
            }
            answer.extend_from_slice(&chunk[..n]);
        };
        let status = std::str::from_utf8(&answer[..head_end])
            .ok()
            .and_then(|s| s.split(' ').nth(1))
            .unwrap_or("?");
        if status != "200" {
            bail!("CONNECT answered {status}");
        }
        if head_end != answer.len() {
            bail!("proxy sent bytes after its CONNECT answer");
        }
        Ok(())
    }

    fn request(&self, target: usize) -> anyhow::Result<hyper::Request<Empty<Bytes>>> {
        let target = &self.targets[target];
        let mut builder = hyper::Request::get(target.uri.clone());
        if !self.config.http2 {
            builder = builder.header(hyper::header::HOST, &target.authority);
        }
        for (name, value) in &self.config.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Empty::new())?)
    }

    /// One request on `sender`; the body is read to its end and counted.
    async fn exchange(
        &self,
        connection: &mut Connection,
        due: Instant,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let request = self.request(connection.target)?;
        let response = match &mut connection.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        record(&mut report.first_byte, due.elapsed());
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                report.body_bytes += data.len() as u64;
            }
        }
        record(&mut report.latency, due.elapsed());
        report.requests += 1;
        *report.statuses.entry(status).or_default() += 1;
        Ok(())
    }

    /// Runs requests until the schedule ends; returns what it measured and
    /// its connections, still open (its kept-alive one, or every tunnel it
    /// kept).
    async fn worker(
        self: Arc<Self>,
        schedule: Arc<Schedule>,
    ) -> anyhow::Result<(Report, Vec<Connection>)> {
        let mut report = Report::new()?;
        let mut sender: Option<Connection> = None;
        let mut kept = Vec::new();
        while let Some(due) = schedule.take() {
            // Only a fixed rate waits: the timer's millisecond ticks would
            // otherwise add up to a millisecond between requests.
            if schedule.interval.is_some() && due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            if sender.is_none() {
                let started = Instant::now();
                match self.connect().await {
                    Ok(s) => {
                        record(&mut report.connect, started.elapsed());
                        report.connections += 1;
                        sender = Some(s);
                    }
                    Err(e) => {
                        report.error(format!("{e:#}"));
                        continue;
                    }
                }
            }
            let Some(s) = sender.as_mut() else { continue };
            // Flat out on kept-alive connections, the first request should not
            // carry the handshake; a new tunnel per request always does.
            let due = if self.config.new_tunnel || schedule.interval.is_some() {
                due
            } else {
                due.max(Instant::now())
            };
            if let Err(e) = self.exchange(s, due, &mut report).await {
                report.error(format!("{e:#}"));
                sender = None;
                continue;
            }
            if self.config.new_tunnel {
                match sender.take() {
                    Some(connection) if self.config.keep_tunnels => kept.push(connection),
                    _ => {}
                }
            }
        }
        kept.extend(sender);
        Ok((report, kept))
    }
}

/// Connections kept open after a run ([`run_holding`]); dropping this
/// closes them.
pub struct Held(Vec<Connection>);

impl Held {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs the load and waits for every worker to finish.
pub async fn run(config: LoadConfig) -> anyhow::Result<Report> {
    Ok(run_holding(config).await?.0)
}

/// [`run`], and the kept-alive connections it opened, still open (for
/// measuring what idle connections cost the proxy).
pub async fn run_holding(config: LoadConfig) -> anyhow::Result<(Report, Held)> {
    if config.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    if config.requests.is_none() && config.duration.is_none() {
        bail!("give a request count or a duration");
    }
    let interval = match config.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => Some(Duration::from_secs_f64(1.0 / rate)),
        Some(_) => bail!("the rate must be a positive number of requests per second"),
        None => None,
    };
    let concurrency = config.concurrency;
    let start = Instant::now();
    let schedule = Arc::new(Schedule {
        next: AtomicU64::new(0),
        start,
        limit: config.requests,
        deadline: config.duration.map(|d| start + d),
        interval,
    });
    let driver = Arc::new(Driver::new(config)?);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(driver.clone().worker(schedule.clone())))
        .collect();
    let mut total = Report::new()?;
    let mut held = Vec::new();
    for worker in workers {
        let (report, connections) = worker.await??;
        total.merge(report)?;
        held.extend(connections);
    }
    total.elapsed = start.elapsed();
    Ok((total, Held(held)))
}

/// Asks the origin's `/echo` endpoint, along the same path as the load,
/// which value of header `name` it received: proof that a proxy injected
/// the credential it claims to.
pub async fn echoed_header(config: &LoadConfig, name: &str) -> anyhow::Result<Option<String>> {
    let driver = Driver::new(LoadConfig {
        path: "/echo".to_owned(),
        ..config.clone()
    })?;
    let connection = driver.connect().await?;
    let request = driver.request(connection.target)?;
    let response = match connection.sender {
        Sender::H1(mut s) => s.send_request(request).await?,
        Sender::H2(mut s) => s.send_request(request).await?,
    };
    if !response.status().is_success() {
        bail!("/echo answered {}", response.status());
    }
    let body = response.into_body().collect().await?.to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).context("/echo is not JSON")?;
    Ok(match &echo["headers"][name.to_ascii_lowercase()] {
        serde_json::Value::String(value) => Some(value.clone()),
        serde_json::Value::Array(values) => Some(
            values
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    })
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let number: f64 = number
        .parse()
        .with_context(|| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => bail!("unknown unit in {text:?} (use ms, s or m)"),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        bail!("not a duration: {text:?}");
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3").ok(), Some(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn a_fixed_rate_spaces_requests_and_stops_at_the_deadline() {
        let start = Instant::now();
        let schedule = Schedule {
            next: AtomicU64::new(0),
            start,
            limit: None,
            deadline: Some(start + Duration::from_secs(1)),
            interval: Some(Duration::from_millis(100)),
        };
        let dues: Vec<Instant> = std::iter::from_fn(|| schedule.take()).collect();
        assert_eq!(dues.len(), 10);
        assert_eq!(dues[3] - start, Duration::from_millis(300));
    }

    #[test]
    fn a_request_limit_stops_the_schedule() {
        let schedule = Schedule {
            next: AtomicU64::new(0),
            start: Instant::now(),
            limit: Some(5),
            deadline: None,
            interval: None,
        };
        assert_eq!(std::iter::from_fn(|| schedule.take()).count(), 5);
    }
}
