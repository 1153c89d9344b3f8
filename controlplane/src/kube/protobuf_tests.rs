use prost::Message;
use prost_reflect::{DynamicMessage, Value};
use serde_json::json;

use super::{go_duration, pool, to_json, MAGIC, UNKNOWN};

fn message(name: &str) -> DynamicMessage {
    DynamicMessage::new(
        pool()
            .expect("schemas")
            .get_message_by_name(name)
            .expect(name),
    )
}

fn set(message: &mut DynamicMessage, field: &str, value: Value) {
    message.set_field_by_name(field, value);
}

/// Wraps an encoded object the way client-go does: magic, then runtime.Unknown.
fn envelope(api_version: &str, kind: &str, object: &DynamicMessage) -> Vec<u8> {
    let mut meta = message("k8s.io.apimachinery.pkg.runtime.TypeMeta");
    set(&mut meta, "apiVersion", Value::String(api_version.into()));
    set(&mut meta, "kind", Value::String(kind.into()));
    let mut unknown = message(UNKNOWN);
    set(&mut unknown, "typeMeta", Value::Message(meta));
    set(
        &mut unknown,
        "raw",
        Value::Bytes(object.encode_to_vec().into()),
    );
    set(
        &mut unknown,
        "contentEncoding",
        Value::String(String::new()),
    );
    set(&mut unknown, "contentType", Value::String(String::new()));
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn int_or_string(int: Option<i32>, string: &str) -> Value {
    let mut v = message("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
    set(&mut v, "type", Value::I64(i64::from(int.is_none())));
    set(&mut v, "intVal", Value::I32(int.unwrap_or(0)));
    set(&mut v, "strVal", Value::String(string.into()));
    Value::Message(v)
}

#[test]
fn a_service_reads_as_kubernetes_json() {
    let mut meta = message("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    set(&mut meta, "name", Value::String("web".into()));
    set(&mut meta, "namespace", Value::String(String::new()));
    let labels = [("app".into(), Value::String("web".into()))];
    set(
        &mut meta,
        "labels",
        Value::Map(
            labels
                .into_iter()
                .map(|(k, v)| (prost_reflect::MapKey::String(k), v))
                .collect(),
        ),
    );
    let mut created = message("k8s.io.apimachinery.pkg.apis.meta.v1.Time");
    set(&mut created, "seconds", Value::I64(super::GO_ZERO_TIME));
    set(&mut meta, "creationTimestamp", Value::Message(created));
    let mut port = message("k8s.io.api.core.v1.ServicePort");
    set(&mut port, "name", Value::String("80-8080".into()));
    set(&mut port, "protocol", Value::String("TCP".into()));
    set(&mut port, "port", Value::I32(80));
    set(&mut port, "targetPort", int_or_string(Some(8080), ""));
    let mut spec = message("k8s.io.api.core.v1.ServiceSpec");
    set(&mut spec, "ports", Value::List(vec![Value::Message(port)]));
    set(&mut spec, "type", Value::String("ClusterIP".into()));
    set(&mut spec, "clusterIP", Value::String(String::new()));
    let mut svc = message("k8s.io.api.core.v1.Service");
    set(&mut svc, "metadata", Value::Message(meta));
    set(&mut svc, "spec", Value::Message(spec));

    let json = to_json(&envelope("v1", "Service", &svc)).expect("decodes");
    assert_eq!(
        json,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "type": "ClusterIP"
            }
        })
    );
}

#[test]
fn quantities_secrets_and_named_ports_keep_their_json_forms() {
    let mut requests = message("k8s.io.api.core.v1.ResourceRequirements");
    let mut cpu = message("k8s.io.apimachinery.pkg.api.resource.Quantity");
    set(&mut cpu, "string", Value::String("250m".into()));
    let limits = [(
        prost_reflect::MapKey::String("cpu".into()),
        Value::Message(cpu),
    )];
    set(
        &mut requests,
        "requests",
        Value::Map(limits.into_iter().collect()),
    );
    let mut container = message("k8s.io.api.core.v1.Container");
    set(&mut container, "name", Value::String("app".into()));
    set(&mut container, "resources", Value::Message(requests));
    let mut pod_spec = message("k8s.io.api.core.v1.PodSpec");
    set(
        &mut pod_spec,
        "containers",
        Value::List(vec![Value::Message(container)]),
    );
    set(&mut pod_spec, "enableServiceLinks", Value::Bool(false));
    let mut pod = message("k8s.io.api.core.v1.Pod");
    set(&mut pod, "spec", Value::Message(pod_spec));
    let json = to_json(&envelope("v1", "Pod", &pod)).expect("decodes");
    assert_eq!(
        json["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
    assert_eq!(
        json["spec"]["enableServiceLinks"], false,
        "an explicit false is kept"
    );

    let mut secret = message("k8s.io.api.core.v1.Secret");
    let data = [(
        prost_reflect::MapKey::String("k".into()),
        Value::Bytes(b"s3cr3t".to_vec().into()),
    )];
    set(&mut secret, "data", Value::Map(data.into_iter().collect()));
    let json = to_json(&envelope("v1", "Secret", &secret)).expect("decodes");
    assert_eq!(json["data"]["k"], "czNjcjN0", "bytes are base64 as in JSON");

    let mut port = message("k8s.io.api.core.v1.ServicePort");
    set(&mut port, "targetPort", int_or_string(None, "http"));
    let mut spec = message("k8s.io.api.core.v1.ServiceSpec");
    set(&mut spec, "ports", Value::List(vec![Value::Message(port)]));
    let mut svc = message("k8s.io.api.core.v1.Service");
    set(&mut svc, "spec", Value::Message(spec));
    let json = to_json(&envelope("v1", "Service", &svc)).expect("decodes");
    assert_eq!(json["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn groups_map_to_their_packages() {
    let hpa = message("k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler");
    let json = to_json(&envelope("autoscaling/v2", "HorizontalPodAutoscaler", &hpa)).expect("v2");
    assert_eq!(json["apiVersion"], "autoscaling/v2");
    let slice = message("k8s.io.api.discovery.v1.EndpointSlice");
    assert!(to_json(&envelope("discovery.k8s.io/v1", "EndpointSlice", &slice)).is_ok());
    let options = message("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions");
    assert!(to_json(&envelope("v1", "DeleteOptions", &options)).is_ok());
}

#[test]
fn bad_bodies_say_what_is_wrong() {
    assert!(to_json(b"{}").unwrap_err().contains("magic"));
    assert!(to_json(b"k8s\0\xff\xff").unwrap_err().contains("envelope"));
    let thing = message("k8s.io.api.core.v1.Service");
    let err = to_json(&envelope("example.com/v1", "Widget", &thing)).unwrap_err();
    assert!(err.contains("Widget in example.com/v1"), "{err}");
    let truncated = envelope("v1", "Service", &thing);
    let mut svc = message("k8s.io.api.core.v1.Service");
    set(
        &mut svc,
        "metadata",
        Value::Message(message("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta")),
    );
    assert!(to_json(&truncated).is_ok());
}

#[test]
fn durations_print_as_go_does() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000), "1.5ms");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(-2_500_000_000), "-2.5s");
}

proptest::proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let with_magic = [MAGIC, &bytes].concat();
        let _ = to_json(&with_magic);
        let _ = to_json(&bytes);
    }
}
