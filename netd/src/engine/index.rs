//! Indexes over the state's endpoints, so that one attach or detach costs O(its own links and
//! addresses) rather than a scan of every endpoint: who holds an address (the planner's
//! allocator asks for up to a network's size of them), who links to a container (its link
//! allowances and its linkers' hosts files), who joins a container's namespace, whose files
//! are in a directory.
//!
//! Built from the state at start ([`EndpointIndex::build`]) and kept by the only two changes
//! that touch what it indexes: an endpoint going into the state and leaving it
//! ([`EndpointIndex::insert`], [`EndpointIndex::remove`]). What it indexes (name, addresses,
//! mode, links, files directory) never changes while an endpoint is in the state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::state::Endpoint;
use crate::spec::NetMode;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct EndpointIndex {
    /// IPv4 address -> the endpoints that have it (a joiner, `--net container:`, shares its
    /// target's and is not counted).
    ip4: HashMap<Ipv4Addr, BTreeSet<String>>,
    /// The same for the global IPv6 address of a lease.
    ip6: HashMap<Ipv6Addr, BTreeSet<String>>,
    /// Link target name -> the endpoints whose `--link` names it (whether it exists or not).
    linked_by: HashMap<String, BTreeSet<String>>,
    /// Container name -> the endpoints that join its namespace (`--net container:NAME`).
    joiners: HashMap<String, BTreeSet<String>>,
    /// `--etc-dir` -> the endpoints whose files are there.
    etc_dirs: HashMap<PathBuf, BTreeSet<String>>,
}

fn add<K: std::hash::Hash + Eq>(m: &mut HashMap<K, BTreeSet<String>>, k: K, name: &str) {
    m.entry(k).or_default().insert(name.to_owned());
}

fn del<K: std::hash::Hash + Eq>(m: &mut HashMap<K, BTreeSet<String>>, k: K, name: &str) {
    if let Some(set) = m.get_mut(&k) {
        set.remove(name);
        if set.is_empty() {
            m.remove(&k);
        }
    }
}

impl EndpointIndex {
    pub(super) fn build(endpoints: &BTreeMap<String, Endpoint>) -> Self {
        let mut ix = Self::default();
        for e in endpoints.values() {
            ix.insert(e);
        }
        ix
    }

    /// `e` went into the state.
    pub(super) fn insert(&mut self, e: &Endpoint) {
        self.each_key(e, |ix, key| match key {
            Key::Ip4(ip) => add(&mut ix.ip4, ip, &e.name),
            Key::Ip6(ip) => add(&mut ix.ip6, ip, &e.name),
            Key::Link(t) => add(&mut ix.linked_by, t.to_owned(), &e.name),
            Key::Joins(t) => add(&mut ix.joiners, t.to_owned(), &e.name),
            Key::EtcDir(d) => add(&mut ix.etc_dirs, d.to_owned(), &e.name),
        });
    }

    /// `e` left the state.
    pub(super) fn remove(&mut self, e: &Endpoint) {
        self.each_key(e, |ix, key| match key {
            Key::Ip4(ip) => del(&mut ix.ip4, ip, &e.name),
            Key::Ip6(ip) => del(&mut ix.ip6, ip, &e.name),
            Key::Link(t) => del(&mut ix.linked_by, t.to_owned(), &e.name),
            Key::Joins(t) => del(&mut ix.joiners, t.to_owned(), &e.name),
            Key::EtcDir(d) => del(&mut ix.etc_dirs, d.to_owned(), &e.name),
        });
    }

    fn each_key(&mut self, e: &Endpoint, mut f: impl FnMut(&mut Self, Key<'_>)) {
        if let NetMode::Container(target) = &e.net {
            f(self, Key::Joins(target));
        } else {
            if let Some(ip) = e.ip {
                f(self, Key::Ip4(ip));
            }
            if let Some(ip) = e.ipv6.as_ref().and_then(|l| l.global) {
                f(self, Key::Ip6(ip));
            }
        }
        for l in &e.links {
            f(self, Key::Link(&l.name));
        }
        f(self, Key::EtcDir(&e.etc_dir));
    }

    /// The first endpoint (by name) whose files are in `dir`.
    pub(super) fn etc_dir_user(&self, dir: &Path) -> Option<&str> {
        self.etc_dirs.get(dir)?.first().map(String::as_str)
    }

    /// The first endpoint (by name) that has the IPv4 address `ip`.
    pub(super) fn owner4(&self, ip: Ipv4Addr) -> Option<&str> {
        self.ip4.get(&ip)?.first().map(String::as_str)
    }

    /// The first endpoint (by name) whose IPv6 lease has the global address `ip`.
    pub(super) fn owner6(&self, ip: Ipv6Addr) -> Option<&str> {
        self.ip6.get(&ip)?.first().map(String::as_str)
    }

    /// The endpoints whose `--link` names `target`, by name.
    pub(super) fn linked_by(&self, target: &str) -> impl Iterator<Item = &str> {
        self.linked_by
            .get(target)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The endpoints that join `target`'s namespace, by name.
    pub(super) fn joiners(&self, target: &str) -> impl Iterator<Item = &str> {
        self.joiners
            .get(target)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

enum Key<'a> {
    Ip4(Ipv4Addr),
    Ip6(Ipv6Addr),
    Link(&'a str),
    Joins(&'a str),
    EtcDir(&'a Path),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::Ipv6Lease;
    use crate::spec::LinkSpec;

    fn ep(name: &str, net: NetMode, ip: Option<[u8; 4]>, links: &[&str]) -> Endpoint {
        Endpoint {
            name: name.into(),
            netns: "/x".into(),
            net,
            network: None,
            ifname: "eth0".into(),
            hostname: name.into(),
            ip: ip.map(Ipv4Addr::from),
            mac: None,
            gateway: None,
            host_ifname: None,
            host_ifindex: None,
            etc_dir: format!("/etc/{name}").into(),
            publish: Vec::new(),
            publish_all: false,
            ports: Vec::new(),
            exposed: Vec::new(),
            links: links
                .iter()
                .map(|l| LinkSpec {
                    name: (*l).to_owned(),
                    alias: (*l).to_owned(),
                })
                .collect(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            p2p: Vec::new(),
            written: Default::default(),
            reserve_ports: true,
            handed_over: false,
            ipv6: None,
            ndp_proxy: Vec::new(),
        }
    }

    #[test]
    fn insert_then_remove_leaves_the_index_empty_and_equal_to_a_rebuild() {
        let mut state = BTreeMap::new();
        let mut ix = EndpointIndex::default();
        let mut a = ep("a", NetMode::Bridge, Some([10, 0, 0, 2]), &["b"]);
        a.ipv6 = Some(Ipv6Lease {
            link_local: "fe80::1".parse().unwrap(),
            global: Some("fd00::2".parse().unwrap()),
            prefix_len: Some(64),
            gateway: "fe80::1".parse().unwrap(),
        });
        let b = ep("b", NetMode::Bridge, Some([10, 0, 0, 3]), &[]);
        let c = ep(
            "c",
            NetMode::Container("a".into()),
            Some([10, 0, 0, 2]),
            &["b"],
        );
        let d = ep("d", NetMode::Bridge, Some([10, 0, 0, 4]), &["b", "a"]);
        for e in [&a, &b, &c, &d] {
            ix.insert(e);
            state.insert(e.name.clone(), e.clone());
            assert_eq!(ix, EndpointIndex::build(&state));
        }
        assert_eq!(
            ix.owner4(Ipv4Addr::new(10, 0, 0, 2)),
            Some("a"),
            "not the joiner c"
        );
        assert_eq!(ix.owner6("fd00::2".parse().unwrap()), Some("a"));
        assert_eq!(ix.owner4(Ipv4Addr::new(10, 0, 0, 9)), None);
        assert_eq!(ix.linked_by("b").collect::<Vec<_>>(), ["a", "c", "d"]);
        assert_eq!(ix.linked_by("a").collect::<Vec<_>>(), ["d"]);
        assert_eq!(ix.joiners("a").collect::<Vec<_>>(), ["c"]);
        assert_eq!(ix.etc_dir_user(Path::new("/etc/d")), Some("d"));
        assert_eq!(ix.etc_dir_user(Path::new("/etc/e")), None);
        for e in [&a, &c, &b, &d] {
            ix.remove(e);
            state.remove(&e.name);
            assert_eq!(ix, EndpointIndex::build(&state));
        }
        assert_eq!(ix, EndpointIndex::default());
    }

    #[test]
    fn a_shared_address_keeps_its_other_owner() {
        let mut ix = EndpointIndex::default();
        let x = ep("x", NetMode::Bridge, Some([10, 0, 0, 5]), &[]);
        let y = ep("y", NetMode::Bridge, Some([10, 0, 0, 5]), &[]);
        ix.insert(&x);
        ix.insert(&y);
        ix.remove(&x);
        assert_eq!(ix.owner4(Ipv4Addr::new(10, 0, 0, 5)), Some("y"));
    }
}
