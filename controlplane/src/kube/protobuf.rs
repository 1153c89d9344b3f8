//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`), which kubectl's
//! typed clients (`kubectl create deployment|service|secret`, `kubectl autoscale`, ...) send:
//! the `k8s\0` magic, a `runtime.Unknown` envelope naming the kind, and the object's message,
//! read against Kubernetes' own schemas (vendored in `proto/`) into the JSON the rest of the API
//! takes.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value,
};
use serde_json::{Map, Value as Json};

/// The media type of Kubernetes' protobuf encoding.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s.fds"));
const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
/// Go's zero `time.Time` (year 1), which protobuf carries for an unset timestamp.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Whether a `Content-Type` names the protobuf encoding.
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with(MEDIA_TYPE)
}

/// Reads one protobuf-encoded object as the JSON Kubernetes would print for it.
pub(crate) fn to_json(body: &[u8]) -> Result<Json, String> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with Kubernetes' protobuf magic \"k8s\\0\"")?;
    let pool = pool()?;
    let envelope = pool
        .get_message_by_name(UNKNOWN)
        .ok_or("runtime.Unknown is missing from pier's schemas")?;
    let envelope = DynamicMessage::decode(envelope, raw)
        .map_err(|e| format!("the runtime.Unknown envelope does not decode: {e}"))?;
    let (api_version, kind) = type_meta(&envelope)?;
    let encoding = string_field(&envelope, "contentEncoding");
    if !encoding.is_empty() {
        return Err(format!("contentEncoding {encoding:?} is not supported"));
    }
    let message = message_for(pool, &api_version, &kind)?;
    let bytes = envelope
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let object = DynamicMessage::decode(message, bytes)
        .map_err(|e| format!("the {kind} ({api_version}) does not decode: {e}"))?;
    let mut json = object_of(&object);
    if let Json::Object(map) = &mut json {
        map.insert("apiVersion".into(), Json::String(api_version));
        map.insert("kind".into(), Json::String(kind));
    }
    Ok(json)
}

fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).map_err(|e| format!("pier's schemas: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn type_meta(envelope: &DynamicMessage) -> Result<(String, String), String> {
    let meta = envelope
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned())
        .ok_or("the runtime.Unknown envelope has no typeMeta")?;
    let (api_version, kind) = (
        string_field(&meta, "apiVersion"),
        string_field(&meta, "kind"),
    );
    if api_version.is_empty() || kind.is_empty() {
        return Err("the runtime.Unknown envelope names no apiVersion and kind".into());
    }
    Ok((api_version, kind))
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The schema of `kind` in `apiVersion`: `k8s.io.api.<group>.<version>.<kind>` for the API's
/// kinds, meta/v1 for the options every group shares (`DeleteOptions`).
fn message_for(
    pool: &DescriptorPool,
    api_version: &str,
    kind: &str,
) -> Result<MessageDescriptor, String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    pool.get_message_by_name(&format!("k8s.io.api.{package}.{version}.{kind}"))
        .or_else(|| pool.get_message_by_name(&format!("{META}.{kind}")))
        .ok_or_else(|| {
            format!("pier has no protobuf schema for {kind} in {api_version}; send JSON")
        })
}

/// Fields Go embeds in their struct (`json:",inline"`): their message's fields are the
/// parent's in JSON.
const INLINE: &[(&str, &str)] = &[
    ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    (
        "k8s.io.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
];

fn object_of(message: &DynamicMessage) -> Json {
    if let Some(special) = special(message) {
        return special;
    }
    let parent = message.descriptor();
    let mut map = Map::new();
    for (field, value) in message.fields() {
        // Go writes every non-pointer string, set or not; an empty one means unset.
        if matches!(value, Value::String(s) if s.is_empty()) {
            continue;
        }
        let json = json_of(value);
        let inline = INLINE.contains(&(parent.full_name(), field.name()));
        match json {
            Json::Null => {}
            Json::Object(fields) if inline => map.extend(fields),
            json => {
                map.insert(field.name().to_owned(), json);
            }
        }
    }
    Json::Object(map)
}

fn json_of(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(n) => Json::from(f64::from(*n)),
        Value::F64(n) => Json::from(*n),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::EnumNumber(n) => Json::from(*n),
        Value::Message(m) => object_of(m),
        Value::List(items) => Json::Array(items.iter().map(json_of).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (key_of(k), json_of(v)))
                .collect(),
        ),
    }
}

fn key_of(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// The types whose JSON is not their message's fields: quantities, int-or-strings, times,
/// durations and embedded raw JSON.
fn special(message: &DynamicMessage) -> Option<Json> {
    let field = |name: &str| message.get_field_by_name(name);
    let int = |name: &str| field(name).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)));
    Some(match message.descriptor().full_name() {
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            Json::String(string_field(message, "string"))
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => match int("type") {
            Some(1) => Json::String(string_field(message, "strVal")),
            _ => Json::from(int("intVal").unwrap_or(0)),
        },
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => time(
            int("seconds").unwrap_or(0),
            0,
            humantime::format_rfc3339_seconds,
        ),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => time(
            int("seconds").unwrap_or(0),
            int("nanos").unwrap_or(0),
            humantime::format_rfc3339_micros,
        ),
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            Json::String(go_duration(int("duration").unwrap_or(0)))
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = field("raw")
                .and_then(|v| v.as_bytes().cloned())
                .unwrap_or_default();
            serde_json::from_slice(&raw).unwrap_or(Json::Null)
        }
        _ => return None,
    })
}

/// A timestamp as RFC 3339 in UTC; Go's zero time (unset) as null.
fn time(seconds: i64, nanos: i64, format: fn(SystemTime) -> humantime::Rfc3339Timestamp) -> Json {
    if seconds <= GO_ZERO_TIME {
        return Json::Null;
    }
    let offset = Duration::from_secs(seconds.unsigned_abs())
        + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let at = if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))
    };
    at.map_or(Json::Null, |at| Json::String(format(at).to_string()))
}

/// Nanoseconds as Go's `time.Duration.String()` writes them (`1h2m3.5s`, `250ms`, `0s`).
fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let fraction = |value: u64, unit: u64| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let digits = unit.ilog10() as usize;
            let text = format!("{whole}.{rest:0digits$}");
            text.trim_end_matches('0').to_owned()
        }
    };
    let body = match n {
        0 => "0s".to_owned(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", fraction(n, 1_000)),
        n if n < 1_000_000_000 => format!("{}ms", fraction(n, 1_000_000)),
        n => {
            let (hours, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
            let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
            let seconds = format!("{}s", fraction(rest, 1_000_000_000));
            match (hours, minutes) {
                (0, 0) => seconds,
                (0, m) => format!("{m}m{seconds}"),
                (h, m) => format!("{h}h{m}m{seconds}"),
            }
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;
