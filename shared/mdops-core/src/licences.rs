//! The licence queue's message: one user's licence change in one tenant.
//!
//! One message per user, so a throttled or failed user never holds up the others.

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::tenant::TenantId;

/// Current version of [`LicenceMessage`].
pub const LICENCE_MESSAGE_VERSION: u64 = 1;

/// Change one user's licences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceMessage {
    pub v: u64,
    /// Always `licence.change`.
    pub kind: String,
    pub tenant_id: TenantId,
    /// The user's object id or userPrincipalName.
    pub user: String,
    /// SKU part numbers to add, e.g. `SPE_E5`.
    #[serde(default)]
    pub add: Vec<String>,
    /// SKU part numbers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Service plan names to disable in the added SKUs.
    #[serde(default)]
    pub disabled_plans: Vec<String>,
    /// Who asked (`run:<id>`, `cli:<upn>`).
    pub requested_by: String,
}

impl LicenceMessage {
    /// A message adding `skus` to `user`.
    pub fn add(tenant_id: &TenantId, user: &str, skus: &[String], requested_by: &str) -> Self {
        LicenceMessage {
            v: LICENCE_MESSAGE_VERSION,
            kind: Self::KIND.to_string(),
            tenant_id: tenant_id.clone(),
            user: user.to_string(),
            add: skus.to_vec(),
            remove: Vec::new(),
            disabled_plans: Vec::new(),
            requested_by: requested_by.to_string(),
        }
    }

    /// The JSON body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a licence message always serialises")
    }
}

fn valid_part_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Message for LicenceMessage {
    const KIND: &'static str = "licence.change";
    const VERSIONS: &'static [u64] = &[LICENCE_MESSAGE_VERSION];

    fn validate(&self) -> Result<(), String> {
        if self.user.trim().is_empty() {
            return Err("user: empty (give an object id or a userPrincipalName)".into());
        }
        if self.add.is_empty() && self.remove.is_empty() {
            return Err("add/remove: nothing to change".into());
        }
        for (field, list) in [("add", &self.add), ("remove", &self.remove)] {
            if let Some(bad) = list.iter().find(|s| !valid_part_number(s)) {
                return Err(format!("{field}: {bad:?} is not a SKU part number (e.g. SPE_E5)"));
            }
        }
        if let Some(both) = self.add.iter().find(|s| self.remove.contains(s)) {
            return Err(format!("add/remove: {both} is both added and removed"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    #[test]
    fn licence_messages_validate() {
        let tid: TenantId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
        let ok = LicenceMessage::add(&tid, "a@contoso.com", &["SPE_E5".into()], "cli:me");
        assert_eq!(decode::<LicenceMessage>(&ok.to_body()).unwrap(), ok);
        let mut bad = ok.clone();
        bad.add = vec!["E5 please".into()];
        assert!(
            decode::<LicenceMessage>(&bad.to_body())
                .unwrap_err()
                .to_string()
                .contains("add:")
        );
        let mut empty = ok.clone();
        empty.add.clear();
        assert!(
            decode::<LicenceMessage>(&empty.to_body())
                .unwrap_err()
                .to_string()
                .contains("nothing to change")
        );
    }
}
