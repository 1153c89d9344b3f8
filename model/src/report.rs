//! Validation reports: field paths (`spec.ports[0].port`) and the errors found at them,
//! shared by every kind's rules in `validation/`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::syntax::{label_value, qualified_name};

/// A field path such as `spec.ports[0].port`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The root path (empty).
    pub fn root() -> Self {
        Self(String::new())
    }
    /// `self.name`.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }
    /// `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
    /// `self[key]` for map entries.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One problem with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Errors and ignored-field notices collected while validating one object.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Problems that make the object invalid.
    pub errors: Vec<FieldError>,
    /// Valid Kubernetes fields pier accepts but does not act on.
    pub ignored: Vec<String>,
}

impl Report {
    /// Records an error at `path`.
    pub fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Errors when `value` is `None` or empty.
    pub fn required(&mut self, path: &FieldPath, present: bool) {
        if !present {
            self.error(path, "required value");
        }
    }

    /// Validates a port number (1..=65535).
    pub fn port(&mut self, path: &FieldPath, port: i64) {
        if !(1..=65535).contains(&port) {
            self.error(
                path,
                format!("invalid port {port}: must be between 1 and 65535"),
            );
        }
    }

    /// Validates a protocol (`TCP` or `UDP`; empty is TCP).
    pub fn protocol(&mut self, path: &FieldPath, protocol: &str) {
        match protocol {
            "" | "TCP" | "UDP" => {}
            "SCTP" => self.error(
                path,
                "unsupported value \"SCTP\": pier serves \"TCP\" and \"UDP\"",
            ),
            other => self.error(
                path,
                format!("unsupported value {other:?}: supported values \"TCP\", \"UDP\""),
            ),
        }
    }

    /// Validates a value against a fixed set.
    pub fn one_of(&mut self, path: &FieldPath, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            self.error(
                path,
                format!(
                    "unsupported value {value:?}: supported values {}",
                    list.join(", ")
                ),
            );
        }
    }

    /// Applies a name check returning an explanation on failure.
    pub fn check(&mut self, path: &FieldPath, result: Result<(), String>) {
        if let Err(e) = result {
            self.error(path, e);
        }
    }

    /// Validates a label map: qualified-name keys and label values.
    pub fn labels(&mut self, path: &FieldPath, labels: &BTreeMap<String, String>) {
        for (k, v) in labels {
            self.check(&path.key(k), qualified_name(k));
            self.check(&path.key(k), label_value(v));
        }
    }

    /// Validates an annotation map's keys.
    pub fn annotation_keys(&mut self, path: &FieldPath, annotations: &BTreeMap<String, String>) {
        for k in annotations.keys() {
            self.check(&path.key(k), qualified_name(k));
        }
    }

    /// Validates a backend weight (0..=1,000,000).
    pub fn weight(&mut self, path: &FieldPath, weight: i64) {
        if !(0..=1_000_000).contains(&weight) {
            self.error(
                path,
                format!("invalid weight {weight}: must be between 0 and 1000000"),
            );
        }
    }

    /// Validates an IP address literal.
    pub fn ip(&mut self, path: &FieldPath, value: &str) {
        if value.parse::<IpAddr>().is_err() {
            self.error(path, format!("{value:?} is not a valid IP address"));
        }
    }
}
