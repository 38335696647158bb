//! Fuzzing the access API's decoders of outside input over HTTP: request bodies (`POST /requests`,
//! the decision bodies) and bearer tokens. Mutated inputs (a field dropped, renamed, of the wrong
//! type, huge, nested deep; the text cut or a byte replaced) never crash the API: a body is
//! refused with 400 naming the field (or saying it is not JSON), 413 when over the size limit; a
//! token changed in any way is refused, and a token whose header or claims are not what they must
//! be says which. Cases per property: `MDOPS_FUZZ_CASES` (default 256).

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mdops_fuzz::{Mutated, check, config, mutated};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use support::{ALICE, BOB, Backend, Rig, SOC};

/// Sends `body` (raw bytes) to `path` with `token`; the status and the error text. A fresh
/// connection each time: the server closes one whose body it refused unread (413), as HTTP allows.
async fn send(rig: &Rig, token: &str, path: &str, body: &[u8]) -> (u16, String) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let resp = http
        .post(format!("{}{path}", rig.api))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("the API answers (it did not crash)");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let error = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(text);
    (status, error)
}

/// Judges the API's answer to a mutated body: success, a refusal of the request's content (403,
/// 409, 422: it decoded), 413 for a body over the limit, or 400 naming the field.
fn judge(input: &Mutated, status: u16, error: String) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "status {status} for {:?}: {error}", input.field);
    match status {
        200..=299 | 403 | 404 | 409 | 422 => Ok(()),
        413 => {
            prop_assert!(input.bytes.len() > 64 * 1024, "413 for a small body");
            Ok(())
        }
        400 => {
            let error = error.strip_prefix("body: ").unwrap_or(&error).to_string();
            check(input, &Err::<(), _>(error))
        }
        other => {
            prop_assert!(false, "unexpected status {other}: {error}");
            Ok(())
        }
    }
}

#[test]
fn mutated_request_bodies_are_refused_naming_the_field() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rig = rt.block_on(Rig::start(Backend::Sqlite));
    let alice = rt.block_on(rig.member(ALICE));
    let valid = json!({
        "tenant": rig.customer, "role_group": SOC, "justification": "investigate alert 42",
        "ticket": "INC0042", "duration_minutes": 30,
    });
    let mut runner = TestRunner::new(config());
    runner
        .run(&mutated(valid), |input| {
            let (status, error) = rt.block_on(send(&rig, &alice, "/requests", &input.bytes));
            judge(&input, status, error)
        })
        .unwrap();
}

#[test]
fn mutated_decision_bodies_are_refused_naming_the_field() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rig = rt.block_on(Rig::start(Backend::Sqlite));
    let bob = rt.block_on(rig.member(BOB));
    let id = rt.block_on(rig.request(30));
    let mut runner = TestRunner::new(config());
    runner
        .run(&mutated(json!({"reason": "not needed any more"})), |input| {
            // A second member's denial; once denied, 409 (the body is decoded first).
            let (status, error) = rt.block_on(send(&rig, &bob, &format!("/requests/{id}/deny"), &input.bytes));
            judge(&input, status, error)
        })
        .unwrap();
}

fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A token with segment `i` replaced by `bytes` (base64url, as a forger would send it).
fn with_segment(token: &str, i: usize, bytes: &[u8]) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[i] = URL_SAFE_NO_PAD.encode(bytes);
    parts.join(".")
}

#[test]
fn a_token_changed_in_any_way_is_refused_and_a_malformed_one_says_what() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rig = rt.block_on(Rig::start(Backend::Sqlite));
    let token = rt.block_on(rig.member(ALICE));
    rt.block_on(rig.validator.validate(&token))
        .expect("the unchanged token is valid");
    let (header, payload) = (segment(&token, 0), segment(&token, 1));
    let changed = prop_oneof![
        mutated(header).prop_map(|m| (0usize, m)),
        mutated(payload).prop_map(|m| (1usize, m)),
    ];
    let mut runner = TestRunner::new(config());
    runner
        .run(&changed, |(i, input)| {
            let forged = with_segment(&token, i, &input.bytes);
            prop_assume!(forged != token);
            let result = rt.block_on(rig.validator.validate(&forged));
            prop_assert!(result.is_err(), "a changed token was accepted: {:?}", input.mutation);
            let error = result.unwrap_err().to_string();
            if error.contains("malformed") && !error.contains("longer than") {
                let detail = error.rsplit(": ").next().unwrap_or(&error).to_string();
                let detail = if error.contains("not JSON") {
                    format!("not JSON ({detail})")
                } else {
                    error.clone()
                };
                check(&input, &Err::<(), _>(detail))?;
            }
            Ok(())
        })
        .unwrap();
    let bytes = (0..token.len(), any::<u8>(), 0..token.len() + 1);
    runner
        .run(&bytes, |(at, b, cut)| {
            let mut damaged = token.as_bytes().to_vec();
            damaged[at] = b;
            damaged.truncate(cut.max(1));
            let damaged = String::from_utf8_lossy(&damaged).into_owned();
            prop_assume!(damaged != token);
            let result = rt.block_on(rig.validator.validate(&damaged));
            prop_assert!(result.is_err(), "a damaged token was accepted: {damaged}");
            Ok(())
        })
        .unwrap();
}
