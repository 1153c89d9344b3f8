//! Which Gateway listeners a route attaches to, as Gateway API states it: the parent reference
//! (name, namespace, `sectionName`, `port`), the listener's `allowedRoutes` (namespaces and
//! kinds) and the intersection of host names. The snapshot builder serves by it and the
//! gateway status controller reports it, so the two cannot disagree.

use std::collections::BTreeMap;

use crate::gateway::{Gateway, Listener, GROUP};
use crate::route::ParentReference;

/// The outcome of one parent reference to a Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Attached to these listeners (indices into `spec.listeners`), with the host names each
    /// serves the route for (empty: every host).
    Accepted(Vec<(usize, Vec<String>)>),
    /// No listener has the `sectionName`/`port` given (`NoMatchingParent`).
    NoMatchingParent,
    /// The listeners do not allow the route's namespace or kind (`NotAllowedByListeners`).
    NotAllowedByListeners,
    /// No listener host name intersects the route's (`NoMatchingListenerHostname`).
    NoMatchingListenerHostname,
}

impl Verdict {
    /// The `Accepted` condition's status and reason.
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self {
            Verdict::Accepted(_) => ("True", "Accepted"),
            Verdict::NoMatchingParent => ("False", "NoMatchingParent"),
            Verdict::NotAllowedByListeners => ("False", "NotAllowedByListeners"),
            Verdict::NoMatchingListenerHostname => ("False", "NoMatchingListenerHostname"),
        }
    }
}

/// The route kinds a listener protocol takes by default.
pub fn default_kinds(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "HTTP" | "HTTPS" => &["HTTPRoute"],
        "TLS" => &["TLSRoute"],
        "TCP" => &["TCPRoute"],
        "UDP" => &["UDPRoute"],
        _ => &[],
    }
}

/// The route kinds a listener takes: `allowedRoutes.kinds` that its protocol supports, or the
/// protocol's defaults.
pub fn listener_kinds(l: &Listener) -> Vec<&str> {
    let supported = default_kinds(&l.protocol);
    match l.allowed_routes.as_ref().filter(|a| !a.kinds.is_empty()) {
        Some(a) => a
            .kinds
            .iter()
            .filter(|k| k.group.as_deref().unwrap_or(GROUP) == GROUP)
            .map(|k| k.kind.as_str())
            .filter(|k| supported.contains(k))
            .collect(),
        None => supported.to_vec(),
    }
}

/// Whether `l` of a Gateway in `gw_ns` lets a route of `kind` in `route_ns` attach.
fn allows(
    l: &Listener,
    gw_ns: &str,
    route_ns: &str,
    kind: &str,
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> bool {
    if !listener_kinds(l).contains(&kind) {
        return false;
    }
    let ns = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let labels = namespace_labels(route_ns).unwrap_or_default();
            ns.and_then(|n| n.selector.as_ref())
                .is_some_and(|s| s.matches(&labels))
        }
        _ => route_ns == gw_ns,
    }
}

/// Whether host name pattern `pattern` (`*.` matches one or more labels) covers `host`
/// (itself possibly a wildcard).
fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            let h = host.strip_prefix('*').unwrap_or(host);
            h.len() > suffix.len() && h.ends_with(suffix)
        }
        None => pattern == host,
    }
}

/// The host names a route with `route_hosts` is served for on a listener with `listener`
/// (`Some(empty)`: every host; `None`: they do not intersect).
pub fn intersect(listener: Option<&str>, route_hosts: &[String]) -> Option<Vec<String>> {
    let route_hosts: Vec<String> = route_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    let Some(l) = listener.map(str::to_ascii_lowercase) else {
        return Some(route_hosts);
    };
    if route_hosts.is_empty() {
        return Some(vec![l]);
    }
    let hosts: Vec<String> = route_hosts
        .into_iter()
        .filter_map(|h| {
            if covers(&l, &h) {
                Some(h)
            } else if covers(&h, &l) {
                Some(l.clone())
            } else {
                None
            }
        })
        .collect();
    (!hosts.is_empty()).then_some(hosts)
}

/// Where a route (`kind`, in `route_ns`, with `hostnames`) attaches through `parent`, if
/// `parent` names `gw`; `None` when it names another parent.
pub fn attach(
    gw: &Gateway,
    parent: &ParentReference,
    route_ns: &str,
    kind: &str,
    hostnames: &[String],
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Option<Verdict> {
    let gw_ns = gw.metadata.namespace();
    let names_it = parent.is_gateway()
        && parent.name == gw.metadata.name
        && parent.namespace.as_deref().unwrap_or(route_ns) == gw_ns;
    if !names_it {
        return None;
    }
    let named: Vec<(usize, &Listener)> = gw
        .spec
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| p == l.port))
        .collect();
    if named.is_empty() {
        return Some(Verdict::NoMatchingParent);
    }
    let allowed: Vec<(usize, &Listener)> = named
        .into_iter()
        .filter(|(_, l)| allows(l, gw_ns, route_ns, kind, namespace_labels))
        .collect();
    if allowed.is_empty() {
        return Some(Verdict::NotAllowedByListeners);
    }
    let attached: Vec<(usize, Vec<String>)> = allowed
        .into_iter()
        .filter_map(|(i, l)| Some((i, intersect(l.hostname.as_deref(), hostnames)?)))
        .collect();
    Some(if attached.is_empty() {
        Verdict::NoMatchingListenerHostname
    } else {
        Verdict::Accepted(attached)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn host_names_intersect_as_gateway_api_says() {
        assert_eq!(intersect(None, &[]), Some(vec![]));
        assert_eq!(
            intersect(Some("*.example.com"), &[]),
            Some(hosts(&["*.example.com"]))
        );
        assert_eq!(
            intersect(
                Some("*.example.com"),
                &hosts(&["foo.example.com", "a.b.example.com", "x.org"])
            ),
            Some(hosts(&["foo.example.com", "a.b.example.com"]))
        );
        assert_eq!(
            intersect(Some("foo.example.com"), &hosts(&["*.example.com"])),
            Some(hosts(&["foo.example.com"]))
        );
        assert_eq!(
            intersect(Some("*.example.com"), &hosts(&["*.foo.example.com"])),
            Some(hosts(&["*.foo.example.com"]))
        );
        assert_eq!(
            intersect(Some("*.example.com"), &hosts(&["example.com"])),
            None
        );
        assert_eq!(intersect(Some("foo.com"), &hosts(&["bar.com"])), None);
    }

    fn gateway(yaml: &str) -> Gateway {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn parents_sections_namespaces_and_hosts_decide() {
        let gw = gateway(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n\
             spec:\n  gatewayClassName: pier\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.com', allowedRoutes: {namespaces: {from: All}}}\n  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: c}]}}\n  - {name: tls, port: 8443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gw: 'yes'}}}}}\n",
        );
        let none = |_: &str| None;
        let parent = |section: Option<&str>, ns: Option<&str>| ParentReference {
            name: "gw".into(),
            namespace: ns.map(String::from),
            section_name: section.map(String::from),
            ..Default::default()
        };
        let other = ParentReference {
            name: "other".into(),
            ..Default::default()
        };
        assert_eq!(attach(&gw, &other, "infra", "HTTPRoute", &[], &none), None);
        // From another namespace only the `All` listener takes it.
        assert_eq!(
            attach(
                &gw,
                &parent(None, Some("infra")),
                "app",
                "HTTPRoute",
                &[],
                &none
            ),
            Some(Verdict::Accepted(vec![(0, hosts(&["*.example.com"]))]))
        );
        assert_eq!(
            attach(
                &gw,
                &parent(Some("https"), Some("infra")),
                "app",
                "HTTPRoute",
                &[],
                &none
            ),
            Some(Verdict::NotAllowedByListeners)
        );
        assert_eq!(
            attach(
                &gw,
                &parent(Some("nope"), None),
                "infra",
                "HTTPRoute",
                &[],
                &none
            ),
            Some(Verdict::NoMatchingParent)
        );
        assert_eq!(
            attach(
                &gw,
                &parent(Some("http"), None),
                "infra",
                "HTTPRoute",
                &hosts(&["x.org"]),
                &none
            ),
            Some(Verdict::NoMatchingListenerHostname)
        );
        // Same namespace: both HTTP listeners; the TLS one takes TLSRoutes only.
        assert_eq!(
            attach(
                &gw,
                &parent(None, None),
                "infra",
                "HTTPRoute",
                &hosts(&["a.example.com"]),
                &none
            ),
            Some(Verdict::Accepted(vec![
                (0, hosts(&["a.example.com"])),
                (1, hosts(&["a.example.com"]))
            ]))
        );
        let labelled = |ns: &str| {
            (ns == "team").then(|| BTreeMap::from([("gw".to_string(), "yes".to_string())]))
        };
        assert_eq!(
            attach(
                &gw,
                &parent(Some("tls"), Some("infra")),
                "team",
                "TLSRoute",
                &[],
                &labelled
            ),
            Some(Verdict::Accepted(vec![(2, vec![])]))
        );
        assert_eq!(
            attach(
                &gw,
                &parent(Some("tls"), Some("infra")),
                "else",
                "TLSRoute",
                &[],
                &labelled
            ),
            Some(Verdict::NotAllowedByListeners)
        );
    }
}
