//! The embedded worker: polls the queues, runs each message's handler with bounded concurrency
//! (overall and per tenant), applies the handler's [`Disposition`], and ticks the deadline
//! reconciler. Receives long-poll, so a worker never sleeps while a message is ready.
//!
//! A slot of the overall concurrency is taken *before* receiving, so no message is taken that no
//! slot can work. A received message may still wait for its tenant's capacity (the tenant is known
//! only from the body); from receipt until it is settled the worker keeps it invisible (a
//! heartbeat extends its visibility every third of the timeout), so neither waiting nor a slow
//! handler lets its visibility lapse and a second worker take it. Onboarding steps are also bound
//! by their lease (`RunSettings::step_budget`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdops_core::queue::{QueueName, ReceivedMessage};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::deps::Deps;
use crate::disposition::{Disposition, redeliver_later};
use crate::onboarding;

/// Most messages one receive returns (SQS's limit).
const MAX_RECEIVE: usize = 10;
/// Overdue steps re-sent per tick; more wait for the next tick.
const OVERDUE_PER_TICK: usize = 100;
/// Shortest interval between visibility extensions of a held message.
const MIN_HEARTBEAT: Duration = Duration::from_millis(200);
/// Pause after a receive error before polling again, so a dead backend is not hammered.
const RECEIVE_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// How hard the worker works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Messages handled at once, over all tenants.
    pub concurrency: usize,
    /// Messages handled at once for one tenant (the Graph limiter also paces each tenant).
    pub per_tenant: usize,
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// Visibility timeout of a received message; extended while the message is held.
    pub visibility: Duration,
    /// How often overdue steps are looked for.
    pub tick: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 16,
            per_tenant: 4,
            wait: Duration::from_secs(5),
            visibility: Duration::from_secs(120),
            tick: Duration::from_secs(5),
        }
    }
}

/// Runs one message's handler.
pub async fn dispatch(queue: QueueName, message: &ReceivedMessage, deps: &Deps) -> Disposition {
    match queue {
        QueueName::Onboarding => handle_onboarding_queue(&message.body, message.receive_count, deps).await,
        QueueName::Access => crate::access::handle(&message.body, message.receive_count, deps).await,
        QueueName::Licences => crate::licences::handle(&message.body, message.receive_count, deps).await,
    }
}

/// Runs the handler of one message of the onboarding queue: an onboarding step, a ring chunk or
/// a catalogue app (management work rides the same queue, retries and dead letters; told apart
/// by `kind`).
pub async fn handle_onboarding_queue(body: &str, receive_count: u32, deps: &Deps) -> Disposition {
    match kind_of(body).as_deref() {
        Some(crate::rings::KIND) => crate::rings::handle(body, receive_count, deps).await,
        Some(crate::apps::KIND) => crate::apps::handle(body, receive_count, deps).await,
        _ => onboarding::handle_step(body, receive_count, deps).await,
    }
}

/// Applies a handler's verdict to the message on the queue.
pub async fn apply(queue: QueueName, message: &ReceivedMessage, disposition: Disposition, deps: &Deps) {
    let result = match &disposition {
        Disposition::Ack => deps.queue.delete(queue, &message.receipt).await,
        Disposition::DeadLetter(failure) => {
            tracing::warn!(message = %message.id, reason = %failure.reason, "dead-lettering message");
            deps.queue.dead_letter(queue, message, failure).await
        }
        Disposition::Redeliver { after, error } => redeliver_later(queue, message, *after, error, deps).await,
    };
    if let Err(e) = result {
        // The message comes back after its visibility timeout; nothing is lost.
        tracing::warn!(message = %message.id, error = %e, "could not settle message");
    }
}

fn kind_of(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("kind")?
        .as_str()
        .map(str::to_string)
}

fn tenant_of(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("tenant_id")?
        .as_str()
        .map(str::to_string)
}

/// The embedded worker.
pub struct Worker {
    deps: Deps,
    settings: WorkerSettings,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Worker {
    /// A worker over `deps`.
    pub fn new(deps: Deps, settings: WorkerSettings) -> Arc<Self> {
        Arc::new(Worker {
            deps,
            settings,
            tenants: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `work` while extending the message's visibility every third of the timeout.
    async fn keep_invisible<F: std::future::Future>(
        &self,
        queue: QueueName,
        message: &ReceivedMessage,
        work: F,
    ) -> F::Output {
        let every = (self.settings.visibility / 3).max(MIN_HEARTBEAT);
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = beat.tick() => {
                    if let Err(e) = self.deps.queue.change_visibility(queue, &message.receipt, self.settings.visibility).await {
                        tracing::warn!(message = %message.id, error = %e, "could not extend a held message's visibility");
                    }
                }
            }
        }
    }

    fn tenant_permits(&self, tenant: &str) -> Arc<Semaphore> {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_tenant.max(1))))
            .clone()
    }

    /// Works the given queues until `stop` turns true, then finishes the messages in hand.
    pub async fn run(self: &Arc<Self>, queues: &[QueueName], stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        for &queue in queues {
            let me = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move { me.poll(queue, stop).await });
        }
        let me = self.clone();
        tasks.spawn(async move { me.tick(stop).await });
        while tasks.join_next().await.is_some() {}
    }

    async fn tick(&self, mut stop: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.settings.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            if let Err(e) = onboarding::resend_overdue(&self.deps, OVERDUE_PER_TICK).await {
                tracing::warn!(error = %e, "deadline tick failed");
            }
            // The access timers (expiry, end, removal re-checks) ride the same tick.
            if let Err(e) = crate::access::expiry_pass(&self.deps, OVERDUE_PER_TICK).await {
                tracing::warn!(error = %e, "access expiry tick failed");
            }
            // So does the membership sweep (it paces itself: once per SWEEP_INTERVAL).
            if let Err(e) = crate::access::sweep_if_due(&self.deps).await {
                tracing::warn!(error = %e, "access sweep failed");
            }
            // And the device ring sync (once per rings::sync::SYNC_INTERVAL, over all tenants).
            if let Err(e) = crate::rings::sync::sync_if_due(&self.deps).await {
                tracing::warn!(error = %e, "ring sync tick failed");
            }
            // And the app catalogue sync (once per apps::sync::SYNC_INTERVAL, over all tenants).
            if let Err(e) = crate::apps::sync::sync_if_due(&self.deps).await {
                tracing::warn!(error = %e, "app catalogue sync tick failed");
            }
        }
    }

    async fn poll(self: Arc<Self>, queue: QueueName, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut handling = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            // Wait for a free slot before taking messages, so none sits invisible unworked.
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = stop.changed() => continue,
            };
            let mut held = vec![first];
            while held.len() < MAX_RECEIVE {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                r = self.deps.queue.receive(queue, held.len(), self.settings.wait, self.settings.visibility) => r,
                _ = stop.changed() => continue,
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "receive failed");
                    tokio::time::sleep(RECEIVE_ERROR_BACKOFF).await;
                    continue;
                }
            };
            for message in messages {
                let Some(permit) = held.pop() else { break };
                let me = self.clone();
                handling.spawn(async move {
                    let _permit = permit;
                    let work = async {
                        let tenant = tenant_of(&message.body).map(|t| me.tenant_permits(&t));
                        let _tenant_permit = match &tenant {
                            Some(s) => Some(s.clone().acquire_owned().await.expect("semaphore never closed")),
                            None => None,
                        };
                        dispatch(queue, &message, &me.deps).await
                    };
                    let disposition = me.keep_invisible(queue, &message, work).await;
                    apply(queue, &message, disposition, &me.deps).await;
                });
            }
            // Reap finished handlers so the set stays small.
            while handling.try_join_next().is_some() {}
        }
        while handling.join_next().await.is_some() {}
    }
}
