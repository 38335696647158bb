//! Attempts of one licence change, kept in the store so a retry can be a fresh message.
//!
//! A throttled change is re-sent with a delay (and the received message acked) rather than left
//! invisible, so the queue's own receive count restarts with every hop. The count that decides when
//! to give up therefore lives here, keyed by the change itself (tenant, user and a digest of what is
//! added, removed and disabled): duplicates of one change share it, and a replay after the record
//! was cleared starts from one again.

use chrono::{DateTime, Utc};
use mdops_core::licences::LicenceMessage;
use mdops_core::store::{Condition, Key, NewRecord, Store, StoreError, Write};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What is known of earlier attempts at one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempts made so far (the one in hand not counted).
    pub attempts: u32,
    /// When the first attempt ran: the age that decides whether a 404 may still be replication lag.
    pub first_at: DateTime<Utc>,
    /// Why the last attempt did not finish.
    pub last_reason: String,
}

/// The stored attempts of one change.
#[derive(Debug, Clone)]
pub struct Attempts {
    key: Key,
    /// The record and its version, when there were earlier attempts.
    pub prior: Option<(AttemptRecord, u64)>,
}

/// The key of a change's attempt record: `licence#{tenant}` / `attempts#{user}#{digest}`.
pub fn key_of(message: &LicenceMessage) -> Key {
    let canonical = |list: &[String]| {
        let mut v: Vec<String> = list.iter().map(|s| s.to_ascii_uppercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    let change = serde_json::json!({
        "add": canonical(&message.add),
        "remove": canonical(&message.remove),
        "disabled": canonical(&message.disabled_plans),
    });
    let digest = Sha256::digest(change.to_string().as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    Key::new(
        format!("licence#{}", message.tenant_id),
        format!("attempts#{}#{hex}", message.user.to_ascii_lowercase()),
    )
}

impl Attempts {
    /// Reads the attempts of `message`'s change.
    pub async fn load(store: &dyn Store, message: &LicenceMessage) -> Result<Attempts, StoreError> {
        let key = key_of(message);
        let prior = match store.get(&key).await? {
            Some(record) => {
                let parsed: AttemptRecord =
                    mdops_core::json::from_value(record.body).map_err(|reason| StoreError::Corrupt {
                        key: key.clone(),
                        reason,
                    })?;
                Some((parsed, record.version))
            }
            None => None,
        };
        Ok(Attempts { key, prior })
    }

    /// The number of the attempt in hand (1 for the first).
    pub fn current(&self) -> u32 {
        self.prior.as_ref().map_or(0, |(r, _)| r.attempts) + 1
    }

    /// When the first attempt ran (`now` if this is it).
    pub fn first_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.prior.as_ref().map_or(now, |(r, _)| r.first_at)
    }

    /// Records the attempt in hand as failed with `reason`. Fails with `ConditionFailed` if another
    /// delivery of the same change recorded one first.
    pub async fn record(&self, store: &dyn Store, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let body = AttemptRecord {
            attempts: self.current(),
            first_at: self.first_at(now),
            last_reason: reason.to_string(),
        };
        let condition = match &self.prior {
            Some((_, version)) => Condition::Version(*version),
            None => Condition::Absent,
        };
        let body = serde_json::to_value(&body).map_err(|e| StoreError::Invalid(e.to_string()))?;
        store
            .transact(vec![Write::Put {
                record: NewRecord {
                    key: self.key.clone(),
                    body,
                    collection: None,
                    due: None,
                },
                condition,
            }])
            .await
    }

    /// Forgets the attempts once the change finished (done or failed for good).
    pub async fn clear(&self, store: &dyn Store) -> Result<(), StoreError> {
        if self.prior.is_none() {
            return Ok(());
        }
        match store
            .transact(vec![Write::Delete {
                key: self.key.clone(),
                condition: Condition::Any,
            }])
            .await
        {
            // Already cleared by another delivery of the same change.
            Err(StoreError::ConditionFailed { .. }) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdops_core::tenant::TenantId;

    #[test]
    fn one_change_has_one_key_whatever_the_order_or_case() {
        let tid: TenantId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
        let a = LicenceMessage::add(&tid, "Adele@contoso.com", &["SPE_E5".into(), "EMS".into()], "cli:a");
        let b = LicenceMessage::add(&tid, "adele@contoso.com", &["EMS".into(), "spe_e5".into()], "run:x");
        assert_eq!(key_of(&a), key_of(&b));
        let c = LicenceMessage::add(&tid, "adele@contoso.com", &["EMS".into()], "cli:a");
        assert_ne!(key_of(&a), key_of(&c));
        let mut d = a.clone();
        d.disabled_plans = vec!["YAMMER_ENTERPRISE".into()];
        assert_ne!(key_of(&a), key_of(&d));
        assert_eq!(key_of(&a).partition, format!("licence#{tid}"));
    }
}
