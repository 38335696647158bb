//! The directory roles onboarding uses, activated. Natural key: the role's built-in template id.
//!
//! `GET /directoryRoles` lists only *activated* roles, and a new tenant has only Global
//! Administrator active; any other role is activated from its template with
//! `POST /directoryRoles {"roleTemplateId"}` before members can be added
//! (<https://learn.microsoft.com/en-us/graph/api/directoryrole-post-directoryroles>,
//! <https://learn.microsoft.com/en-us/graph/api/resources/directoryroletemplate>). Activation is
//! unique per template, so a role activated meanwhile (a concurrent run, or our own create whose
//! answer was lost) answers 400 "A conflicting object ..." and is read by its template
//! (`GET /directoryRoles(roleTemplateId='...')`). The role list is read once per run, here; the
//! membership steps use the ids this step records.

use std::collections::BTreeMap;

use mdops_core::onboarding::DirectoryRole;
use mdops_core::outcome::StepOutcome;
use mdops_graph::GraphError;

use super::StepContext;

/// The output field holding `{role name: role object id}`.
pub const ROLES_FIELD: &str = "roles";

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    let active = ctx.graph.list_directory_roles().await?;
    let mut ids = BTreeMap::new();
    let mut activated = Vec::new();
    for role in DirectoryRole::ALL {
        let template = role.template_id();
        let found = active.iter().find(|r| {
            r.role_template_id
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(template))
        });
        let id = match found {
            Some(r) => r.id.clone(),
            None => {
                ctx.attempting_write();
                match ctx.graph.activate_directory_role(template).await {
                    Ok(r) => {
                        activated.push(role.as_str());
                        r.id
                    }
                    // Entra documents no wording for "already active"; the simulator answers its usual
                    // conflicting-object 400. Any 400 is checked by reading the one role.
                    Err(e) if e.is_conflicting_object() || e.status() == Some(400) => {
                        match ctx.graph.get_directory_role_by_template(template).await? {
                            Some(r) => r.id,
                            None => {
                                return Ok(StepOutcome::retry(
                                    ctx.lag_window,
                                    format!(
                                        "directory role {} (template {template}) is being activated but is not readable yet",
                                        role.as_str()
                                    ),
                                ));
                            }
                        }
                    }
                    // Activation is unique per template: after a lost answer the retry reads
                    // the role list again and finds it, or activates it then.
                    Err(e) if e.outcome_unknown() => {
                        return Ok(StepOutcome::retry(
                            ctx.lag_window,
                            format!(
                                "activating directory role {}: the answer was lost ({}); reading the roles again",
                                role.as_str(),
                                e.reason()
                            ),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        ids.insert(role.as_str().to_string(), id);
    }
    Ok(StepOutcome::done(serde_json::json!({
        ROLES_FIELD: ids,
        "activated": activated,
        "created": !activated.is_empty(),
    })))
}

/// The object id of `role` as the directory-roles step recorded it, or a failed outcome.
pub fn recorded_role_id(ctx: &StepContext<'_>, role: DirectoryRole) -> Result<String, StepOutcome> {
    let step = mdops_core::onboarding::StepKind::DirectoryRoles.name();
    ctx.deps
        .get(&step)
        .and_then(|o| o.get(ROLES_FIELD))
        .and_then(|r| r.get(role.as_str()))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            StepOutcome::failed(format!(
                "step {step} recorded no object id for directory role {}; replay step {step}",
                role.as_str()
            ))
        })
}
