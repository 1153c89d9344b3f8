//! Rules for BackendTLSPolicy, as Gateway API's CRD states them.

use crate::backend_tls::BackendTlsPolicy;
use crate::report::{FieldPath, Report};
use crate::syntax::{dns1123_label, dns1123_subdomain};

use super::metadata;

pub(crate) fn backend_tls_policy(p: &BackendTlsPolicy, r: &mut Report) {
    metadata(&p.metadata, dns1123_subdomain, r);
    let spec = FieldPath::root().field("spec");
    let tp = spec.field("targetRefs");
    if p.spec.target_refs.is_empty() || p.spec.target_refs.len() > 16 {
        r.error(&tp, "must have between 1 and 16 items");
    }
    for (i, t) in p.spec.target_refs.iter().enumerate() {
        let path = tp.index(i);
        if !crate::route::is_core_group(&t.group) || t.kind != "Service" {
            r.error(
                &path.field("kind"),
                format!(
                    "{}/{} is not supported: pier applies BackendTLSPolicy to Services",
                    t.group, t.kind
                ),
            );
        }
        r.check(&path.field("name"), dns1123_subdomain(&t.name));
        if let Some(s) = &t.section_name {
            r.check(&path.field("sectionName"), dns1123_label(s));
        }
    }
    let vp = spec.field("validation");
    let v = &p.spec.validation;
    r.check(&vp.field("hostname"), dns1123_subdomain(&v.hostname));
    match (&v.ca_certificate_refs[..], &v.well_known_ca_certificates) {
        ([], None) => r.error(
            &vp.field("caCertificateRefs"),
            "one of caCertificateRefs and wellKnownCACertificates is required",
        ),
        ([_, ..], Some(_)) => r.error(
            &vp.field("wellKnownCACertificates"),
            "must not be set with caCertificateRefs",
        ),
        (_, Some(w)) => r.one_of(&vp.field("wellKnownCACertificates"), w, &["System"]),
        _ => {}
    }
    for (i, c) in v.ca_certificate_refs.iter().enumerate() {
        let path = vp.field("caCertificateRefs").index(i);
        if !crate::route::is_core_group(&c.group) || c.kind != "ConfigMap" {
            r.error(
                &path.field("kind"),
                format!(
                    "{}/{} is not supported: the CA is read from a ConfigMap's ca.crt",
                    c.group, c.kind
                ),
            );
        }
        r.check(&path.field("name"), dns1123_subdomain(&c.name));
    }
}
