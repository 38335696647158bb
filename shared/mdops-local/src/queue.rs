//! The [`Queue`] port on SQLite: one `messages` table for every logical queue, a `dead_letters`
//! table for their dead-letter queues, and `message_failures` so a message's recorded errors
//! survive until it is deleted or dead-lettered.
//!
//! Receive takes the write lock (`BEGIN IMMEDIATE`), picks visible messages, and either hands each
//! out with a fresh receipt and visibility deadline or, once it has been received
//! `max_receive_count` times, moves it to the dead letters with its failure history (the SQS
//! redrive rule). A receive with nothing to hand out waits: in-process sends wake it at once
//! through a [`Notify`]; messages sent by other processes, or becoming visible, are found by
//! polling with a bounded backoff.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mdops_core::queue::{
    DeadLetter, DeadLetterCause, Failure, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT, OutgoingMessage, Queue, QueueError,
    QueueName, QueueSettings, ReceivedMessage, validate_outgoing,
};
use rusqlite::{OptionalExtension, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::db::{Context, DbError, Pool, write_tx};

/// First pause of a waiting receive between looks at the table (for other processes' sends).
const POLL_MIN: Duration = Duration::from_millis(10);
/// Longest pause between looks: bounds how late a cross-process send or an expired visibility is
/// noticed, at the cost of one indexed query per poll per waiting receiver.
const POLL_MAX: Duration = Duration::from_millis(200);
/// Rounds of "move over-limit messages, then look again" in one receive. Each round moves or
/// hands out at least one message, so this only stops a receive from spending its whole wait
/// redriving a deep backlog of poison messages.
const MAX_ROUNDS: usize = 20;

/// The SQLite queue. Cheap to clone; clones share the pool and the wake-up signal.
#[derive(Clone)]
pub struct SqliteQueue {
    pool: Arc<Pool>,
    settings: [QueueSettings; 3],
    sent: Arc<Notify>,
}

fn unavailable(e: DbError) -> QueueError {
    QueueError::Unavailable {
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

fn index(queue: QueueName) -> usize {
    match queue {
        QueueName::Onboarding => 0,
        QueueName::Licences => 1,
        QueueName::Access => 2,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Checks a receive's arguments against the SQS limits (shared with the AWS adapter's rules).
fn validate_receive(max: usize, wait: Duration, visibility: Duration) -> Result<(), QueueError> {
    if !(1..=MAX_BATCH).contains(&max) {
        return Err(QueueError::Invalid(format!(
            "max {max} must be between 1 and {MAX_BATCH}"
        )));
    }
    if wait > MAX_WAIT {
        return Err(QueueError::Invalid(format!(
            "wait {wait:?} is over the maximum of {MAX_WAIT:?}"
        )));
    }
    if visibility > MAX_VISIBILITY {
        return Err(QueueError::Invalid(format!(
            "visibility {visibility:?} is over the maximum of {MAX_VISIBILITY:?}"
        )));
    }
    Ok(())
}

impl SqliteQueue {
    pub(crate) fn new(pool: Arc<Pool>, settings: [QueueSettings; 3]) -> Self {
        SqliteQueue {
            pool,
            settings,
            sent: Arc::new(Notify::new()),
        }
    }

    /// The settings (receive limit, default visibility) of a queue.
    pub fn settings(&self, queue: QueueName) -> QueueSettings {
        self.settings[index(queue)]
    }

    async fn insert(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, QueueError> {
        for m in &messages {
            validate_outgoing(m)?;
        }
        let ids = self
            .pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let now = Utc::now();
                let mut ids = Vec::with_capacity(messages.len());
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO messages (id, queue, body, sent_at, visible_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .what("prepare send")?;
                    for m in messages {
                        let id = uuid::Uuid::new_v4().to_string();
                        let visible = now.timestamp_millis() + millis(m.delay);
                        insert
                            .execute(params![id, queue.as_str(), m.body, now.to_rfc3339(), visible])
                            .what("insert message")?;
                        ids.push(id);
                    }
                }
                tx.commit().what("commit send")?;
                Ok(ids)
            })
            .await
            .map_err(unavailable)?;
        self.sent.notify_waiters();
        Ok(ids)
    }

    /// One look at the table: hands out up to `max` visible messages, redriving those over the
    /// receive limit.
    async fn take(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max_receives = self.settings(queue).max_receive_count;
        self.pool
            .run(move |conn| {
                // Look without the write lock first: idle pollers (other processes included)
                // then never queue behind, or hold up, the writers.
                let ready: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ?1 AND visible_at_ms <= ?2)")
                    .what("prepare visibility check")?
                    .query_row(params![queue.as_str(), Utc::now().timestamp_millis()], |r| r.get(0))
                    .what("check for visible messages")?;
                if !ready {
                    return Ok(Vec::new());
                }
                let tx = write_tx(conn)?;
                let now = Utc::now();
                let now_ms = now.timestamp_millis();
                let mut out = Vec::new();
                for _ in 0..MAX_ROUNDS {
                    let want = max - out.len();
                    let rows: Vec<(String, String, String, u32)> = {
                        let mut select = tx
                            .prepare_cached(
                                "SELECT id, body, sent_at, receive_count FROM messages \
                                 WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, rowid LIMIT ?3",
                            )
                            .what("prepare receive")?;
                        select
                            .query_map(params![queue.as_str(), now_ms, want as i64], |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                            })
                            .what("select visible messages")?
                            .collect::<Result<_, _>>()
                            .what("read visible messages")?
                    };
                    let found = rows.len();
                    let mut moved = 0;
                    for (id, body, sent_at, count) in rows {
                        if count >= max_receives {
                            move_to_dead_letters(&tx, queue, &id, DeadLetterCause::MaxReceives, None, now)?;
                            moved += 1;
                            continue;
                        }
                        let receipt = uuid::Uuid::new_v4().to_string();
                        tx.execute(
                            "UPDATE messages SET receive_count = receive_count + 1, receipt = ?2, visible_at_ms = ?3 \
                             WHERE id = ?1",
                            params![id, receipt, now_ms + millis(visibility)],
                        )
                        .what("mark message received")?;
                        let sent_at = DateTime::parse_from_rfc3339(&sent_at)
                            .map(|t| t.with_timezone(&Utc))
                            .unwrap_or(now);
                        out.push(ReceivedMessage {
                            id,
                            receipt,
                            body,
                            receive_count: count + 1,
                            sent_at,
                        });
                    }
                    if out.len() >= max || found < want || moved == 0 {
                        break;
                    }
                }
                tx.commit().what("commit receive")?;
                Ok(out)
            })
            .await
            .map_err(unavailable)
    }
}

/// Moves a message (by id) with its failure history into the dead letters, inside `tx`.
fn move_to_dead_letters(
    tx: &rusqlite::Transaction<'_>,
    queue: QueueName,
    id: &str,
    cause: DeadLetterCause,
    last: Option<&Failure>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let (body, sent_at, count): (String, String, u32) = tx
        .query_row(
            "SELECT body, sent_at, receive_count FROM messages WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .what("read message to dead-letter")?;
    let mut history: Vec<Failure> = {
        let mut select = tx
            .prepare_cached("SELECT failure FROM message_failures WHERE message_id = ?1 ORDER BY seq")
            .what("prepare failure history")?;
        select
            .query_map(params![id], |r| r.get::<_, String>(0))
            .what("select failure history")?
            .collect::<Result<Vec<_>, _>>()
            .what("read failure history")?
            .into_iter()
            // A failure record that does not decode is kept as its raw text rather than dropped.
            .map(|raw| {
                serde_json::from_str(&raw).unwrap_or_else(|e| Failure {
                    reason: format!("undecodable failure record ({e}): {raw}"),
                    tenant: None,
                    step: None,
                    attempts: 0,
                    at: now,
                })
            })
            .collect()
    };
    history.extend(last.cloned());
    let history = serde_json::to_string(&history).map_err(|e| DbError::Task(format!("encode history: {e}")))?;
    let cause = match cause {
        DeadLetterCause::Failed => "failed",
        DeadLetterCause::MaxReceives => "max_receives",
    };
    tx.execute(
        "INSERT INTO dead_letters (id, queue, body, sent_at, cause, history, receive_count, dead_lettered_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            queue.as_str(),
            body,
            sent_at,
            cause,
            history,
            count,
            now.to_rfc3339()
        ],
    )
    .what("insert dead letter")?;
    tx.execute("DELETE FROM messages WHERE id = ?1", params![id])
        .what("delete dead-lettered message")?;
    tx.execute("DELETE FROM message_failures WHERE message_id = ?1", params![id])
        .what("delete failure records")?;
    tracing::warn!(queue = queue.as_str(), message_id = id, cause, "message dead-lettered");
    Ok(())
}

fn decode_dead_letter(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<DeadLetter, String>> {
    let id: String = row.get(0)?;
    let queue: String = row.get(1)?;
    let body: String = row.get(2)?;
    let cause: String = row.get(3)?;
    let history: String = row.get(4)?;
    let receive_count: u32 = row.get(5)?;
    let at: String = row.get(6)?;
    Ok((|| {
        let source = queue.parse::<QueueName>()?;
        let cause = match cause.as_str() {
            "failed" => DeadLetterCause::Failed,
            "max_receives" => DeadLetterCause::MaxReceives,
            other => return Err(format!("unknown cause {other:?}")),
        };
        let history: Vec<Failure> = serde_json::from_str(&history).map_err(|e| format!("history: {e}"))?;
        let dead_lettered_at = DateTime::parse_from_rfc3339(&at)
            .map_err(|e| format!("dead_lettered_at {at:?}: {e}"))?
            .with_timezone(&Utc);
        Ok(DeadLetter {
            failure: history.last().cloned(),
            id: id.clone(),
            source,
            body,
            cause,
            history,
            receive_count,
            dead_lettered_at,
        })
    })()
    .map_err(|e| format!("dead letter {id} does not decode: {e}")))
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: QueueName, message: OutgoingMessage) -> Result<String, QueueError> {
        let mut ids = self.insert(queue, vec![message]).await?;
        ids.pop()
            .ok_or_else(|| QueueError::Invalid("send stored no message".to_string()))
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, QueueError> {
        if messages.len() > MAX_BATCH {
            return Err(QueueError::Invalid(format!(
                "batch of {} messages is over the maximum of {MAX_BATCH}",
                messages.len()
            )));
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.insert(queue, messages).await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        validate_receive(max, wait, visibility)?;
        let deadline = Instant::now() + wait;
        let mut pause = POLL_MIN;
        loop {
            // Register for the wake-up before looking, so a send between the look and the wait
            // is not missed.
            let woken = self.sent.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let got = self.take(queue, max, visibility).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let sleep = pause.min(deadline - now);
            if tokio::time::timeout(sleep, woken).await.is_ok() {
                pause = POLL_MIN;
            } else {
                pause = (pause * 2).min(POLL_MAX);
            }
        }
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_string();
        let deleted = self
            .pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let id: Option<String> = tx
                    .query_row(
                        "SELECT id FROM messages WHERE queue = ?1 AND receipt = ?2",
                        params![queue.as_str(), receipt],
                        |r| r.get(0),
                    )
                    .optional()
                    .what("find message to delete")?;
                if let Some(id) = &id {
                    tx.execute("DELETE FROM messages WHERE id = ?1", params![id])
                        .what("delete message")?;
                    // The work is done: its failure records are no longer needed.
                    tx.execute("DELETE FROM message_failures WHERE message_id = ?1", params![id])
                        .what("delete failure records")?;
                }
                tx.commit().what("commit delete")?;
                Ok(id.is_some())
            })
            .await
            .map_err(unavailable)?;
        if !deleted {
            return Err(QueueError::StaleReceipt { queue });
        }
        Ok(())
    }

    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!(
                "visibility {visibility:?} is over the maximum of {MAX_VISIBILITY:?}"
            )));
        }
        let visible = Utc::now().timestamp_millis() + millis(visibility);
        let receipt = receipt.to_string();
        let changed = self
            .pool
            .run(move |conn| {
                conn.execute(
                    "UPDATE messages SET visible_at_ms = ?3 WHERE queue = ?1 AND receipt = ?2",
                    params![queue.as_str(), receipt, visible],
                )
                .what("change visibility")
            })
            .await
            .map_err(unavailable)?;
        if changed == 0 {
            return Err(QueueError::StaleReceipt { queue });
        }
        if visibility.is_zero() {
            self.sent.notify_waiters();
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        queue: QueueName,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), QueueError> {
        let raw = serde_json::to_string(failure).map_err(|e| QueueError::Invalid(format!("failure: {e}")))?;
        let id = message.id.clone();
        let receipt = message.receipt.clone();
        let recorded = self
            .pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM messages WHERE queue = ?1 AND id = ?2 AND receipt = ?3",
                        params![queue.as_str(), id, receipt],
                        |_| Ok(()),
                    )
                    .optional()
                    .what("find message for failure")?
                    .is_some();
                if exists {
                    tx.execute(
                        "INSERT INTO message_failures (message_id, failure) VALUES (?1, ?2)",
                        params![id, raw],
                    )
                    .what("insert failure record")?;
                }
                tx.commit().what("commit failure record")?;
                Ok(exists)
            })
            .await
            .map_err(unavailable)?;
        if !recorded {
            return Err(QueueError::StaleReceipt { queue });
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        queue: QueueName,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), QueueError> {
        let id = message.id.clone();
        let receipt = message.receipt.clone();
        let failure = failure.clone();
        let moved = self
            .pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM messages WHERE queue = ?1 AND id = ?2 AND receipt = ?3",
                        params![queue.as_str(), id, receipt],
                        |_| Ok(()),
                    )
                    .optional()
                    .what("find message to dead-letter")?
                    .is_some();
                if exists {
                    move_to_dead_letters(&tx, queue, &id, DeadLetterCause::Failed, Some(&failure), Utc::now())?;
                }
                tx.commit().what("commit dead letter")?;
                Ok(exists)
            })
            .await
            .map_err(unavailable)?;
        if !moved {
            return Err(QueueError::StaleReceipt { queue });
        }
        Ok(())
    }

    async fn dead_letter_refused(&self, queue: QueueName, body: &str, failure: &Failure) -> Result<String, QueueError> {
        let id = uuid::Uuid::new_v4().to_string();
        let body = body.to_string();
        let history = serde_json::to_string(&[failure]).map_err(|e| QueueError::Invalid(format!("failure: {e}")))?;
        let inserted = id.clone();
        self.pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let now = Utc::now().to_rfc3339();
                tx.execute(
                    "INSERT INTO dead_letters (id, queue, body, sent_at, cause, history, receive_count, dead_lettered_at) \
                     VALUES (?1, ?2, ?3, ?4, 'failed', ?5, 0, ?4)",
                    params![inserted, queue.as_str(), body, now, history],
                )
                .what("insert refused message")?;
                tx.commit().what("commit refused message")?;
                Ok(())
            })
            .await
            .map_err(unavailable)?;
        Ok(id)
    }

    async fn dead_letters(&self, queue: QueueName, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = self
            .pool
            .run(move |conn| {
                let mut select = conn
                    .prepare_cached(
                        "SELECT id, queue, body, cause, history, receive_count, dead_lettered_at FROM dead_letters \
                         WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                    )
                    .what("prepare dead letters")?;
                select
                    .query_map(params![queue.as_str(), limit as i64], decode_dead_letter)
                    .what("select dead letters")?
                    .collect::<Result<Vec<_>, _>>()
                    .what("read dead letters")
            })
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|r| r.map_err(|message| QueueError::Unavailable { message, source: None }))
            .collect()
    }

    async fn replay(&self, queue: QueueName, dead_letter_ids: &[String]) -> Result<Vec<String>, QueueError> {
        let ids = dead_letter_ids.to_vec();
        let moved = self
            .pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let now = Utc::now();
                let mut moved = Vec::new();
                for id in ids {
                    let row: Option<(String, String)> = tx
                        .query_row(
                            "SELECT body, sent_at FROM dead_letters WHERE queue = ?1 AND id = ?2",
                            params![queue.as_str(), id],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .what("find dead letter to replay")?;
                    let Some((body, sent_at)) = row else { continue };
                    tx.execute(
                        "INSERT INTO messages (id, queue, body, sent_at, visible_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, queue.as_str(), body, sent_at, now.timestamp_millis()],
                    )
                    .what("requeue dead letter")?;
                    tx.execute("DELETE FROM dead_letters WHERE id = ?1", params![id])
                        .what("delete replayed dead letter")?;
                    moved.push(id);
                }
                tx.commit().what("commit replay")?;
                Ok(moved)
            })
            .await
            .map_err(unavailable)?;
        if !moved.is_empty() {
            self.sent.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge(&self, queue: QueueName, dead_letter_ids: &[String]) -> Result<Vec<String>, QueueError> {
        let ids = dead_letter_ids.to_vec();
        self.pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let mut purged = Vec::new();
                for id in ids {
                    let n = tx
                        .execute(
                            "DELETE FROM dead_letters WHERE queue = ?1 AND id = ?2",
                            params![queue.as_str(), id],
                        )
                        .what("purge dead letter")?;
                    if n > 0 {
                        purged.push(id);
                    }
                }
                tx.commit().what("commit purge")?;
                Ok(purged)
            })
            .await
            .map_err(unavailable)
    }
}
