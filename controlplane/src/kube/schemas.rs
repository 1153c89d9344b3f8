//! The object schemas of the OpenAPI documents. Built-in kinds get the Kubernetes API
//! reference's own schemas (k8s-openapi's, generated from the same Go types, descriptions
//! included), laid out as an API server lays them out — `#/components/schemas/io.k8s...`
//! names, `allOf` around a described `$ref`, `x-kubernetes-group-version-kind` on each root —
//! so `kubectl explain` reads what a real cluster would tell it. The Gateway API routes have no
//! k8s-openapi types; their schemas stay open objects, and pier's own decoding is what checks
//! them. No schema here says a list merges by key: kubectl builds its strategic patches from
//! its built-in types (see `openapi.rs`).

use k8s_openapi::api::{
    apps, autoscaling, batch, coordination, core, discovery, events, networking,
};
use pier_model::Kind;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use super::catalog::Resource;
use super::{events_v1, hpa_v1};

/// The schemas of `resources` and of every type they refer to, keyed by schema name.
pub(crate) fn components(resources: &[Resource]) -> Map<String, Value> {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let mut roots = Vec::new();
    for r in resources {
        if let Some((name, generate)) = reference(r) {
            generate(&mut gen);
            roots.push((name, *r));
        }
    }
    let mut schemas = gen.take_definitions(true);
    for (name, r) in roots {
        if let Some(Value::Object(root)) = schemas.get_mut(&name) {
            root.insert("x-kubernetes-group-version-kind".into(), json!([gvk(&r)]));
        }
    }
    for r in resources {
        schemas.entry(name(r)).or_insert_with(|| open(r));
    }
    schemas
}

/// The schema name of a resource's object, as `$ref`s to it spell it after
/// `#/components/schemas/`.
pub(crate) fn name(r: &Resource) -> String {
    match reference(r) {
        Some((name, _)) => name,
        None => {
            let group = if r.group.is_empty() { "core" } else { r.group };
            format!("io.pier.{group}.{}.{}", r.version, r.kind.as_str())
        }
    }
}

/// `{group, version, kind}` of a resource, as the `x-kubernetes-group-version-kind` extension
/// writes it.
pub(crate) fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind.as_str()})
}

/// How a built-in resource's reference schema is made.
type Generate = fn(&mut SchemaGenerator) -> Schema;

/// The reference schema name of a built-in resource and how to generate it; `None` for a kind
/// k8s-openapi does not carry.
fn reference(r: &Resource) -> Option<(String, Generate)> {
    fn of<T: JsonSchema>() -> Option<(String, Generate)> {
        Some((
            T::schema_name().into_owned(),
            SchemaGenerator::subschema_for::<T>,
        ))
    }
    match (r.kind, r.group) {
        (Kind::Service, _) => of::<core::v1::Service>(),
        (Kind::Pod, _) => of::<core::v1::Pod>(),
        (Kind::Namespace, _) => of::<core::v1::Namespace>(),
        (Kind::ServiceAccount, _) => of::<core::v1::ServiceAccount>(),
        (Kind::ConfigMap, _) => of::<core::v1::ConfigMap>(),
        (Kind::Ingress, _) => of::<networking::v1::Ingress>(),
        (Kind::IngressClass, _) => of::<networking::v1::IngressClass>(),
        (Kind::Secret, _) => of::<core::v1::Secret>(),
        (Kind::Node, _) => of::<core::v1::Node>(),
        (Kind::Event, events_v1::GROUP) => of::<events::v1::Event>(),
        (Kind::Event, _) => of::<core::v1::Event>(),
        (Kind::EndpointSlice, _) => of::<discovery::v1::EndpointSlice>(),
        (Kind::Deployment, _) => of::<apps::v1::Deployment>(),
        (Kind::ReplicaSet, _) => of::<apps::v1::ReplicaSet>(),
        (Kind::DaemonSet, _) => of::<apps::v1::DaemonSet>(),
        (Kind::Job, _) => of::<batch::v1::Job>(),
        (Kind::CronJob, _) => of::<batch::v1::CronJob>(),
        (Kind::Lease, _) => of::<coordination::v1::Lease>(),
        (Kind::HorizontalPodAutoscaler, _) if r.version == hpa_v1::VERSION => {
            of::<autoscaling::v1::HorizontalPodAutoscaler>()
        }
        (Kind::HorizontalPodAutoscaler, _) => of::<autoscaling::v2::HorizontalPodAutoscaler>(),
        (
            Kind::HttpRoute
            | Kind::GatewayClass
            | Kind::Gateway
            | Kind::TcpRoute
            | Kind::UdpRoute
            | Kind::TlsRoute
            | Kind::BackendTlsPolicy
            | Kind::Rollout
            | Kind::AnalysisTemplate
            | Kind::ClusterAnalysisTemplate
            | Kind::AnalysisRun,
            _,
        ) => None,
    }
}

/// An object schema that lets any field through, for a kind without a reference schema.
fn open(r: &Resource) -> Value {
    json!({
        "type": "object",
        "description": format!("{} ({}), as pier stores it.", r.kind.as_str(), r.api_version()),
        "x-kubernetes-group-version-kind": [gvk(r)],
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::catalog;

    fn core_v1() -> Vec<Resource> {
        catalog::resources()
            .filter(|r| r.group.is_empty())
            .collect()
    }

    #[test]
    fn built_in_kinds_get_the_reference_schemas_with_their_kind() {
        let schemas = components(&core_v1());
        let service = &schemas["io.k8s.api.core.v1.Service"];
        assert_eq!(
            service["x-kubernetes-group-version-kind"][0]["kind"],
            "Service"
        );
        let spec = &service["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"
        );
        assert!(spec["description"]
            .as_str()
            .unwrap()
            .contains("Spec defines"));
        let ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(
            ports["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ServicePort"
        );
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    }

    #[test]
    fn routes_keep_open_schemas_and_names_match_the_documents() {
        let routes: Vec<Resource> = catalog::resources()
            .filter(|r| r.kind == Kind::HttpRoute)
            .collect();
        let schemas = components(&routes);
        let route = &schemas[&name(&routes[0])];
        assert_eq!(route["x-kubernetes-preserve-unknown-fields"], true);
        for r in core_v1() {
            assert!(components(&[r]).contains_key(&name(&r)), "{r:?}");
        }
    }
}
