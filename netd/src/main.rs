//! The `netd` binary: the daemon and the client subcommands.

use std::process::ExitCode;

use clap::Parser;
use netd::api::client::Client;
use netd::api::types::{
    AttachRequest, EndpointView, FilterRequest, P2pRequest, PublishRequest, StatsView,
};
use netd::cli::{AttachArgs, Cli, Command, FilterAction};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = match Cli::socket_path(&cli.host) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Command::Daemon(args) => {
            init_logging(&args.log_level);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(netd::daemon::run(*args, socket)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string()),
            }
        }
        cmd => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(client(cmd, &socket)) {
                Ok(out) => {
                    if !out.is_empty() {
                        println!("{out}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("netd: {msg}");
    ExitCode::FAILURE
}

fn init_logging(level: &str) {
    // netlink-packet-route warns about every attribute newer than itself; that is noise here.
    let spec = if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},netlink_packet_route=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| {
        eprintln!("netd: invalid --log-level {level:?}; using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn attach_request(a: AttachArgs) -> AttachRequest {
    let netns = std::path::absolute(&a.netns).unwrap_or(a.netns);
    AttachRequest {
        name: a.name,
        netns,
        net: a.net,
        hostname: a.hostname,
        mac_address: a.mac_address,
        ip: a.ip,
        etc_dir: a.etc_dir.map(|d| std::path::absolute(&d).unwrap_or(d)),
        publish: a.publish,
        publish_all: a.publish_all,
        expose: a.expose,
        link: a.link,
        dns: a.dns,
        dns_search: a.dns_search,
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

async fn client(cmd: Command, socket: &std::path::Path) -> Result<String, String> {
    let c = Client::new(socket);
    let e = |e: netd::api::client::ClientError| e.to_string();
    match cmd {
        Command::Daemon(_) => unreachable!("handled in main"),
        Command::Attach(a) => {
            let v: EndpointView = c
                .post("/v1/endpoints", &attach_request(*a))
                .await
                .map_err(e)?;
            Ok(v.name)
        }
        Command::Detach { name } => {
            c.call("DELETE", &format!("/v1/endpoints/{name}"), None)
                .await
                .map_err(e)?;
            Ok(name)
        }
        Command::Ls => {
            let list: Vec<EndpointView> = c.get("/v1/endpoints").await.map_err(e)?;
            Ok(format_ls(&list))
        }
        Command::Inspect { name } => {
            let v: serde_json::Value = c.get(&format!("/v1/endpoints/{name}")).await.map_err(e)?;
            Ok(pretty(&v))
        }
        Command::Port { name, port } => {
            let v: EndpointView = c.get(&format!("/v1/endpoints/{name}")).await.map_err(e)?;
            format_port(&v, port.as_deref())
        }
        Command::Publish { name, specs } => {
            let ports: Vec<netd::api::types::PortView> = c
                .post(
                    &format!("/v1/endpoints/{name}/ports"),
                    &PublishRequest { publish: specs },
                )
                .await
                .map_err(e)?;
            let lines: Vec<String> = ports
                .iter()
                .map(|p| {
                    format!(
                        "{}/{} -> {}:{}",
                        p.container_port, p.proto, p.host_ip, p.host_port
                    )
                })
                .collect();
            Ok(lines.join("\n"))
        }
        Command::P2p { name1, name2 } => {
            let _: serde_json::Value = c
                .post("/v1/p2p", &P2pRequest { name1, name2 })
                .await
                .map_err(e)?;
            Ok(String::new())
        }
        Command::Status => {
            let v: serde_json::Value = c.get("/v1/status").await.map_err(e)?;
            Ok(pretty(&v))
        }
        Command::Filter { action } => {
            let (action, cidrs) = match action {
                FilterAction::Allow { cidrs } => ("allow", cidrs),
                FilterAction::Deny { cidrs } => ("deny", cidrs),
                FilterAction::Rm { cidrs } => ("rm", cidrs),
                FilterAction::Ls => ("ls", Vec::new()),
            };
            let v: serde_json::Value = if action == "ls" {
                c.get("/v1/filters").await.map_err(e)?
            } else {
                let req = FilterRequest {
                    action: action.to_string(),
                    cidrs,
                };
                c.post("/v1/filters", &req).await.map_err(e)?
            };
            Ok(format_filters(&v))
        }
        Command::Stats { json } => {
            let v: StatsView = c.get("/v1/stats").await.map_err(e)?;
            if json {
                return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Ok(format_stats(&v))
        }
        Command::Ct {
            ip,
            proto,
            port,
            json,
        } => {
            let mut q = Vec::new();
            for (k, v) in [("ip", ip), ("proto", proto), ("port", port)] {
                if let Some(v) = v {
                    q.push(format!("{k}={v}"));
                }
            }
            let path = if q.is_empty() {
                "/v1/ct".to_string()
            } else {
                format!("/v1/ct?{}", q.join("&"))
            };
            let v: serde_json::Value = c.get(&path).await.map_err(e)?;
            if json {
                return Ok(pretty(&v));
            }
            Ok(format_ct(&v))
        }
    }
}

fn format_filters(v: &serde_json::Value) -> String {
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

fn format_stats(v: &StatsView) -> String {
    let mut out = String::from("DROPS");
    if v.drops.is_empty() {
        out.push_str("\n  (none)");
    }
    for d in &v.drops {
        out.push_str(&format!("\n  {:<28} {:>12}", d.reason, d.packets));
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
    out
}

fn format_ct(v: &serde_json::Value) -> String {
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

fn format_ls(list: &[EndpointView]) -> String {
    let mut out = format!(
        "{:<20} {:<22} {:<16} {:<18} {}",
        "NAME", "NET", "IP", "MAC", "PORTS"
    );
    for v in list {
        // A container may publish thousands of ports: show a few, count the rest
        // (`netd port NAME` lists them all).
        const SHOWN: usize = 4;
        let mut ports: Vec<String> = v
            .ports
            .iter()
            .take(SHOWN)
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    p.host_ip, p.host_port, p.container_port, p.proto
                )
            })
            .collect();
        if v.ports.len() > SHOWN {
            ports.push(format!("... ({} more)", v.ports.len() - SHOWN));
        }
        out.push_str(&format!(
            "\n{:<20} {:<22} {:<16} {:<18} {}",
            v.name,
            v.net,
            v.ip.as_deref().unwrap_or("-"),
            v.mac.as_deref().unwrap_or("-"),
            ports.join(", ")
        ));
    }
    out
}

/// `docker port` output: "80/tcp -> 0.0.0.0:8080".
fn format_port(v: &EndpointView, filter: Option<&str>) -> Result<String, String> {
    let want = filter
        .map(netd::spec::parse_port_query)
        .transpose()
        .map_err(|e| e.to_string())?;
    let lines: Vec<String> = v
        .ports
        .iter()
        .filter(|p| match &want {
            Some((port, proto)) => {
                p.container_port == *port && proto.map(|x| x.to_string() == p.proto).unwrap_or(true)
            }
            None => true,
        })
        .map(|p| {
            if filter.is_some() {
                format!("{}:{}", p.host_ip, p.host_port)
            } else {
                format!(
                    "{}/{} -> {}:{}",
                    p.container_port, p.proto, p.host_ip, p.host_port
                )
            }
        })
        .collect();
    if lines.is_empty() {
        if let Some(f) = filter {
            return Err(format!("no public port {f} published for {}", v.name));
        }
    }
    Ok(lines.join("\n"))
}
