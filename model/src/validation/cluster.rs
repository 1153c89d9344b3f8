//! Rules for the cluster's own objects: Nodes, Leases and Events.

use super::metadata;
use crate::core_event::{CoreEvent, NORMAL, WARNING};
use crate::node::{Lease, Node};
use crate::report::{FieldPath, Report};
use crate::syntax::dns1123_subdomain;

pub(crate) fn node(node: &Node, r: &mut Report) {
    metadata(&node.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    if !node.metadata.namespace.is_empty() {
        r.error(
            &FieldPath::root().field("metadata").field("namespace"),
            "must be empty: Node is cluster-scoped",
        );
    }
    if let Some(cidr) = &node.spec.pod_cidr {
        if cidr.parse::<ipnet::IpNet>().is_err() {
            r.error(&spec.field("podCIDR"), format!("{cidr:?} is not a CIDR"));
        }
    }
    for (i, cidr) in node.spec.pod_cidrs.iter().enumerate() {
        if cidr.parse::<ipnet::IpNet>().is_err() {
            r.error(
                &spec.field("podCIDRs").index(i),
                format!("{cidr:?} is not a CIDR"),
            );
        }
    }
    for (i, taint) in node.spec.taints.iter().enumerate() {
        r.one_of(
            &spec.field("taints").index(i).field("effect"),
            &taint.effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
    let status = FieldPath::root().field("status");
    for (i, c) in node.status.conditions.iter().enumerate() {
        r.one_of(
            &status.field("conditions").index(i).field("status"),
            &c.status,
            &["True", "False", "Unknown"],
        );
    }
}

pub(crate) fn lease(lease: &Lease, r: &mut Report) {
    metadata(&lease.metadata, dns1123_subdomain, r);
    if let Some(seconds) = lease.spec.lease_duration_seconds {
        if seconds <= 0 {
            r.error(
                &FieldPath::root()
                    .field("spec")
                    .field("leaseDurationSeconds"),
                "must be greater than 0",
            );
        }
    }
}

pub(crate) fn event(event: &CoreEvent, r: &mut Report) {
    metadata(&event.metadata, dns1123_subdomain, r);
    let involved = FieldPath::root().field("involvedObject");
    if event.involved_object.name.is_empty() {
        r.error(&involved.field("name"), "required value");
    }
    if event.involved_object.kind.is_empty() {
        r.error(&involved.field("kind"), "required value");
    }
    let namespace = &event.involved_object.namespace;
    if !namespace.is_empty() && namespace != event.metadata.namespace() {
        r.error(
            &involved.field("namespace"),
            "does not match the event's namespace",
        );
    }
    if !event.event_type.is_empty() {
        r.one_of(
            &FieldPath::root().field("type"),
            &event.event_type,
            &[NORMAL, WARNING],
        );
    }
}
