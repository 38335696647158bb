//! Counters every crate of mdops emits (steps done, Graph 429s, dead letters, ...), as `tracing`
//! events under one target, [`TARGET`]: the handlers stay free of any metrics backend. On Lambda,
//! `mdops-lambda`'s logging turns each into a CloudWatch embedded-metric-format line; elsewhere
//! they are debug-level log lines. This crate holds them because every other crate depends on it.

/// The `tracing` target of metric events.
pub const TARGET: &str = "mdops::metric";

/// Counts `n` of `metric` (a CloudWatch metric name, e.g. `StepsDone`), split by one dimension
/// (`("StepKind", "group")`) or none.
pub fn count(metric: &'static str, dimension: Option<(&'static str, &str)>, n: u64) {
    let (name, value) = dimension.unwrap_or(("", ""));
    tracing::info!(target: TARGET, metric, dimension = name, value, count = n);
}
