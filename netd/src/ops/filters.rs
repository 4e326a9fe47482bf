//! Source filters set by the daemon's settings (`--filter-allow`/`--filter-deny`, or the config
//! file's `"filter-allow"`/`"filter-deny"`). The settings own the prefixes they added: a reload
//! replaces them with the new lists, and prefixes added with `netd filter` stay. What they own
//! is kept in `<state-dir>/config-filters.json`, so a restart with a shorter list removes the
//! prefixes that left it.

use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, FilterAction, FilterChange};
use crate::frontend::cli::args::DaemonArgs;

/// The prefixes the settings ask for, or own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFilters {
    pub allow: Vec<Ipv4Net>,
    pub deny: Vec<Ipv4Net>,
}

fn parse_list(flag: &str, list: &[String]) -> Result<Vec<Ipv4Net>, String> {
    let mut out = Vec::new();
    for c in list {
        let text = if c.contains('/') {
            c.clone()
        } else {
            format!("{c}/32")
        };
        let n = crate::spec::parse_ipv4_net(&text)
            .map_err(|e| format!("invalid --{flag} {c:?}: {e}"))?
            .trunc();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

impl ConfigFilters {
    pub fn from_args(a: &DaemonArgs) -> Result<Self, String> {
        Ok(Self {
            allow: parse_list("filter-allow", &a.filter_allow)?,
            deny: parse_list("filter-deny", &a.filter_deny)?,
        })
    }
}

fn owned_path(state_dir: &Path) -> PathBuf {
    state_dir.join("config-filters.json")
}

fn load_owned(state_dir: &Path) -> Result<ConfigFilters, String> {
    let p = owned_path(state_dir);
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{} is corrupt: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFilters::default()),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

/// One list: what to remove, what to add, and what the settings own afterwards.
fn plan(
    owned: &[Ipv4Net],
    want: &[Ipv4Net],
    current: &[Ipv4Net],
) -> (Vec<Ipv4Net>, Vec<Ipv4Net>, Vec<Ipv4Net>) {
    let remove: Vec<Ipv4Net> = owned
        .iter()
        .filter(|n| !want.contains(n) && current.contains(n))
        .copied()
        .collect();
    let add: Vec<Ipv4Net> = want
        .iter()
        .filter(|n| !current.contains(n))
        .copied()
        .collect();
    let mut now: Vec<Ipv4Net> = owned
        .iter()
        .filter(|n| want.contains(n) && current.contains(n))
        .copied()
        .collect();
    now.extend(add.iter().copied());
    (remove, add, now)
}

/// Makes the engine's filters hold `want` in place of what the settings set before.
pub async fn apply(
    engine: &mut Engine,
    state_dir: &Path,
    want: &ConfigFilters,
) -> Result<(), String> {
    let owned = load_owned(state_dir)?;
    let current = engine.filters();
    let (rm_a, add_a, own_a) = plan(&owned.allow, &want.allow, &current.allow);
    let (rm_d, add_d, own_d) = plan(&owned.deny, &want.deny, &current.deny);
    let mut rm = rm_a;
    rm.extend(rm_d);
    for (action, cidrs) in [
        (FilterAction::Rm, rm),
        (FilterAction::Allow, add_a),
        (FilterAction::Deny, add_d),
    ] {
        if cidrs.is_empty() {
            continue;
        }
        engine
            .change_filters(FilterChange { action, cidrs })
            .await
            .map_err(|e| format!("source filters from the settings: {e}"))?;
    }
    let now = ConfigFilters {
        allow: own_a,
        deny: own_d,
    };
    if now != owned {
        let p = owned_path(state_dir);
        let text = serde_json::to_string_pretty(&now).expect("serialises");
        crate::fsutil::write_atomic(&p, &text)
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_reload_replaces_only_what_the_settings_added() {
        let user = n("203.0.113.7/32");
        let old = n("198.51.100.0/24");
        let new = n("192.0.2.0/24");
        // The file owned `old`; the user added `user`; the file now says `new`.
        let (rm, add, own) = plan(&[old], &[new], &[old, user]);
        assert_eq!(rm, [old]);
        assert_eq!(add, [new]);
        assert_eq!(own, [new]);
        // A prefix the user added before the file named it stays the user's.
        let (rm, add, own) = plan(&[], &[user], &[user]);
        assert!(rm.is_empty() && add.is_empty() && own.is_empty());
        let (rm, _, _) = plan(&own, &[], &[user]);
        assert!(rm.is_empty());
    }
}
