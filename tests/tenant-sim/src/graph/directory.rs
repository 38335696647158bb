//! Smaller directory resources: `/subscribedSkus`, and `/invitations` (which creates a guest user
//! with an `#EXT#` UPN, unless the tenant lets no one invite guests).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::odata::{self, GraphError, ListSpec};
use super::users::user_object;
use super::{Ctx, GraphResponse};
use crate::store::{Obj, SentMail, Tenant};

/// Sender of invitation mail, as Microsoft sends it.
pub const INVITATION_SENDER: &str = "invites@microsoft.com";

/// `GET /subscribedSkus`.
pub fn subscribed_skus(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let spec = ListSpec {
        entity_set: "subscribedSkus",
        type_name: "SubscribedSku",
        filterable: &[],
        sortable: &["displayName"],
        count_needs_eventual: false,
        default_select: None,
    };
    odata::list(ctx, &spec, t.skus.visible(ctx.now).map(|o| o.data.clone()).collect())
}

/// `POST /invitations`: creates (or finds) the guest user for the invited address.
pub fn invite(t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let body = &odata::entity_body(ctx, "microsoft.graph.invitation")?;
    const ALLOWED: &[&str] = &[
        "invitedUserEmailAddress",
        "inviteRedirectUrl",
        "invitedUserDisplayName",
        "sendInvitationMessage",
        "invitedUserMessageInfo",
        "invitedUserType",
    ];
    for k in body.keys() {
        if !ALLOWED.contains(&k.as_str()) {
            return Err(GraphError::bad_request_generic(format!("Invalid property '{k}'.")));
        }
    }
    let email = body
        .get("invitedUserEmailAddress")
        .and_then(Value::as_str)
        .filter(|e| e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.')))
        .ok_or_else(|| GraphError::bad_request_generic("The invited user email address is invalid or missing."))?;
    let redirect = body
        .get("inviteRedirectUrl")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request_generic("Property 'inviteRedirectUrl' is required."))?;
    if t.identity_policies.allow_invites_from == "none" {
        // `allowInvitesFrom: none` stops everyone, admins and apps included, from inviting.
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Guest invitations not allowed for your company. Contact your company administrator for more details.",
        ));
    }
    let upn = format!("{}#EXT#@{}", email.replace('@', "_"), t.initial_domain());
    let existing = t.users.all().find(|o| {
        o.data
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .is_some_and(|u| u.eq_ignore_ascii_case(&upn))
    });
    let (id, display) = match existing {
        Some(o) => (o.id.clone(), o.data.get("displayName").cloned().unwrap_or(Value::Null)),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            let display = body
                .get("invitedUserDisplayName")
                .cloned()
                .unwrap_or_else(|| json!(email));
            let mut fields = serde_json::Map::new();
            fields.insert("userPrincipalName".into(), json!(upn));
            fields.insert("displayName".into(), display.clone());
            fields.insert("mail".into(), json!(email));
            fields.insert("mailNickname".into(), json!(email.replace('@', "_")));
            fields.insert("accountEnabled".into(), json!(true));
            fields.insert(
                "userType".into(),
                json!(body.get("invitedUserType").and_then(Value::as_str).unwrap_or("Guest")),
            );
            fields.insert("externalUserState".into(), json!("PendingAcceptance"));
            fields.insert("otherMails".into(), json!([email]));
            t.users.insert(Obj {
                id: id.clone(),
                visible_at: ctx.visible_at(),
                data: user_object(&id, &fields),
            });
            (id, display)
        }
    };
    let invite_id = uuid::Uuid::new_v4().to_string();
    let redeem_url = format!("https://login.microsoftonline.com/redeem?rd={invite_id}");
    // With sendInvitationMessage, Microsoft mails the invitee; the simulator records that mail.
    if body.get("sendInvitationMessage").and_then(Value::as_bool) == Some(true) {
        let note = body
            .get("invitedUserMessageInfo")
            .and_then(|m| m.get("customizedMessageBody"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        t.mail.push(SentMail {
            from: INVITATION_SENDER.into(),
            to: vec![email.to_string()],
            subject: format!("You're invited to the {} organization", t.display_name),
            body: format!("{note}\n\nAccept invitation: {redeem_url}").trim().to_string(),
            content_type: "Text".into(),
            sent_at: chrono::Utc::now().to_rfc3339(),
        });
    }
    Ok(GraphResponse::json(
        StatusCode::CREATED,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#invitations/$entity", ctx.base),
            "id": invite_id,
            "inviteRedeemUrl": redeem_url,
            "invitedUserDisplayName": display,
            "invitedUserEmailAddress": email,
            "inviteRedirectUrl": redirect,
            "invitedUserType": "Guest",
            "sendInvitationMessage": body.get("sendInvitationMessage").cloned().unwrap_or(json!(false)),
            "status": "PendingAcceptance",
            "invitedUser": {"id": id},
        }),
    ))
}
