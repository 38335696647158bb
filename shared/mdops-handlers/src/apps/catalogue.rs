//! Which catalogue a tenant has: its own (set with `mdops apps catalogue --tenant T --file F`,
//! kept in the store so the scheduled sync on AWS reads it too), or the built-in default
//! (`shared/mdops-core/catalogue/default.json`).

use mdops_core::apps::{Catalogue, default_catalogue};
use mdops_core::store::{AuditEntry, Condition, Key, NewRecord, Write};
use mdops_core::tenant::TenantId;
use serde::Serialize;
use serde_json::json;

use super::AppsError;
use crate::deps::Deps;

/// Where a tenant's catalogue came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The tenant's own.
    Tenant,
    /// The built-in default.
    Default,
}

fn key(tenant: &TenantId) -> Key {
    Key::new(format!("apps#{tenant}"), "catalogue")
}

/// The tenant's catalogue and where it came from.
pub async fn effective(deps: &Deps, tenant: &TenantId) -> Result<(Catalogue, Source), AppsError> {
    match deps.store.get(&key(tenant)).await? {
        None => Ok((default_catalogue(), Source::Default)),
        Some(record) => {
            let bad = |problem: String| AppsError::BadCatalogue {
                tenant: tenant.to_string(),
                problem,
            };
            let catalogue: Catalogue = serde_json::from_value(record.body).map_err(|e| bad(e.to_string()))?;
            catalogue.validate().map_err(|e| bad(e.to_string()))?;
            Ok((catalogue, Source::Tenant))
        }
    }
}

/// Gives the tenant its own catalogue (checked), audited.
pub async fn set(deps: &Deps, tenant: &TenantId, catalogue: &Catalogue, actor: &str) -> Result<(), AppsError> {
    catalogue.validate().map_err(|e| AppsError::BadCatalogue {
        tenant: tenant.to_string(),
        problem: e.to_string(),
    })?;
    let record = NewRecord {
        key: key(tenant),
        body: json!(catalogue),
        collection: None,
        due: None,
    };
    let keys: Vec<&str> = catalogue.apps.iter().map(|a| a.key.as_str()).collect();
    deps.store
        .transact(vec![
            Write::Put {
                record,
                condition: Condition::Any,
            },
            Write::audit(AuditEntry {
                subject: format!("apps:{tenant}"),
                actor: actor.to_string(),
                action: "catalogue.set".into(),
                detail: json!({ "apps": keys }),
                at: deps.now(),
            }),
        ])
        .await?;
    Ok(())
}

/// Returns the tenant to the default catalogue, audited. Apps already made stay in Intune.
pub async fn clear(deps: &Deps, tenant: &TenantId, actor: &str) -> Result<(), AppsError> {
    deps.store
        .transact(vec![
            Write::Delete {
                key: key(tenant),
                condition: Condition::Any,
            },
            Write::audit(AuditEntry {
                subject: format!("apps:{tenant}"),
                actor: actor.to_string(),
                action: "catalogue.default".into(),
                detail: json!({}),
                at: deps.now(),
            }),
        ])
        .await?;
    Ok(())
}
