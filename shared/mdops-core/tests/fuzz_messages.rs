//! Fuzzing the queue message decoders (`mdops_core::message::decode`) of the queues' bodies (the
//! onboarding queue carries steps, ring chunks and catalogue apps):
//! generated valid messages round-trip; mutated bodies (a field dropped, renamed, of the wrong
//! type, huge, nested deep; the text cut or a byte replaced) and bodies from elsewhere never panic
//! and are refused with an error naming the field at fault, or saying the body is not JSON.
//! Cases per property: `MDOPS_FUZZ_CASES` (default 256).

use mdops_core::access::{AccessMessage, AccessWork, MailKind};
use mdops_core::apps::{AppKind, AppMessage, CatalogueApp, Intent, RunAs};
use mdops_core::licences::LicenceMessage;
use mdops_core::message::{DecodeError, Message, decode};
use mdops_core::onboarding::StepMessage;
use mdops_core::rings::RingMembersMessage;
use mdops_core::tenant::{Ring, TenantId};
use mdops_fuzz::{any_json, check, check_any, config, mutated};
use proptest::prelude::*;
use serde_json::Value;

/// The tenant settings docs/tenant-settings.md lists.
const SETTINGS: &[&str] = &[
    "account_prefix",
    "account_domain",
    "usage_location",
    "service_account_skus",
    "access_role_groups",
    "access_max_hours",
    "graph_budget.identity_writes_per_150s",
    "graph_budget.intune_writes_per_20s",
    "security_baseline",
    "security_baseline_template_id",
    "deferral.fast.quality_days",
    "deferral.broad.feature_days",
];

fn tenant() -> impl Strategy<Value = TenantId> {
    any::<u128>().prop_map(|n| uuid_text(n).parse().expect("a GUID is a tenant id"))
}

fn uuid_text(n: u128) -> String {
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Printable text without quotes' trouble (any Unicode letter, digits, some punctuation).
fn text() -> impl Strategy<Value = String> {
    "[\\p{L}\\p{N} _.:@-]{1,40}".prop_filter("not blank", |s| !s.trim().is_empty())
}

fn step_message() -> impl Strategy<Value = StepMessage> {
    let steps = prop::sample::select(vec![
        "preflight",
        "mdm-authority",
        "security-baseline",
        "directory-roles",
        "licences",
        "group:test",
        "group:broad",
        "update-policy:fast",
        "update-policy-assignment:first",
    ]);
    (text(), tenant(), steps, 1..u32::MAX).prop_map(|(run, t, step, attempt)| StepMessage::new(&run, &t, step, attempt))
}

fn part_number() -> impl Strategy<Value = String> {
    "[A-Z0-9_-]{1,20}"
}

fn licence_message() -> impl Strategy<Value = LicenceMessage> {
    (
        tenant(),
        text(),
        prop::collection::vec(part_number(), 1..4),
        prop::collection::vec("[a-z]{1,6}", 0..3),
        text(),
    )
        .prop_map(|(t, user, add, plans, by)| {
            let mut m = LicenceMessage::add(&t, &user, &add, &by);
            m.disabled_plans = plans;
            m
        })
}

fn access_message() -> impl Strategy<Value = AccessMessage> {
    let work = prop::sample::select(vec![
        AccessWork::Elevate,
        AccessWork::Remove,
        AccessWork::Mail {
            mail: MailKind::Requested,
        },
        AccessWork::Mail { mail: MailKind::Ended },
    ]);
    (tenant(), "[a-z0-9-]{1,64}", work).prop_map(|(t, id, work)| AccessMessage {
        v: mdops_core::access::ACCESS_MESSAGE_VERSION,
        kind: AccessMessage::KIND.into(),
        request_id: id,
        tenant_id: t,
        work,
    })
}

fn ring_message() -> impl Strategy<Value = RingMembersMessage> {
    (
        tenant(),
        prop::sample::select(Ring::ALL.to_vec()),
        any::<u128>(),
        prop::collection::vec(any::<u128>(), 1..5),
        text(),
    )
        .prop_map(|(t, ring, group, devices, by)| {
            let devices = devices.into_iter().map(uuid_text).collect();
            RingMembersMessage::new(&t, ring, &uuid_text(group), devices, &by)
        })
}

fn app_message() -> impl Strategy<Value = AppMessage> {
    (
        tenant(),
        "[a-z0-9-]{1,20}",
        text(),
        any::<bool>(),
        prop::sample::subsequence(Ring::ALL.to_vec(), 1..=4),
        any::<u128>(),
        text(),
    )
        .prop_map(|(t, key, name, web, rings, group, by)| {
            let app = CatalogueApp {
                key: key.clone(),
                display_name: name,
                publisher: "Contoso".into(),
                description: None,
                kind: if web { AppKind::Web } else { AppKind::Winget },
                package_identifier: (!web).then(|| format!("9N{}", key.to_uppercase())),
                run_as: (!web).then_some(RunAs::User),
                app_url: web.then(|| format!("https://{key}.contoso.example")),
                intent: if web { Intent::Available } else { Intent::Required },
                rings: rings.clone(),
            };
            let groups = rings.iter().map(|r| (*r, uuid_text(group))).collect();
            AppMessage::new(&t, app, groups, &by)
        })
}

fn as_result<M>(r: Result<M, DecodeError>) -> Result<M, String> {
    r.map_err(|e| e.to_string())
}

/// A valid body of each queue, to mutate.
fn valid_bodies() -> impl Strategy<Value = (&'static str, Value)> {
    let json = |body: String| serde_json::from_str::<Value>(&body).expect("a message is JSON");
    prop_oneof![
        step_message().prop_map(move |m| ("step", json(m.to_body()))),
        licence_message().prop_map(move |m| ("licence", json(m.to_body()))),
        access_message().prop_map(move |m| ("access", json(m.to_body()))),
        ring_message().prop_map(move |m| ("ring", json(m.to_body()))),
        app_message().prop_map(move |m| ("app", json(m.to_body()))),
    ]
}

/// Decodes `body` as the message of `queue`.
fn decode_as(queue: &str, body: &str) -> Result<(), String> {
    match queue {
        "step" => as_result(decode::<StepMessage>(body)).map(drop),
        "licence" => as_result(decode::<LicenceMessage>(body)).map(drop),
        "access" => as_result(decode::<AccessMessage>(body)).map(drop),
        "app" => as_result(decode::<AppMessage>(body)).map(drop),
        _ => as_result(decode::<RingMembersMessage>(body)).map(drop),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_messages_round_trip(step in step_message(), licence in licence_message(), access in access_message(), ring in ring_message(), app in app_message()) {
        prop_assert_eq!(decode::<AppMessage>(&app.to_body()).unwrap(), app);
        prop_assert_eq!(decode::<StepMessage>(&step.to_body()).unwrap(), step);
        prop_assert_eq!(decode::<LicenceMessage>(&licence.to_body()).unwrap(), licence);
        prop_assert_eq!(decode::<AccessMessage>(&access.to_body()).unwrap(), access);
        prop_assert_eq!(decode::<RingMembersMessage>(&ring.to_body()).unwrap(), ring);
    }

    #[test]
    fn mutated_messages_are_refused_naming_the_field(
        (queue, input) in valid_bodies().prop_flat_map(|(q, v)| (Just(q), mutated(v)))
    ) {
        let result = decode_as(queue, &input.text());
        check(&input, &result)?;
    }

    /// `mdops tenants add --set NAME=VALUE` / `tenants set`: any name and value a person types is
    /// refused naming the setting, never a panic.
    #[test]
    fn any_tenant_setting_is_refused_naming_it_or_taken(
        name in prop_oneof![
            prop::sample::select(SETTINGS.to_vec()).prop_map(str::to_string),
            "[a-z_.]{0,30}",
            "deferral\\.[a-z]{0,8}\\.[a-z_]{0,16}",
        ],
        value in prop_oneof![".{0,40}", "[0-9]{0,25}", "-[0-9]{1,5}", Just(String::new()), Just("x".repeat(100_000))],
    ) {
        let mut settings = mdops_core::tenant::TenantSettings::default();
        match settings.set(&name, &value) {
            Ok(()) => {}
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(&name) || name.is_empty(), "{name}={value:.40}: {message}");
                prop_assert!(!message.contains('\n'), "{message}");
            }
        }
    }

    #[test]
    fn bodies_from_elsewhere_are_refused_naming_something(value in any_json(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let words = ["not JSON", "not a JSON object", "v:", "kind:"];
        for queue in ["step", "licence", "access", "ring", "app"] {
            check_any(&decode_as(queue, &value.to_string()), &words)?;
            check_any(&decode_as(queue, &String::from_utf8_lossy(&bytes)), &words)?;
        }
    }
}
