//! Generated and mutated inputs for the decoders of outside input (queue bodies, Lambda events, API
//! bodies, tokens, stored records, settings), and the one property they all must have: never a
//! panic, and an error that names the field at fault (or says the input is not JSON).
//!
//! A test gives a valid value; [`mutated`] breaks it one way per case: a field dropped or renamed,
//! a value of the wrong type, a huge string, deep nesting, the text truncated or a byte replaced.
//! [`check`] then judges the decoder's answer. Cases per property: [`CASES_ENV`] (default
//! [`DEFAULT_CASES`], small enough for CI on two cores).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Map, Value};

/// Environment variable: cases per property (e.g. `MDOPS_FUZZ_CASES=10000` for a long run).
pub const CASES_ENV: &str = "MDOPS_FUZZ_CASES";
/// Environment variable: the seed (a number, or `random`); fixed by default so CI is repeatable.
pub const SEED_ENV: &str = "MDOPS_FUZZ_SEED";
/// The seed when [`SEED_ENV`] is not set.
pub const DEFAULT_SEED: u64 = 14;
/// Cases per property when [`CASES_ENV`] is not set.
pub const DEFAULT_CASES: u32 = 256;
/// Length of a "huge" string: far past any field's sensible size, still quick to decode.
pub const HUGE_LEN: usize = 1 << 20;
/// Nesting deeper than serde_json's recursion limit (128): must be refused, not overflow a stack.
pub const DEEP: usize = 5_000;
/// Nesting a decoder must see (below the recursion limit) and refuse by the field's name.
pub const SHALLOW: usize = 20;

/// The proptest configuration of every fuzz property: [`CASES_ENV`] cases, no regression files.
pub fn config() -> Config {
    let cases = std::env::var(CASES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let rng_seed = match std::env::var(SEED_ENV).ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(n) => n.parse().map(RngSeed::Fixed).unwrap_or(RngSeed::Fixed(DEFAULT_SEED)),
        None => RngSeed::Fixed(DEFAULT_SEED),
    };
    Config {
        cases,
        rng_seed,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// How a valid input was broken.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The field at the path removed.
    Drop(Vec<Seg>),
    /// The field's key changed to another.
    Rename(Vec<Seg>, String),
    /// The field's value replaced by one of another type.
    WrongType(Vec<Seg>, Value),
    /// The field's value replaced by a string of [`HUGE_LEN`] bytes.
    Huge(Vec<Seg>),
    /// The field's value replaced by arrays nested this deep.
    Nest(Vec<Seg>, usize),
    /// The text cut after this many bytes.
    Truncate(usize),
    /// The byte at this offset replaced.
    Replace(usize, u8),
}

/// A broken input, as text, with the field an error must name (`None`: the text itself was cut
/// or damaged, so the error may name any field or say it is not JSON).
#[derive(Debug, Clone)]
pub struct Mutated {
    pub mutation: Mutation,
    pub bytes: Vec<u8>,
    /// The name of the field broken (the last key on its path).
    pub field: Option<String>,
    /// The keys on the broken field's path, outermost first (an error may name the object that
    /// holds the field: serde reports a bad field of an internally tagged enum at the enum).
    pub path: Vec<String>,
    /// Every key of the valid input (what a damaged text's error may name).
    pub keys: Vec<String>,
}

impl Mutated {
    /// The bytes as text (a replaced byte may have broken UTF-8: lossily).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The input as a JSON value, when it still parses (deep nesting does not).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_slice(&self.bytes).ok()
    }
}

/// Every path to a field (object key) in `value`, depth first.
pub fn paths(value: &Value) -> Vec<Vec<Seg>> {
    fn walk(value: &Value, at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    at.push(Seg::Key(k.clone()));
                    out.push(at.clone());
                    walk(v, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    at.push(Seg::Index(i));
                    walk(v, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn keys(value: &Value) -> Vec<String> {
    let mut all: Vec<String> = paths(value)
        .into_iter()
        .filter_map(|p| match p.last() {
            Some(Seg::Key(k)) => Some(k.clone()),
            _ => None,
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The parent object of the field at `path`, and the field's key.
fn parent<'a>(root: &'a mut Value, path: &[Seg]) -> Option<(&'a mut Map<String, Value>, String)> {
    let (last, init) = path.split_last()?;
    let mut at = root;
    for seg in init {
        at = match seg {
            Seg::Key(k) => at.get_mut(k)?,
            Seg::Index(i) => at.get_mut(*i)?,
        };
    }
    match (at, last) {
        (Value::Object(map), Seg::Key(k)) => Some((map, k.clone())),
        _ => None,
    }
}

/// A stand-in replaced in the text by deep nesting (a deep `Value` would overflow the stack when
/// dropped; the text never becomes one).
const NEST_MARK: &str = "\u{1}mdops-fuzz-nest\u{1}";

/// Applies `mutation` to `valid` (as a value, then as text).
pub fn apply(valid: &Value, mutation: Mutation) -> Mutated {
    let mut value = valid.clone();
    let mut field = None;
    let mut nest = None;
    match &mutation {
        Mutation::Drop(path) => {
            if let Some((map, k)) = parent(&mut value, path) {
                map.remove(&k);
                field = Some(k);
            }
        }
        Mutation::Rename(path, to) => {
            if let Some((map, k)) = parent(&mut value, path)
                && let Some(v) = map.remove(&k)
            {
                // Never onto another field's key (that would be a different break).
                let mut to = to.clone();
                while map.contains_key(&to) || to == k {
                    to.push('_');
                }
                map.insert(to, v);
                field = Some(k);
            }
        }
        Mutation::WrongType(path, with) => {
            if let Some((map, k)) = parent(&mut value, path) {
                map.insert(k.clone(), with.clone());
                field = Some(k);
            }
        }
        Mutation::Huge(path) => {
            if let Some((map, k)) = parent(&mut value, path) {
                map.insert(k.clone(), Value::String("x".repeat(HUGE_LEN)));
                field = Some(k);
            }
        }
        Mutation::Nest(path, depth) => {
            if let Some((map, k)) = parent(&mut value, path) {
                map.insert(k.clone(), Value::String(NEST_MARK.into()));
                field = Some(k);
                nest = Some(*depth);
            }
        }
        Mutation::Truncate(_) | Mutation::Replace(..) => {}
    }
    let mut text = value.to_string();
    if let Some(depth) = nest {
        let quoted = Value::String(NEST_MARK.into()).to_string();
        text = text.replace(&quoted, &format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    }
    let mut bytes = text.into_bytes();
    match mutation {
        Mutation::Truncate(at) => bytes.truncate(at % bytes.len().max(1)),
        Mutation::Replace(at, b) if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        _ => {}
    }
    let path = match &mutation {
        Mutation::Drop(p)
        | Mutation::Rename(p, _)
        | Mutation::WrongType(p, _)
        | Mutation::Huge(p)
        | Mutation::Nest(p, _) => p
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(k.clone()),
                Seg::Index(_) => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Mutated {
        mutation,
        bytes,
        field,
        path,
        keys: keys(valid),
    }
}

/// A value of another type than most fields have (each decoder must refuse it by name, or accept
/// it where the field really takes it, e.g. `null` for an optional one).
fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(Value::from(-1)),
        Just(Value::from(u64::MAX)),
        ".{0,8}".prop_map(Value::String),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([1, "a", null])),
        Just(serde_json::json!({"unexpected": true})),
    ]
}

/// One broken form of `valid` per case.
pub fn mutated(valid: Value) -> impl Strategy<Value = Mutated> {
    let all = paths(&valid);
    let len = valid.to_string().len().max(1);
    let n = all.len().max(1);
    let path = move |i: usize| all.get(i % n).cloned().unwrap_or_default();
    let (p1, p2, p3, p4, p5) = (path.clone(), path.clone(), path.clone(), path.clone(), path);
    let mutation = prop_oneof![
        3 => any::<usize>().prop_map(move |i| Mutation::Drop(p1(i))),
        2 => (any::<usize>(), "[a-zA-Z_@.]{1,12}").prop_map(move |(i, to)| Mutation::Rename(p2(i), to)),
        4 => (any::<usize>(), wrong_value()).prop_map(move |(i, v)| Mutation::WrongType(p3(i), v)),
        1 => any::<usize>().prop_map(move |i| Mutation::Huge(p4(i))),
        1 => (any::<usize>(), prop_oneof![Just(SHALLOW), Just(DEEP)]).prop_map(move |(i, d)| Mutation::Nest(p5(i), d)),
        2 => (0..len).prop_map(Mutation::Truncate),
        3 => (0..len, any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
    ];
    mutation.prop_map(move |m| apply(&valid, m))
}

/// Any JSON value, a few levels deep (bodies from something else entirely).
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// True when `message` names `field` the way a person would look for it (`field`, `` `field` ``,
/// `field:` or a path ending in it).
pub fn names(message: &str, field: &str) -> bool {
    message.contains(field)
}

/// Judges a decoder's answer to a broken input: `Ok` is allowed (some breaks leave a valid input,
/// e.g. a dropped optional field or a replaced letter inside a string); an error must be one line
/// and name the broken field, or for damaged text say it is not JSON or name one of the fields.
pub fn check<T>(input: &Mutated, result: &Result<T, String>) -> Result<(), TestCaseError> {
    let Err(message) = result else {
        return Ok(());
    };
    prop_assert!(!message.trim().is_empty(), "empty error for {:?}", input.mutation);
    prop_assert!(!message.contains('\n'), "error is not one line: {message}");
    let not_json = message.contains("not JSON") || message.contains("not a JSON");
    match &input.field {
        Some(field) => prop_assert!(
            names(message, field)
                || input.path.iter().any(|k| names(message, &format!("{k}:")))
                || (not_json && matches!(input.mutation, Mutation::Nest(_, DEEP))),
            "error does not name the field {field:?} ({:?}): {message}",
            short(&input.mutation)
        ),
        None => prop_assert!(
            not_json || input.keys.iter().any(|k| names(message, k)),
            "error neither says 'not JSON' nor names a field ({:?}): {message}",
            short(&input.mutation)
        ),
    }
    Ok(())
}

/// Judges a decoder's answer to input that was never valid ([`any_json`], random bytes): no
/// panic (the call returned) and, if refused, a one-line error naming something (`expect`: words
/// of which the error must hold one, e.g. the fields the type has, "not JSON").
pub fn check_any<T>(result: &Result<T, String>, expect: &[&str]) -> Result<(), TestCaseError> {
    if let Err(message) = result {
        prop_assert!(!message.contains('\n'), "error is not one line: {message}");
        prop_assert!(
            expect.iter().any(|w| message.contains(w)),
            "error names none of {expect:?}: {message}"
        );
    }
    Ok(())
}

/// A mutation for a failure message (a huge value is not printed whole).
fn short(m: &Mutation) -> String {
    format!("{m:?}").chars().take(200).collect()
}
