//! Onboarding runs and their steps in the state store, and every transition between states.
//!
//! Layout (see `docs/onboarding.md`): the tenant's pointer `tenant#{tid}/onboarding` names its
//! current run; a run lives in partition `run#{run_id}`: the run record (`run`) and one record per
//! step (`step#{name}`). Runs are in the `runs` collection sorted by tenant, so listing a tenant's
//! runs is an index read. A step that is released or running has a *deadline* in the due index
//! (kind [`STEP_DEADLINE_KIND`]): if it is still not finished by then its message is sent again.
//!
//! Every transition is a conditional write on the version that was read, so two deliveries of one
//! message, or two workers, can never both start, finish or release the same step.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StepMessage;
use super::plan::PlannedStep;
use crate::store::{
    AuditEntry, CollectionEntry, Condition, DueEntry, Key, NewRecord, Record, Store, StoreError, Write,
};
use crate::tenant::TenantId;

/// Due-index kind of step deadlines.
pub const STEP_DEADLINE_KIND: &str = "onboarding-step";
const RUNS_COLLECTION: &str = "runs";
/// Conditional writes lost to a concurrent writer are retried this many times before giving up
/// (each loss means someone else made progress, so this is never reached in practice).
const MAX_CONFLICT_RETRIES: usize = 16;

/// Timing of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSettings {
    /// How long a started step is presumed alive before another delivery may take it over. Each
    /// attempt is stopped at [`RunSettings::step_budget`], well inside it.
    pub lease: Duration,
    /// How long after a step is released (or its retry is due) its message must have started it,
    /// before the message is presumed lost and sent again.
    pub grace: Duration,
    /// Attempts after which a step that keeps asking for a retry is failed for an operator.
    pub max_attempts: u32,
}

impl RunSettings {
    /// The longest one attempt of a step may work: three quarters of its lease, leaving the rest
    /// to record the outcome before another delivery may take the step over. A step still working
    /// at its budget is stopped (and retried), so two holders never run one step side by side.
    pub fn step_budget(&self) -> Duration {
        self.lease * 3 / 4
    }
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            lease: Duration::from_secs(120),
            grace: Duration::from_secs(60),
            max_attempts: 10,
        }
    }
}

/// Status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Waiting for its dependencies.
    Blocked,
    /// Released; its message is (or is about to be) in the queue.
    Ready,
    /// A delivery holds it.
    Running,
    Done,
    /// Failed permanently; its message is in the dead-letter queue with the reason.
    Failed,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub deps: Vec<String>,
    /// Attempts started so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What the step recorded when done (object ids, whether it wrote).
    pub output: Option<serde_json::Value>,
    pub released_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the step must have progressed by; `None` when blocked, done or failed.
    pub deadline: Option<DateTime<Utc>>,
    /// Not to be started before this time (a retry's `Retry-After`).
    pub not_before: Option<DateTime<Utc>>,
    /// Retries asked for by the step (throttling, transient errors).
    pub retries: u32,
    /// When an attempt that may have written to the tenant last ended without completing (a
    /// retry after a create that timed out, a holder that died): a create may be in flight.
    #[serde(default)]
    pub last_write_attempt: Option<DateTime<Utc>>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub tenant_id: TenantId,
    pub generation: u32,
    pub created_at: DateTime<Utc>,
    /// Who or what started it (`event:TenantEnrolled`, `cli:alice`).
    pub requested_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pointer {
    run_id: String,
    generation: u32,
}

/// Overall state of a run, derived from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

/// A run with its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub run: RunRecord,
    pub steps: Vec<StepRecord>,
}

impl RunView {
    /// Succeeded when every step is done; failed when any step failed; running otherwise.
    pub fn status(&self) -> RunStatus {
        if self.steps.iter().all(|s| s.status == StepStatus::Done) {
            RunStatus::Succeeded
        } else if self.steps.iter().any(|s| s.status == StepStatus::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Running
        }
    }

    /// When the last step finished, if all are done.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        if self.status() != RunStatus::Succeeded {
            return None;
        }
        self.steps.iter().filter_map(|s| s.finished_at).max()
    }

    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// What an enrollment did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enrollment {
    /// A new run was created; send these root-step messages.
    Created { run_id: String, messages: Vec<StepMessage> },
    /// The tenant already has a run in progress (or failed and awaiting an operator); joined it.
    Joined { run_id: String },
}

impl Enrollment {
    /// The run enrolled into.
    pub fn run_id(&self) -> &str {
        match self {
            Enrollment::Created { run_id, .. } | Enrollment::Joined { run_id } => run_id,
        }
    }
}

/// What a delivery of a step message may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// Run the step: this delivery holds it as attempt `attempt`. `deps` holds the outputs of the
    /// steps it depends on.
    Run {
        attempt: u32,
        deps: BTreeMap<String, serde_json::Value>,
        run: RunRecord,
        /// When an earlier attempt may have written without completing: a step whose create
        /// may not have replicated yet waits out the lag window before creating again.
        last_write_attempt: Option<DateTime<Utc>>,
    },
    /// The step is already done: acknowledge the message.
    AlreadyDone,
    /// Another delivery holds the step until `until`: acknowledge this one (the deadline re-sends
    /// the step if the holder dies).
    Busy { until: DateTime<Utc> },
    /// The step must not start before `until` (a retry's wait that is longer than a queue delay).
    NotYet { until: DateTime<Utc> },
    /// The message cannot be carried out: no such run or step, or the step is still blocked.
    Refused { reason: String },
}

/// What a step asks for when it wants another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAsk<'a> {
    /// Why, recorded as the step's last error.
    pub reason: &'a str,
    /// How long to wait (Graph's `Retry-After` when it gave one).
    pub delay: Duration,
    /// Whether the attempt got as far as writing (a create may be in flight).
    pub write_attempted: bool,
}

/// What [`Runs::retry`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Send this message after `delay`.
    Scheduled { message: StepMessage, delay: Duration },
    /// Attempts are used up; the step is now failed with this reason (dead-letter the message).
    GaveUp { reason: String },
    /// This delivery no longer holds the step (it was taken over); just acknowledge.
    Stale,
}

/// Errors of the run repository.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {MAX_CONFLICT_RETRIES} conflicting writes on {0}")]
    Contended(Key),
}

/// Onboarding runs over a state store.
pub struct Runs<'a> {
    store: &'a dyn Store,
    settings: RunSettings,
}

fn pointer_key(tenant: &TenantId) -> Key {
    Key::new(format!("tenant#{tenant}"), "onboarding")
}

fn run_partition(run_id: &str) -> String {
    format!("run#{run_id}")
}

fn step_key(run_id: &str, step: &str) -> Key {
    Key::new(run_partition(run_id), format!("step#{step}"))
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("run records always serialise")
}

fn decode<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, StoreError> {
    crate::json::from_value(record.body.clone()).map_err(|reason| StoreError::Corrupt {
        key: record.key.clone(),
        reason,
    })
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn step_record(run_id: &str, step: &StepRecord) -> NewRecord {
    NewRecord {
        key: step_key(run_id, &step.name),
        body: to_value(step),
        collection: None,
        due: step.deadline.map(|at| DueEntry {
            kind: STEP_DEADLINE_KIND.into(),
            at,
        }),
    }
}

/// One read of a run's partition: the run, its steps, and their versions.
struct Loaded {
    run: RunRecord,
    steps: BTreeMap<String, (u64, StepRecord)>,
}

impl<'a> Runs<'a> {
    /// Runs over `store`.
    pub fn new(store: &'a dyn Store, settings: RunSettings) -> Self {
        Runs { store, settings }
    }

    async fn load(&self, run_id: &str) -> Result<Option<Loaded>, StoreError> {
        let records = self.store.query(&run_partition(run_id), "").await?;
        let mut run = None;
        let mut steps = BTreeMap::new();
        for record in &records {
            if record.key.sort == "run" {
                run = Some(decode::<RunRecord>(record)?);
            } else if record.key.sort.starts_with("step#") {
                let step: StepRecord = decode(record)?;
                steps.insert(step.name.clone(), (record.version, step));
            }
        }
        Ok(run.map(|run| Loaded { run, steps }))
    }

    /// Starts a run for the tenant, or joins the one it has unless that one succeeded.
    pub async fn enroll(
        &self,
        tenant: &TenantId,
        plan: &[PlannedStep],
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<Enrollment, RunError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let pointer = self.store.get(&pointer_key(tenant)).await?;
            let (generation, condition) = match &pointer {
                Some(record) => {
                    let p: Pointer = decode(record)?;
                    let current = self.get(&p.run_id).await?;
                    if current.as_ref().is_some_and(|v| v.status() != RunStatus::Succeeded) {
                        return Ok(Enrollment::Joined { run_id: p.run_id });
                    }
                    (p.generation + 1, Condition::Version(record.version))
                }
                None => (1, Condition::Absent),
            };
            let run_id = format!("{tenant}.{generation}");
            let run = RunRecord {
                run_id: run_id.clone(),
                tenant_id: tenant.clone(),
                generation,
                created_at: now,
                requested_by: requested_by.to_string(),
            };
            let mut writes = vec![
                Write::Put {
                    record: NewRecord {
                        key: pointer_key(tenant),
                        body: to_value(&Pointer {
                            run_id: run_id.clone(),
                            generation,
                        }),
                        collection: None,
                        due: None,
                    },
                    condition,
                },
                Write::Put {
                    record: NewRecord {
                        key: Key::new(run_partition(&run_id), "run"),
                        body: to_value(&run),
                        collection: Some(CollectionEntry {
                            name: RUNS_COLLECTION.into(),
                            sort: format!("{tenant}#{generation:06}"),
                        }),
                        due: None,
                    },
                    condition: Condition::Absent,
                },
            ];
            let mut messages = Vec::new();
            for planned in plan {
                let root = planned.deps.is_empty();
                let step = StepRecord {
                    name: planned.kind.name(),
                    status: if root { StepStatus::Ready } else { StepStatus::Blocked },
                    deps: planned.deps.iter().map(|d| d.name()).collect(),
                    attempts: 0,
                    last_error: None,
                    output: None,
                    released_at: root.then_some(now),
                    started_at: None,
                    finished_at: None,
                    deadline: root.then(|| after(now, self.settings.grace)),
                    not_before: None,
                    retries: 0,
                    last_write_attempt: None,
                };
                if root {
                    messages.push(StepMessage::new(&run_id, tenant, &step.name, 1));
                }
                writes.push(Write::Put {
                    record: step_record(&run_id, &step),
                    condition: Condition::Absent,
                });
            }
            match self.store.transact(writes).await {
                Ok(()) => {
                    self.audit(
                        &run_id,
                        requested_by,
                        "run.created",
                        serde_json::json!({ "tenant_id": tenant, "steps": plan.len() }),
                        now,
                    )
                    .await?;
                    return Ok(Enrollment::Created { run_id, messages });
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Contended(pointer_key(tenant)))
    }

    /// Tries to take a step for this delivery.
    pub async fn begin(&self, message: &StepMessage, now: DateTime<Utc>) -> Result<Begin, RunError> {
        let key = step_key(&message.run_id, &message.step);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(loaded) = self.load(&message.run_id).await? else {
                return Ok(Begin::Refused {
                    reason: format!("run {} does not exist", message.run_id),
                });
            };
            if loaded.run.tenant_id != message.tenant_id {
                return Ok(Begin::Refused {
                    reason: format!(
                        "run {} belongs to tenant {}, not {}",
                        message.run_id, loaded.run.tenant_id, message.tenant_id
                    ),
                });
            }
            let Some((version, step)) = loaded.steps.get(&message.step) else {
                return Ok(Begin::Refused {
                    reason: format!("run {} has no step {}", message.run_id, message.step),
                });
            };
            match step.status {
                StepStatus::Done => return Ok(Begin::AlreadyDone),
                StepStatus::Blocked => {
                    let waiting: Vec<&str> = step
                        .deps
                        .iter()
                        .filter(|d| loaded.steps.get(*d).is_none_or(|(_, s)| s.status != StepStatus::Done))
                        .map(String::as_str)
                        .collect();
                    return Ok(Begin::Refused {
                        reason: format!("step {} is still waiting for {}", step.name, waiting.join(", ")),
                    });
                }
                StepStatus::Running if step.deadline.is_some_and(|d| d > now) => {
                    return Ok(Begin::Busy {
                        until: step.deadline.unwrap_or(now),
                    });
                }
                StepStatus::Ready if step.not_before.is_some_and(|t| t > now) => {
                    return Ok(Begin::NotYet {
                        until: step.not_before.unwrap_or(now),
                    });
                }
                // Ready; Running whose holder's lease ran out; Failed and delivered again (a replay).
                StepStatus::Ready | StepStatus::Running | StepStatus::Failed => {}
            }
            let mut next = step.clone();
            if step.status == StepStatus::Running {
                // Taking over from a holder whose lease ran out: it may have been mid-create.
                next.last_write_attempt = next.last_write_attempt.max(step.started_at);
            }
            next.status = StepStatus::Running;
            next.attempts += 1;
            next.started_at = Some(now);
            next.deadline = Some(after(now, self.settings.lease));
            next.not_before = None;
            let write = Write::Put {
                record: step_record(&message.run_id, &next),
                condition: Condition::Version(*version),
            };
            match self.store.transact(vec![write]).await {
                Ok(()) => {
                    let deps = step
                        .deps
                        .iter()
                        .filter_map(|d| {
                            loaded
                                .steps
                                .get(d)
                                .and_then(|(_, s)| s.output.clone().map(|o| (d.clone(), o)))
                        })
                        .collect();
                    return Ok(Begin::Run {
                        attempt: next.attempts,
                        deps,
                        run: loaded.run,
                        last_write_attempt: next.last_write_attempt,
                    });
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Contended(key))
    }

    /// Records a step as done with its output and, in the same transaction, releases every
    /// dependent whose dependencies are now all done. Returns the messages to send for them
    /// (empty if this delivery no longer held the step).
    pub async fn complete(
        &self,
        run_id: &str,
        step: &str,
        attempt: u32,
        output: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Vec<StepMessage>, RunError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(loaded) = self.load(run_id).await? else {
                return Ok(vec![]);
            };
            let Some((version, current)) = loaded.steps.get(step) else {
                return Ok(vec![]);
            };
            if current.status != StepStatus::Running || current.attempts != attempt {
                // Taken over by another delivery, which will finish it.
                return Ok(vec![]);
            }
            let mut done = current.clone();
            done.status = StepStatus::Done;
            done.output = Some(output.clone());
            done.finished_at = Some(now);
            done.deadline = None;
            done.last_error = None;
            let mut writes = vec![Write::Put {
                record: step_record(run_id, &done),
                condition: Condition::Version(*version),
            }];
            let mut released = Vec::new();
            for (name, (dep_version, dependent)) in &loaded.steps {
                if dependent.status != StepStatus::Blocked || !dependent.deps.iter().any(|d| d == step) {
                    continue;
                }
                let ready = dependent
                    .deps
                    .iter()
                    .all(|d| d == step || loaded.steps.get(d).is_some_and(|(_, s)| s.status == StepStatus::Done));
                if ready {
                    writes.push(Write::Put {
                        record: step_record(run_id, &self.released(dependent, now)),
                        condition: Condition::Version(*dep_version),
                    });
                    released.push(StepMessage::new(run_id, &loaded.run.tenant_id, name, 1));
                }
            }
            match self.store.transact(writes).await {
                Ok(()) => {
                    // A dependent whose other dependency finished concurrently was seen as still
                    // blocked by both transactions; whoever commits last releases it here.
                    released.extend(self.release_ready(run_id, now).await?);
                    return Ok(released);
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Contended(step_key(run_id, step)))
    }

    fn released(&self, step: &StepRecord, now: DateTime<Utc>) -> StepRecord {
        let mut next = step.clone();
        next.status = StepStatus::Ready;
        next.released_at = Some(now);
        next.deadline = Some(after(now, self.settings.grace));
        next
    }

    /// Releases every blocked step of the run whose dependencies are all done; returns their
    /// messages. Each release is a conditional write, so only one caller sends a given step.
    pub async fn release_ready(&self, run_id: &str, now: DateTime<Utc>) -> Result<Vec<StepMessage>, RunError> {
        let Some(loaded) = self.load(run_id).await? else {
            return Ok(vec![]);
        };
        let mut released = Vec::new();
        for (name, (version, step)) in &loaded.steps {
            let ready = step.status == StepStatus::Blocked
                && step
                    .deps
                    .iter()
                    .all(|d| loaded.steps.get(d).is_some_and(|(_, s)| s.status == StepStatus::Done));
            if !ready {
                continue;
            }
            let write = Write::Put {
                record: step_record(run_id, &self.released(step, now)),
                condition: Condition::Version(*version),
            };
            match self.store.transact(vec![write]).await {
                Ok(()) => released.push(StepMessage::new(run_id, &loaded.run.tenant_id, name, 1)),
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(released)
    }

    /// Puts a running step back to ready after a throttled or transient failure, to start again
    /// after `delay` — or fails it when its attempts are used up.
    pub async fn retry(
        &self,
        run_id: &str,
        step: &str,
        attempt: u32,
        ask: &RetryAsk<'_>,
        now: DateTime<Utc>,
    ) -> Result<RetryDecision, RunError> {
        let RetryAsk {
            reason,
            delay,
            write_attempted,
        } = *ask;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(loaded) = self.load(run_id).await? else {
                return Ok(RetryDecision::Stale);
            };
            let Some((version, current)) = loaded.steps.get(step) else {
                return Ok(RetryDecision::Stale);
            };
            if current.status != StepStatus::Running || current.attempts != attempt {
                return Ok(RetryDecision::Stale);
            }
            let mut next = current.clone();
            next.last_error = Some(reason.to_string());
            next.retries += 1;
            if write_attempted {
                next.last_write_attempt = Some(now);
            }
            let decision = if current.attempts >= self.settings.max_attempts {
                let why = format!("gave up after {} attempts; last error: {reason}", current.attempts);
                next.status = StepStatus::Failed;
                next.last_error = Some(why.clone());
                next.deadline = None;
                next.finished_at = Some(now);
                RetryDecision::GaveUp { reason: why }
            } else {
                let start = after(now, delay);
                next.status = StepStatus::Ready;
                next.not_before = Some(start);
                next.deadline = Some(after(start, self.settings.grace));
                RetryDecision::Scheduled {
                    message: StepMessage::new(run_id, &loaded.run.tenant_id, step, attempt + 1),
                    delay,
                }
            };
            let write = Write::Put {
                record: step_record(run_id, &next),
                condition: Condition::Version(*version),
            };
            match self.store.transact(vec![write]).await {
                Ok(()) => {
                    if let RetryDecision::GaveUp { reason } = &decision {
                        self.audit(
                            run_id,
                            "system:worker",
                            "step.failed",
                            serde_json::json!({ "step": step, "reason": reason }),
                            now,
                        )
                        .await?;
                    }
                    return Ok(decision);
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Contended(step_key(run_id, step)))
    }

    /// Marks a running step failed for good with the reason an operator will read. Returns false
    /// if this delivery no longer held the step.
    pub async fn fail(
        &self,
        run_id: &str,
        step: &str,
        attempt: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RunError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(loaded) = self.load(run_id).await? else {
                return Ok(false);
            };
            let Some((version, current)) = loaded.steps.get(step) else {
                return Ok(false);
            };
            if current.status != StepStatus::Running || current.attempts != attempt {
                return Ok(false);
            }
            let mut next = current.clone();
            next.status = StepStatus::Failed;
            next.last_error = Some(reason.to_string());
            next.deadline = None;
            next.finished_at = Some(now);
            let write = Write::Put {
                record: step_record(run_id, &next),
                condition: Condition::Version(*version),
            };
            match self.store.transact(vec![write]).await {
                Ok(()) => {
                    self.audit(
                        run_id,
                        "system:worker",
                        "step.failed",
                        serde_json::json!({ "step": step, "reason": reason }),
                        now,
                    )
                    .await?;
                    return Ok(true);
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Contended(step_key(run_id, step)))
    }

    /// Steps past their deadline: their message was lost or their holder died. Pushes each
    /// deadline forward (conditionally, so one reconciler wins) and returns the messages to send.
    pub async fn overdue(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<StepMessage>, RunError> {
        let records = self.store.due(STEP_DEADLINE_KIND, now, limit).await?;
        let mut resend = Vec::new();
        for record in records {
            let step: StepRecord = match decode(&record) {
                Ok(step) => step,
                Err(e) => {
                    // One bad record must not stop the pass (it is the earliest due, so it would be
                    // in every batch): set it aside with its reason and go on.
                    crate::quarantine::quarantine(self.store, &record, &e.to_string(), now).await?;
                    continue;
                }
            };
            let run_id = record
                .key
                .partition
                .strip_prefix("run#")
                .unwrap_or(&record.key.partition)
                .to_string();
            let mut next = step.clone();
            if step.status == StepStatus::Running {
                // The holder's lease ran out: presume it dead. Back to ready, so the message sent
                // now starts it again; it may have died mid-create, so creates wait out the lag.
                next.status = StepStatus::Ready;
                next.last_write_attempt = next.last_write_attempt.max(step.started_at);
            }
            next.deadline = Some(after(now, self.settings.grace + self.settings.lease));
            let write = Write::Put {
                record: step_record(&run_id, &next),
                condition: Condition::Version(record.version),
            };
            match self.store.transact(vec![write]).await {
                Ok(()) => {
                    let run = self.store.get(&Key::new(run_partition(&run_id), "run")).await;
                    match run.and_then(|r| r.map(|r| decode::<RunRecord>(&r)).transpose()) {
                        Ok(Some(run)) => {
                            resend.push(StepMessage::new(&run_id, &run.tenant_id, &step.name, step.attempts + 1))
                        }
                        Ok(None) => {}
                        // The step's deadline moved on; the pass goes on with the others.
                        Err(e) => {
                            tracing::error!(run = %run_id, error = %e, "cannot re-send a step of an unreadable run")
                        }
                    }
                }
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(resend)
    }

    /// A run with its steps.
    pub async fn get(&self, run_id: &str) -> Result<Option<RunView>, StoreError> {
        Ok(self.load(run_id).await?.map(|l| RunView {
            run: l.run,
            steps: l.steps.into_values().map(|(_, s)| s).collect(),
        }))
    }

    /// The current run of a tenant.
    pub async fn current(&self, tenant: &TenantId) -> Result<Option<RunView>, StoreError> {
        let Some(pointer) = self.store.get(&pointer_key(tenant)).await? else {
            return Ok(None);
        };
        let p: Pointer = decode(&pointer)?;
        self.get(&p.run_id).await
    }

    /// Runs, of one tenant or all, oldest first, at most `limit`.
    pub async fn list(&self, tenant: Option<&TenantId>, limit: usize) -> Result<Vec<RunView>, StoreError> {
        let prefix = tenant.map(|t| format!("{t}#")).unwrap_or_default();
        let mut views = Vec::new();
        for record in self.store.collection(RUNS_COLLECTION, &prefix, limit).await? {
            let run: RunRecord = decode(&record)?;
            if let Some(view) = self.get(&run.run_id).await? {
                views.push(view);
            }
        }
        Ok(views)
    }

    async fn audit(
        &self,
        run_id: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store
            .append_audit(AuditEntry {
                subject: format!("run:{run_id}"),
                actor: actor.into(),
                action: action.into(),
                detail,
                at: now,
            })
            .await
    }
}
