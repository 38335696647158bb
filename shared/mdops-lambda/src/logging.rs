//! Logging for a function.

/// Logs for a function: JSON when the runtime asks for it (`AWS_LAMBDA_LOG_FORMAT=json`), plain
/// otherwise; level from `RUST_LOG` (default `info`).
pub fn init_logging() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).without_time();
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
