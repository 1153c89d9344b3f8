//! The snapshot's edge view: which Ingresses pier serves (their class is pier's), as views,
//! with the TLS Secrets they name.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pier_snapshot::edge::ProxySsl;
use pier_snapshot::edge::{
    BackendPort, CertificateView, EdgeView, IngressBackendView, IngressPathView, IngressRuleView,
    IngressTlsView, IngressView,
};
use pier_snapshot::{ClientCertificate, ServiceKey};

use super::gateway::GatewaySet;
use crate::backend_tls::CA_KEY;
use crate::gateway::{Gateway, GatewayClass};
use crate::ingress::{Ingress, IngressBackend, IngressClass};
use crate::ingress_annotations;
use crate::route::HttpRoute;
use crate::secret::{Secret, TLS, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY};

/// The annotation naming a Secret for TLS to the backend.
static PROXY_SSL_SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{}proxy-ssl-secret", ingress_annotations::PREFIX));

/// Ingresses, Gateways, their classes and routes, and TLS Secrets as they stand, and the last
/// view built from them.
#[derive(Debug, Default, Clone)]
pub(super) struct EdgeBuilder {
    ingresses: BTreeMap<(String, String), Arc<Ingress>>,
    classes: BTreeMap<String, Arc<IngressClass>>,
    certificates: BTreeMap<String, Arc<CertificateView>>,
    /// `ca.crt`, and `tls.crt` with `tls.key`, of every Secret that has them: what a
    /// `proxy-ssl-secret` annotation may name.
    proxy_ssl_secrets: BTreeMap<String, Arc<ProxySslMaterial>>,
    gateways: GatewaySet,
    dirty: bool,
    view: Arc<EdgeView>,
}

impl EdgeBuilder {
    /// Records an Ingress (or its removal).
    pub(super) fn ingress(&mut self, ns: &str, name: &str, ingress: Option<&Ingress>) {
        let key = (ns.to_string(), name.to_string());
        match ingress {
            Some(i) => self.ingresses.insert(key, Arc::new(i.clone())),
            None => self.ingresses.remove(&key),
        };
        self.dirty = true;
    }

    /// Records an IngressClass (or its removal).
    pub(super) fn class(&mut self, name: &str, class: Option<&IngressClass>) {
        match class {
            Some(c) => self.classes.insert(name.to_string(), Arc::new(c.clone())),
            None => self.classes.remove(name),
        };
        self.dirty = true;
    }

    /// Records a Gateway (or its removal).
    pub(super) fn gateway(&mut self, ns: &str, name: &str, gw: Option<&Gateway>) {
        self.dirty |= self.gateways.gateway(ns, name, gw);
    }

    /// Records a GatewayClass (or its removal).
    pub(super) fn gateway_class(&mut self, name: &str, class: Option<&GatewayClass>) {
        self.dirty |= self.gateways.class(name, class);
    }

    /// Records an HTTPRoute (or its removal); only one naming a Gateway matters here.
    pub(super) fn http_route(&mut self, ns: &str, name: &str, route: Option<&HttpRoute>) {
        self.dirty |= self.gateways.route(ns, name, route);
    }

    /// Records a TLSRoute (or its removal).
    pub(super) fn tls_route(
        &mut self,
        ns: &str,
        name: &str,
        route: Option<&crate::route::L4Route>,
    ) {
        self.dirty |= self.gateways.tls_route(ns, name, route);
    }

    /// Records a namespace's labels (a listener may select routes by them).
    pub(super) fn namespace(&mut self, name: &str, labels: Option<&BTreeMap<String, String>>) {
        self.dirty |= self.gateways.namespace(name, labels);
    }

    /// Records a Secret (or its removal); only TLS material is kept, and only a Secret an
    /// Ingress or a listener names makes the view change.
    pub(super) fn secret(&mut self, ns: &str, name: &str, secret: Option<&Secret>) {
        let id = format!("{ns}/{name}");
        let material = secret.and_then(ProxySslMaterial::of).map(Arc::new);
        let ssl_changed = match material {
            Some(m) => self.proxy_ssl_secrets.insert(id.clone(), Arc::clone(&m)) != Some(m),
            None => self.proxy_ssl_secrets.remove(&id).is_some(),
        };
        if ssl_changed && self.names_proxy_ssl_secret(&id) {
            self.dirty = true;
        }
        let cert = secret.filter(|s| s.secret_type() == TLS).map(|s| {
            Arc::new(CertificateView {
                secret: id.clone(),
                cert_pem: s.value(TLS_CERT_KEY).unwrap_or_default(),
                key_pem: s.value(TLS_PRIVATE_KEY_KEY).unwrap_or_default(),
            })
        });
        let changed = match cert {
            Some(c) => {
                self.certificates.insert(id.clone(), c);
                true
            }
            None => self.certificates.remove(&id).is_some(),
        };
        if changed && (self.names_secret(ns, name) || self.gateways.names_secret(ns, name)) {
            self.dirty = true;
        }
    }

    fn names_proxy_ssl_secret(&self, id: &str) -> bool {
        self.ingresses.values().any(|i| {
            i.metadata
                .annotations
                .get(PROXY_SSL_SECRET.as_str())
                .is_some_and(|v| v == id)
        })
    }

    fn names_secret(&self, ns: &str, name: &str) -> bool {
        self.ingresses.iter().any(|((ins, _), i)| {
            ins == ns
                && i.spec
                    .tls
                    .iter()
                    .any(|t| t.secret_name.as_deref() == Some(name))
        })
    }

    /// The view, rebuilt when something it shows changed.
    pub(super) fn build(&mut self) -> Arc<EdgeView> {
        if std::mem::take(&mut self.dirty) {
            let view = self.rebuild();
            if view != *self.view {
                self.view = Arc::new(view);
            }
        }
        Arc::clone(&self.view)
    }

    fn rebuild(&self) -> EdgeView {
        let mut served: Vec<&Arc<Ingress>> = self
            .ingresses
            .values()
            .filter(|i| {
                i.is_served_by_pier(self.classes.values().map(AsRef::as_ref))
                    && i.metadata.deletion_timestamp.is_none()
            })
            .collect();
        // Oldest first (RFC 3339 times in UTC sort as text), then by name.
        served.sort_by(|a, b| {
            (
                &a.metadata.creation_timestamp,
                a.metadata.namespace(),
                &a.metadata.name,
            )
                .cmp(&(
                    &b.metadata.creation_timestamp,
                    b.metadata.namespace(),
                    &b.metadata.name,
                ))
        });
        let mut secrets = BTreeSet::new();
        let ingresses = served
            .into_iter()
            .map(|i| {
                let mut view = ingress_view(i);
                self.resolve_proxy_ssl(&view.namespace, &mut view.settings.proxy_ssl);
                secrets.extend(view.tls.iter().filter_map(|t| t.secret.clone()));
                Arc::new(view)
            })
            .collect();
        let (listeners, listener_secrets) = self.gateways.listeners();
        secrets.extend(listener_secrets);
        let certificates = secrets
            .into_iter()
            .filter_map(|id| Some((id.clone(), Arc::clone(self.certificates.get(&id)?))))
            .collect();
        EdgeView {
            ingresses,
            listeners,
            certificates,
        }
    }
}

impl EdgeBuilder {
    /// Fills in the material of the `proxy-ssl-secret`; a Secret of another namespace is never
    /// read (validation refuses one, and this keeps it so).
    fn resolve_proxy_ssl(&self, ns: &str, ssl: &mut ProxySsl) {
        let Some(id) = &ssl.secret else {
            return;
        };
        let same_namespace = id.split_once('/').is_some_and(|(sns, _)| sns == ns);
        let Some(m) = self.proxy_ssl_secrets.get(id).filter(|_| same_namespace) else {
            return;
        };
        ssl.ca_pem = m.ca_pem.clone();
        ssl.client = m.client.clone();
    }
}

/// What a Secret holds for TLS to a backend.
#[derive(Debug, PartialEq, Eq)]
struct ProxySslMaterial {
    ca_pem: Option<Vec<u8>>,
    client: Option<ClientCertificate>,
}

impl ProxySslMaterial {
    /// `ca.crt`, and `tls.crt` with `tls.key`; none when the Secret has neither.
    fn of(s: &Secret) -> Option<Self> {
        let ca_pem = s.value(CA_KEY);
        let client = s
            .value(TLS_CERT_KEY)
            .zip(s.value(TLS_PRIVATE_KEY_KEY))
            .map(|(cert_pem, key_pem)| ClientCertificate { cert_pem, key_pem });
        (ca_pem.is_some() || client.is_some()).then_some(Self { ca_pem, client })
    }
}

fn backend_view(ns: &str, b: &IngressBackend) -> Option<IngressBackendView> {
    let s = b.service.as_ref()?;
    let port = match (&s.port.name, s.port.number()) {
        (Some(n), _) => BackendPort::Name(n.clone()),
        (None, Some(n)) => BackendPort::Number(u16::try_from(n).ok()?),
        (None, None) => return None,
    };
    Some(IngressBackendView {
        service: ServiceKey::new(ns, &s.name),
        port,
    })
}

/// An Ingress as the edge serves it (valid: validation has passed).
pub fn ingress_view(i: &Ingress) -> IngressView {
    let ns = i.metadata.namespace();
    let rules = i
        .spec
        .rules
        .iter()
        .map(|r| IngressRuleView {
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            paths: r
                .http
                .iter()
                .flat_map(|h| &h.paths)
                .filter_map(|p| {
                    Some(IngressPathView {
                        path: p.path.clone().unwrap_or_else(|| "/".into()),
                        exact: p.path_type == "Exact",
                        backend: backend_view(ns, &p.backend)?,
                    })
                })
                .collect(),
        })
        .collect();
    let tls = i
        .spec
        .tls
        .iter()
        .map(|t| IngressTlsView {
            hosts: t.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            secret: t.secret_name.as_ref().map(|s| format!("{ns}/{s}")),
        })
        .collect();
    IngressView {
        namespace: ns.to_string(),
        name: i.metadata.name.clone(),
        rules,
        default_backend: i
            .spec
            .default_backend
            .as_ref()
            .and_then(|b| backend_view(ns, b)),
        tls,
        settings: ingress_annotations::read(&i.metadata.annotations)
            .map(|r| r.settings)
            .unwrap_or_default(),
    }
}
