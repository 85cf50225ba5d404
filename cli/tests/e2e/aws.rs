//! AWS through the gateway: botocore (the AWS SDK for Python) signs with
//! placeholder keys; the gateway signs again with the real key; a local
//! S3 and Bedrock (`aws_origin.py`) check each signature as AWS does, with
//! botocore's own signer and the real key.

use std::time::Duration;

use onecli_benches::origin::TestPki;
use serde_json::{json, Value};

use crate::harness::{python, PyServer};
use crate::served::Served;

const AKID: &str = "AKIAREALKEYID4ONECLI";
const SECRET: &str = "real/Secret+Access+Key0123456789abcdefwxyz";
const TOKEN: &str = "FwoGZXIvYXdzEREAL+session/token=";
const S3_HOST: &str = "s3.us-east-1.amazonaws.com";
const BEDROCK_HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";

/// The local AWS, its request log on a channel.
fn aws_origin(dir: &std::path::Path, pki: &TestPki) -> PyServer {
    let (cert, key) = (dir.join("aws-cert.pem"), dir.join("aws-key.pem"));
    std::fs::write(&cert, &pki.cert_pem).expect("cert");
    std::fs::write(&key, &pki.key_pem).expect("key");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    PyServer::start("aws_origin.py", &[&cert, &key, AKID, SECRET, TOKEN])
}

/// botocore through the gateway: S3 PUTs with a hashed, an unsigned and a
/// streamed body, GETs of each, and a Bedrock call; one JSON line out.
const CLIENT: &str = r#"
import json, sys, tempfile
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

gateway, token, ca, port = sys.argv[1:5]
session = botocore.session.get_session()

def client(service, host, s3=None, **extra):
    config = Config(proxies={"https": f"http://x:{token}@127.0.0.1:{gateway}"},
                    s3=dict({"addressing_style": "path"}, **(s3 or {})),
                    retries={"max_attempts": 1}, **extra)
    return session.create_client(service, region_name="us-east-1", endpoint_url=f"https://{host}:{port}",
                                 verify=ca, aws_access_key_id="AKIAONECLIPLACEHOLDER",
                                 aws_secret_access_key="placeholder", config=config)

out = {}
try:
    s3 = client("s3", "s3.us-east-1.amazonaws.com")
    hashed = client("s3", "s3.us-east-1.amazonaws.com", s3={"payload_signing_enabled": True},
                    request_checksum_calculation="when_required")
    unsigned = client("s3", "s3.us-east-1.amazonaws.com", s3={"payload_signing_enabled": False},
                      request_checksum_calculation="when_required")
    hashed.put_object(Bucket="b", Key="hashed", Body=b"a body, hashed")
    unsigned.put_object(Bucket="b", Key="unsigned", Body=b"a body, unsigned")
    big = b"streamed upload " * 65536
    with tempfile.TemporaryFile() as f:
        f.write(big)
        f.seek(0)
        s3.put_object(Bucket="b", Key="streamed", Body=f)
    out["hashed"] = s3.get_object(Bucket="b", Key="hashed")["Body"].read().decode()
    out["unsigned"] = s3.get_object(Bucket="b", Key="unsigned")["Body"].read().decode()
    out["streamed"] = s3.get_object(Bucket="b", Key="streamed")["Body"].read() == big
    bedrock = client("bedrock-runtime", "bedrock-runtime.us-east-1.amazonaws.com")
    answer = bedrock.invoke_model(modelId="anthropic.claude-test", body=json.dumps({"prompt": "hi"}),
                                  contentType="application/json", accept="application/json")
    out["bedrock"] = json.loads(answer["body"].read())["completion"]
except ClientError as e:
    out["error"] = e.response["Error"]["Code"]
    out["status"] = e.response["ResponseMetadata"]["HTTPStatusCode"]
print(json.dumps(out))
"#;

fn botocore(s: &Served, token: &str, port: u16) -> Value {
    let out = python(
        CLIENT,
        &[
            &s.gateway_port.to_string(),
            token,
            &s.gateway_ca().display().to_string(),
            &port.to_string(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "botocore: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("botocore's report")
}

#[tokio::test(flavor = "multi_thread")]
async fn botocore_through_the_gateway_is_signed_with_the_real_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&[S3_HOST, BEDROCK_HOST]).expect("pki");
    let aws = aws_origin(dir.path(), &pki);
    let pins: Vec<String> = [S3_HOST, BEDROCK_HOST]
        .iter()
        .map(|h| format!("{h}:{}:127.0.0.1", aws.port))
        .collect();
    let s = Served::start_trusting(
        &["--resolve", &pins[0], "--resolve", &pins[1]],
        Some(&pki.ca_pem),
    )
    .await;
    let (_, token) = s.agent("builder").await;

    let secret = json!({ "name": "AWS", "type": "aws", "value": SECRET, "hostPattern": "*.amazonaws.com",
        "injectionConfig": { "accessKeyId": AKID, "sessionToken": TOKEN } });
    let (status, created) = s.api("POST", "/v1/secrets", Some(secret)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    // Listed by its key id; the token is write-only, the preview the key's.
    let (_, listed) = s.api("GET", &format!("/v1/secrets/{id}"), None).await;
    assert_eq!(listed["injectionConfig"], json!({ "accessKeyId": AKID }));
    assert_eq!(listed["preview"], "••••••••wxyz");
    // Agents get placeholder keys.
    let (_, config) = s
        .api("GET", "/v1/container-config?agent=builder", None)
        .await;
    assert_eq!(config["env"]["AWS_ACCESS_KEY_ID"], "AKIAONECLIPLACEHOLDER");
    assert_eq!(config["env"]["AWS_SECRET_ACCESS_KEY"], "placeholder");

    let report = botocore(&s, &token, aws.port);
    assert_eq!(report["hashed"], "a body, hashed", "{report}");
    assert_eq!(report["unsigned"], "a body, unsigned", "{report}");
    assert_eq!(report["streamed"], true, "{report}");
    assert_eq!(report["bedrock"], "echo: hi", "{report}");
    let seen = aws.seen();
    assert!(
        seen.iter().all(|r| r["error"].is_null()),
        "every signature checked out: {seen:?}"
    );
    let payloads: Vec<&str> = seen
        .iter()
        .map(|r| r["payload"].as_str().unwrap_or("none"))
        .collect();
    // A hashed body, an unsigned one, a streamed one with a trailer, and
    // Bedrock's, which declares no hash: the gateway hashed it.
    assert!(
        payloads.iter().any(|p| p.len() == 64),
        "a hashed payload: {payloads:?}"
    );
    for kind in [
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "none",
    ] {
        assert!(payloads.contains(&kind), "{kind} among {payloads:?}");
    }
    let streamed = seen
        .iter()
        .find(|r| r["payload"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        .expect("streamed");
    assert_eq!(streamed["bytes"], 16 * 65536);

    // With a wrong key stored, AWS (here, its stand-in) refuses.
    // (A new key drops the old token unless one comes with it.)
    let wrong = json!({ "value": "wrong/Secret+Access+Key0123456789abcdefwxyz",
        "injectionConfig": { "accessKeyId": AKID, "sessionToken": TOKEN } });
    let (status, _) = s
        .api("PATCH", &format!("/v1/secrets/{id}"), Some(wrong))
        .await;
    assert_eq!(status, 200);
    let report = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let report = botocore(&s, &token, aws.port);
            if report["error"] == "SignatureDoesNotMatch" {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the wrong key is refused");
    assert_eq!(report["status"], 403);
    assert!(aws
        .seen()
        .iter()
        .any(|r| r["error"] == "SignatureDoesNotMatch"));
    // AWS quotes the signature it was given in its error; the gateway's
    // never reaches the agent, which could replay it for minutes.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
        ])
        .args(["--user", "AKIAONECLIPLACEHOLDER:placeholder"])
        .args([
            "--proxy",
            &format!("http://x:{token}@127.0.0.1:{}", s.gateway_port),
        ])
        .arg("--cacert")
        .arg(s.gateway_ca())
        .arg(format!("https://{S3_HOST}:{}/b/hashed", aws.port))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("<SignatureProvided>onecli-redacted-"),
        "{body}"
    );

    // No key or token in the log.
    let log = std::fs::read_to_string(&s.log_path).expect("log");
    for secret in [SECRET, TOKEN, "wrong/Secret"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_secrets_are_checked_when_made() {
    let s = Served::start().await;
    let bad = [
        json!({ "name": "no id", "type": "aws", "value": SECRET, "hostPattern": "*.amazonaws.com" }),
        json!({ "name": "bad id", "type": "aws", "value": SECRET, "hostPattern": "*.amazonaws.com",
            "injectionConfig": { "accessKeyId": "not-a-key-id" } }),
        json!({ "name": "spaced", "type": "aws", "value": "has a space", "hostPattern": "*.amazonaws.com",
            "injectionConfig": { "accessKeyId": AKID } }),
        json!({ "name": "token alone", "type": "generic", "value": "v", "hostPattern": "api.test",
            "injectionConfig": { "headerName": "x-key", "sessionToken": TOKEN } }),
    ];
    for body in bad {
        let (status, answer) = s.api("POST", "/v1/secrets", Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(!answer.to_string().contains(SECRET));
        assert!(!answer.to_string().contains(TOKEN));
    }
    // A key and its token never become one generic value by a type change.
    let aws = json!({ "name": "AWS", "type": "aws", "value": SECRET, "hostPattern": "*.amazonaws.com",
        "injectionConfig": { "accessKeyId": AKID, "sessionToken": TOKEN } });
    let (_, created) = s.api("POST", "/v1/secrets", Some(aws)).await;
    let id = created["id"].as_str().expect("id");
    let retype = json!({ "type": "generic", "injectionConfig": { "headerName": "x-key" } });
    let (status, _) = s
        .api("PATCH", &format!("/v1/secrets/{id}"), Some(retype))
        .await;
    assert_eq!(status, 400);
    let (_, kept) = s.api("GET", &format!("/v1/secrets/{id}"), None).await;
    assert_eq!(
        (kept["type"].as_str(), kept["preview"].as_str()),
        (Some("aws"), Some("••••••••wxyz"))
    );
}
