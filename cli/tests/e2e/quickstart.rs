//! The README's quick start as a new user walks it: `onecli serve` on its
//! defaults (what `scripts/run` starts), then `onecli agents list`, `onecli
//! doctor` and `onecli run -- claude` with nothing configured: no flag, no
//! variable but HOME and PATH. The defaults are fixed ports (10254, 10255,
//! 10256), so everything runs in a network namespace of the test's own,
//! where they are free whatever else this machine runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A network namespace held open by a `sleep` (which ends by itself), and
/// commands run inside it with `nsenter`.
pub struct Netns {
    holder: Child,
    /// Not root: the namespace sits in a user namespace of its own.
    user: bool,
    children: Vec<Child>,
}

impl Netns {
    pub fn new() -> Netns {
        let user = !Command::new("unshare")
            .args(["--net", "true"])
            .status()
            .is_ok_and(|s| s.success());
        let mut cmd = Command::new("unshare");
        if user {
            cmd.arg("--map-root-user");
        }
        let holder = cmd
            .args(["--net", "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let ns = Netns {
            holder,
            user,
            children: Vec::new(),
        };
        // Enter only once the holder is in its new namespace, never ours.
        let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let theirs = format!("/proc/{}/ns/net", ns.holder.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&theirs).ok().is_none_or(|l| l == ours) {
            assert!(Instant::now() < deadline, "unshare made no namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        let up = ns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip (iproute2)");
        assert!(up.success(), "lo up in the namespace");
        ns
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["--target", &self.holder.id().to_string(), "--net"]);
        if self.user {
            cmd.args(["--user", "--preserve-credentials"]);
        }
        cmd.arg("--").arg(program).stdin(Stdio::null());
        cmd
    }
}

impl Netns {
    /// Ends `child` with the namespace.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A new user's HOME: `onecli` and a stub `claude` on PATH, nothing else.
struct NewUser {
    home: tempfile::TempDir,
}

impl NewUser {
    fn new() -> NewUser {
        let home = tempfile::tempdir().expect("tempdir");
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        // The agent: records what it was started with.
        let claude = bin.join("claude");
        std::fs::write(
            &claude,
            "#!/bin/sh\nenv > \"$HOME/claude.env\"\necho \"$@\" > \"$HOME/claude.args\"\n",
        )
        .expect("stub");
        std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        NewUser { home }
    }

    fn path(&self) -> &Path {
        self.home.path()
    }

    /// `program` as this user runs it in `ns`: HOME and PATH only.
    fn command(&self, ns: &Netns, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let onecli_dir = PathBuf::from(env!("CARGO_BIN_EXE_onecli"))
            .parent()
            .expect("bin dir")
            .to_owned();
        let path = format!(
            "{}:{}:/usr/local/bin:/usr/bin:/bin",
            self.path().join("bin").display(),
            onecli_dir.display()
        );
        let mut cmd = ns.command(program);
        cmd.env_clear().env("HOME", self.path()).env("PATH", path);
        cmd
    }

    fn onecli(&self, ns: &Netns, args: &[&str]) -> Output {
        self.command(ns, "onecli")
            .args(args)
            .output()
            .expect("onecli")
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_new_user_serves_then_runs_an_agent_with_nothing_configured() {
    let mut ns = Netns::new();
    let user = NewUser::new();
    let log = user.path().join("serve.log");
    let mut said = String::new(); // everything the CLI printed

    // Before the service ever ran: a clear "no key" naming where it looked.
    let out = user.onecli(&ns, &["agents", "list"]);
    said.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}/.onecli/data/api-key", user.path().display())),
        "{stderr}"
    );

    // `scripts/run`: `onecli serve` on its defaults.
    let serve = user
        .command(&ns, "onecli")
        .args(["serve", "--metrics-listen", "127.0.0.1:10256"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("onecli serve");
    ns.children.push(serve);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = [
            "http://127.0.0.1:10254/v1/health",
            "http://127.0.0.1:10255/readyz",
        ]
        .iter()
        .all(|url| {
            user.command(&ns, "curl")
                .args(["-fsS", "-o", "/dev/null", url])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "onecli serve not ready; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let key_file = user.path().join(".onecli/data/api-key");
    let key = std::fs::read_to_string(&key_file).expect("the admin key in ~/.onecli/data");
    let key = key.trim();
    let mode = std::fs::metadata(&key_file)
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The CLI finds the local service and its key by itself.
    let out = user.onecli(&ns, &["agents", "list"]);
    said.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));

    // doctor passes before the first run: the CA files are a note, not a fault.
    let out = user.onecli(&ns, &["doctor", "--table"]);
    said.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("--   CA written"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");

    // The agent starts behind the gateway.
    let out = user.onecli(&ns, &["run", "--", "claude", "--version"]);
    said.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let env = std::fs::read_to_string(user.path().join("claude.env")).expect("claude ran");
    let proxy = env
        .lines()
        .find_map(|l| l.strip_prefix("HTTPS_PROXY="))
        .expect("HTTPS_PROXY");
    assert!(
        proxy.starts_with("http://x:aoc_") && proxy.ends_with("@127.0.0.1:10255"),
        "{proxy}"
    );
    assert!(env.contains("ONECLI_URL=http://127.0.0.1:10254\n"), "{env}");
    assert!(!env.contains(key), "the admin key reached the agent");
    assert_eq!(
        std::fs::read_to_string(user.path().join("claude.args"))
            .expect("args")
            .trim(),
        "--version"
    );

    // The default agent it ran as is listed now.
    let out = user.onecli(&ns, &["--json", "agents", "list"]);
    said.push_str(&text(&out));
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).expect("agents json");
    assert!(
        agents["data"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["identifier"] == "default")),
        "{agents}"
    );

    // After it, every check is a pass, the CA files included.
    let out = user.onecli(&ns, &["doctor", "--table"]);
    said.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok   ")).count(),
        report.lines().count(),
        "{report}"
    );
    assert!(report.contains("ok   CA in the bundle"), "{report}");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains(key), "the admin key in the service's log");
    assert!(!said.contains(key), "the admin key printed by the CLI");
}
