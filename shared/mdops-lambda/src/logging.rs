//! A function's logs and metrics, both on standard output (which Lambda sends to CloudWatch Logs).
//!
//! - Log lines: JSON when `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's advanced logging controls),
//!   plain otherwise; the level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`, as the
//!   runtime's own initialiser does. A JSON line carries the fields of the spans it was logged in
//!   (a step's `tenant`, `run`, `step`, `attempt`).
//! - Metrics: every event under `mdops_graph::metric::TARGET` becomes one line in CloudWatch's
//!   embedded metric format (EMF), namespace [`NAMESPACE_ENV`] (default `mdops`), dimensions
//!   `Function` and the event's own (e.g. `StepKind`); the spans' fields ride along as properties,
//!   searchable in Logs Insights without costing a metric each.
//!
//! EMF: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::collections::BTreeMap;
use std::io::Write as _;
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, filter};

use mdops_graph::metric::TARGET as METRIC_TARGET;

/// Environment variable naming the CloudWatch namespace of the metrics.
pub const NAMESPACE_ENV: &str = "MDOPS_METRICS_NAMESPACE";
/// The namespace when [`NAMESPACE_ENV`] is not set.
pub const DEFAULT_NAMESPACE: &str = "mdops";

/// How the function logs, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub level: LevelFilter,
    pub json: bool,
    pub namespace: String,
    /// `AWS_LAMBDA_FUNCTION_NAME`: the metrics' `Function` dimension.
    pub function: String,
}

impl LogSettings {
    /// Reads the settings through `var` (the process environment in [`init_logging`]).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let level = var("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| var("RUST_LOG"))
            .and_then(|l| LevelFilter::from_str(&l).ok())
            .unwrap_or(LevelFilter::INFO);
        LogSettings {
            level,
            json: var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
            namespace: var(NAMESPACE_ENV).unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            function: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
        }
    }
}

/// Installs the function's subscriber (logs and metrics to standard output). Call once, first
/// thing in `main`.
pub fn init_logging() {
    let settings = LogSettings::from_vars(|name| std::env::var(name).ok());
    let _ = tracing::subscriber::set_global_default(subscriber(&settings, std::io::stdout, std::io::stdout));
}

/// The subscriber [`init_logging`] installs, writing logs to `logs` and metrics to `metrics`.
pub fn subscriber<L, M>(settings: &LogSettings, logs: L, metrics: M) -> impl Subscriber + Send + Sync
where
    L: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    M: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // RUST_LOG-style directives still refine the level (e.g. `mdops_graph=debug`).
    let env_filter = || {
        EnvFilter::builder()
            .with_default_directive(settings.level.into())
            .from_env_lossy()
    };
    let not_metrics = filter::filter_fn(|meta| meta.target() != METRIC_TARGET);
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(logs);
    let logs = if settings.json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(env_filter())
            .with_filter(not_metrics)
            .boxed()
    } else {
        fmt.with_filter(env_filter()).with_filter(not_metrics).boxed()
    };
    let only_metrics = filter::filter_fn(|meta| meta.is_span() || meta.target() == METRIC_TARGET);
    let emf = EmfLayer {
        namespace: settings.namespace.clone(),
        function: settings.function.clone(),
        writer: metrics,
    }
    .with_filter(only_metrics);
    tracing_subscriber::registry().with(logs).with(emf)
}

/// The fields of a span, kept for the metric lines logged inside it.
struct SpanFields(BTreeMap<String, serde_json::Value>);

#[derive(Default)]
struct JsonFields(BTreeMap<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// Writes metric events as EMF lines.
struct EmfLayer<M> {
    namespace: String,
    function: String,
    writer: M,
}

impl<S, M> Layer<S> for EmfLayer<M>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    M: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = JsonFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.0));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        let mut fields = JsonFields::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id)
            && let Some(kept) = span.extensions_mut().get_mut::<SpanFields>()
        {
            kept.0.extend(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != METRIC_TARGET {
            return;
        }
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let line = emf_line(&self.namespace, &self.function, fields.0, span_properties(event, &ctx));
        if let Some(line) = line {
            let mut w = self.writer.make_writer();
            let _ = writeln!(w, "{line}");
        }
    }
}

/// The fields of every span around `event`, the innermost winning.
fn span_properties<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> BTreeMap<String, serde_json::Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut properties = BTreeMap::new();
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope.from_root() {
            if let Some(kept) = span.extensions().get::<SpanFields>() {
                properties.extend(kept.0.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    properties
}

/// One EMF document for a metric event's fields (`metric`, `dimension`, `value`, `count`), or
/// `None` when the event is not a well-formed metric.
fn emf_line(
    namespace: &str,
    function: &str,
    fields: BTreeMap<String, serde_json::Value>,
    mut properties: BTreeMap<String, serde_json::Value>,
) -> Option<String> {
    let metric = fields.get("metric")?.as_str()?.to_string();
    let count = fields.get("count")?.as_u64()?;
    let mut dimensions = vec!["Function".to_string()];
    properties.insert("Function".into(), function.into());
    if let (Some(name), Some(value)) = (
        fields
            .get("dimension")
            .and_then(|d| d.as_str())
            .filter(|d| !d.is_empty()),
        fields.get("value").and_then(|v| v.as_str()),
    ) {
        dimensions.push(name.to_string());
        properties.insert(name.to_string(), value.into());
    }
    properties.insert(metric.clone(), count.into());
    let mut doc = serde_json::Map::from_iter(properties);
    doc.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        }),
    );
    Some(serde_json::Value::Object(doc).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect()
        }
    }

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn lambda_log_controls_win_over_rust_log_and_default_to_info() {
        let s = LogSettings::from_vars(vars(&[
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "error"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]));
        assert_eq!((s.level, s.json), (LevelFilter::DEBUG, true));
        let s = LogSettings::from_vars(vars(&[("RUST_LOG", "warn")]));
        assert_eq!((s.level, s.json), (LevelFilter::WARN, false));
        let s = LogSettings::from_vars(vars(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]));
        assert_eq!(
            (s.level, s.json, s.namespace.as_str()),
            (LevelFilter::INFO, false, "mdops")
        );
    }

    #[test]
    fn json_lines_carry_the_step_fields_and_metrics_become_emf() {
        let settings = LogSettings::from_vars(vars(&[
            ("AWS_LAMBDA_LOG_FORMAT", "json"),
            ("AWS_LAMBDA_FUNCTION_NAME", "mdops-onboarding-step"),
        ]));
        let (logs, metrics) = (Captured::default(), Captured::default());
        let (l, m) = (logs.clone(), metrics.clone());
        let subscriber = subscriber(&settings, move || l.clone(), move || m.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "step",
                tenant = "t-1",
                run = "r-1",
                step = "group:Test",
                attempt = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("attempt", 2u64);
            tracing::info!("step done");
            mdops_graph::metric::count("StepsDone", Some(("StepKind", "group")), 1);
            tracing::debug!("below the level: not logged");
        });
        let logs = logs.lines();
        assert_eq!(
            logs.len(),
            1,
            "the metric is not a log line, the debug line is filtered: {logs:?}"
        );
        let step = &logs[0]["spans"][0];
        assert_eq!(logs[0]["message"], "step done");
        assert_eq!(
            (&step["tenant"], &step["run"], &step["step"], &step["attempt"]),
            (&"t-1".into(), &"r-1".into(), &"group:Test".into(), &2.into())
        );
        let emf = metrics.lines();
        assert_eq!(emf.len(), 1);
        let doc = &emf[0];
        assert_eq!(doc["StepsDone"], 1);
        assert_eq!(doc["Function"], "mdops-onboarding-step");
        assert_eq!(doc["StepKind"], "group");
        assert_eq!(doc["tenant"], "t-1");
        assert_eq!(doc["attempt"], 2);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "mdops");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Function", "StepKind"]]));
        assert_eq!(
            directive["Metrics"][0],
            serde_json::json!({"Name": "StepsDone", "Unit": "Count"})
        );
        assert!(doc["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    }
}
