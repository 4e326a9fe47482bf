//! S1: the iptables ruleset Docker 20.10 writes for the same configuration, loaded into the
//! host namespace (never the root one) with iptables-legacy or iptables-nft.
//!
//! The ruleset is the `userland-proxy=false` variant (Docker's "hairpin mode"), the one in which
//! iptables alone serves every path, host-local ones included: the nat OUTPUT jump has no
//! `! -d 127.0.0.0/8`, DNAT rules have no `! -i <bridge>`, locally sourced traffic to the bridge
//! is masqueraded, there is no `-i <bridge> -j RETURN` in nat DOCKER, and the bridge gets
//! `route_localnet=1`. The filter chains (DOCKER-USER, the two isolation stages, the conntrack
//! accept, the icc accept/drop and the per-port and per-link accepts) are as Docker writes
//! them. Docker runs one `iptables` call per rule; the bench loads the whole ruleset with one
//! `iptables-restore` (faster than Docker when publishing many ports), and times one more port
//! the way Docker adds it: three `iptables -A` calls.
//!
//! On the dual-stack topology of the IPv6 paths it also loads the same ruleset for IPv6 with
//! `ip6tables-legacy-restore` / `ip6tables-nft-restore`, as Docker does with `"ip6tables":
//! true`: container addresses as /128, `--to-destination [ADDR]:PORT`, no `route_localnet`
//! (IPv6 has none), and no `-s SUBNET6 ! -o BRIDGE -j MASQUERADE`: IPv6 is routed, as with
//! netd and Docker 27's `gateway_mode_ipv6=routed` (Docker 20.10 masqueraded it). It first
//! checks that ip6tables' nat table works in the host namespace (ip6table_nat for legacy, nft's
//! nat for nft) and fails the setup, saying so, if not.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{Memory, Route, System};
use crate::paths::PathId;
use crate::proc::{in_ns, run_ok};
use crate::tools::sock_addr;
use crate::topology::{
    BRIDGE, Endpoint, ONE_MORE_PORT, SUBNET, SUBNET6, TopoOpts, Topology, catch, srv_mappings,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    fn iptables(self, ipv6: bool) -> &'static str {
        match (self, ipv6) {
            (Backend::Legacy, false) => "iptables-legacy",
            (Backend::Nft, false) => "iptables-nft",
            (Backend::Legacy, true) => "ip6tables-legacy",
            (Backend::Nft, true) => "ip6tables-nft",
        }
    }
    fn restore(self, ipv6: bool) -> &'static str {
        match (self, ipv6) {
            (Backend::Legacy, false) => "iptables-legacy-restore",
            (Backend::Nft, false) => "iptables-nft-restore",
            (Backend::Legacy, true) => "ip6tables-legacy-restore",
            (Backend::Nft, true) => "ip6tables-nft-restore",
        }
    }
}

/// One published port: host port -> container ip:port.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub proto: String,
    pub host_port: u16,
    pub container_ip: String,
    pub container_port: u16,
}

/// A link: `client` may reach `server` on `port/proto` (with icc=false).
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub client_ip: String,
    pub server_ip: String,
    pub proto: String,
    pub port: u16,
}

/// What Docker's bridge driver is configured with.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    pub bridge: String,
    pub subnet: String,
    pub icc: bool,
    /// `userland-proxy=false` (hairpin mode).
    pub hairpin: bool,
    /// The ip6tables ruleset (addresses and `subnet` are IPv6).
    pub ipv6: bool,
}

impl DockerConfig {
    /// `ip` as a one-address prefix (/32 or /128).
    fn host(&self, ip: &str) -> String {
        format!("{ip}/{}", if self.ipv6 { 128 } else { 32 })
    }
}

/// The nat-table rules Docker writes for one published port (in `iptables -A` form, without
/// the table).
pub fn port_nat_rules(cfg: &DockerConfig, p: &Publish) -> [String; 2] {
    let not_in = if cfg.hairpin {
        String::new()
    } else {
        format!("! -i {} ", cfg.bridge)
    };
    [
        format!(
            "-A DOCKER {not_in}-p {pr} -m {pr} --dport {hp} -j DNAT --to-destination {to}",
            pr = p.proto,
            hp = p.host_port,
            to = sock_addr(&p.container_ip, p.container_port),
        ),
        format!(
            "-A POSTROUTING -s {ip} -d {ip} -p {pr} -m {pr} --dport {cp} -j MASQUERADE",
            pr = p.proto,
            ip = cfg.host(&p.container_ip),
            cp = p.container_port
        ),
    ]
}

/// The filter-table rule Docker writes for one published port.
pub fn port_filter_rule(cfg: &DockerConfig, p: &Publish) -> String {
    format!(
        "-A DOCKER -d {ip} ! -i {br} -o {br} -p {pr} -m {pr} --dport {cp} -j ACCEPT",
        ip = cfg.host(&p.container_ip),
        br = cfg.bridge,
        pr = p.proto,
        cp = p.container_port
    )
}

/// The whole ruleset in `iptables-restore` format.
pub fn ruleset(cfg: &DockerConfig, publishes: &[Publish], links: &[Link]) -> String {
    let br = &cfg.bridge;
    let mut s = String::new();
    s.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    s.push_str(":POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n");
    s.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n");
    if cfg.hairpin {
        s.push_str("-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n");
    } else {
        let lo = if cfg.ipv6 { "::1/128" } else { "127.0.0.0/8" };
        let _ = writeln!(
            s,
            "-A OUTPUT ! -d {lo} -m addrtype --dst-type LOCAL -j DOCKER"
        );
    }
    if !cfg.ipv6 {
        let _ = writeln!(
            s,
            "-A POSTROUTING -s {} ! -o {br} -j MASQUERADE",
            cfg.subnet
        );
    }
    if cfg.hairpin {
        let _ = writeln!(
            s,
            "-A POSTROUTING -o {br} -m addrtype --src-type LOCAL -j MASQUERADE"
        );
    } else {
        let _ = writeln!(s, "-A DOCKER -i {br} -j RETURN");
    }
    for p in publishes {
        let [dnat, masq] = port_nat_rules(cfg, p);
        let _ = writeln!(s, "{masq}\n{dnat}");
    }
    s.push_str("COMMIT\n");
    s.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    s.push_str(":DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n");
    s.push_str(":DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n");
    s.push_str("-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n");
    let _ = writeln!(
        s,
        "-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    let _ = writeln!(s, "-A FORWARD -o {br} -j DOCKER");
    let _ = writeln!(s, "-A FORWARD -i {br} ! -o {br} -j ACCEPT");
    let verdict = if cfg.icc { "ACCEPT" } else { "DROP" };
    let _ = writeln!(s, "-A FORWARD -i {br} -o {br} -j {verdict}");
    for p in publishes {
        let _ = writeln!(s, "{}", port_filter_rule(cfg, p));
    }
    if !cfg.icc {
        for l in links {
            let _ = writeln!(
                s,
                "-A DOCKER -s {c} -d {v} -i {br} -o {br} -p {pr} -m {pr} --dport {port} -j ACCEPT\n\
                 -A DOCKER -s {v} -d {c} -i {br} -o {br} -p {pr} -m {pr} --sport {port} -j ACCEPT",
                c = cfg.host(&l.client_ip),
                v = cfg.host(&l.server_ip),
                pr = l.proto,
                port = l.port
            );
        }
    }
    let _ = writeln!(
        s,
        "-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"
    );
    s.push_str("-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n");
    let _ = writeln!(s, "-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP");
    s.push_str("-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n");
    s
}

pub struct DockerRules {
    backend: Backend,
}

impl DockerRules {
    pub fn new(backend: Backend) -> DockerRules {
        DockerRules { backend }
    }

    fn config(t: &Topology, ipv6: bool) -> DockerConfig {
        DockerConfig {
            bridge: BRIDGE.into(),
            subnet: if ipv6 { SUBNET6 } else { SUBNET }.into(),
            icc: t.opts.icc,
            hairpin: true,
            ipv6,
        }
    }

    /// srv's publications after the fillers' (so the measured port's rules come last in the
    /// linear chains, as for a container started after the others). For IPv6, those of the
    /// containers that have an IPv6 address.
    fn publishes(t: &Topology, ipv6: bool) -> Vec<Publish> {
        let mut v = vec![];
        for f in &t.fillers {
            let Some(ip) = addr(&f.ep, ipv6) else {
                continue;
            };
            for port in f.ports.clone() {
                v.push(Publish {
                    proto: "tcp".into(),
                    host_port: port,
                    container_ip: ip.clone(),
                    container_port: port,
                });
            }
        }
        if let Some(ip) = addr(&t.srv, ipv6) {
            v.extend(srv_mappings().into_iter().map(|m| Publish {
                proto: m.proto.into(),
                host_port: m.host_port,
                container_ip: ip.clone(),
                container_port: m.container_port,
            }));
        }
        v
    }

    /// cli is linked to srv: Docker opens every exposed port of srv to cli. In the sweep's
    /// icc-off variant, "linker" is linked to every filler, whose ports are all exposed; those
    /// rules come first (cli's, the measured ones, last, as for a container started later).
    fn links(t: &Topology, ipv6: bool) -> Vec<Link> {
        let mut v = vec![];
        if let Some(l) = t.linker.as_ref().and_then(|l| addr(l, ipv6)) {
            for f in &t.fillers {
                let Some(server) = addr(&f.ep, ipv6) else {
                    continue;
                };
                for port in f.ports.clone() {
                    v.push(Link {
                        client_ip: l.clone(),
                        server_ip: server.clone(),
                        proto: "tcp".into(),
                        port,
                    });
                }
            }
        }
        if let (Some(c), Some(srv)) = (addr(&t.cli, ipv6), addr(&t.srv, ipv6)) {
            v.extend(srv_mappings().iter().map(|m| Link {
                client_ip: c.clone(),
                server_ip: srv.clone(),
                proto: m.proto.into(),
                port: m.container_port,
            }));
        }
        v
    }

    /// Loads the whole IPv4 (or IPv6) ruleset with one `iptables-restore`; returns its time.
    fn restore(&self, t: &Topology, ipv6: bool) -> Result<Duration> {
        let rules = ruleset(
            &Self::config(t, ipv6),
            &Self::publishes(t, ipv6),
            &Self::links(t, ipv6),
        );
        let restore = self.backend.restore(ipv6);
        let t0 = Instant::now();
        let mut c = in_ns(t.world.host.path(), &[restore]);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {restore}"))?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        let took = t0.elapsed();
        if !out.status.success() {
            bail!(
                "{restore} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    }

    /// Fails, naming what is missing, unless ip6tables' nat table works in the host namespace.
    fn check_ip6_nat(&self, t: &Topology) -> Result<()> {
        let cmd = self.backend.iptables(true);
        let module = match self.backend {
            Backend::Legacy => "ip6table_nat",
            Backend::Nft => "nft_chain_nat (nf_tables nat for ip6)",
        };
        run_ok(
            cmd,
            in_ns(t.world.host.path(), &[cmd, "-w", "-t", "nat", "-S"]),
            Duration::from_secs(30),
        )
        .with_context(|| {
            format!(
                "{} cannot be built over IPv6: `{cmd} -t nat` fails in the bench's host \
                 namespace (the kernel needs {module})",
                self.id()
            )
        })?;
        Ok(())
    }

    fn iptables(&self, t: &Topology, table: &str, rule: &str) -> Result<()> {
        let mut argv = vec![self.backend.iptables(false), "-w", "-t", table];
        argv.extend(rule.split_whitespace());
        run_ok(
            "iptables",
            in_ns(t.world.host.path(), &argv),
            Duration::from_secs(60),
        )?;
        Ok(())
    }
}

impl System for DockerRules {
    fn id(&self) -> &'static str {
        match self.backend {
            Backend::Legacy => "S1-legacy",
            Backend::Nft => "S1-nft",
        }
    }
    fn topo_opts(&self, icc: bool, ipv6: bool) -> TopoOpts {
        TopoOpts::v4("none", icc, false).with_ipv6(ipv6)
    }
    fn setup(&mut self, t: &Topology) -> Result<()> {
        catch("route_localnet", || {
            t.world.host.run_ok(&[
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{BRIDGE}.route_localnet=1"),
            ])
        })?;
        self.restore(t, false)?;
        if t.opts.ipv6 {
            self.check_ip6_nat(t)?;
            self.restore(t, true)?;
        }
        Ok(())
    }
    fn route(&self, path: PathId) -> Route {
        match path {
            PathId::P4 | PathId::P4Link | PathId::P5 | PathId::P5v6 => Route::Direct,
            _ => Route::Published,
        }
    }
    fn nat_and_filters(&self) -> bool {
        true
    }
    fn pids(&self, _t: &Topology) -> Vec<u32> {
        vec![]
    }
    fn publish_fillers(&mut self, t: &Topology) -> Result<Duration> {
        self.restore(t, false)
    }
    fn publish_one_more(&mut self, t: &Topology) -> Result<Duration> {
        let ip = &t.onemore.as_ref().context("no onemore container")?.ip;
        let cfg = Self::config(t, false);
        let p = Publish {
            proto: "tcp".into(),
            host_port: ONE_MORE_PORT,
            container_ip: ip.clone(),
            container_port: 80,
        };
        let [dnat, masq] = port_nat_rules(&cfg, &p);
        let t0 = Instant::now();
        self.iptables(t, "nat", &dnat)?;
        self.iptables(t, "filter", &port_filter_rule(&cfg, &p))?;
        self.iptables(t, "nat", &masq)?;
        Ok(t0.elapsed())
    }
    fn memory(&self, _t: &Topology) -> Option<Memory> {
        None
    }
}

/// `ep`'s address of the family (IPv6: its global address, if it has one).
fn addr(ep: &Endpoint, ipv6: bool) -> Option<String> {
    if ipv6 {
        ep.ip6.clone()
    } else {
        Some(ep.ip.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(icc: bool, hairpin: bool) -> DockerConfig {
        DockerConfig {
            bridge: "docker0".into(),
            subnet: "172.17.0.0/16".into(),
            icc,
            hairpin,
            ipv6: false,
        }
    }

    fn web() -> Publish {
        Publish {
            proto: "tcp".into(),
            host_port: 8080,
            container_ip: "172.17.0.2".into(),
            container_port: 80,
        }
    }

    #[test]
    fn published_port_rules_match_docker_20_10() {
        let r = ruleset(&cfg(true, false), &[web()], &[]);
        for want in [
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
            "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
            "-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
            "-A DOCKER -i docker0 -j RETURN",
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
            "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A FORWARD -i docker0 -o docker0 -j ACCEPT",
            "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
        ] {
            assert!(r.lines().any(|l| l == want), "missing {want:?} in\n{r}");
        }
        assert_eq!(r.matches("COMMIT").count(), 2);
    }

    #[test]
    fn hairpin_mode_drops_the_loopback_and_bridge_exclusions() {
        let r = ruleset(&cfg(true, true), &[web()], &[]);
        assert!(r.contains("-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n"));
        assert!(r.contains("-A POSTROUTING -o docker0 -m addrtype --src-type LOCAL -j MASQUERADE"));
        assert!(r.contains("-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT"));
        assert!(!r.contains("-j RETURN\n-A DOCKER -p"));
        assert!(!r.contains("-A DOCKER -i docker0 -j RETURN"));
    }

    #[test]
    fn icc_off_drops_and_links_open_both_directions() {
        let link = Link {
            client_ip: "172.17.0.3".into(),
            server_ip: "172.17.0.2".into(),
            proto: "tcp".into(),
            port: 80,
        };
        let r = ruleset(&cfg(false, true), &[], std::slice::from_ref(&link));
        assert!(r.contains("-A FORWARD -i docker0 -o docker0 -j DROP"));
        assert!(r.contains(
            "-A DOCKER -s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
        ));
        assert!(r.contains(
            "-A DOCKER -s 172.17.0.2/32 -d 172.17.0.3/32 -i docker0 -o docker0 -p tcp -m tcp --sport 80 -j ACCEPT"
        ));
        // With icc on, Docker writes no link rules.
        assert!(!ruleset(&cfg(true, true), &[], &[link]).contains("--sport"));
    }

    #[test]
    fn ipv6_ruleset_uses_128_prefixes_brackets_and_no_subnet_masquerade() {
        let cfg6 = DockerConfig {
            subnet: "2001:db8:1::/64".into(),
            ipv6: true,
            ..cfg(true, false)
        };
        let web6 = Publish {
            container_ip: "2001:db8:1::242:ac11:2".into(),
            ..web()
        };
        let r = ruleset(&cfg6, std::slice::from_ref(&web6), &[]);
        for want in [
            "-A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER",
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [2001:db8:1::242:ac11:2]:80",
            "-A POSTROUTING -s 2001:db8:1::242:ac11:2/128 -d 2001:db8:1::242:ac11:2/128 -p tcp -m tcp --dport 80 -j MASQUERADE",
            "-A DOCKER -d 2001:db8:1::242:ac11:2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
        ] {
            assert!(r.lines().any(|l| l == want), "missing {want:?} in\n{r}");
        }
        // Routed: the container prefix is not masqueraded, and nothing IPv4 is left.
        assert!(!r.contains("-s 2001:db8:1::/64"), "{r}");
        assert!(!r.contains("/32") && !r.contains("127.0.0.0/8"), "{r}");
        // The IPv4 ruleset keeps its masquerade.
        assert!(
            ruleset(&cfg(true, false), &[web()], &[])
                .contains("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")
        );
    }

    #[test]
    fn rule_count_grows_three_per_port() {
        let base = ruleset(&cfg(true, true), &[], &[]).lines().count();
        let ports: Vec<Publish> = (0..100)
            .map(|i| Publish {
                host_port: 20000 + i,
                ..web()
            })
            .collect();
        assert_eq!(
            ruleset(&cfg(true, true), &ports, &[]).lines().count(),
            base + 300
        );
    }
}
