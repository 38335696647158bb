//! The functions as Lambda runs them: each release binary built by `scripts/lambda-build`
//! (`target/lambda/<function>/bootstrap`) is started against a local Runtime API this benchmark
//! serves on 127.0.0.1, with the environment the template gives it (table and queue URLs of
//! resources on the AWS emulator). Prints, per function:
//!
//! - the stripped binary's size (target: at most 8 MB);
//! - init: from the process's start to its first `GET /runtime/invocation/next` (target: at most
//!   20 ms), median and spread over `--runs` starts;
//! - warm: per-invocation time of the function's first sample event (`events/`), from the Runtime
//!   API handing it out to the response coming back, median over `--warm` invocations. No sample
//!   calls Graph; SQS and DynamoDB calls go to the emulator and are included;
//! - peak RSS (`VmHWM`) after the warm invocations.
//!
//! `cargo run -p mdops-lambda --example function_bench -- [--runs N] [--warm N] [--dir target/lambda]`

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use mdops_core::queue::{QueueName, QueueSettings};
use tokio::sync::mpsc;

/// Longest a function may take to ask for its first event before the run counts as failed.
const INIT_WITHIN: Duration = Duration::from_secs(10);
/// Longest one warm invocation may take.
const INVOKE_WITHIN: Duration = Duration::from_secs(30);
/// The size target of the issue, in bytes.
const SIZE_TARGET: u64 = 8 * 1024 * 1024;
/// The init target, in milliseconds.
const INIT_TARGET_MS: f64 = 20.0;

/// What the local Runtime API saw.
enum Seen {
    /// A `next` request arrived.
    Next(Instant),
    /// A response (or error) for an invocation arrived.
    Done(Instant, bool),
}

#[derive(Clone)]
struct Api {
    events: Arc<Mutex<VecDeque<Vec<u8>>>>,
    seen: mpsc::UnboundedSender<Seen>,
}

async fn next(State(api): State<Api>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let _ = api.seen.send(Seen::Next(Instant::now()));
    let event = loop {
        if let Some(e) = api.events.lock().unwrap().pop_front() {
            break e;
        }
        // Nothing to hand out: the benchmark kills the process soon; wait as Lambda would.
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut headers = HeaderMap::new();
    let id = uuid::Uuid::new_v4().to_string();
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).unwrap());
    headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-bench"));
    (StatusCode::OK, headers, event)
}

async fn response(State(api): State<Api>, UrlPath(_id): UrlPath<String>, _body: Bytes) -> StatusCode {
    let _ = api.seen.send(Seen::Done(Instant::now(), true));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Api>, UrlPath(_id): UrlPath<String>, body: Bytes) -> StatusCode {
    eprintln!("  invocation error: {}", String::from_utf8_lossy(&body));
    let _ = api.seen.send(Seen::Done(Instant::now(), false));
    StatusCode::ACCEPTED
}

async fn init_error(body: Bytes) -> StatusCode {
    eprintln!("  init error: {}", String::from_utf8_lossy(&body));
    StatusCode::ACCEPTED
}

struct Figures {
    size: u64,
    init_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    records: usize,
    /// Invocations answered with an error (the figures still count them).
    errors: usize,
    peak_rss_kb: Option<u64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The first sample event of a function, and how many records it carries.
fn sample(repo: &Path, function: &str) -> (Vec<u8>, usize) {
    let mut names: Vec<String> = std::fs::read_dir(repo.join("events"))
        .expect("events/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{function}-")) && n.ends_with(".json"))
        .collect();
    names.sort();
    let name = names.first().unwrap_or_else(|| panic!("no events/{function}-*.json"));
    let bytes = std::fs::read(repo.join("events").join(name)).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let records = value["Records"].as_array().map_or(1, |r| r.len());
    (bytes, records)
}

async fn measure(
    binary: &Path,
    env: &HashMap<String, String>,
    event: (Vec<u8>, usize),
    runs: usize,
    warm: usize,
) -> Figures {
    let size = std::fs::metadata(binary).expect("binary").len();
    let mut figures = Figures {
        size,
        init_ms: Vec::new(),
        warm_ms: Vec::new(),
        records: event.1,
        errors: 0,
        peak_rss_kb: None,
    };
    for run in 0..runs {
        // The last run also serves the warm invocations.
        let invocations = if run + 1 == runs { warm } else { 0 };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let api = Api {
            events: Arc::new(Mutex::new((0..invocations).map(|_| event.0.clone()).collect())),
            seen: tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let started = Instant::now();
        let mut child = tokio::process::Command::new(binary)
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the function");
        let pid = child.id().unwrap_or_default();
        match tokio::time::timeout(INIT_WITHIN, rx.recv()).await {
            Ok(Some(Seen::Next(at))) => figures.init_ms.push((at - started).as_secs_f64() * 1e3),
            _ => {
                eprintln!("  {}: no first request within {INIT_WITHIN:?}", binary.display());
                break;
            }
        }
        for _ in 0..invocations {
            let handed_out = Instant::now();
            match tokio::time::timeout(INVOKE_WITHIN, rx.recv()).await {
                Ok(Some(Seen::Done(at, ok))) => {
                    figures.errors += usize::from(!ok);
                    figures.warm_ms.push((at - handed_out).as_secs_f64() * 1e3)
                }
                _ => break,
            }
            // The next `next` request, made as soon as the response went out.
            let _ = tokio::time::timeout(INVOKE_WITHIN, rx.recv()).await;
        }
        if invocations > 0 {
            figures.peak_rss_kb = peak_rss_kb(pid);
        }
        let _ = child.kill().await;
        server.abort();
    }
    figures
}

#[tokio::main]
async fn main() {
    let mut runs = 10usize;
    let mut warm = 20usize;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dir = repo.join("target/lambda");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = value().parse().expect("--runs N"),
            "--warm" => warm = value().parse().expect("--warm N"),
            "--dir" => dir = PathBuf::from(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    let runs = runs.clamp(1, 100);
    let warm = warm.clamp(1, 1_000);

    // Resources on the emulator, named in the environment as the template names them.
    let sdk = mdops_aws::emulator::sdk_config().await;
    let names = mdops_aws::ResourceNames::new(mdops_aws::emulator::unique_prefix()).unwrap();
    let urls = mdops_aws::ensure_resources(&sdk, &names, QueueSettings::default())
        .await
        .expect("create the bench's queues and table on the emulator");
    let mut env: HashMap<String, String> = mdops_aws::emulator::child_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.insert(mdops_aws::TABLE_ENV.into(), names.table());
    for queue in QueueName::ALL {
        env.insert(mdops_aws::queue_url_env(queue), urls[&queue].source.clone());
        env.insert(mdops_aws::dead_letter_url_env(queue), urls[&queue].dead_letter.clone());
    }
    for (k, v) in [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "ERROR"),
        ("MDOPS_ACCESS_AUDIENCE", "api://mdops-bench"),
        ("MDOPS_ACCESS_TENANTS", "5f4d3a2b-9c1e-4b7a-8d6f-0e2c1a3b4d5e"),
    ] {
        env.insert(k.into(), v.into());
    }

    let mut functions: Vec<String> = std::fs::read_dir(repo.join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    functions.sort();
    println!(
        "functions from {} ({runs} starts each, {warm} warm invocations)",
        dir.display()
    );
    println!(
        "{:<22} {:>10} {:>8} {:>22} {:>18} {:>12} {:>7}",
        "function", "size MB", "<= 8MB", "init ms med (min-max)", "warm ms/msg (med)", "peak RSS MB", "errors"
    );
    let mut missing = Vec::new();
    for f in &functions {
        let binary = dir.join(f).join("bootstrap");
        if !binary.exists() {
            missing.push(f.clone());
            continue;
        }
        let mut env = env.clone();
        env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), format!("bench-{f}"));
        let mut fig = measure(&binary, &env, sample(&repo, f), runs, warm).await;
        let (min, max) = fig
            .init_ms
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let init = median(&mut fig.init_ms);
        let per_message = median(&mut fig.warm_ms) / fig.records as f64;
        println!(
            "{:<22} {:>10.2} {:>8} {:>9.1} ({:.1}-{:.1}){} {:>18.2} {:>12.1} {:>7}",
            f,
            fig.size as f64 / 1_048_576.0,
            if fig.size <= SIZE_TARGET { "yes" } else { "NO" },
            init,
            min,
            max,
            if init <= INIT_TARGET_MS { " " } else { "!" },
            per_message,
            fig.peak_rss_kb.map_or(f64::NAN, |kb| kb as f64 / 1024.0),
            fig.errors,
        );
    }
    println!(
        "init target {INIT_TARGET_MS} ms (\"!\" marks a median above it); warm includes the emulator's SQS/DynamoDB round trips, no Graph"
    );
    if !missing.is_empty() {
        println!("not built (run scripts/lambda-build): {}", missing.join(", "));
    }
}
