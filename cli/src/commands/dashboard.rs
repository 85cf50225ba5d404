//! `onecli dashboard`: a one-time sign-in link to the web dashboard, opened
//! in the browser (or printed with `--print`). The link works once, for
//! five minutes; the key that asked for it never appears in it.

use serde_json::Value;

use super::{exit, CliError};
use crate::client::ApiArgs;

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Print the link instead of opening a browser.
    #[arg(long)]
    print: bool,
    /// Print the link as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Opens a browser unless `--print` or `--json`: whatever stdout is, the
/// person who typed `onecli dashboard` wants the dashboard.
pub fn run(args: DashboardArgs) -> Result<(), CliError> {
    let (print, json) = (args.print, args.json);
    let answer: Value = args
        .api
        .client()?
        .call("POST", "/v1/dashboard/links", None)?;
    let url = answer["url"]
        .as_str()
        .ok_or_else(|| CliError::new(exit::GENERAL, "the control service sent no link"))?
        .to_owned();
    if json {
        crate::output::line(format_args!("{answer}"));
        return Ok(());
    }
    let opened = !print && open_in_browser(&url);
    if opened {
        crate::output::line(format_args!(
            "Opened the dashboard in your browser (the link works once)."
        ));
    } else {
        crate::output::line(format_args!("{url}"));
        if !print {
            eprintln!("Open this link in a browser; it works once, for five minutes.");
        }
    }
    Ok(())
}

/// Hands `url` to the desktop's opener, when there is one.
fn open_in_browser(url: &str) -> bool {
    let display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if display {
        "xdg-open"
    } else {
        return false;
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
