//! Rules for GatewayClass and Gateway, as Gateway API's CRD validation states them.

use std::collections::HashSet;

use crate::gateway::{Gateway, GatewayClass, Listener};
use crate::report::{FieldPath, Report};
use crate::syntax::{dns1123_label, dns1123_subdomain};

use super::{label_selector, metadata};

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS", "TCP", "UDP"];

pub(crate) fn gateway_class(class: &GatewayClass, r: &mut Report) {
    metadata(&class.metadata, dns1123_subdomain, r);
    let path = FieldPath::root().field("spec").field("controllerName");
    let name = &class.spec.controller_name;
    // A domain-prefixed path: `example.net/gateway-controller`.
    match name.split_once('/') {
        Some((domain, rest)) if !rest.is_empty() => r.check(&path, dns1123_subdomain(domain)),
        _ => r.error(
            &path,
            format!("{name:?} must be a domain-prefixed path such as pier.dev/gateway-controller"),
        ),
    }
}

fn hostname(path: &FieldPath, h: &str, r: &mut Report) {
    if h.parse::<std::net::IpAddr>().is_ok() {
        r.error(path, "must be a host name, not an IP address");
        return;
    }
    r.check(path, dns1123_subdomain(h.strip_prefix("*.").unwrap_or(h)));
}

fn listener(path: &FieldPath, l: &Listener, r: &mut Report) {
    r.check(&path.field("name"), dns1123_label(&l.name));
    r.port(&path.field("port"), l.port);
    r.one_of(&path.field("protocol"), &l.protocol, PROTOCOLS);
    if let Some(h) = &l.hostname {
        hostname(&path.field("hostname"), h, r);
    }
    let tp = path.field("tls");
    match (l.protocol.as_str(), &l.tls) {
        ("HTTPS" | "TLS", None) => r.error(&tp, "required value for protocol HTTPS and TLS"),
        ("HTTP" | "TCP" | "UDP", Some(_)) => {
            r.error(&tp, "must not be set for protocols HTTP, TCP and UDP");
        }
        (_, Some(tls)) => {
            if let Some(mode) = &tls.mode {
                r.one_of(&tp.field("mode"), mode, &["Terminate", "Passthrough"]);
            }
            if l.protocol == "HTTPS" && tls.passthrough() {
                r.error(&tp.field("mode"), "Passthrough is for protocol TLS only");
            }
            if !tls.passthrough() && tls.certificate_refs.is_empty() {
                r.error(
                    &tp.field("certificateRefs"),
                    "required value when mode is Terminate",
                );
            }
            for (i, c) in tls.certificate_refs.iter().enumerate() {
                r.check(
                    &tp.field("certificateRefs").index(i).field("name"),
                    dns1123_subdomain(&c.name),
                );
            }
        }
        _ => {}
    }
    if matches!(l.protocol.as_str(), "TCP" | "UDP") {
        r.ignored.push(format!(
            "{} ({} listener: pier's Gateways serve HTTP, HTTPS and TLS; TCPRoute and UDPRoute \
             attach to Services)",
            path, l.protocol
        ));
    }
    if let Some(ns) = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        let np = path.field("allowedRoutes").field("namespaces");
        let from = ns.from.as_deref().unwrap_or("Same");
        r.one_of(&np.field("from"), from, &["All", "Same", "Selector"]);
        match (&ns.selector, from) {
            (Some(sel), _) => label_selector(&np.field("selector"), sel, r),
            (None, "Selector") => r.error(&np.field("selector"), "required when from is Selector"),
            _ => {}
        }
    }
}

pub(crate) fn gateway(gw: &Gateway, r: &mut Report) {
    metadata(&gw.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    r.check(
        &spec.field("gatewayClassName"),
        dns1123_subdomain(&gw.spec.gateway_class_name),
    );
    let lp = spec.field("listeners");
    if gw.spec.listeners.is_empty() || gw.spec.listeners.len() > 64 {
        r.error(&lp, "must have between 1 and 64 items");
    }
    let mut names = HashSet::new();
    let mut combos = HashSet::new();
    for (i, l) in gw.spec.listeners.iter().enumerate() {
        let p = lp.index(i);
        listener(&p, l, r);
        if !names.insert(&l.name) {
            r.error(
                &p.field("name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        if !combos.insert((l.port, &l.protocol, &l.hostname)) {
            r.error(
                &p,
                "another listener has the same port, protocol and hostname",
            );
        }
    }
    if !gw.spec.addresses.is_empty() {
        r.ignored.push(format!(
            "{} (pier serves a Gateway on every node's address; status.addresses lists them)",
            spec.field("addresses")
        ));
    }
}
