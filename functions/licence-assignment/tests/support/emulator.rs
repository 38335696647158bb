//! Finds the AWS emulator for the function tests, as `shared/mdops-aws/tests/support` does: the
//! one `scripts/test` started (`MDOPS_TEST_AWS=1` with `AWS_ENDPOINT_URL`), or else moto from the
//! repo's `.venv` (through `shared/mdops-aws/emulator/moto_server.py`) started here on a free
//! 127.0.0.1 port for the life of this process.
//! Never silently skips.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// How long a freshly started moto may take to answer (it is usually up in under a second).
const STARTUP: Duration = Duration::from_secs(30);

/// Where the emulator listens, and whether the standard environment already points at it.
struct Found {
    endpoint: String,
    from_env: bool,
    /// The shell minding moto; held only so it is owned (it ends on its own when we exit).
    _minder: Option<std::process::Child>,
}

static FOUND: OnceLock<Found> = OnceLock::new();

fn find() -> Found {
    if std::env::var("MDOPS_TEST_AWS").as_deref() == Ok("1") {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .expect("MDOPS_TEST_AWS=1 but AWS_ENDPOINT_URL is not set: run the tests through scripts/test");
        return Found {
            endpoint,
            from_env: true,
            _minder: None,
        };
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = crate_dir.join("../../.venv/bin/python");
    let moto = crate_dir.join("../../.venv/bin/moto_server");
    // moto with DynamoDB requests serialized: see emulator/moto_server.py for why.
    let launcher = crate_dir.join("../../shared/mdops-aws/emulator/moto_server.py");
    assert!(
        moto.exists() && python.exists(),
        "the AWS adapter tests need the moto emulator and {} is missing: run scripts/test (it installs \
         moto into .venv and starts it), or start moto_server yourself and set MDOPS_TEST_AWS=1 and AWS_ENDPOINT_URL",
        moto.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port();
    // A small shell keeps moto alive exactly as long as this test process: it polls our pid and
    // kills moto when we are gone (Rust runs no destructors for statics at exit).
    let script = format!(
        "'{}' '{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; trap 'kill $m' EXIT; \
         while kill -0 {} 2>/dev/null; do sleep 1; done",
        python.display(),
        launcher.display(),
        std::process::id()
    );
    let minder = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let deadline = Instant::now() + STARTUP;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on port {port} within {STARTUP:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Found {
        endpoint: format!("http://127.0.0.1:{port}"),
        from_env: false,
        _minder: Some(minder),
    }
}

/// SDK configuration for the emulator: the standard environment when `scripts/test` set it up,
/// otherwise the endpoint of the moto started here with test credentials.
pub async fn sdk_config() -> SdkConfig {
    let found = FOUND.get_or_init(find);
    if found.from_env {
        return mdops_aws::load_sdk_config().await;
    }
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&found.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "mdops-test",
        ))
        .load()
        .await
}

/// A resource prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}
