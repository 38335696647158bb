//! Test support (feature `emulator`): finds the AWS emulator for tests and benchmarks of every
//! crate: the one `scripts/test` started
//! (`MDOPS_TEST_AWS=1` with `AWS_ENDPOINT_URL`), or else moto from the repo's `.venv` (through
//! `emulator/moto_server.py`) started here on a free 127.0.0.1 port for the life of this process.
//! Never silently skips.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{Region, SdkConfig};

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
    let launcher = crate_dir.join("emulator/moto_server.py");
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

/// The emulator's endpoint URL (starting moto if `scripts/test` did not), for child processes
/// that read the standard AWS environment: give them `AWS_ENDPOINT_URL` = this, a region and test
/// credentials ([`child_env`]).
pub fn endpoint() -> String {
    FOUND.get_or_init(find).endpoint.clone()
}

/// The environment a child process (the `mdops` binary, a function) needs to reach the emulator.
pub fn child_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
}

/// SDK configuration for the emulator: the standard environment when `scripts/test` set it up,
/// otherwise the endpoint of the moto started here with test credentials.
pub async fn sdk_config() -> SdkConfig {
    let found = FOUND.get_or_init(find);
    if found.from_env {
        return crate::load_sdk_config().await;
    }
    crate::sdk_loader()
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

/// Plays the part of Lambda's SQS event source mapping against a real queue: receives a batch as
/// an `SqsEvent`, and after the handler ran deletes the records it did not report as failed.
pub struct EventSource {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_secs: i32,
}

impl EventSource {
    /// An event source for the queue at `queue_url`; received records stay invisible for
    /// `visibility_secs` (the function's timeout on AWS).
    pub fn new(sdk: &SdkConfig, queue_url: impl Into<String>, visibility_secs: i32) -> Self {
        EventSource {
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue_url: queue_url.into(),
            visibility_secs,
        }
    }

    /// The SQS client, for tests that send or peek themselves.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    /// One real receive (up to 10 records, 1 s long poll) as a Lambda event; `None` when empty.
    pub async fn receive(&self) -> Option<aws_lambda_events::event::sqs::SqsEvent> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(self.visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive from the emulator");
        let messages = out.messages();
        if messages.is_empty() {
            return None;
        }
        let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
        for m in messages {
            let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
            record.message_id = m.message_id().map(str::to_string);
            record.receipt_handle = m.receipt_handle().map(str::to_string);
            record.body = m.body().map(str::to_string);
            record.event_source = Some("aws:sqs".into());
            for (name, value) in m.attributes().into_iter().flatten() {
                record.attributes.insert(name.as_str().to_string(), value.clone());
            }
            event.records.push(record);
        }
        Some(event)
    }

    /// Deletes the records of `event` that `response` does not list as failed, as Lambda does.
    pub async fn settle(
        &self,
        event: &aws_lambda_events::event::sqs::SqsEvent,
        response: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) {
        for record in &event.records {
            let id = record.message_id.clone().unwrap_or_default();
            if response.batch_item_failures.iter().any(|f| f.item_identifier == id) {
                continue;
            }
            // A record the handler dead-lettered is already gone; a second delete is accepted.
            let _ = self
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                .send()
                .await;
        }
    }
}
