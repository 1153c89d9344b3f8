//! Parsing a JSON value into an [`Object`]: the kind from `apiVersion`/`kind`, typed
//! deserialization with field paths in errors, ignored Kubernetes fields classified, then the
//! kind's validation.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Kind, Object};
use crate::ignored::{is_known_ignored, is_unset};
use crate::report::{FieldError, Report};

/// Why a value could not become an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectError {
    /// Kind and name, when they could be read (`Service default/web`).
    pub object: Option<String>,
    /// The problems.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => many.iter().try_for_each(|e| write!(f, "\n  - {e}")),
        }
    }
}

/// A valid object plus the Kubernetes fields it carried that pier ignores.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The object.
    pub object: Object,
    /// Paths of accepted-but-ignored fields.
    pub ignored: Vec<String>,
}

/// A typed object, the ignored Kubernetes fields and the unknown-field errors found while parsing.
type TypedParse<T> = (T, Vec<String>, Vec<FieldError>);

fn typed<T: DeserializeOwned>(value: Value, kind: Kind) -> Result<TypedParse<T>, Vec<FieldError>> {
    let mut unused = Vec::new();
    let result = {
        let mut record = |path: serde_ignored::Path<'_>| unused.push(render_path(&path));
        // Read by reference: the value is still needed to tell unset ignored fields apart.
        let de = serde_ignored::Deserializer::new(&value, &mut record);
        serde_path_to_error::deserialize::<_, T>(de)
    };
    let parsed = result.map_err(|e| {
        let path = e.path().to_string();
        vec![FieldError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }]
    })?;
    let mut ignored = Vec::new();
    let mut errors = Vec::new();
    for path in unused {
        if is_known_ignored(kind, &normalize(&path)) {
            if !is_unset(&value, &path) {
                ignored.push(path);
            }
        } else {
            errors.push(FieldError {
                path,
                message: "unknown field".into(),
            });
        }
    }
    Ok((parsed, ignored, errors))
}

fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        Path::Map { parent, key } => {
            let p = render_path(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render_path(parent),
    }
}

/// `spec.ports[3].foo` → `spec.ports[].foo`, the form ignore patterns use.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

impl Object {
    /// Parses and validates one manifest document.
    pub fn from_value(value: Value) -> Result<Parsed, ObjectError> {
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let api_version = field("apiVersion");
        let kind_name = field("kind");
        let fail = |path: &str, message: String| ObjectError {
            object: None,
            errors: vec![FieldError {
                path: path.into(),
                message,
            }],
        };
        let Some(kind_name) = kind_name else {
            return Err(fail("kind", "required value".into()));
        };
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default")
            .to_string();
        let cluster_scoped = Kind::from_kind_field(&kind_name).is_some_and(|k| !k.namespaced());
        let scoped_name = if cluster_scoped {
            name.clone()
        } else {
            format!("{ns}/{name}")
        };
        let Some(kind) = Kind::from_kind_field(&kind_name) else {
            let served: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(ObjectError {
                object: Some(format!("{kind_name} {scoped_name}")),
                errors: vec![FieldError {
                    path: "kind".into(),
                    message: format!(
                        "unsupported kind {kind_name:?}: pier serves {}",
                        served.join(", ")
                    ),
                }],
            });
        };
        let Some(api_version) = api_version else {
            return Err(fail("apiVersion", "required value".into()));
        };
        if !kind.api_versions().contains(&api_version.as_str()) {
            return Err(fail(
                "apiVersion",
                format!(
                    "{kind} is not served at {api_version:?}; use one of {:?}",
                    kind.api_versions()
                ),
            ));
        }
        let label = format!("{kind} {scoped_name}");
        let with_label = |errors| ObjectError {
            object: Some(label.clone()),
            errors,
        };
        let (object, ignored, errors) = match kind {
            Kind::Service => typed(value, kind).map(|(o, i, e)| (Object::Service(o), i, e)),
            Kind::EndpointSlice => {
                typed(value, kind).map(|(o, i, e)| (Object::EndpointSlice(o), i, e))
            }
            Kind::Pod => typed(value, kind).map(|(o, i, e)| (Object::Pod(o), i, e)),
            Kind::Deployment => typed(value, kind).map(|(o, i, e)| (Object::Deployment(o), i, e)),
            Kind::ReplicaSet => typed(value, kind).map(|(o, i, e)| (Object::ReplicaSet(o), i, e)),
            Kind::Job => typed(value, kind).map(|(o, i, e)| (Object::Job(o), i, e)),
            Kind::CronJob => typed(value, kind).map(|(o, i, e)| (Object::CronJob(o), i, e)),
            Kind::DaemonSet => typed(value, kind).map(|(o, i, e)| (Object::DaemonSet(o), i, e)),
            Kind::HorizontalPodAutoscaler => {
                typed(value, kind).map(|(o, i, e)| (Object::HorizontalPodAutoscaler(o), i, e))
            }
            Kind::Rollout => typed(value, kind).map(|(o, i, e)| (Object::Rollout(o), i, e)),
            Kind::AnalysisTemplate => {
                typed(value, kind).map(|(o, i, e)| (Object::AnalysisTemplate(o), i, e))
            }
            Kind::ClusterAnalysisTemplate => {
                typed(value, kind).map(|(o, i, e)| (Object::ClusterAnalysisTemplate(o), i, e))
            }
            Kind::AnalysisRun => typed(value, kind).map(|(o, i, e)| (Object::AnalysisRun(o), i, e)),
            Kind::HttpRoute => typed(value, kind).map(|(o, i, e)| (Object::HttpRoute(o), i, e)),
            Kind::TcpRoute => typed(value, kind).map(|(o, i, e)| (Object::TcpRoute(o), i, e)),
            Kind::UdpRoute => typed(value, kind).map(|(o, i, e)| (Object::UdpRoute(o), i, e)),
            Kind::TlsRoute => typed(value, kind).map(|(o, i, e)| (Object::TlsRoute(o), i, e)),
            Kind::BackendTlsPolicy => {
                typed(value, kind).map(|(o, i, e)| (Object::BackendTlsPolicy(o), i, e))
            }
            Kind::Namespace => typed(value, kind).map(|(o, i, e)| (Object::Namespace(o), i, e)),
            Kind::ServiceAccount => {
                typed(value, kind).map(|(o, i, e)| (Object::ServiceAccount(o), i, e))
            }
            Kind::ConfigMap => typed(value, kind).map(|(o, i, e)| (Object::ConfigMap(o), i, e)),
            Kind::Secret => typed(value, kind).map(|(o, i, e)| (Object::Secret(o), i, e)),
            Kind::Ingress => typed(value, kind).map(|(o, i, e)| (Object::Ingress(o), i, e)),
            Kind::IngressClass => {
                typed(value, kind).map(|(o, i, e)| (Object::IngressClass(o), i, e))
            }
            Kind::GatewayClass => {
                typed(value, kind).map(|(o, i, e)| (Object::GatewayClass(o), i, e))
            }
            Kind::Gateway => typed(value, kind).map(|(o, i, e)| (Object::Gateway(o), i, e)),
            Kind::Node => typed(value, kind).map(|(o, i, e)| (Object::Node(o), i, e)),
            Kind::Lease => typed(value, kind).map(|(o, i, e)| (Object::Lease(o), i, e)),
            Kind::Event => typed(value, kind).map(|(o, i, e)| (Object::Event(o), i, e)),
        }
        .map_err(with_label)?;
        let mut report = Report { errors, ignored };
        object.validate(&mut report);
        if report.errors.is_empty() {
            Ok(Parsed {
                object,
                ignored: report.ignored,
            })
        } else {
            Err(with_label(report.errors))
        }
    }

    /// Parses an object the store wrote (already valid).
    pub fn from_stored(bytes: &[u8]) -> Result<Object, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Object::from_value(value)
            .map(|p| p.object)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_indexes() {
        assert_eq!(normalize("spec.ports[12].foo"), "spec.ports[].foo");
        assert_eq!(normalize("metadata.labels[a.b/c]"), "metadata.labels[]");
    }
}
