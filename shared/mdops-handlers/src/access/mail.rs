//! The text of the access mails: who, which tenant, which role group, why, which ticket, how long.

use mdops_core::access::{AccessRequest, AccessSettings, MailKind};
use mdops_graph::resources::users::Mail;

/// The mail of `kind` about `request`: to the team alias for a new request, else to the requester.
pub fn compose(kind: MailKind, request: &AccessRequest, settings: &AccessSettings) -> Mail {
    let facts = format!(
        "Request: {id}\nRequester: {name} <{upn}>\nTenant: {tenant}\nRole group: {group}\nJustification: {why}\n\
         Ticket: {ticket}\nDuration: {minutes} minutes\n",
        id = request.id,
        name = request.requester_name,
        upn = request.requester,
        tenant = request.tenant_id,
        group = request.role_group,
        why = request.justification,
        ticket = request.ticket,
        minutes = request.duration_minutes,
    );
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
    let (subject, intro, to) = match kind {
        MailKind::Requested => (
            format!(
                "Access request {}: {} asks for {} in {}",
                request.id, request.requester, request.role_group, request.tenant_id
            ),
            format!(
                "A second team member must approve or deny this request before {}.\n\
                 Approve: mdops access approve {id}\nDeny: mdops access deny {id} --reason ...",
                request.approval_deadline.to_rfc3339(),
                id = request.id
            ),
            settings.team_alias.clone(),
        ),
        MailKind::Approved => (
            format!("Access request {} approved", request.id),
            format!(
                "Approved by {}. Your guest account is being added to the role group; access ends at {}.",
                request
                    .approvals
                    .iter()
                    .map(|a| a.by.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                when(request.ends_at)
            ),
            request.requester.clone(),
        ),
        MailKind::Denied => (
            format!("Access request {} denied", request.id),
            format!(
                "Denied by {}: {}",
                request.decided_by.as_deref().unwrap_or("-"),
                request.reason.as_deref().unwrap_or("-")
            ),
            request.requester.clone(),
        ),
        MailKind::Expired => (
            format!("Access request {} expired", request.id),
            format!(
                "Nobody approved the request before {}. File a new one if you still need access.",
                request.approval_deadline.to_rfc3339()
            ),
            request.requester.clone(),
        ),
        MailKind::Ended => (
            format!("Access {} ended", request.id),
            format!(
                "Your access ended ({}{}). Your guest account is removed from the role group.",
                request.state,
                request.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            ),
            request.requester.clone(),
        ),
    };
    Mail {
        subject,
        body: format!("{intro}\n\n{facts}"),
        html: false,
        to: vec![to],
    }
}
