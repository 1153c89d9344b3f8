//! Rules for pods, Deployments and ReplicaSets: containers, probes, pod specs, selectors.

use std::collections::HashSet;

use crate::daemon_set::DaemonSet;
use crate::deployment::{Deployment, PodTemplateSpec};
use crate::meta::{IntOrString, LabelSelector};
use crate::pod::{Container, Pod, PodSpec, Probe};
use crate::replica_set::ReplicaSet;
use crate::report::{FieldPath, Report};
use crate::syntax::{dns1123_label, dns1123_subdomain, iana_svc_name};

use super::{label_selector, metadata, pod_inputs, target_port};

fn probe(path: &FieldPath, probe: &Probe, r: &mut Report) {
    let actions = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        r.error(
            path,
            "exactly one of httpGet, tcpSocket, exec or grpc must be set",
        );
    }
    if let Some(g) = &probe.grpc {
        r.port(&path.field("grpc").field("port"), g.port);
    }
    if let Some(h) = &probe.http_get {
        target_port(&path.field("httpGet").field("port"), &h.port, r);
    }
    if let Some(t) = &probe.tcp_socket {
        target_port(&path.field("tcpSocket").field("port"), &t.port, r);
    }
    for (name, value, min) in [
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("periodSeconds", probe.period_seconds, 1),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("successThreshold", probe.success_threshold, 1),
        ("failureThreshold", probe.failure_threshold, 1),
    ] {
        if let Some(v) = value.filter(|v| *v < min) {
            r.error(
                &path.field(name),
                format!("invalid value {v}: must be at least {min}"),
            );
        }
    }
}

fn container(path: &FieldPath, c: &Container, r: &mut Report) {
    r.check(&path.field("name"), dns1123_label(&c.name));
    let mut names = HashSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let p = path.field("ports").index(i);
        r.port(&p.field("containerPort"), port.container_port);
        r.protocol(&p.field("protocol"), port.protocol.as_deref().unwrap_or(""));
        if let Some(n) = &port.name {
            r.check(&p.field("name"), iana_svc_name(n));
            if !names.insert(n.as_str()) {
                r.error(&p.field("name"), format!("duplicate port name {n:?}"));
            }
        }
    }
    pod_inputs::env(path, c, r);
    if let Some(policy) = &c.image_pull_policy {
        r.one_of(
            &path.field("imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    if let Some(p) = &c.liveness_probe {
        probe(&path.field("livenessProbe"), p, r);
    }
    if let Some(p) = &c.readiness_probe {
        probe(&path.field("readinessProbe"), p, r);
    }
}

pub(super) fn pod_spec(path: &FieldPath, spec: &PodSpec, r: &mut Report) {
    if spec.containers.is_empty() {
        r.error(
            &path.field("containers"),
            "required value: at least one container",
        );
    }
    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = path.field("containers").index(i);
        if !names.insert(c.name.as_str()) {
            r.error(
                &p.field("name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        container(&p, c, r);
        pod_inputs::mounts(&p, c, spec, r);
    }
    pod_inputs::volumes(path, spec, r);
    for (field, account) in [
        ("serviceAccountName", &spec.service_account_name),
        ("serviceAccount", &spec.service_account),
    ] {
        if let Some(account) = account {
            r.check(&path.field(field), dns1123_subdomain(account));
        }
    }
    for (i, secret) in spec.image_pull_secrets.iter().enumerate() {
        let p = path.field("imagePullSecrets").index(i).field("name");
        r.check(&p, dns1123_subdomain(&secret.name));
    }
    if let Some(h) = &spec.hostname {
        r.check(&path.field("hostname"), dns1123_label(h));
    }
    if let Some(s) = &spec.subdomain {
        r.check(&path.field("subdomain"), dns1123_label(s));
    }
    if let Some(policy) = &spec.restart_policy {
        r.one_of(
            &path.field("restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
}

pub(crate) fn pod(pod: &Pod, r: &mut Report) {
    metadata(&pod.metadata, dns1123_subdomain, r);
    pod_spec(&FieldPath::root().field("spec"), &pod.spec, r);
    if let Some(ip) = &pod.status.pod_ip {
        r.ip(&FieldPath::root().field("status").field("podIP"), ip);
    }
}

/// A ReplicaSet: only as the workload controllers write them, a revision of a Deployment or
/// a Rollout; pier runs no ReplicaSet of its own.
pub(crate) fn replica_set(rs: &ReplicaSet, r: &mut Report) {
    metadata(&rs.metadata, dns1123_subdomain, r);
    let owned =
        rs.metadata.owner_references.iter().any(|o| {
            matches!(o.kind.as_str(), "Deployment" | "Rollout") && o.controller == Some(true)
        });
    if !owned {
        r.error(
            &FieldPath::root().field("metadata").field("ownerReferences"),
            "a ReplicaSet must be controlled by a Deployment or a Rollout: pier keeps \
             ReplicaSets as their revisions and runs none on its own; write a Deployment instead",
        );
    }
    let spec = FieldPath::root().field("spec");
    pod_template(&spec, &rs.spec.selector, &rs.spec.template, r);
}

/// A pod count: a number at least 0 or a percentage up to 100% (`maxSurge`, `maxUnavailable`).
pub(super) fn count_or_percent(path: &FieldPath, v: Option<&IntOrString>, r: &mut Report) {
    match v {
        Some(IntOrString::Int(n)) if *n < 0 => {
            r.error(path, format!("invalid value {n}: must be at least 0"))
        }
        Some(IntOrString::String(s)) => {
            let pct = s.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
            if pct.is_none_or(|p| p > 100) {
                r.error(
                    path,
                    format!("{s:?} must be a number or a percentage such as \"25%\""),
                );
            }
        }
        _ => {}
    }
}

/// The selector and pod template of a Deployment, ReplicaSet or Rollout `spec`.
pub(super) fn pod_template(
    spec: &FieldPath,
    sel: &LabelSelector,
    template: &PodTemplateSpec,
    r: &mut Report,
) {
    if sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
        r.error(
            &spec.field("selector"),
            "required value: an empty selector would select every pod",
        );
    } else {
        label_selector(&spec.field("selector"), sel, r);
        if !sel.matches(&template.metadata.labels) {
            r.error(
                &spec.field("template").field("metadata").field("labels"),
                "`selector` does not match template `labels`",
            );
        }
    }
    let path = spec.field("template");
    r.labels(
        &path.field("metadata").field("labels"),
        &template.metadata.labels,
    );
    pod_spec(&path.field("spec"), &template.spec, r);
}

/// A DaemonSet: its template, and how it is updated.
pub(crate) fn daemon_set(d: &DaemonSet, r: &mut Report) {
    metadata(&d.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    pod_template(&spec, &d.spec.selector, &d.spec.template, r);
    if let Some(policy) = &d.spec.template.spec.restart_policy {
        r.one_of(
            &spec.field("template").field("spec").field("restartPolicy"),
            policy,
            &["Always"],
        );
    }
    if let Some(strategy) = &d.spec.update_strategy {
        let p = spec.field("updateStrategy");
        if let Some(t) = &strategy.strategy_type {
            r.one_of(&p.field("type"), t, &["RollingUpdate", "OnDelete"]);
        }
        if let Some(ru) = &strategy.rolling_update {
            for (name, v) in [
                ("maxSurge", &ru.max_surge),
                ("maxUnavailable", &ru.max_unavailable),
            ] {
                count_or_percent(&p.field("rollingUpdate").field(name), v.as_ref(), r);
            }
        }
    }
}

pub(crate) fn deployment(d: &Deployment, r: &mut Report) {
    metadata(&d.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    for (field, value) in [
        ("replicas", d.spec.replicas),
        ("revisionHistoryLimit", d.spec.revision_history_limit),
    ] {
        if let Some(n) = value.filter(|n| *n < 0) {
            r.error(
                &spec.field(field),
                format!("invalid value {n}: must be at least 0"),
            );
        }
    }
    pod_template(&spec, &d.spec.selector, &d.spec.template, r);
    if let Some(strategy) = &d.spec.strategy {
        let p = spec.field("strategy");
        if let Some(t) = &strategy.strategy_type {
            r.one_of(&p.field("type"), t, &["RollingUpdate", "Recreate"]);
        }
        if let Some(ru) = &strategy.rolling_update {
            for (name, v) in [
                ("maxSurge", &ru.max_surge),
                ("maxUnavailable", &ru.max_unavailable),
            ] {
                count_or_percent(&p.field("rollingUpdate").field(name), v.as_ref(), r);
            }
        }
    }
}
