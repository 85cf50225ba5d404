//! `onecli-origin [--plain] [--listen ADDR] [--dir DIR] [HOST…]`: runs the
//! test origin until killed (benchmarks and manual testing).

use std::path::PathBuf;

use onecli_benches::origin::{Origin, Protocols};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut plain, mut dir, mut listen, mut hosts) = (false, PathBuf::from("."), None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plain" => plain = true,
            "--dir" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            "--listen" => listen = args.next(),
            _ => hosts.push(arg),
        }
    }
    if hosts.is_empty() {
        hosts.push("origin.test".to_owned());
    }
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let origin = match (plain, listen) {
        (true, Some(addr)) => Origin::start_plain_on(addr.parse()?).await?,
        (true, None) => Origin::start_plain().await?,
        (false, Some(addr)) => {
            Origin::start_tls_on(&dir, &hosts, Protocols::Both, addr.parse()?).await?
        }
        (false, None) => Origin::start_tls(&dir, &hosts, Protocols::Both).await?,
    };
    println!("{}", origin.addr);
    if let Some(ca) = &origin.ca_path {
        println!("{}", ca.display());
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
