//! Each container's hostname, hosts and resolv.conf (the seed's "Configuring DNS").

use crate::dnsfiles::{self, EtcFiles, HostsLink};
use crate::spec::NetMode;

use super::state::{Endpoint, Written};
use super::{Engine, EngineError, Touched};

impl Engine {
    fn host_resolv(&self) -> String {
        std::fs::read_to_string(&self.cfg.resolv_conf).unwrap_or_default()
    }

    /// The endpoint whose files this one shares (`--net container:NAME`), else itself.
    fn file_source<'a>(&'a self, ep: &'a Endpoint) -> &'a Endpoint {
        match &ep.net {
            NetMode::Container(t) => self.state.endpoints.get(t).unwrap_or(ep),
            _ => ep,
        }
    }

    fn render(&self, ep: &Endpoint) -> Written {
        let src = self.file_source(ep);
        let host_resolv = self.host_resolv();
        let hostname = dnsfiles::render_hostname(&ep.hostname);
        if src.net == NetMode::Host {
            // The host's own files, as they are.
            return Written {
                hostname,
                hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                resolv_conf: host_resolv,
            };
        }
        let links: Vec<HostsLink> = src
            .links
            .iter()
            .filter_map(|l| {
                let t = self.state.endpoints.get(&l.name)?;
                Some(HostsLink {
                    alias: l.alias.clone(),
                    name: l.name.clone(),
                    ip: t.ip?,
                })
            })
            .collect();
        let hosts = dnsfiles::render_hosts(
            &src.hostname,
            src.ip,
            src.ipv6().and_then(|l| l.global),
            &links,
        );
        let (dns, search) = if src.dns.is_empty() && src.dns_search.is_empty() {
            (&self.cfg.dns, &self.cfg.dns_search)
        } else {
            (&src.dns, &src.dns_search)
        };
        let resolv_conf = dnsfiles::render_resolv_conf(dns, search, &host_resolv);
        Written {
            hostname,
            hosts,
            resolv_conf,
        }
    }

    /// Renders and writes all three files.
    pub(super) fn write_files(&self, ep: &mut Endpoint) -> Result<(), EngineError> {
        let files = EtcFiles::new(ep.etc_dir.clone());
        let err = |what: &str, e: std::io::Error| {
            EngineError::Internal(format!(
                "cannot write {what} in {}: {e}",
                ep.etc_dir.display()
            ))
        };
        files.create_dir().map_err(|e| err("the directory", e))?;
        let w = self.render(ep);
        // Not fsynced: the files live no longer than the container's namespace (see
        // write_replace_volatile); six fsyncs were the largest part of an attach.
        let write = crate::fsutil::write_replace_volatile;
        write(&files.hostname_path(), &w.hostname).map_err(|e| err("hostname", e))?;
        write(&files.hosts_path(), &w.hosts).map_err(|e| err("hosts", e))?;
        write(&files.resolv_conf_path(), &w.resolv_conf).map_err(|e| err("resolv.conf", e))?;
        ep.written = w;
        Ok(())
    }

    /// Rewrites the hosts file of every container that links to `target` (or shares such a
    /// container's files), after `target` came, went or changed address.
    pub(super) fn refresh_linkers(&mut self, target: &str) {
        let names: Vec<String> = self.linkers(target).into_iter().collect();
        self.rewrite_files(
            names,
            EtcFile::Hosts,
            &format!("hosts rewritten for link {target}"),
        );
    }

    /// The endpoints whose hosts file lists `target` (those whose [`Engine::file_source`]
    /// links to it), by name: the index's endpoints that name it and their joiners, not a
    /// scan of every endpoint.
    fn linkers(&self, target: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for src in self.index.linked_by(target) {
            let Some(e) = self.state.endpoints.get(src) else {
                continue;
            };
            // A joiner whose target is gone keeps its own links (file_source).
            if std::ptr::eq(self.file_source(e), e) {
                out.insert(src.to_owned());
            }
            for j in self.index.joiners(src) {
                if self.state.endpoints.contains_key(j) {
                    out.insert(j.to_owned());
                }
            }
        }
        out
    }

    /// The host's resolv.conf changed: rewrite every container copy that follows it and that
    /// still holds exactly what netd last wrote (an edited copy is the container's business).
    pub fn host_resolv_changed(&mut self) {
        let names: Vec<String> = self
            .state
            .endpoints
            .values()
            .filter(|e| {
                let src = self.file_source(e);
                src.net == NetMode::Host
                    || src.follows_host_resolv(&self.cfg.dns, &self.cfg.dns_search)
            })
            .map(|e| e.name.clone())
            .collect();
        self.rewrite_files(
            names,
            EtcFile::ResolvConf,
            "resolv.conf follows the host's new file",
        );
    }

    /// The daemon's `--dns`/`--dns-search` changed (a config reload): rewrite the resolv.conf
    /// of every container that uses the daemon's defaults (no `--dns` of its own), unless the
    /// container edited it.
    pub fn set_daemon_dns(&mut self, dns: Vec<std::net::IpAddr>, search: Vec<String>) {
        self.cfg.dns = dns;
        self.cfg.dns_search = search;
        let names: Vec<String> = self
            .state
            .endpoints
            .values()
            .filter(|e| {
                let src = self.file_source(e);
                src.net != NetMode::Host && src.dns.is_empty() && src.dns_search.is_empty()
            })
            .map(|e| e.name.clone())
            .collect();
        self.rewrite_files(
            names,
            EtcFile::ResolvConf,
            "resolv.conf follows the daemon's new DNS settings",
        );
    }

    /// Re-renders one file of each named container and writes it where it changed, then
    /// persists what was written. A resolv.conf the container edited is left alone; hosts is
    /// netd's (Docker rewrites it on link changes too).
    fn rewrite_files(&mut self, names: Vec<String>, which: EtcFile, why: &str) {
        let mut changed = Vec::new();
        for n in names {
            let ep = &self.state.endpoints[&n];
            let files = EtcFiles::new(ep.etc_dir.clone());
            let (path, last) = match which {
                EtcFile::Hosts => (files.hosts_path(), &ep.written.hosts),
                EtcFile::ResolvConf => (files.resolv_conf_path(), &ep.written.resolv_conf),
            };
            if which == EtcFile::ResolvConf {
                let on_disk = std::fs::read_to_string(&path).ok();
                if !dnsfiles::still_ours(on_disk.as_deref(), last) {
                    tracing::info!(container = %n, "resolv.conf was edited in the container; leaving it alone");
                    continue;
                }
            }
            let rendered = self.render(ep);
            let new = match which {
                EtcFile::Hosts => rendered.hosts,
                EtcFile::ResolvConf => rendered.resolv_conf,
            };
            if &new == last {
                continue;
            }
            match crate::fsutil::write_atomic(&path, &new) {
                Ok(()) => {
                    let w = &mut self.state.endpoints.get_mut(&n).expect("listed").written;
                    match which {
                        EtcFile::Hosts => w.hosts = new,
                        EtcFile::ResolvConf => w.resolv_conf = new,
                    }
                    tracing::info!(container = %n, "{why}");
                    changed.push(n);
                }
                Err(e) => tracing::warn!(container = %n, "cannot rewrite {}: {e}", path.display()),
            }
        }
        if !changed.is_empty() {
            let touched: Vec<Touched<'_>> = changed.iter().map(|n| Touched::Endpoint(n)).collect();
            if let Err(e) = self.persist(&touched) {
                tracing::warn!("{e}");
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EtcFile {
    Hosts,
    ResolvConf,
}
