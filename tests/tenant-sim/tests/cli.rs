//! The `tenant-sim` binary: prints its URL as the first line of stdout, seeds from a JSON file
//! (the example file in `examples/`), serves until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Bound on the binary's start-up (RSA key generation for two tenants included).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Kills the child when the test ends, passing or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_url_first_and_serves_the_seeded_tenants() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.json");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_tenant-sim"))
            .args(["--listen", "127.0.0.1:0", "--tenants", examples])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let first_line = tokio::time::timeout(
        STARTUP_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("URL printed in time")
    .expect("reader task")
    .expect("stdout reads");
    let url = first_line.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with('/'),
        "first line: {url:?}"
    );

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let resp: Value = http
        .post(format!("{url}/contoso.example/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "6b1f0b1e-1d5c-4c1a-9f0e-2a7d3c4b5e6f"),
            ("client_secret", "rehearsal-secret-change-me"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("json");
    let token = resp["access_token"].as_str().expect("token issued");
    let users: Value = http
        .get(format!("{url}/v1.0/users?$select=userPrincipalName"))
        .bearer_auth(token)
        .send()
        .await
        .expect("graph")
        .json()
        .await
        .expect("json");
    let upns: Vec<&str> = users["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|u| u["userPrincipalName"].as_str())
        .collect();
    assert_eq!(
        upns,
        [
            "admin@contoso.onmicrosoft.com",
            "adele.vance@contoso.onmicrosoft.com",
            "no.location@contoso.example"
        ]
    );

    let tenants: Value = http
        .get(format!("{url}/_sim/tenants"))
        .send()
        .await
        .expect("control")
        .json()
        .await
        .expect("json");
    assert_eq!(tenants.as_array().map(Vec::len), Some(2));

    // SIGTERM ends it cleanly (exit status 0) within a bounded wait.
    let pid = child.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.0.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exited.expect("exits within 5 s of SIGTERM").success());
}
