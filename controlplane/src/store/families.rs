//! Which IP families a Service gets and which address it asks for in each, from
//! `ipFamilyPolicy`, `ipFamilies` and `clusterIPs` against the families the cluster serves,
//! as the Kubernetes API server decides it (dual-stack Services, KEP-563).

use std::net::IpAddr;

use pier_model::service::ServiceSpec;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub(crate) fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// `IPv4` / `IPv6`, as `ipFamilies` spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// A field that cannot be satisfied, with why.
pub(crate) type FieldProblem = (&'static str, String);

/// The families a Service gets, in order, with the address wanted in each (`None`:
/// allocate). `served` lists the families the cluster has service ranges for, the default
/// first; `old` is the stored spec when this is an update.
pub(crate) fn plan(
    spec: &ServiceSpec,
    old: Option<&ServiceSpec>,
    served: &[Family],
) -> Result<(Vec<Family>, Vec<Option<IpAddr>>), FieldProblem> {
    let requested = current_ips(spec);
    let old_ips: Vec<IpAddr> = old.map(current_ips).unwrap_or_default();
    let policy = spec.ip_family_policy.as_deref().unwrap_or("SingleStack");
    let mut families: Vec<Family> = if !spec.ip_families.is_empty() {
        spec.ip_families
            .iter()
            .filter_map(|f| Family::parse(f))
            .collect()
    } else if !requested.is_empty() {
        requested.iter().copied().map(Family::of).collect()
    } else if let Some(primary) = old_ips.first() {
        vec![Family::of(*primary)]
    } else {
        served.first().copied().into_iter().collect()
    };
    if let Some(&primary) = families.first() {
        match policy {
            "PreferDualStack" if families.len() == 1 && served.contains(&primary.other()) => {
                families.push(primary.other());
            }
            "RequireDualStack" if families.len() == 1 => families.push(primary.other()),
            _ => {}
        }
    }
    for (i, f) in families.iter().enumerate() {
        if !served.contains(f) {
            let why = if policy == "RequireDualStack" {
                "ipFamilyPolicy RequireDualStack needs"
            } else {
                "this Service needs"
            };
            return Err((
                "spec.ipFamilies",
                format!(
                    "{why} {} (item {i}), but the cluster has no {} service range (--service-cidr)",
                    f.name(),
                    f.name()
                ),
            ));
        }
    }
    if let (Some(old_primary), Some(new_primary)) = (old_ips.first(), families.first()) {
        if Family::of(*old_primary) != *new_primary {
            return Err((
                "spec.ipFamilies[0]",
                format!(
                    "field is immutable: the primary family stays {}",
                    Family::of(*old_primary).name()
                ),
            ));
        }
    }
    let mut wanted = Vec::with_capacity(families.len());
    for (i, family) in families.iter().enumerate() {
        let asked = requested.get(i).copied();
        if let Some(ip) = asked.filter(|ip| Family::of(*ip) != *family) {
            return Err((
                "spec.clusterIPs",
                format!("{ip} is not an {} address (ipFamilies[{i}])", family.name()),
            ));
        }
        let kept = old_ips
            .iter()
            .copied()
            .find(|ip| Family::of(*ip) == *family);
        match (asked, kept) {
            (Some(ip), Some(old)) if ip != old => {
                return Err((
                    "spec.clusterIPs",
                    format!("field is immutable: {old} cannot change to {ip}"),
                ))
            }
            _ => wanted.push(asked.or(kept)),
        }
    }
    if requested.len() > families.len() {
        return Err((
            "spec.clusterIPs",
            format!(
                "{} addresses for {} famil{} (ipFamilyPolicy {policy})",
                requested.len(),
                families.len(),
                if families.len() == 1 { "y" } else { "ies" }
            ),
        ));
    }
    Ok((families, wanted))
}

/// The virtual IPs a spec names (`clusterIPs`, else `clusterIP`), primary first.
pub(crate) fn current_ips(spec: &ServiceSpec) -> Vec<IpAddr> {
    if spec.cluster_ips.is_empty() {
        spec.cluster_ip.parse().into_iter().collect()
    } else {
        spec.cluster_ips
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: Option<&str>, families: &[&str], ips: &[&str]) -> ServiceSpec {
        ServiceSpec {
            ip_family_policy: policy.map(str::to_string),
            ip_families: families.iter().map(|s| s.to_string()).collect(),
            cluster_ips: ips.iter().map(|s| s.to_string()).collect(),
            cluster_ip: ips.first().map(|s| s.to_string()).unwrap_or_default(),
            ..ServiceSpec::default()
        }
    }

    const BOTH: &[Family] = &[Family::V4, Family::V6];
    const V4: &[Family] = &[Family::V4];

    #[test]
    fn policies_pick_families() {
        let fams = |s: &ServiceSpec, served| plan(s, None, served).map(|(f, _)| f);
        assert_eq!(fams(&spec(None, &[], &[]), BOTH), Ok(vec![Family::V4]));
        assert_eq!(
            fams(&spec(Some("PreferDualStack"), &[], &[]), BOTH),
            Ok(vec![Family::V4, Family::V6])
        );
        assert_eq!(
            fams(&spec(Some("PreferDualStack"), &[], &[]), V4),
            Ok(vec![Family::V4])
        );
        assert!(fams(&spec(Some("RequireDualStack"), &[], &[]), V4).is_err());
        assert_eq!(
            fams(&spec(Some("RequireDualStack"), &["IPv6"], &[]), BOTH),
            Ok(vec![Family::V6, Family::V4])
        );
        assert_eq!(
            fams(&spec(None, &[], &["fd00::10"]), BOTH),
            Ok(vec![Family::V6]),
            "a user-set IPv6 ClusterIP"
        );
        assert!(
            fams(&spec(None, &["IPv6"], &[]), V4).is_err(),
            "no IPv6 range"
        );
    }

    #[test]
    fn addresses_must_match_families_and_keep_the_primary() {
        assert!(plan(&spec(None, &["IPv4"], &["fd00::1"]), None, BOTH).is_err());
        let old = spec(
            Some("PreferDualStack"),
            &["IPv4", "IPv6"],
            &["10.96.0.5", "fd00::5"],
        );
        // An update without addresses keeps both.
        let (_, wanted) = plan(&spec(Some("PreferDualStack"), &[], &[]), Some(&old), BOTH).unwrap();
        assert_eq!(
            wanted,
            [
                Some("10.96.0.5".parse().unwrap()),
                Some("fd00::5".parse().unwrap())
            ]
        );
        // Down to single-stack keeps the primary; the primary family cannot change.
        let (f, wanted) = plan(&spec(None, &[], &[]), Some(&old), BOTH).unwrap();
        assert_eq!(
            (f, wanted),
            (vec![Family::V4], vec![Some("10.96.0.5".parse().unwrap())])
        );
        assert!(plan(&spec(None, &["IPv6"], &[]), Some(&old), BOTH).is_err());
        assert!(plan(&spec(None, &[], &["10.96.0.6"]), Some(&old), BOTH).is_err());
    }
}
