//! Operators' tools over dead letters: find them by queue, tenant, step, error text and age; show
//! one; replay the matching ones to their source queue (dry run, cap, pacing, progress, audit);
//! purge them (only when narrowed by a filter, audited). Behind `mdops dlq`; works on any [`Queue`]
//! and [`Store`], so the same code runs against the embedded backend and against AWS.
//!
//! A replay moves messages in chunks, each one [`Queue::replay`] call: on SQLite a chunk is one
//! transaction; on SQS every move is journalled by the adapter (see `mdops-aws::sqs`), so a replay
//! interrupted at any point and run again loses and duplicates nothing. Every replay and purge
//! writes an audit entry under `dlq:{queue}` before it starts (the ids selected) and one per chunk
//! after it (the ids moved), so an interrupted replay is still accounted for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::queue::{DeadLetter, Queue, QueueError, QueueName};
use mdops_core::store::{AuditEntry, Store, StoreError};
use serde::Serialize;

/// Most dead letters read per queue. The SQS adapter peeks at most 1,000 too; an operator with
/// more than that in one queue has a systemic failure to fix first, then replays the next 1,000.
pub const MAX_DEAD_LETTERS: usize = 1_000;

/// Dead letters moved per [`Queue::replay`] call when no rate is given: small enough that a chunk
/// is a short transaction and the progress bar moves, large enough that SQS peeks stay few.
pub const REPLAY_CHUNK: usize = 50;

/// Highest `--rate`: the worker and the Graph limiter are the real bound; beyond this pacing is
/// pointless and a typo (`--rate 10000`) should be refused rather than obeyed.
pub const MAX_RATE_PER_SECOND: u32 = 100;

/// Errors of the operators' tools.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Writing the audit entry failed (nothing further was moved).
    #[error("audit log: {0}")]
    Store(#[from] StoreError),
    /// A purge must be narrowed by at least one filter.
    #[error(
        "purge needs at least one filter (--tenant, --step, --error, --since or --ids): refusing to purge everything"
    )]
    Unfiltered,
    /// `rate` is out of range.
    #[error("rate {0}/s is out of range: give 1 to {MAX_RATE_PER_SECOND} messages per second")]
    Rate(u32),
}

/// Which dead letters an operator means. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only these queues (empty: all of them).
    pub queues: Vec<QueueName>,
    /// Only dead letters about this tenant (exact id).
    pub tenant: Option<String>,
    /// Only this step or kind of work (exact, e.g. `preflight`, `group:test`, `licence.change`).
    pub step: Option<String>,
    /// Only dead letters whose reason (or any failure in their history) contains this text,
    /// case-insensitively.
    pub error: Option<String>,
    /// Only dead letters that entered the dead-letter queue at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only these dead-letter ids.
    pub ids: Vec<String>,
}

impl DeadLetterFilter {
    /// The queues to look in.
    pub fn queues(&self) -> Vec<QueueName> {
        if self.queues.is_empty() {
            QueueName::ALL.to_vec()
        } else {
            self.queues.clone()
        }
    }

    /// Whether anything beyond the queue narrows the selection (a purge needs that).
    pub fn narrows(&self) -> bool {
        self.tenant.is_some()
            || self.step.is_some()
            || self.error.is_some()
            || self.since.is_some()
            || !self.ids.is_empty()
    }

    /// Whether `dead` is selected.
    pub fn matches(&self, dead: &DeadLetter) -> bool {
        if !self.queues.is_empty() && !self.queues.contains(&dead.source) {
            return false;
        }
        if !self.ids.is_empty() && !self.ids.contains(&dead.id) {
            return false;
        }
        let summary = DeadLetterSummary::of(dead);
        if let Some(t) = &self.tenant
            && summary.tenant.as_deref() != Some(t.as_str())
        {
            return false;
        }
        if let Some(s) = &self.step
            && summary.step.as_deref() != Some(s.as_str())
        {
            return false;
        }
        if let Some(text) = &self.error {
            let text = text.to_lowercase();
            let in_reason = dead
                .failure
                .iter()
                .chain(dead.history.iter())
                .any(|f| f.reason.to_lowercase().contains(&text));
            if !in_reason {
                return false;
            }
        }
        if let Some(since) = self.since
            && dead.dead_lettered_at < since
        {
            return false;
        }
        true
    }
}

/// One dead letter as an operator reads it in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterSummary {
    /// The queue it came from (and goes back to on replay).
    pub queue: QueueName,
    /// Its id in the dead-letter queue (what `show`, `--ids` and the audit log use).
    pub id: String,
    /// From the failure, else from the body (`tenant_id`, or `detail.tenant_id` of an event).
    pub tenant: Option<String>,
    /// From the failure, else from the body (`step`, else `kind`).
    pub step: Option<String>,
    /// The onboarding run the body names, if any.
    pub run_id: Option<String>,
    /// Attempts made before it was dead-lettered.
    pub attempts: u32,
    /// The earliest failure recorded for it.
    pub first_failure: Option<DateTime<Utc>>,
    /// The latest failure recorded for it.
    pub last_failure: Option<DateTime<Utc>>,
    /// When it entered the dead-letter queue.
    pub dead_lettered_at: DateTime<Utc>,
    /// `failed` (a handler gave up) or `max_receives` (the receive limit).
    pub cause: mdops_core::queue::DeadLetterCause,
    /// The failure's reason, or a note that none was recorded.
    pub reason: String,
}

fn body_field(body: &serde_json::Value, name: &str) -> Option<String> {
    body.get(name)
        .or_else(|| body.get("detail").and_then(|d| d.get(name)))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

impl DeadLetterSummary {
    /// The summary of one dead letter.
    pub fn of(dead: &DeadLetter) -> Self {
        let body: serde_json::Value = serde_json::from_str(&dead.body).unwrap_or(serde_json::Value::Null);
        let failure = dead.failure.as_ref().or(dead.history.last());
        let times = dead.history.iter().map(|f| f.at).chain(failure.map(|f| f.at));
        let (first, last) = times.fold(
            (None, None),
            |(lo, hi): (Option<DateTime<Utc>>, Option<DateTime<Utc>>), t| {
                (Some(lo.map_or(t, |lo| lo.min(t))), Some(hi.map_or(t, |hi| hi.max(t))))
            },
        );
        DeadLetterSummary {
            queue: dead.source,
            id: dead.id.clone(),
            tenant: failure
                .and_then(|f| f.tenant.clone())
                .or_else(|| body_field(&body, "tenant_id")),
            step: failure
                .and_then(|f| f.step.clone())
                .or_else(|| body_field(&body, "step"))
                .or_else(|| body_field(&body, "kind")),
            run_id: body_field(&body, "run_id"),
            attempts: failure.map_or(dead.receive_count, |f| f.attempts.max(dead.receive_count)),
            first_failure: first,
            last_failure: last,
            dead_lettered_at: dead.dead_lettered_at,
            cause: dead.cause,
            reason: failure.map_or_else(|| "no failure was recorded".to_string(), |f| f.reason.clone()),
        }
    }
}

/// The dead letters `filter` selects, queue by queue in [`QueueName::ALL`] order, oldest first.
pub async fn list(queue: &dyn Queue, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, OperatorError> {
    let mut out = Vec::new();
    for q in filter.queues() {
        let dead = queue.dead_letters(q, MAX_DEAD_LETTERS).await?;
        out.extend(dead.into_iter().filter(|d| filter.matches(d)));
    }
    Ok(out)
}

/// The dead letter with this id, in whichever queue it is.
pub async fn find(queue: &dyn Queue, id: &str) -> Result<Option<DeadLetter>, OperatorError> {
    for q in QueueName::ALL {
        let dead = queue.dead_letters(q, MAX_DEAD_LETTERS).await?;
        if let Some(d) = dead.into_iter().find(|d| d.id == id) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// The onboarding dead letters whose body names `run_id`.
pub async fn of_run(queue: &dyn Queue, run_id: &str) -> Result<Vec<DeadLetter>, OperatorError> {
    let dead = queue.dead_letters(QueueName::Onboarding, MAX_DEAD_LETTERS).await?;
    Ok(dead
        .into_iter()
        .filter(|d| DeadLetterSummary::of(d).run_id.as_deref() == Some(run_id))
        .collect())
}

/// How a replay runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// List what would move and move nothing (no audit entry either).
    pub dry_run: bool,
    /// Move at most this many (oldest first).
    pub max: Option<usize>,
    /// Move at most this many per second.
    pub rate: Option<u32>,
    /// Who asks (recorded in the audit log).
    pub actor: String,
}

/// What a replay (or its dry run) selected and moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Whether nothing was moved on purpose.
    pub dry_run: bool,
    /// The dead letters selected, after `max`.
    pub selected: Vec<DeadLetterSummary>,
    /// Ids moved back to their source queue (empty on a dry run).
    pub moved: Vec<String>,
    /// Ids selected but no longer there when their turn came (replayed or purged meanwhile).
    pub gone: Vec<String>,
}

/// Progress of a replay: moved (or found gone) so far, out of the total selected.
pub type Progress<'a> = &'a mut (dyn FnMut(usize, usize) + Send);

fn chunk_size(rate: Option<u32>) -> usize {
    rate.map_or(REPLAY_CHUNK, |r| r as usize)
}

/// Replays the dead letters `filter` selects (at most `options.max`), paced by `options.rate`,
/// reporting progress after each chunk.
pub async fn replay(
    queue: &dyn Queue,
    store: &dyn Store,
    filter: &DeadLetterFilter,
    options: &ReplayOptions,
    progress: Progress<'_>,
) -> Result<ReplayReport, OperatorError> {
    if let Some(rate) = options.rate
        && !(1..=MAX_RATE_PER_SECOND).contains(&rate)
    {
        return Err(OperatorError::Rate(rate));
    }
    let mut selected = list(queue, filter).await?;
    if let Some(max) = options.max {
        selected.truncate(max);
    }
    let mut report = ReplayReport {
        dry_run: options.dry_run,
        selected: selected.iter().map(DeadLetterSummary::of).collect(),
        ..ReplayReport::default()
    };
    if options.dry_run || selected.is_empty() {
        return Ok(report);
    }
    let total = selected.len();
    for q in filter.queues() {
        let ids: Vec<String> = selected
            .iter()
            .filter(|d| d.source == q)
            .map(|d| d.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        audit(store, q, &options.actor, "replay.requested", &ids, filter).await?;
        for chunk in ids.chunks(chunk_size(options.rate)) {
            let started = tokio::time::Instant::now();
            let moved = queue.replay(q, chunk).await?;
            audit(store, q, &options.actor, "replayed", &moved, filter).await?;
            report
                .gone
                .extend(chunk.iter().filter(|id| !moved.contains(id)).cloned());
            report.moved.extend(moved);
            progress(report.moved.len() + report.gone.len(), total);
            if options.rate.is_some() && report.moved.len() + report.gone.len() < total {
                tokio::time::sleep_until(started + Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(
        moved = report.moved.len(),
        gone = report.gone.len(),
        actor = options.actor,
        "dead letters replayed"
    );
    Ok(report)
}

/// What a purge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// The dead letters selected.
    pub selected: Vec<DeadLetterSummary>,
    /// Ids deleted for good.
    pub purged: Vec<String>,
}

/// Deletes for good the dead letters `filter` selects; refuses a filter that narrows nothing.
pub async fn purge(
    queue: &dyn Queue,
    store: &dyn Store,
    filter: &DeadLetterFilter,
    actor: &str,
) -> Result<PurgeReport, OperatorError> {
    if !filter.narrows() {
        return Err(OperatorError::Unfiltered);
    }
    let selected = list(queue, filter).await?;
    let mut report = PurgeReport {
        selected: selected.iter().map(DeadLetterSummary::of).collect(),
        purged: Vec::new(),
    };
    for q in filter.queues() {
        let ids: Vec<String> = selected
            .iter()
            .filter(|d| d.source == q)
            .map(|d| d.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        // Audited before, so a purge is on record even if it dies half-way.
        audit(store, q, actor, "purge.requested", &ids, filter).await?;
        let purged = queue.purge(q, &ids).await?;
        audit(store, q, actor, "purged", &purged, filter).await?;
        report.purged.extend(purged);
    }
    Ok(report)
}

/// The audit subject of a queue's dead letters.
pub fn audit_subject(queue: QueueName) -> String {
    format!("dlq:{queue}")
}

async fn audit(
    store: &dyn Store,
    queue: QueueName,
    actor: &str,
    action: &str,
    ids: &[String],
    filter: &DeadLetterFilter,
) -> Result<(), StoreError> {
    store
        .append_audit(AuditEntry {
            subject: audit_subject(queue),
            actor: actor.to_string(),
            action: action.to_string(),
            detail: serde_json::json!({
                "ids": ids,
                "count": ids.len(),
                "filter": {
                    "tenant": filter.tenant,
                    "step": filter.step,
                    "error": filter.error,
                    "since": filter.since,
                },
            }),
            at: Utc::now(),
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdops_core::queue::{DeadLetterCause, Failure};

    fn dead(id: &str, body: &str, reason: Option<&str>) -> DeadLetter {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let failure = reason.map(|r| Failure {
            reason: r.to_string(),
            tenant: None,
            step: None,
            attempts: 2,
            at,
        });
        DeadLetter {
            id: id.into(),
            source: QueueName::Onboarding,
            body: body.into(),
            cause: DeadLetterCause::Failed,
            failure: failure.clone(),
            history: failure.into_iter().collect(),
            receive_count: 1,
            dead_lettered_at: at,
        }
    }

    #[test]
    fn tenant_step_and_run_come_from_the_body_when_the_failure_lacks_them() {
        let d = dead(
            "a",
            r#"{"v":1,"kind":"onboarding.step","run_id":"r1","tenant_id":"t1","step":"preflight","attempt":1}"#,
            Some("Missing permission X"),
        );
        let s = DeadLetterSummary::of(&d);
        assert_eq!(s.tenant.as_deref(), Some("t1"));
        assert_eq!(s.step.as_deref(), Some("preflight"));
        assert_eq!(s.run_id.as_deref(), Some("r1"));
        assert_eq!(s.attempts, 2);
        let event = dead("b", r#"{"detail":{"tenant_id":"t2"}}"#, None);
        let s = DeadLetterSummary::of(&event);
        assert_eq!(s.tenant.as_deref(), Some("t2"));
        assert_eq!(s.reason, "no failure was recorded");
        let garbage = DeadLetterSummary::of(&dead("c", "not json", Some("bad")));
        assert_eq!(garbage.tenant, None);
    }

    #[test]
    fn filters_narrow_by_each_field() {
        let d = dead(
            "a",
            r#"{"run_id":"r1","tenant_id":"t1","step":"preflight"}"#,
            Some("Missing permission DeviceManagementConfiguration.ReadWrite.All"),
        );
        assert!(DeadLetterFilter::default().matches(&d));
        assert!(!DeadLetterFilter::default().narrows());
        let f = |change: &dyn Fn(&mut DeadLetterFilter)| {
            let mut f = DeadLetterFilter::default();
            change(&mut f);
            assert!(f.narrows() || !f.queues.is_empty());
            f.matches(&d)
        };
        assert!(f(&|f| f.tenant = Some("t1".into())));
        assert!(!f(&|f| f.tenant = Some("t2".into())));
        assert!(f(&|f| f.step = Some("preflight".into())));
        assert!(!f(&|f| f.step = Some("group:test".into())));
        assert!(f(&|f| f.error = Some("devicemanagementCONFIGURATION".into())));
        assert!(!f(&|f| f.error = Some("capacity".into())));
        assert!(f(&|f| f.since = Some(d.dead_lettered_at)));
        assert!(!f(
            &|f| f.since = Some(d.dead_lettered_at + chrono::Duration::seconds(1))
        ));
        assert!(f(&|f| f.ids = vec!["a".into()]));
        assert!(!f(&|f| f.ids = vec!["b".into()]));
        assert!(!f(&|f| f.queues = vec![QueueName::Licences]));
    }

    async fn dead_lettered(queue: &dyn Queue, n: usize) -> Vec<String> {
        use mdops_core::queue::OutgoingMessage;
        for i in 0..n {
            queue
                .send(
                    QueueName::Licences,
                    OutgoingMessage::now(format!(r#"{{"tenant_id":"t{}","n":{i}}}"#, i % 2)),
                )
                .await
                .unwrap();
        }
        let got = queue
            .receive(QueueName::Licences, 10, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(got.len(), n);
        for m in &got {
            let why = Failure {
                reason: "capacity exhausted for SKU E5".into(),
                tenant: None,
                step: None,
                attempts: 1,
                at: Utc::now(),
            };
            queue.dead_letter(QueueName::Licences, m, &why).await.unwrap();
        }
        queue
            .dead_letters(QueueName::Licences, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    }

    /// Rate pacing on paused time: 5 moves at 2/s are three chunks with a one-second wait after
    /// each of the first two; the dry run selects exactly what the real replay moves; both the
    /// request and every chunk are audited with the ids.
    #[tokio::test(start_paused = true)]
    async fn a_paced_replay_moves_what_its_dry_run_listed_and_audits_it() {
        let dir = tempfile::tempdir().unwrap();
        let backend = mdops_local::SqliteBackend::open(dir.path().join("db")).unwrap();
        let (queue, store) = (backend.queue(), backend.store());
        let ids = dead_lettered(queue, 6).await;
        let filter = DeadLetterFilter {
            queues: vec![QueueName::Licences],
            tenant: Some("t0".into()),
            ..DeadLetterFilter::default()
        };
        let mut options = ReplayOptions {
            dry_run: true,
            max: None,
            rate: Some(2),
            actor: "ops@contoso.com".into(),
        };
        let mut none = |_: usize, _: usize| {};
        let dry = replay(queue, store, &filter, &options, &mut none).await.unwrap();
        assert_eq!(dry.selected.len(), 3);
        assert!(dry.moved.is_empty());
        assert_eq!(queue.dead_letters(QueueName::Licences, 100).await.unwrap().len(), 6);
        assert!(
            store.audit("dlq:licences", 10).await.unwrap().is_empty(),
            "a dry run is not audited"
        );

        options.dry_run = false;
        options.rate = Some(1);
        let mut seen = Vec::new();
        let mut progress = |done: usize, total: usize| seen.push((done, total));
        let started = tokio::time::Instant::now();
        let real = replay(queue, store, &filter, &options, &mut progress).await.unwrap();
        let took = started.elapsed();
        let listed: Vec<&str> = dry.selected.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            real.moved, listed,
            "the real replay moves exactly what the dry run listed"
        );
        assert_eq!(seen, vec![(1, 3), (2, 3), (3, 3)]);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(3),
            "{took:?}"
        );
        let left: Vec<String> = queue
            .dead_letters(QueueName::Licences, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(left.len(), 3);
        assert!(left.iter().all(|id| ids.contains(id) && !real.moved.contains(id)));
        let audit = store.audit("dlq:licences", 10).await.unwrap();
        assert_eq!(audit[0].action, "replay.requested");
        assert_eq!(audit[0].actor, "ops@contoso.com");
        assert_eq!(audit[0].detail["ids"], serde_json::json!(listed));
        assert_eq!(audit.iter().filter(|a| a.action == "replayed").count(), 3);

        let mut none = |_: usize, _: usize| {};
        let again = replay(queue, store, &filter, &options, &mut none).await.unwrap();
        assert!(again.selected.is_empty(), "nothing of t0 is left to replay");

        let capped = ReplayOptions {
            max: Some(2),
            rate: None,
            ..options.clone()
        };
        let mut none = |_: usize, _: usize| {};
        let all = DeadLetterFilter {
            queues: vec![QueueName::Licences],
            ..DeadLetterFilter::default()
        };
        assert_eq!(
            replay(queue, store, &all, &capped, &mut none)
                .await
                .unwrap()
                .moved
                .len(),
            2
        );
        assert!(matches!(
            replay(
                queue,
                store,
                &all,
                &ReplayOptions {
                    rate: Some(0),
                    ..capped
                },
                &mut none
            )
            .await,
            Err(OperatorError::Rate(0))
        ));
    }

    #[tokio::test]
    async fn a_purge_needs_a_filter_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let backend = mdops_local::SqliteBackend::open(dir.path().join("db")).unwrap();
        let (queue, store) = (backend.queue(), backend.store());
        dead_lettered(queue, 4).await;
        let everything = DeadLetterFilter::default();
        assert!(matches!(
            purge(queue, store, &everything, "ops").await,
            Err(OperatorError::Unfiltered)
        ));
        let t1 = DeadLetterFilter {
            tenant: Some("t1".into()),
            ..DeadLetterFilter::default()
        };
        let report = purge(queue, store, &t1, "ops").await.unwrap();
        assert_eq!(report.purged.len(), 2);
        assert_eq!(queue.dead_letters(QueueName::Licences, 100).await.unwrap().len(), 2);
        let audit = store.audit("dlq:licences", 10).await.unwrap();
        assert_eq!(
            audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
            ["purge.requested", "purged"]
        );
        assert_eq!(audit[1].detail["ids"], serde_json::json!(report.purged));
    }
}

/// What `mdops onboard --adopt` did: the allowances it recorded and the failed account steps of
/// the tenant's current run it sent again, each with its attempts so far (the step has run again
/// once its attempts grew).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdoptReport {
    pub allowed: Vec<String>,
    pub replayed: Vec<(String, u32)>,
}

/// Allows onboarding to adopt the existing objects `object_ids` of `tenant` (each allowance
/// audited under `tenant:{tid}` with `actor` and the time), then replays the dead-lettered
/// account steps of the tenant's current run, which fail on exactly such objects.
pub async fn adopt(
    queue: &dyn Queue,
    store: &dyn Store,
    runs: &mdops_core::onboarding::runs::Runs<'_>,
    tenant: &mdops_core::tenant::TenantId,
    object_ids: &[String],
    actor: &str,
    now: DateTime<Utc>,
) -> Result<AdoptReport, OperatorError> {
    use mdops_core::onboarding::runs::StepStatus;
    let adoptions = mdops_core::onboarding::adoption::Adoptions::new(store);
    for id in object_ids {
        adoptions.allow(tenant, id, actor, now).await?;
    }
    let mut report = AdoptReport {
        allowed: object_ids.to_vec(),
        replayed: Vec::new(),
    };
    let Some(view) = runs.current(tenant).await? else {
        return Ok(report);
    };
    let failed_accounts: Vec<(String, u32)> = view
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed && s.name.starts_with("account:"))
        .map(|s| (s.name.clone(), s.attempts))
        .collect();
    if failed_accounts.is_empty() {
        return Ok(report);
    }
    let dead: Vec<DeadLetter> = of_run(queue, &view.run.run_id)
        .await?
        .into_iter()
        .filter(|d| {
            DeadLetterSummary::of(d)
                .step
                .is_some_and(|step| failed_accounts.iter().any(|(name, _)| *name == step))
        })
        .collect();
    let ids: Vec<String> = dead.iter().map(|d| d.id.clone()).collect();
    if ids.is_empty() {
        return Ok(report);
    }
    let filter = DeadLetterFilter {
        queues: vec![QueueName::Onboarding],
        tenant: Some(tenant.to_string()),
        ..DeadLetterFilter::default()
    };
    audit(store, QueueName::Onboarding, actor, "replay.requested", &ids, &filter).await?;
    let moved = queue.replay(QueueName::Onboarding, &ids).await?;
    audit(store, QueueName::Onboarding, actor, "replayed", &moved, &filter).await?;
    let moved_steps: Vec<String> = dead
        .iter()
        .filter(|d| moved.contains(&d.id))
        .filter_map(|d| DeadLetterSummary::of(d).step)
        .collect();
    report.replayed = failed_accounts
        .into_iter()
        .filter(|(name, _)| moved_steps.contains(name))
        .collect();
    Ok(report)
}
