//! Real Kubernetes manifests (kubectl output, Gateway API examples) parse, report what pier
//! ignores, and survive a store round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pier_controlplane::store::{Store, StoreConfig};
use pier_model::manifest;
use pier_model::snapshot::SnapshotBuilder;
use pier_model::{Kind, Object};
use pier_snapshot::PortMode;

const KUBECTL: &str = include_str!("fixtures/kubectl-get.yaml");

#[test]
fn kubectl_output_parses_with_ignored_fields_reported() {
    let objects = manifest::parse("kubectl-get.yaml", KUBECTL).unwrap_or_else(|errs| {
        panic!(
            "{}",
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let kinds: Vec<Kind> = objects.iter().map(|o| o.parsed.object.kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::Service,
            Kind::EndpointSlice,
            Kind::Deployment,
            Kind::Pod,
            Kind::HttpRoute,
            Kind::TcpRoute,
            Kind::UdpRoute
        ]
    );
    let ignored = |i: usize| objects[i].parsed.ignored.clone();
    // kubectl's dual-stack fields and the traffic policies are read, not ignored.
    for read in ["spec.ipFamilyPolicy", "spec.internalTrafficPolicy"] {
        assert!(!ignored(0).contains(&read.to_string()), "{:?}", ignored(0));
    }
    let owners = &objects[0].parsed.object.meta().managed_fields;
    assert_eq!(owners[0].manager, "kubectl-client-side-apply", "{owners:?}");
    assert!(owners[0].fields_v1.get("f:spec").is_some(), "{owners:?}");
    // An empty `status: {loadBalancer: {}}` holds nothing, so nothing is reported ignored.
    assert!(
        !ignored(0).contains(&"status".to_string()),
        "{:?}",
        ignored(0)
    );
    assert!(
        ignored(1).contains(&"endpoints[0].hints".to_string()),
        "{:?}",
        ignored(1)
    );
    // env[].valueFrom is read; fields pier leaves to the API server's defaults are reported.
    assert!(
        !ignored(2).iter().any(|p| p.contains("valueFrom")),
        "{:?}",
        ignored(2)
    );
    assert!(
        ignored(2).contains(&"spec.template.spec.dnsPolicy".to_string()),
        "{:?}",
        ignored(2)
    );
    // A real pod's projected service-account volume is kept and reported.
    assert!(
        ignored(3).contains(&"spec.volumes[0].projected".to_string()),
        "{:?}",
        ignored(3)
    );
    assert!(
        ignored(3).contains(&"status.containerStatuses".to_string()),
        "{:?}",
        ignored(3)
    );
    // HTTPRoute filters are applied now, so read rather than ignored.
    assert!(ignored(4).is_empty(), "{:?}", ignored(4));
    match &objects[4].parsed.object {
        Object::HttpRoute(r) => {
            let f = &r.spec.rules[0].filters[0];
            assert_eq!(f.filter_type, "RequestHeaderModifier");
            let add = &f.request_header_modifier.as_ref().unwrap().add[0];
            assert_eq!(
                (add.name.as_str(), add.value.as_str()),
                ("x-routed-by", "mesh")
            );
        }
        other => panic!("an HTTPRoute, got {}", other.kind()),
    }

    match &objects[2].parsed.object {
        Object::Deployment(d) => {
            assert_eq!(d.spec.replicas, Some(3));
            let c = &d.spec.template.spec.containers[0];
            assert_eq!(c.readiness_probe.as_ref().unwrap().period_seconds, Some(5));
            assert_eq!(c.env[0].value, "v2");
            let from = c.env[1].value_from.as_ref().unwrap().field_ref.as_ref();
            assert_eq!(from.unwrap().field_path, "metadata.name");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn kubectl_output_round_trips_through_the_store_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let objects: Vec<Object> = manifest::parse("kubectl-get.yaml", KUBECTL)
        .unwrap()
        .into_iter()
        .map(|m| {
            let mut o = m.parsed.object;
            // Objects exported from another cluster carry its resourceVersion; drop it as kubectl apply does.
            o.meta_mut().resource_version.clear();
            o
        })
        .collect();
    store.apply(objects.clone()).unwrap();
    let svc = store.get(Kind::Service, "default", "web").unwrap().unwrap();
    match &svc {
        Object::Service(s) => {
            assert_eq!(s.spec.cluster_ip, "10.96.44.10", "user clusterIP honoured")
        }
        other => panic!("{other:?}"),
    }
    let stored: Vec<Object> = [Kind::Service, Kind::EndpointSlice, Kind::HttpRoute]
        .iter()
        .flat_map(|k| store.list(*k, None, None).unwrap().0)
        .collect();
    let snap = SnapshotBuilder::from_objects(&stored, store.revision());
    let web = snap.service("default", "web").unwrap();
    assert_eq!(web.ports[0].mode, PortMode::L7);
    assert_eq!(web.endpoints.len(), 2);
    let second = web.endpoints.get(1).expect("a second endpoint");
    assert!(second.terminating && second.serving && !second.ready);
    let rule = &web.http_routes[0].rules[1];
    assert_eq!(
        rule.request_timeout,
        Some(std::time::Duration::from_secs(10))
    );
    assert_eq!(
        rule.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [90, 10]
    );
}
