//! `onecli-load`: the benchmark load driver (BENCH.md). HTTPS through an
//! HTTP CONNECT proxy or straight to the origin, HTTP/1.1 or HTTP/2,
//! kept-alive or a new tunnel per request, fixed concurrency or fixed rate;
//! prints throughput and latency percentiles, or JSON with `--json`.
//!
//! `onecli-load https://api.test:8443/small -x http://x:TOKEN@127.0.0.1:10255
//!  --cacert gateway-ca.pem -c 32 -z 10s`

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use onecli_benches::load::{self, LoadConfig};

#[derive(Parser)]
#[command(name = "onecli-load", about = "HTTPS load through a CONNECT proxy")]
struct Args {
    /// `https://host[:port]/path` to request.
    url: String,
    /// CONNECT proxy, `http://[user:password@]host:port`; the credentials go
    /// out as `Proxy-Authorization: Basic`.
    #[arg(short = 'x', long)]
    proxy: Option<String>,
    /// CA bundle that verifies the server certificate.
    #[arg(long)]
    cacert: PathBuf,
    /// `host:port:address`, as curl's: where the origin is when no proxy is
    /// used (the proxy resolves it otherwise).
    #[arg(long)]
    resolve: Option<String>,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Stop after this long (`10s`, `500ms`, `1m`).
    #[arg(short = 'z', long, value_parser = load::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Requests per second across all connections (default: as fast as it goes).
    #[arg(short = 'q', long)]
    rate: Option<f64>,
    /// Speak HTTP/2 (ALPN h2).
    #[arg(long)]
    http2: bool,
    /// A new connection (CONNECT + TLS) for every request.
    #[arg(long)]
    new_tunnel: bool,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Before the run, check through `/echo` that the origin receives this
    /// header with this value (`Name: value`): proof of injection.
    #[arg(long)]
    expect_header: Option<String>,
    /// Key-exchange groups to offer, `:`-separated (`X25519`); default:
    /// BoringSSL's, led by the post-quantum hybrid `X25519MLKEM768`.
    #[arg(long)]
    curves: Option<String>,
    /// Spread connections over this many host names, `n0.HOST` … in turn:
    /// first contact with many hosts.
    #[arg(long, default_value_t = 1)]
    hosts: usize,
    /// After the run, print the report, then keep its connections open and
    /// idle this long before exiting: the kept-alive ones, or with
    /// `--new-tunnel` every tunnel opened (`-c 64 -n 10000 --new-tunnel
    /// --hold 5s` holds 10,000 idle intercepted connections).
    #[arg(long, value_parser = load::parse_duration)]
    hold: Option<std::time::Duration>,
    /// Print the report as JSON (one line).
    #[arg(long)]
    json: bool,
}

/// `https://host[:port]/path` → (host, port, path).
fn split_url(url: &str) -> anyhow::Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("https://")
        .context("the URL must start with https://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().context("port in the URL")?),
        None => (authority, 443),
    };
    if host.is_empty() {
        bail!("no host in {url}");
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// `http://[user:password@]host:port` → (address, credentials).
async fn split_proxy(proxy: &str) -> anyhow::Result<(SocketAddr, Option<String>)> {
    let rest = proxy.strip_prefix("http://").unwrap_or(proxy);
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((auth, hostport)) => (Some(auth.to_owned()), hostport),
        None => (None, rest),
    };
    let addr = tokio::net::lookup_host(hostport)
        .await
        .with_context(|| format!("resolving the proxy {hostport}"))?
        .next()
        .context("the proxy address resolves to nothing")?;
    Ok((addr, auth))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (host, port, path) = split_url(&args.url)?;
    let (connect_to, via_proxy, proxy_auth) = match &args.proxy {
        Some(proxy) => {
            let (addr, auth) = split_proxy(proxy).await?;
            (addr, true, auth)
        }
        None => {
            let addr = match &args.resolve {
                Some(resolve) => {
                    let (_, addr) = resolve
                        .split_once(':')
                        .and_then(|(_, rest)| rest.split_once(':'))
                        .context("--resolve wants host:port:address")?;
                    SocketAddr::new(addr.parse().context("address in --resolve")?, port)
                }
                None => tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .next()
                    .context("the host resolves to nothing")?,
            };
            (addr, false, None)
        }
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("header {h:?} is not `Name: value`"))
        })
        .collect::<anyhow::Result<_>>()?;
    let requests = match (args.requests, args.duration) {
        (None, None) => Some(200),
        (n, _) => n,
    };
    let config = LoadConfig {
        host,
        port,
        path,
        connect_to,
        via_proxy,
        proxy_auth,
        ca_file: args.cacert,
        http2: args.http2,
        new_tunnel: args.new_tunnel,
        keep_tunnels: args.hold.is_some(),
        concurrency: args.concurrency,
        requests,
        duration: args.duration,
        rate: args.rate,
        headers,
        curves: args.curves,
        hosts: args.hosts,
    };
    if let Some(expected) = &args.expect_header {
        let (name, value) = expected
            .split_once(':')
            .map(|(n, v)| (n.trim(), v.trim()))
            .context("--expect-header wants `Name: value`")?;
        match load::echoed_header(&config, name).await? {
            Some(got) if got == value => {}
            Some(_) => bail!("the origin received {name} with another value"),
            None => bail!("the origin did not receive {name}"),
        }
    }
    let (report, held) = load::run_holding(config).await?;
    if args.json {
        let mut json = report.to_json();
        if args.hold.is_some() {
            json["held"] = held.len().into();
        }
        println!("{json}");
    } else {
        print!("{}", report.to_text());
    }
    if let Some(hold) = args.hold {
        if !args.json {
            println!("holding {} connections for {hold:?}", held.len());
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::time::sleep(hold).await;
    }
    drop(held);
    Ok(())
}
