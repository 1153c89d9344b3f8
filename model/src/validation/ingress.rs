//! Ingresses and IngressClasses, after Kubernetes' `ValidateIngress` and ingress-nginx's
//! annotation rules.

use crate::ingress::{Ingress, IngressBackend, IngressClass};
use crate::ingress_annotations;
use crate::report::{FieldPath, Report};
use crate::syntax::{dns1035_label, dns1123_subdomain, iana_svc_name, qualified_name};

use super::metadata;

/// A rule or TLS host: a DNS name, or `*.` then one.
fn host(h: &str) -> Result<(), String> {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address".into());
    }
    dns1123_subdomain(h.strip_prefix("*.").unwrap_or(h))
        .map_err(|e| format!("{e} (a wildcard is '*.' then a DNS name)"))
}

fn backend(path: &FieldPath, b: &IngressBackend, r: &mut Report) {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => r.error(path, "cannot set both service and resource"),
        (None, None) => r.error(path, "required value: service or resource"),
        (None, Some(_)) => r.ignored.push(format!(
            "{} (a resource backend: pier routes to Services only; the path is not served)",
            path.field("resource")
        )),
        (Some(s), None) => {
            let p = path.field("service");
            r.check(&p.field("name"), dns1035_label(&s.name));
            let port = p.field("port");
            match (&s.port.name, s.port.number()) {
                (Some(_), Some(_)) => r.error(&port, "cannot set both name and number"),
                (None, None) => r.error(&port, "required value: name or number"),
                (Some(n), None) => r.check(&port.field("name"), iana_svc_name(n)),
                (None, Some(n)) => r.port(&port.field("number"), n),
            }
        }
    }
}

pub(crate) fn ingress(ing: &Ingress, r: &mut Report) {
    metadata(&ing.metadata, dns1123_subdomain, r);
    let annotations = FieldPath::root().field("metadata").field("annotations");
    match ingress_annotations::read(&ing.metadata.annotations) {
        Ok(read) => {
            let ns = match ing.metadata.namespace.as_str() {
                "" => "default",
                ns => ns,
            };
            let secret = read.settings.proxy_ssl.secret.as_deref();
            if let Some((other, _)) = secret.and_then(|s| s.split_once('/')) {
                if other != ns {
                    r.error(
                        &annotations
                            .key(&format!("{}proxy-ssl-secret", ingress_annotations::PREFIX)),
                        format!(
                            "the Secret must be in the Ingress's namespace {ns:?}: pier, like \
                             ingress-nginx's default allow-cross-namespace-resources, reads no \
                             other namespace's Secrets"
                        ),
                    );
                }
            }
            for key in read.unknown {
                r.ignored.push(format!(
                    "{} (an ingress-nginx annotation pier does not implement)",
                    annotations.key(&key)
                ));
            }
        }
        Err(errors) => {
            for (key, e) in errors {
                r.error(&annotations.key(&key), e);
            }
        }
    }
    let spec = FieldPath::root().field("spec");
    if let Some(class) = &ing.spec.ingress_class_name {
        r.check(&spec.field("ingressClassName"), dns1123_subdomain(class));
    }
    if let Some(b) = &ing.spec.default_backend {
        backend(&spec.field("defaultBackend"), b, r);
    } else if ing.spec.rules.is_empty() {
        r.error(
            &spec.field("rules"),
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    for (i, t) in ing.spec.tls.iter().enumerate() {
        let p = spec.field("tls").index(i);
        for (j, h) in t.hosts.iter().enumerate() {
            r.check(&p.field("hosts").index(j), host(h));
        }
        if let Some(s) = &t.secret_name {
            r.check(&p.field("secretName"), dns1123_subdomain(s));
        }
    }
    for (i, rule) in ing.spec.rules.iter().enumerate() {
        let p = spec.field("rules").index(i);
        if let Some(h) = &rule.host {
            r.check(&p.field("host"), host(h));
        }
        let Some(http) = &rule.http else { continue };
        let paths = p.field("http").field("paths");
        if http.paths.is_empty() {
            r.error(&paths, "required value");
        }
        for (j, path) in http.paths.iter().enumerate() {
            let pp = paths.index(j);
            r.one_of(
                &pp.field("pathType"),
                &path.path_type,
                &["Exact", "Prefix", "ImplementationSpecific"],
            );
            match path.path.as_deref() {
                Some(v) if !v.starts_with('/') => {
                    r.error(&pp.field("path"), "must be an absolute path")
                }
                Some(v) if path.path_type != "ImplementationSpecific" && v.contains("//") => {
                    r.error(&pp.field("path"), "must not contain '//'")
                }
                None if path.path_type != "ImplementationSpecific" => {
                    r.error(&pp.field("path"), "required value")
                }
                _ => {}
            }
            backend(&pp.field("backend"), &path.backend, r);
        }
    }
}

pub(crate) fn ingress_class(class: &IngressClass, r: &mut Report) {
    metadata(&class.metadata, dns1123_subdomain, r);
    let p = FieldPath::root().field("spec").field("controller");
    if class.spec.controller.is_empty() {
        r.error(&p, "required value");
    } else {
        r.check(&p, qualified_name(&class.spec.controller));
        if class.spec.controller.len() > 250 {
            r.error(&p, "must be no more than 250 characters");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Object;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> String {
        match Object::from_value(value) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn ingress(spec: serde_json::Value, annotations: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
            "spec": spec})
    }

    #[test]
    fn a_plain_ingress_passes() {
        let spec = json!({"ingressClassName": "nginx", "tls": [{"hosts": ["*.example.com"], "secretName": "tls"}],
            "rules": [{"host": "a.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]});
        assert_eq!(errors(ingress(spec, json!({}))), "");
    }

    #[test]
    fn errors_name_the_field() {
        let spec = json!({"rules": [{"host": "10.0.0.1", "http": {"paths": [
            {"path": "api", "pathType": "Sometimes", "backend": {"service": {"name": "web", "port": {}}}}]}}]});
        let e = errors(ingress(
            spec,
            json!({"nginx.ingress.kubernetes.io/canary-weight": "x"}),
        ));
        for want in [
            "spec.rules[0].host",
            "spec.rules[0].http.paths[0].path",
            "spec.rules[0].http.paths[0].pathType",
            "spec.rules[0].http.paths[0].backend.service.port",
            "metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }

    #[test]
    fn a_proxy_ssl_secret_of_another_namespace_is_refused() {
        let spec = json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 443}}}});
        let key = "nginx.ingress.kubernetes.io/proxy-ssl-secret";
        let annotations =
            |v: &str| json!({key: v, "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"});
        assert_eq!(errors(ingress(spec.clone(), annotations("default/ca"))), "");
        let e = errors(ingress(spec, annotations("kube-system/ca")));
        assert!(e.contains(&format!("metadata.annotations[{key}]")), "{e}");
        assert!(e.contains("namespace"), "{e}");
    }

    #[test]
    fn unknown_nginx_annotations_are_warned() {
        let spec = json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}});
        let parsed = Object::from_value(ingress(
            spec,
            json!({"nginx.ingress.kubernetes.io/enable-cors": "true"}),
        ))
        .unwrap();
        assert!(
            parsed.ignored.iter().any(|i| i.contains("enable-cors")),
            "{:?}",
            parsed.ignored
        );
    }
}
