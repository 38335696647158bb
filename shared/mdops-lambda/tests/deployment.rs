//! The deployment stays whole as functions are added: every crate under `functions/` is in the
//! workspace and in `infra/template.yaml` (with its own role, log group and errors alarm); every
//! trigger the template gives a function has a sample event of that shape under `events/`; and
//! every sample is read by its function's own tests (which decode it with the function's decoder).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    let path = repo().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn function_dirs() -> BTreeSet<String> {
    std::fs::read_dir(repo().join("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The template's functions: crate directory -> (resource name, event types).
fn template_functions(t: &Value) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let code = resource["Properties"]["CodeUri"].as_str().expect("CodeUri");
        let dir = code.strip_prefix("../functions/").expect("CodeUri ../functions/<name>");
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{dir}: built with cargo-lambda"
        );
        let events = resource["Properties"]["Events"]
            .as_mapping()
            .map(|m| m.values().map(|e| e["Type"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        out.insert(dir.to_string(), (name.as_str().unwrap().to_string(), events));
    }
    out
}

/// The trigger a sample event is, by its shape.
fn shape(event: &serde_json::Value) -> &'static str {
    if event.get("Records").is_some() {
        "SQS"
    } else if event.get("requestContext").is_some() {
        "HttpApi"
    } else if event.get("detail-type").and_then(|d| d.as_str()) == Some("Scheduled Event") {
        "Schedule"
    } else if event.get("detail-type").is_some() {
        "EventBridgeRule"
    } else {
        "unknown"
    }
}

#[test]
fn every_function_is_in_the_workspace_and_the_template_with_its_role_logs_and_alarm() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let t = template();
    let deployed = template_functions(&t);
    for dir in function_dirs() {
        assert!(
            manifest.contains(&format!("\"functions/{dir}\"")),
            "functions/{dir} is not a workspace member"
        );
        assert!(
            deployed.contains_key(&dir),
            "functions/{dir} is not in infra/template.yaml (docs/deploy.md, Adding a function)"
        );
    }
    let resources = t["Resources"].as_mapping().unwrap();
    for (dir, (resource, _)) in &deployed {
        assert!(
            function_dirs().contains(dir),
            "the template deploys functions/{dir}, which does not exist"
        );
        let props = &t["Resources"][resource.as_str()]["Properties"];
        assert!(
            matches!(props["Role"], Value::Tagged(_)),
            "{resource}: needs its own Role (least privilege)"
        );
        assert!(
            !props["LoggingConfig"]["LogGroup"].is_null(),
            "{resource}: needs its own log group (retention)"
        );
        let alarmed = resources.values().any(|r| {
            r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                && r["Properties"]["MetricName"].as_str() == Some("Errors")
                && format!("{:?}", r["Properties"]["Dimensions"]).contains(resource.as_str())
        });
        assert!(alarmed, "{resource}: needs an Errors alarm");
    }
}

#[test]
fn every_trigger_has_a_sample_event_that_its_function_tests_read() {
    let deployed = template_functions(&template());
    let events_dir = repo().join("events");
    let mut samples: BTreeMap<String, Vec<(String, &'static str)>> = BTreeMap::new();
    for entry in std::fs::read_dir(&events_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(events_dir.join(&name)).unwrap();
        let event: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("events/{name}: {e}"));
        let function = deployed
            .keys()
            .filter(|f| name.starts_with(&format!("{f}-")))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("events/{name} does not name a function (<function>-<trigger>.json)"));
        samples.entry(function.clone()).or_default().push((name, shape(&event)));
    }
    for (function, (_, triggers)) in &deployed {
        let mine = samples.get(function).cloned().unwrap_or_default();
        let shapes: BTreeSet<String> = mine.iter().map(|(_, s)| s.to_string()).collect();
        assert_eq!(
            &shapes, triggers,
            "{function}: the sample events {mine:?} against the template's triggers"
        );
        let tests: String = std::fs::read_dir(repo().join("functions").join(function).join("tests"))
            .map(|dir| {
                dir.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        for (name, _) in &mine {
            assert!(
                tests.contains(name.as_str()),
                "events/{name} is not read by functions/{function}/tests (decode it with the function's decoder there)"
            );
        }
    }
}
