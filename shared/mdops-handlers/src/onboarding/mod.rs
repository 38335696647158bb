//! Onboarding: enrollment (create or join a run, send its root steps) and the step handler (one
//! message = one step = one Graph action).

pub mod steps;

use std::time::Duration;

use mdops_core::message::decode;
use mdops_core::onboarding::runs::{Begin, Enrollment, RetryAsk, RetryDecision, RunError, Runs};
use mdops_core::onboarding::{StepKind, StepMessage, TENANT_ENROLLED, TenantEnrolled, plan};
use mdops_core::outcome::StepOutcome;
use mdops_core::queue::{Failure, OutgoingMessage, QueueError, QueueName};
use mdops_core::tenant::{RegistryError, TenantRegistry};
use mdops_graph::metric;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Instrument;

use crate::deps::Deps;
use crate::disposition::{Disposition, REDELIVER_AFTER};
use steps::StepContext;

/// Longest delay a queue message can carry (SQS: 15 minutes). Longer waits are re-sent in hops.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * 60);
/// Wait before the next attempt of a step stopped at its budget (its Graph call hung).
const OVERRUN_RETRY: Duration = Duration::from_secs(2);
/// Most messages one send_batch carries (SQS's limit).
const SEND_BATCH: usize = 10;

/// Why an enrollment could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Runs(#[from] RunError),
    #[error("could not queue the first steps of run {run_id}: {source} (they are re-sent by the deadline ticker)")]
    Queue {
        run_id: String,
        #[source]
        source: QueueError,
    },
}

impl EnrollError {
    /// True when retrying without a person's help cannot succeed (the tenant is not registered).
    pub fn is_permanent(&self) -> bool {
        matches!(self, EnrollError::Registry(RegistryError::NotRegistered(_)))
    }
}

/// Starts onboarding a registered tenant, or joins its run in progress.
pub async fn enroll(deps: &Deps, tenant_id: &str, requested_by: &str) -> Result<Enrollment, EnrollError> {
    let tenant = TenantRegistry::new(deps.store.as_ref()).require(tenant_id).await?;
    let runs = Runs::new(deps.store.as_ref(), deps.runs);
    let enrollment = runs
        .enroll(&tenant.tenant_id, &plan(), requested_by, deps.now())
        .await?;
    if let Enrollment::Created { run_id, messages } = &enrollment {
        send_steps(deps, messages, Duration::ZERO)
            .await
            .map_err(|source| EnrollError::Queue {
                run_id: run_id.clone(),
                source,
            })?;
        tracing::info!(tenant = %tenant.tenant_id, run = %run_id, "onboarding run created");
    }
    Ok(enrollment)
}

/// Handles an enrollment event's `detail` (EventBridge `TenantEnrolled`): creates the tenant's run
/// and sends its first steps, or joins the run in progress. A malformed detail or an unregistered
/// tenant comes back as `DeadLetter` with the reason (the caller keeps the event with
/// `Queue::dead_letter_refused`); trouble with our own store or queue as `Redeliver`.
pub async fn handle_enrollment_event(detail: &serde_json::Value, deps: &Deps) -> Disposition {
    let tenant = detail.get("tenant_id").and_then(|t| t.as_str()).map(str::to_string);
    let refuse =
        |reason: String| Disposition::DeadLetter(failure(reason, tenant.clone(), Some("enroll".into()), 0, deps));
    let event = match TenantEnrolled::from_detail(detail.clone()) {
        Ok(e) => e,
        Err(e) => return refuse(format!("malformed {TENANT_ENROLLED} event: {e}")),
    };
    let requested_by = event.requested_by.as_deref().unwrap_or("event:TenantEnrolled");
    match enroll(deps, event.tenant_id.as_str(), requested_by).await {
        Ok(_) => Disposition::Ack,
        Err(e) if e.is_permanent() => refuse(format!("{TENANT_ENROLLED} event refused: {e}")),
        Err(e) => Disposition::Redeliver {
            after: REDELIVER_AFTER,
            error: e.to_string(),
        },
    }
}

/// Sends step messages in batches.
pub async fn send_steps(deps: &Deps, messages: &[StepMessage], delay: Duration) -> Result<(), QueueError> {
    for chunk in messages.chunks(SEND_BATCH) {
        let batch = chunk
            .iter()
            .map(|m| OutgoingMessage {
                body: m.to_body(),
                delay,
            })
            .collect();
        deps.queue.send_batch(QueueName::Onboarding, batch).await?;
    }
    Ok(())
}

/// Re-sends the steps whose deadline passed (message lost, holder died). Returns how many.
pub async fn resend_overdue(deps: &Deps, limit: usize) -> Result<usize, EnrollError> {
    let runs = Runs::new(deps.store.as_ref(), deps.runs);
    let overdue = runs.overdue(deps.now(), limit).await?;
    if !overdue.is_empty() {
        tracing::warn!(count = overdue.len(), "re-sending onboarding steps past their deadline");
        send_steps(deps, &overdue, Duration::ZERO)
            .await
            .map_err(|source| EnrollError::Queue {
                run_id: "(overdue)".into(),
                source,
            })?;
    }
    Ok(overdue.len())
}

fn failure(reason: String, tenant: Option<String>, step: Option<String>, attempts: u32, deps: &Deps) -> Failure {
    Failure {
        reason,
        tenant,
        step,
        attempts,
        at: deps.now(),
    }
}

/// Handles one onboarding-step message.
pub async fn handle_step(body: &str, receive_count: u32, deps: &Deps) -> Disposition {
    let message = match decode::<StepMessage>(body) {
        Ok(m) => m,
        Err(e) => {
            return Disposition::DeadLetter(failure(
                e.to_string(),
                e.tenant.clone(),
                e.step.clone(),
                receive_count,
                deps,
            ));
        }
    };
    let span = tracing::info_span!("step", tenant = %message.tenant_id, run = %message.run_id, step = %message.step, attempt = tracing::field::Empty);
    handle_decoded(message, receive_count, deps).instrument(span).await
}

async fn handle_decoded(message: StepMessage, receive_count: u32, deps: &Deps) -> Disposition {
    let runs = Runs::new(deps.store.as_ref(), deps.runs);
    let tenant_str = Some(message.tenant_id.to_string());
    let step_str = Some(message.step.clone());
    let redeliver = |error: String| Disposition::Redeliver {
        after: REDELIVER_AFTER,
        error,
    };
    let begin = match runs.begin(&message, deps.now()).await {
        Ok(b) => b,
        Err(e) => return redeliver(format!("state store: {e}")),
    };
    let (attempt, dep_outputs, run, last_write_attempt) = match begin {
        Begin::Run {
            attempt,
            deps,
            run,
            last_write_attempt,
        } => (attempt, deps, run, last_write_attempt),
        Begin::AlreadyDone | Begin::Busy { .. } => return Disposition::Ack,
        Begin::NotYet { until } => {
            let wait = (until - deps.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_QUEUE_DELAY);
            return match send_steps(deps, std::slice::from_ref(&message), wait).await {
                Ok(()) => Disposition::Ack,
                Err(e) => redeliver(format!("queue: {e}")),
            };
        }
        Begin::Refused { reason } => {
            return Disposition::DeadLetter(failure(reason, tenant_str, step_str, receive_count, deps));
        }
    };
    tracing::Span::current().record("attempt", attempt);
    let kind: StepKind = match message.step.parse() {
        Ok(k) => k,
        Err(e) => return Disposition::DeadLetter(failure(e.to_string(), tenant_str, step_str, attempt, deps)),
    };

    // Only the account steps adopt by natural key, so only they (and preflight's readiness check,
    // which tells beforehand whether they will) read what they may adopt.
    let adoption = match kind {
        StepKind::Account(_) | StepKind::Preflight => {
            match steps::Adoption::load(deps.store.as_ref(), &message.tenant_id).await {
                Ok(a) => a,
                Err(e) => return redeliver(format!("state store: {e}")),
            }
        }
        _ => steps::Adoption::default(),
    };
    let (outcome, write_attempted) = match deps.reach.tenant(&message.tenant_id).await {
        Ok((tenant, graph)) => {
            let ctx = StepContext {
                graph: &graph,
                tenant: &tenant,
                run: &run,
                deps: &dep_outputs,
                attempt,
                last_write_attempt,
                write_attempted: AtomicBool::new(false),
                queue: deps.queue.as_ref(),
                store: deps.store.as_ref(),
                now: deps.now(),
                lag_window: deps.lag_window,
                adoption: &adoption,
            };
            let budget = deps.runs.step_budget();
            let outcome = match tokio::time::timeout(budget, steps::execute(kind, &ctx)).await {
                Ok(outcome) => outcome,
                // Past the budget the lease is nearly over: stop here rather than work beside the
                // delivery that takes the step over. A create in flight counts as attempted.
                Err(_) => StepOutcome::retry(
                    OVERRUN_RETRY,
                    format!(
                        "the step ran past its budget of {budget:?} (lease {:?}) and was stopped; the next attempt finds before it creates",
                        deps.runs.lease
                    ),
                ),
            };
            (outcome, ctx.write_attempted.load(Ordering::Relaxed))
        }
        Err(e) if e.is_permanent() => (StepOutcome::failed(e.to_string()), false),
        Err(e) => (StepOutcome::retry(REDELIVER_AFTER, e.to_string()), false),
    };
    if write_attempted
        && matches!(&outcome, StepOutcome::Done { output } if output.get("created") == Some(&true.into()))
    {
        mdops_core::crash_point::reached(mdops_core::crash_point::STEP_WRITTEN);
    }
    finish(&runs, &message, attempt, outcome, write_attempted, deps).await
}

/// Once a run has succeeded, the tenant's app catalogue is synced at once (issue 17: "after
/// onboarding"), not an hour later by the schedule. Only the completion that wins the run's
/// `apps-after#{run}` claim sends it, so two last steps finishing together plan it once. Best
/// effort: a failure is logged and the hourly scheduled sync ([`crate::apps::sync::sync_if_due`])
/// puts the catalogue in place instead; an app message delivered twice finds its app.
async fn after_success(runs: &Runs<'_>, message: &StepMessage, deps: &Deps) {
    use mdops_core::onboarding::runs::RunStatus;
    use mdops_core::store::{Condition, Key, NewRecord, StoreError, Write};
    let run_id = message.run_id.as_str();
    match runs.get(run_id).await {
        Ok(Some(view)) if view.status() == RunStatus::Succeeded => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the run after its last step; the scheduled app sync will run");
            return;
        }
    }
    let claim = Write::Put {
        record: NewRecord {
            key: Key::new(format!("apps-after#{run_id}"), "claim"),
            body: serde_json::json!({ "tenant_id": message.tenant_id.to_string(), "at": deps.now() }),
            collection: None,
            due: None,
        },
        condition: Condition::Absent,
    };
    match deps.store.transact(vec![claim]).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim the app sync after onboarding; the scheduled sync will run");
            return;
        }
    }
    let (tenant, graph) = match deps.reach.tenant(&message.tenant_id).await {
        Ok(reached) => reached,
        Err(e) => {
            tracing::warn!(error = %e, "app sync after onboarding: tenant not reachable; the scheduled sync will run");
            return;
        }
    };
    match crate::apps::sync::sync(deps, &tenant, &graph, "onboarding", false).await {
        Ok(report) => tracing::info!(
            messages = report.messages,
            "app catalogue sync after onboarding planned"
        ),
        Err(e) => tracing::warn!(error = %e, "app sync after onboarding failed; the scheduled sync will run"),
    }
}

async fn finish(
    runs: &Runs<'_>,
    message: &StepMessage,
    attempt: u32,
    outcome: StepOutcome,
    write_attempted: bool,
    deps: &Deps,
) -> Disposition {
    let (run_id, step) = (message.run_id.as_str(), message.step.as_str());
    let fail = |reason: String| {
        Disposition::DeadLetter(failure(
            reason,
            Some(message.tenant_id.to_string()),
            Some(step.to_string()),
            attempt,
            deps,
        ))
    };
    let step_kind = Some(("StepKind", step.split(':').next().unwrap_or(step)));
    match outcome {
        StepOutcome::Done { output } => {
            metric::count("StepsDone", step_kind, 1);
            tracing::info!(
                created = output.get("created").and_then(|c| c.as_bool()).unwrap_or(false),
                "step done"
            );
            match runs.complete(run_id, step, attempt, output, deps.now()).await {
                Ok(released) => {
                    if let Err(e) = send_steps(deps, &released, Duration::ZERO).await {
                        // Released steps carry deadlines: the ticker sends them if this did not.
                        tracing::warn!(error = %e, "could not send released steps; the deadline ticker will");
                    }
                    if released.is_empty() {
                        after_success(runs, message, deps).await;
                    }
                    Disposition::Ack
                }
                Err(e) => Disposition::Redeliver {
                    after: REDELIVER_AFTER,
                    error: format!("state store: {e}"),
                },
            }
        }
        StepOutcome::Retry { after, reason } => {
            metric::count("StepsRetried", step_kind, 1);
            tracing::info!(retry_after_ms = after.as_millis() as u64, %reason, "step will retry");
            match runs
                .retry(
                    run_id,
                    step,
                    attempt,
                    &RetryAsk {
                        reason: &reason,
                        delay: after,
                        write_attempted,
                    },
                    deps.now(),
                )
                .await
            {
                Ok(RetryDecision::Scheduled { message, delay }) => {
                    match send_steps(deps, std::slice::from_ref(&message), delay.min(MAX_QUEUE_DELAY)).await {
                        Ok(()) => Disposition::Ack,
                        // The step is ready with a deadline: the ticker re-sends it.
                        Err(e) => {
                            tracing::warn!(error = %e, "could not queue the retry; the deadline ticker will");
                            Disposition::Ack
                        }
                    }
                }
                Ok(RetryDecision::GaveUp { reason }) => fail(reason),
                Ok(RetryDecision::Stale) => Disposition::Ack,
                Err(e) => Disposition::Redeliver {
                    after: REDELIVER_AFTER,
                    error: format!("state store: {e}"),
                },
            }
        }
        StepOutcome::Failed { reason } => {
            metric::count("StepsFailed", step_kind, 1);
            tracing::warn!(%reason, "step failed");
            match runs.fail(run_id, step, attempt, &reason, deps.now()).await {
                Ok(_) => fail(reason),
                Err(e) => Disposition::Redeliver {
                    after: REDELIVER_AFTER,
                    error: format!("state store: {e}"),
                },
            }
        }
    }
}
