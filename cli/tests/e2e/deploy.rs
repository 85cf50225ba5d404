//! `deploy/` checked against the binary: every flag, port, path and
//! environment variable the Kubernetes manifests, the Dockerfile and the
//! compose file use is one `onecli` takes, and the control service and a
//! gateway started with the manifests' own arguments (addresses and mounted
//! paths moved into a scratch folder) answer the probes the manifests name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::{free_port, http_get};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_onecli"))
        .args([subcommand, "--help"])
        .output()
        .expect("onecli --help");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags `onecli SUBCOMMAND` takes, from its help.
fn flags(subcommand: &str) -> BTreeSet<String> {
    help(subcommand)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

/// Every document of every YAML file in `dir`.
fn documents(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !doc.is_null() {
                docs.push(doc);
            }
        }
    }
    docs
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// A workload's one container, with what the checks need.
struct Workload {
    kind: String,
    name: String,
    labels: Value,
    pod: Value,
    container: Value,
}

impl Workload {
    fn subcommand(&self) -> &str {
        let command = self.container["command"].as_sequence().expect("command");
        assert_eq!(s(&command[0]), "onecli", "{}", self.name);
        s(&command[1])
    }

    /// `--flag=value` arguments.
    fn args(&self) -> BTreeMap<String, String> {
        self.container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| {
                let (flag, value) = s(a)
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}: write --flag=value", s(a)));
                (flag.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.container["env"]
            .as_sequence()
            .map(|e| {
                e.iter()
                    .map(|v| (s(&v["name"]).to_owned(), s(&v["value"]).to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn ports(&self) -> BTreeMap<String, u16> {
        self.container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    s(&p["name"]).to_owned(),
                    p["containerPort"].as_u64().expect("port") as u16,
                )
            })
            .collect()
    }

    fn mounts(&self) -> Vec<(String, String)> {
        self.container["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .map(|m| (s(&m["name"]).to_owned(), s(&m["mountPath"]).to_owned()))
            .collect()
    }
}

/// The workloads that run `onecli` (the image built from deploy/Dockerfile).
fn workloads(docs: &[Value]) -> Vec<Workload> {
    all_workloads(docs)
        .into_iter()
        .filter(|w| s(&w.container["image"]) == "onecli")
        .collect()
}

/// Every workload, Redis included.
fn all_workloads(docs: &[Value]) -> Vec<Workload> {
    docs.iter()
        .filter(|d| matches!(s(&d["kind"]), "StatefulSet" | "Deployment"))
        .map(|d| {
            let pod = d["spec"]["template"]["spec"].clone();
            let containers = pod["containers"].as_sequence().expect("containers");
            assert_eq!(containers.len(), 1, "one container a pod");
            Workload {
                kind: s(&d["kind"]).to_owned(),
                name: s(&d["metadata"]["name"]).to_owned(),
                labels: d["spec"]["template"]["metadata"]["labels"].clone(),
                container: containers[0].clone(),
                pod,
            }
        })
        .collect()
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The user the image runs as, from deploy/Dockerfile's `USER`.
fn image_uid() -> u64 {
    let dockerfile = std::fs::read_to_string(format!("{DEPLOY}/Dockerfile")).expect("Dockerfile");
    dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .and_then(|u| u.trim().parse().ok())
        .expect("USER uid:gid")
}

/// Every file a kustomization lists exists, and every manifest is listed.
#[test]
fn kustomizations_list_their_files() {
    for dir in ["kubernetes", "kubernetes/monitoring"] {
        let dir = PathBuf::from(format!("{DEPLOY}/{dir}"));
        let text = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
        let k: Value = serde_yaml::from_str(&text).expect("YAML");
        let listed: BTreeSet<String> = k["resources"]
            .as_sequence()
            .expect("resources")
            .iter()
            .map(|r| s(r).to_owned())
            .collect();
        let present: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(listed, present, "{}", dir.display());
    }
}

#[test]
fn kubernetes_manifests_match_the_binary() {
    let docs = documents(Path::new(&format!("{DEPLOY}/kubernetes")));
    let workloads = workloads(&docs);
    assert_eq!(
        workloads
            .iter()
            .map(|w| (w.kind.as_str(), w.subcommand()))
            .collect::<Vec<_>>(),
        [("StatefulSet", "control"), ("Deployment", "gateway")]
    );
    let listen_flags = ["--listen", "--metrics-listen", "--gateway-api-listen"];
    for w in &workloads {
        let sub = w.subcommand();
        let (known, text) = (flags(sub), help(sub));
        let args = w.args();
        for flag in args.keys() {
            assert!(
                known.contains(flag),
                "{}: `onecli {sub}` has no {flag}",
                w.name
            );
        }
        for name in w.env().keys() {
            assert!(
                text.contains(name),
                "{}: `onecli {sub} --help` never names {name}",
                w.name
            );
        }
        // Each port the process listens on is a named container port, and
        // nothing else is.
        let listened: BTreeSet<u16> = listen_flags
            .iter()
            .filter_map(|f| args.get(*f))
            .map(|a| port_of(a))
            .collect();
        let ports = w.ports();
        assert_eq!(
            ports.values().copied().collect::<BTreeSet<_>>(),
            listened,
            "{}",
            w.name
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            let port = s(&w.container[probe]["httpGet"]["port"]);
            assert!(
                ports.contains_key(port),
                "{}: {probe} names port {port}",
                w.name
            );
        }
        // A read-only root: every path the process is given lies in a mount.
        let mounts = w.mounts();
        let volumes: BTreeSet<String> = w.pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| s(&v["name"]).to_owned())
            .chain(["data".to_owned()])
            .collect();
        for (name, _) in &mounts {
            assert!(volumes.contains(name), "{}: no volume {name}", w.name);
        }
        let env = w.env();
        let paths = args
            .values()
            .chain(env.values())
            .filter(|v| v.starts_with('/'));
        for path in paths {
            assert!(
                mounts.iter().any(|(_, m)| Path::new(path).starts_with(m)),
                "{}: {path} is outside every mount",
                w.name
            );
        }
        assert_eq!(
            w.container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        assert_eq!(
            w.pod["securityContext"]["runAsUser"].as_u64(),
            Some(image_uid())
        );
    }

    // Services select their pods and name their ports.
    let every_workload = all_workloads(&docs);
    for svc in docs.iter().filter(|d| s(&d["kind"]) == "Service") {
        let selected: Vec<&Workload> = every_workload
            .iter()
            .filter(|w| selects(&svc["spec"]["selector"], &w.labels))
            .collect();
        assert_eq!(selected.len(), 1, "{}", s(&svc["metadata"]["name"]));
        for port in svc["spec"]["ports"].as_sequence().expect("ports") {
            let target = s(&port["targetPort"]);
            assert_eq!(
                selected[0].ports().get(target).map(|p| u64::from(*p)),
                port["port"].as_u64(),
                "{}: {target}",
                s(&svc["metadata"]["name"])
            );
        }
    }
    let service = |name: &str| {
        docs.iter()
            .find(|d| s(&d["kind"]) == "Service" && s(&d["metadata"]["name"]) == name)
            .unwrap_or_else(|| panic!("Service {name}"))
    };
    let service_port = |svc: &Value, name: &str| {
        svc["spec"]["ports"]
            .as_sequence()
            .and_then(|p| p.iter().find(|p| s(&p["name"]) == name))
            .and_then(|p| p["port"].as_u64())
            .unwrap_or_else(|| panic!("port {name}"))
    };
    let (control, gateway) = (&workloads[0], &workloads[1]);
    // Gateways reach the control service's gateway API through its Service.
    let url = gateway.args()["--control-url"].clone();
    let control_svc = service("onecli-control");
    assert_eq!(
        url,
        format!(
            "http://{}:{}",
            s(&control_svc["metadata"]["name"]),
            service_port(control_svc, "gateway-api")
        )
    );
    // Agents get the gateway Service as their proxy.
    let gateway_svc = service("onecli-gateway");
    let container_gateway = control.env()["ONECLI_CONTAINER_GATEWAY"].clone();
    assert!(
        container_gateway.starts_with("onecli-gateway."),
        "{container_gateway}"
    );
    assert_eq!(
        u64::from(port_of(&container_gateway)),
        service_port(gateway_svc, "proxy")
    );
    // The gateways count rate limits in the Redis the manifests run.
    let redis_svc = service("onecli-redis");
    assert_eq!(
        gateway.args()["--rate-limit-store"],
        format!(
            "redis://{}:{}",
            s(&redis_svc["metadata"]["name"]),
            service_port(redis_svc, "redis")
        )
    );
    let policy_named = |name: &str| {
        docs.iter()
            .find(|d| s(&d["kind"]) == "NetworkPolicy" && s(&d["metadata"]["name"]) == name)
            .unwrap_or_else(|| panic!("NetworkPolicy {name}"))
    };
    // Only gateways reach Redis.
    let redis = every_workload
        .iter()
        .find(|w| w.name == "onecli-redis")
        .expect("the Redis workload");
    let redis_policy = policy_named("onecli-redis");
    assert!(selects(
        &redis_policy["spec"]["podSelector"]["matchLabels"],
        &redis.labels
    ));
    let rules = redis_policy["spec"]["ingress"]
        .as_sequence()
        .expect("ingress");
    assert_eq!(rules.len(), 1);
    assert!(selects(
        &rules[0]["from"][0]["podSelector"]["matchLabels"],
        &gateway.labels
    ));
    assert_eq!(
        rules[0]["ports"][0]["port"].as_u64(),
        Some(service_port(redis_svc, "redis"))
    );
    // Only gateways reach the gateway API.
    let policy = policy_named("onecli-control");
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        &control.labels
    ));
    let gateway_api = u64::from(port_of(&control.args()["--gateway-api-listen"]));
    for rule in policy["spec"]["ingress"].as_sequence().expect("ingress") {
        let ports: Vec<u64> = rule["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_u64())
            .collect();
        if ports.contains(&gateway_api) {
            let from = rule["from"]
                .as_sequence()
                .expect("a from for the gateway API");
            assert_eq!(from.len(), 1);
            assert!(selects(
                &from[0]["podSelector"]["matchLabels"],
                &gateway.labels
            ));
        }
    }
    // The PodDisruptionBudget and the autoscaler are the gateways'.
    for kind in ["PodDisruptionBudget", "HorizontalPodAutoscaler"] {
        let doc = docs.iter().find(|d| s(&d["kind"]) == kind).expect(kind);
        match kind {
            "PodDisruptionBudget" => assert!(selects(
                &doc["spec"]["selector"]["matchLabels"],
                &gateway.labels
            )),
            _ => assert_eq!(s(&doc["spec"]["scaleTargetRef"]["name"]), gateway.name),
        }
    }
    let replicas = docs
        .iter()
        .find(|d| s(&d["kind"]) == "Deployment" && s(&d["metadata"]["name"]) == gateway.name)
        .and_then(|d| d["spec"]["replicas"].as_u64());
    assert!(replicas >= Some(2));
    // The ServiceMonitor scrapes the Services' metrics port.
    let monitors = documents(Path::new(&format!("{DEPLOY}/kubernetes/monitoring")));
    let monitor = monitors
        .iter()
        .find(|d| s(&d["kind"]) == "ServiceMonitor")
        .expect("ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(s(&endpoint["port"]), "metrics");
    for svc in [control_svc, gateway_svc] {
        assert!(selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &svc["metadata"]["labels"]
        ));
        service_port(svc, "metrics");
    }
}

/// Runs the control service and a gateway with the manifests' arguments
/// and environment, every mounted path moved under a scratch folder and
/// every address onto a free loopback port, then asks each the probes its
/// manifest names.
#[tokio::test(flavor = "multi_thread")]
async fn the_manifests_arguments_start_both_services_and_answer_their_probes() {
    let docs = documents(Path::new(&format!("{DEPLOY}/kubernetes")));
    let workloads = workloads(&docs);
    let root = tempfile::tempdir().expect("tempdir");
    let here = |path: &str| root.path().join(path.trim_start_matches('/'));
    // The Secrets, as deploy/README.md says to make them.
    let pki = onecli_benches::origin::TestPki::new(&["unused.test"]).expect("pki");
    let secrets = [
        (
            "/etc/onecli/secret-key/secret-key",
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".to_owned(),
        ),
        (
            "/etc/onecli/gateway-token/token",
            "ogw_manifest_test_token_0123456789abcdef".to_owned(),
        ),
        ("/etc/onecli/ca/ca.pem", pki.ca_pem.clone()),
        ("/etc/onecli/ca/ca.key", pki.ca_key_pem.clone()),
    ];
    for (path, value) in &secrets {
        std::fs::create_dir_all(here(path).parent().expect("dir")).expect("mkdir");
        std::fs::write(here(path), value).expect("secret");
    }
    // The Redis the gateways count in, as redis.yaml runs it.
    let redis = crate::shared_limits::Redis::start(root.path());
    // (workload, port in the manifest) → the loopback port used here.
    let mut ports: BTreeMap<(String, u16), u16> = BTreeMap::new();
    let mut children = Vec::new();
    for w in &workloads {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecli"));
        cmd.arg(w.subcommand());
        for (flag, value) in w.args() {
            let value = if value.starts_with('/') {
                std::fs::create_dir_all(here(&value).parent().expect("dir")).expect("mkdir");
                here(&value).display().to_string()
            } else if let Some(port) = value
                .strip_prefix("0.0.0.0:")
                .and_then(|p| p.parse::<u16>().ok())
            {
                let local = *ports
                    .entry((w.name.clone(), port))
                    .or_insert_with(free_port);
                format!("127.0.0.1:{local}")
            } else if value.starts_with("redis://onecli-redis:") {
                redis.url()
            } else if let Some(rest) = value.strip_prefix("http://onecli-control:") {
                let port: u16 = rest.parse().expect("port");
                let local = *ports
                    .entry(("onecli-control".to_owned(), port))
                    .or_insert_with(free_port);
                format!("http://127.0.0.1:{local}")
            } else {
                value
            };
            cmd.arg(format!("{flag}={value}"));
        }
        for (name, value) in w.env() {
            let value = if value.starts_with('/') {
                here(&value).display().to_string()
            } else {
                value
            };
            cmd.env(name, value);
        }
        let log = root.path().join(format!("{}.log", w.name));
        cmd.env_remove("ONECLI_SECRET_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        children.push(Child(cmd.spawn().expect("onecli"), log));
        // The control service first, then gateways that subscribe to it.
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &w.container[probe]["httpGet"];
            let port = w.ports()[s(&get["port"])];
            let local = ports[&(w.name.clone(), port)];
            let deadline = Instant::now() + Duration::from_secs(30);
            while !matches!(http_get(local, s(&get["path"])).await, Ok((200, _))) {
                assert!(
                    Instant::now() < deadline,
                    "{}: {probe} {} on {port} never answered 200:\n{}",
                    w.name,
                    s(&get["path"]),
                    children.last().map(Child::log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The metrics ports serve each service's metrics; the gateway API's
    // port serves nothing else.
    for (workload, family) in [
        ("onecli-control", "onecli_control_"),
        ("onecli-gateway", "onecli_gateway_"),
    ] {
        let (status, body) = http_get(ports[&(workload.to_owned(), 10256)], "/metrics")
            .await
            .expect("get");
        assert!(
            status == 200 && body.contains(family),
            "{workload}: {status}"
        );
    }
    // The gateway counts in the manifests' Redis: it has joined the live
    // gateways there.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = Command::new("redis-cli")
            .args(["--no-auth-warning", "-p", &redis.port.to_string()])
            .args(["-a", crate::shared_limits::REDIS_PASSWORD])
            .args(["ZCARD", "onecli:gateways"])
            .output()
            .expect("redis-cli (Debian's redis-tools, with redis-server)");
        if String::from_utf8_lossy(&live.stdout).trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never used Redis:\n{}",
            children.last().map(Child::log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gateway_api = ports[&("onecli-control".to_owned(), 10257)];
    let (status, _) = http_get(gateway_api, "/v1/agents").await.expect("get");
    assert_eq!(status, 404, "the admin API on the gateway API's port");
    // And what gateways call is not on the main port any more.
    let main = ports[&("onecli-control".to_owned(), 10254)];
    for path in [
        "/v1/gateway/policy",
        "/api/gateway/audit",
        "/v1//gateway/approvals/x",
    ] {
        let (status, _) = http_get(main, path).await.expect("get");
        assert_eq!(status, 404, "{path} on the main port");
    }
}

struct Child(std::process::Child, PathBuf);

impl Child {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_image_and_compose_file_match_the_binary() {
    let dockerfile = std::fs::read_to_string(format!("{DEPLOY}/Dockerfile")).expect("Dockerfile");
    let serve = flags("serve");
    let serve_help = help("serve");
    let entrypoint = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    assert_eq!(&entrypoint[..2], ["onecli", "serve"]);
    let mut listened = BTreeSet::new();
    for pair in entrypoint[2..].chunks(2) {
        assert!(serve.contains(&pair[0]), "serve has no {}", pair[0]);
        listened.insert(port_of(&pair[1]));
    }
    let exposed: BTreeSet<u16> = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().expect("port"))
        .collect();
    assert_eq!(exposed, listened);
    for line in dockerfile
        .lines()
        .filter(|l| l.trim_start().starts_with("ONECLI_") || l.starts_with("ENV "))
    {
        let name = line
            .trim_start_matches("ENV ")
            .trim()
            .split('=')
            .next()
            .unwrap_or_default();
        assert!(serve_help.contains(name), "serve never names {name}");
    }
    assert!(dockerfile.contains(r#"CMD ["onecli", "healthcheck"]"#));
    assert!(help("healthcheck").contains("--gateway"));

    let compose: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/compose.yaml")).expect("compose"),
    )
    .expect("YAML");
    let onecli = &compose["services"]["onecli"];
    for (name, _) in onecli["environment"].as_mapping().expect("environment") {
        assert!(
            serve_help.contains(s(name)),
            "serve never names {}",
            s(name)
        );
    }
    for port in onecli["ports"].as_sequence().expect("ports") {
        let inside: u16 = s(port)
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert!(exposed.contains(&inside), "{inside} is not exposed");
    }
    // Prometheus scrapes the one metrics port, where `serve` puts both services'.
    let prometheus: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/prometheus/prometheus.yml"))
            .expect("prometheus.yml"),
    )
    .expect("YAML");
    let target = s(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]);
    let metrics_port = entrypoint
        .iter()
        .position(|a| a == "--metrics-listen")
        .map(|i| port_of(&entrypoint[i + 1]))
        .expect("--metrics-listen");
    assert_eq!(target, format!("onecli:{metrics_port}"));
    // Grafana: the provisioned datasource is the dashboard's, and the
    // dashboard file is where the provider reads.
    let datasource: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!(
            "{DEPLOY}/grafana/provisioning/datasources/prometheus.yml"
        ))
        .expect("datasource"),
    )
    .expect("YAML");
    assert_eq!(s(&datasource["datasources"][0]["type"]), "prometheus");
    assert_eq!(
        s(&datasource["datasources"][0]["url"]),
        "http://prometheus:9090"
    );
    let provider: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!(
            "{DEPLOY}/grafana/provisioning/dashboards/onecli.yml"
        ))
        .expect("provider"),
    )
    .expect("YAML");
    let dashboards = s(&provider["providers"][0]["options"]["path"]);
    let grafana_volumes: Vec<&str> = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(s)
        .collect();
    assert!(grafana_volumes
        .contains(&format!("./grafana/onecli.json:{dashboards}/onecli.json:ro").as_str()));
}
