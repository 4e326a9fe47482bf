//! How the CLI prints the daemon's answers: tables as `docker ps`/`docker port` print them.

use crate::frontend::http::types::{EndpointView, NetworkView, PortView, StatsView};

pub fn format_filters(v: &serde_json::Value) -> String {
    let list = |k: &str| -> String {
        let items: Vec<String> = v[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            "(empty)".into()
        } else {
            items.join(" ")
        }
    };
    format!("allow: {}\ndeny:  {}", list("allow"), list("deny"))
}

pub fn format_stats(v: &StatsView) -> String {
    let mut out = String::from("DROPS");
    if v.drops.is_empty() {
        out.push_str("\n  (none)");
    }
    for d in &v.drops {
        out.push_str(&format!("\n  {:<28} {:>12}", d.reason, d.packets));
    }
    if v.ct_per_source_max != 0 {
        out.push_str(&format!(
            "\nCONNTRACK SOURCE BUDGET (--ct-per-source-max {}: unanswered flows from outside)",
            v.ct_per_source_max
        ));
        if v.ct_sources.is_empty() {
            out.push_str("\n  (no source holds any)");
        }
        for c in &v.ct_sources {
            out.push_str(&format!("\n  {:<40} {:>8}", c.addr, c.flows));
        }
    }
    out.push_str(&format!(
        "\nPUBLISHED PORTS\n  {:<16} {:<6} {:<22} {:<12} {:>10} {:>12}",
        "CONTAINER", "PROTO", "HOST", "CONTAINER", "PACKETS", "BYTES"
    ));
    for b in &v.bindings {
        out.push_str(&format!(
            "\n  {:<16} {:<6} {:<22} {:<12} {:>10} {:>12}",
            b.container,
            b.proto,
            format!("{}:{}", b.host_ip, b.host_port),
            b.container_port,
            b.packets,
            b.bytes
        ));
    }
    let r = &v.relay46;
    out.push_str(&format!(
        "\nNAT46 RELAY (IPv6 to containers without IPv6)\n  listeners {}  tcp active {} total {} refused {} failed {}  udp flows active {} total {} dropped {}  bytes to container {} from container {}",
        r.listeners,
        r.tcp_active,
        r.tcp_total,
        r.tcp_refused,
        r.tcp_failed,
        r.udp_flows_active,
        r.udp_flows_total,
        r.udp_dropped,
        r.bytes_to_container,
        r.bytes_from_container
    ));
    out
}

pub fn format_ct(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<5} {:<22} {:<22} {:<22} {:<22} {:<9} {:<22} {:>8} {:>6}",
        "PROTO", "SRC", "DST", "NAT-SRC", "NAT-DST", "DIR", "KIND", "PACKETS", "IDLE"
    );
    for f in v.as_array().into_iter().flatten() {
        let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
        let kind: Vec<String> = f["kind"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "\n{:<5} {:<22} {:<22} {:<22} {:<22} {:<9} {:<22} {:>8} {:>5}s",
            s("proto"),
            s("src"),
            s("dst"),
            s("nat_src"),
            s("nat_dst"),
            s("direction"),
            kind.join(","),
            f["packets"],
            f["idle_s"]
        ));
    }
    out
}

/// A host address as it goes before `:PORT`: an IPv6 one in brackets (`[::]:8080`).
fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// The host addresses of a published port: 0.0.0.0 and `[::]` for a dual binding.
fn hosts(p: &PortView) -> Vec<String> {
    let mut v = vec![host(&p.host_ip)];
    v.extend(p.host_ip6.as_deref().map(host));
    v
}

pub fn format_ls(list: &[EndpointView]) -> String {
    let mut out = format!(
        "{:<20} {:<22} {:<16} {:<26} {:<18} {}",
        "NAME", "NET", "IP", "IPV6", "MAC", "PORTS"
    );
    for v in list {
        // A container may publish thousands of ports: show a few, count the rest
        // (`netd port NAME` lists them all).
        const SHOWN: usize = 4;
        let mut ports: Vec<String> = v
            .ports
            .iter()
            .take(SHOWN)
            .flat_map(|p| {
                hosts(p)
                    .into_iter()
                    .map(move |h| format!("{h}:{}->{}/{}", p.host_port, p.container_port, p.proto))
            })
            .collect();
        if v.ports.len() > SHOWN {
            ports.push(format!("... ({} more)", v.ports.len() - SHOWN));
        }
        out.push_str(&format!(
            "\n{:<20} {:<22} {:<16} {:<26} {:<18} {}",
            v.name,
            v.net,
            v.ip.as_deref().unwrap_or("-"),
            v.global_ipv6.as_deref().unwrap_or("-"),
            v.mac.as_deref().unwrap_or("-"),
            ports.join(", ")
        ));
    }
    out
}

/// The ports `netd port NAME [PORT]` shows; an error when PORT is given and not published.
pub fn select_ports<'a>(
    v: &'a EndpointView,
    filter: Option<&str>,
) -> Result<Vec<&'a PortView>, String> {
    let want = filter
        .map(crate::spec::parse_port_query)
        .transpose()
        .map_err(|e| e.to_string())?;
    let ports: Vec<&PortView> = v
        .ports
        .iter()
        .filter(|p| match &want {
            Some((port, proto)) => {
                p.container_port == *port && proto.map(|x| x.to_string() == p.proto).unwrap_or(true)
            }
            None => true,
        })
        .collect();
    if ports.is_empty() {
        if let Some(f) = filter {
            return Err(format!("no public port {f} published for {}", v.name));
        }
    }
    Ok(ports)
}

/// `docker port` output: "80/tcp -> 0.0.0.0:8080", one line per port as Docker 1.8 printed
/// it (a dual binding's `[::]` side is in `netd ls` and `host_ip6` of `netd inspect`).
pub fn format_port(v: &EndpointView, filter: Option<&str>) -> Result<String, String> {
    let ports = select_ports(v, filter)?;
    let lines: Vec<String> = if filter.is_some() {
        ports
            .into_iter()
            .map(|p| format!("{}:{}", host(&p.host_ip), p.host_port))
            .collect()
    } else {
        port_lines(ports)
    };
    Ok(lines.join("\n"))
}

/// "80/tcp -> 0.0.0.0:8080" per port (`netd port`, `netd publish`); an IPv6 host address in
/// brackets.
pub fn port_lines<'a>(ports: impl IntoIterator<Item = &'a PortView>) -> Vec<String> {
    ports
        .into_iter()
        .map(|p| {
            format!(
                "{}/{} -> {}:{}",
                p.container_port,
                p.proto,
                host(&p.host_ip),
                p.host_port
            )
        })
        .collect()
}

/// `netd network ls`, like `docker network ls` with the addresses.
pub fn format_networks(list: &[NetworkView]) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<18} {:<16} {:<5} {:<9} {}",
        "NAME", "BRIDGE", "SUBNET", "GATEWAY", "ICC", "INTERNAL", "CONTAINERS"
    );
    for n in list {
        out.push_str(&format!(
            "\n{:<20} {:<16} {:<18} {:<16} {:<5} {:<9} {}",
            n.name,
            n.bridge,
            n.subnet,
            n.gateway,
            n.icc,
            n.internal,
            n.endpoints.len()
        ));
    }
    out
}
