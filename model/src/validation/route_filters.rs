//! Rules for HTTPRoute filters: the ones pier applies, and which others it accepts and ignores.

use crate::report::{FieldPath, Report};
use crate::route::{HeaderModifier, HttpRouteFilter, PathModifier};
use crate::syntax::dns1123_subdomain;

/// Filters pier applies.
const APPLIED: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
];

/// Filters Gateway API defines that pier accepts without applying.
const IGNORED: &[&str] = &["RequestMirror", "ExtensionRef", "CORS", "ExternalAuth"];

fn header_name(path: &FieldPath, name: &str, r: &mut Report) {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        r.error(path, format!("{name:?} is not a valid header name"));
    }
}

fn modifier(path: &FieldPath, m: Option<&HeaderModifier>, r: &mut Report) {
    let Some(m) = m else {
        r.error(path, "required value for this filter type");
        return;
    };
    for (field, list) in [("set", &m.set), ("add", &m.add)] {
        for (i, h) in list.iter().enumerate() {
            header_name(&path.field(field).index(i).field("name"), &h.name, r);
            if h.value.bytes().any(|b| b == b'\r' || b == b'\n') {
                r.error(
                    &path.field(field).index(i).field("value"),
                    "must not contain line breaks",
                );
            }
        }
    }
    for (i, name) in m.remove.iter().enumerate() {
        header_name(&path.field("remove").index(i), name, r);
    }
}

fn path_modifier(path: &FieldPath, m: &PathModifier, has_prefix_match: bool, r: &mut Report) {
    r.one_of(
        &path.field("type"),
        &m.modifier_type,
        &["ReplaceFullPath", "ReplacePrefixMatch"],
    );
    let (field, value) = match m.modifier_type.as_str() {
        "ReplaceFullPath" => ("replaceFullPath", &m.replace_full_path),
        _ => ("replacePrefixMatch", &m.replace_prefix_match),
    };
    match value {
        Some(v) if !v.starts_with('/') => {
            r.error(
                &path.field(field),
                "must be an absolute path starting with '/'",
            );
        }
        None => r.error(&path.field(field), "required value for this type"),
        Some(_) => {}
    }
    if m.modifier_type == "ReplacePrefixMatch" && !has_prefix_match {
        r.error(
            &path.field("type"),
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix path match",
        );
    }
}

/// Validates a rule's filters; `prefix_matches` is whether all its matches are path prefixes.
pub(super) fn filters(
    path: &FieldPath,
    filters: &[HttpRouteFilter],
    prefix_matches: bool,
    r: &mut Report,
) {
    let mut redirect = false;
    let mut rewrite = false;
    for (i, f) in filters.iter().enumerate() {
        let fp = path.index(i);
        let ty = f.filter_type.as_str();
        if IGNORED.contains(&ty) {
            r.ignored
                .push(format!("{fp} ({ty} filter: pier does not apply it)"));
            continue;
        }
        r.one_of(&fp.field("type"), ty, &[APPLIED, IGNORED].concat());
        match ty {
            "RequestHeaderModifier" => modifier(
                &fp.field("requestHeaderModifier"),
                f.request_header_modifier.as_ref(),
                r,
            ),
            "ResponseHeaderModifier" => modifier(
                &fp.field("responseHeaderModifier"),
                f.response_header_modifier.as_ref(),
                r,
            ),
            "RequestRedirect" => {
                redirect = true;
                let rp = fp.field("requestRedirect");
                let Some(rd) = &f.request_redirect else {
                    r.error(&rp, "required value for this filter type");
                    continue;
                };
                if let Some(s) = &rd.scheme {
                    r.one_of(&rp.field("scheme"), s, &["http", "https"]);
                }
                if let Some(h) = &rd.hostname {
                    r.check(&rp.field("hostname"), dns1123_subdomain(h));
                }
                if let Some(p) = rd.port {
                    r.port(&rp.field("port"), p);
                }
                if let Some(code) = rd.status_code {
                    if ![301, 302, 303, 307, 308].contains(&code) {
                        r.error(
                            &rp.field("statusCode"),
                            format!("unsupported value {code}: supported values 301, 302, 303, 307, 308"),
                        );
                    }
                }
                if let Some(p) = &rd.path {
                    path_modifier(&rp.field("path"), p, prefix_matches, r);
                }
            }
            "URLRewrite" => {
                rewrite = true;
                let up = fp.field("urlRewrite");
                let Some(u) = &f.url_rewrite else {
                    r.error(&up, "required value for this filter type");
                    continue;
                };
                if let Some(h) = &u.hostname {
                    r.check(&up.field("hostname"), dns1123_subdomain(h));
                }
                if let Some(p) = &u.path {
                    path_modifier(&up.field("path"), p, prefix_matches, r);
                }
            }
            _ => {}
        }
    }
    if redirect && rewrite {
        r.error(
            path,
            "may not contain both RequestRedirect and URLRewrite filters",
        );
    }
}
