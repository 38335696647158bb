//! Decoding JSON that came from outside (queue bodies, events, API bodies, stored records) into
//! typed values, with errors that name the field at fault.
//!
//! `serde_json` alone says "invalid type: integer `5`, expected a string at line 1 column 40" for
//! a wrong type deep in a body, which leaves a person counting columns; these helpers prefix the
//! path (`Records[0].body: invalid type ...`). A body that is not JSON at all says so.

use serde::de::DeserializeOwned;

/// Deserialises `value` as `T`; the error starts with the path of the field at fault.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(describe)
}

/// Parses and deserialises `text` as `T`; "not JSON (...)" when it does not parse, else the error
/// starts with the path of the field at fault.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    from_slice(text.as_bytes())
}

/// Like [`from_str`], from bytes (which must be UTF-8 JSON).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(describe)?;
    deserializer.end().map_err(|e| format!("not JSON ({e})"))?;
    Ok(value)
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return format!("not JSON ({inner})");
    }
    if path == "." || path.is_empty() {
        inner.to_string()
    } else {
        format!("{path}: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn errors_name_the_path_of_the_field() {
        let e = super::from_str::<Outer>(r#"{"name": "a", "inner": [{"count": 1}, {"count": "x"}]}"#).unwrap_err();
        assert!(e.starts_with("inner[1].count: invalid type"), "{e}");
        let e = super::from_value::<Outer>(serde_json::json!({"name": 5, "inner": []})).unwrap_err();
        assert!(e.starts_with("name: invalid type"), "{e}");
        let e = super::from_str::<Outer>(r#"{"inner": []}"#).unwrap_err();
        assert!(e.contains("missing field `name`"), "{e}");
        let e = super::from_str::<Outer>(r#"{"name": "a", "inner": [], "extra": 1}"#).unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn a_body_that_is_not_json_says_so() {
        for body in [
            "",
            "{",
            "{\"name\": \"a\"",
            "nul",
            "{\"name\": \"a\", \"inner\": []} x",
            "\u{0}",
        ] {
            let e = super::from_str::<Outer>(body).unwrap_err();
            assert!(e.starts_with("not JSON ("), "{body:?}: {e}");
        }
    }
}
