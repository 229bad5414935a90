//! Validation failures, field by field, as the API reports them.

use std::fmt;

/// One invalid field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in one input; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records the error of `result` under `field` (prefixing nested fields) and returns its value.
    pub fn check<T>(&mut self, field: &str, result: Result<T, ValidationErrors>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                for mut fe in e.0 {
                    fe.field = if fe.field.is_empty() || fe.field == field {
                        field.to_owned()
                    } else {
                        format!("{field}.{}", fe.field)
                    };
                    self.0.push(fe);
                }
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else all the errors.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// The path of the first string (or key) in `v` that holds a NUL character, which no text
/// of the API may contain (PostgreSQL cannot store it): `title`, `tags[2]`, or `body`.
pub fn nul_field(v: &serde_json::Value) -> Option<String> {
    nul_at(v, "")
}

fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if at.is_empty() {
            "body".to_owned()
        } else {
            at.to_owned()
        }
    };
    match v {
        Value::String(s) => s.contains('\0').then(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, &format!("{}[{i}]", here()))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                return Some(here());
            }
            nul_at(item, &path)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn the_first_text_with_nul_is_named_by_its_path() {
        let v = serde_json::json!({"title": "a", "tags": ["x", "y\u{0}"]});
        assert_eq!(nul_field(&v).as_deref(), Some("tags[1]"));
        assert_eq!(
            nul_field(&serde_json::json!("\u{0}")).as_deref(),
            Some("body")
        );
        assert_eq!(
            nul_field(&serde_json::json!({"a": {"b": "\u{0}"}})).as_deref(),
            Some("a.b")
        );
        assert_eq!(
            nul_field(&serde_json::json!({"title": "fine", "n": 1})),
            None
        );
    }
}
