//! The client subcommands: each is one or two API calls and a formatted answer.

use super::args::{AttachArgs, Command, FilterAction, NetworkAction};
use super::client::{Client, ClientError};
use super::output;
use crate::frontend::http::types::{
    AttachRequest, EndpointView, FilterRequest, NetworkCreateRequest, NetworkView, P2pRequest,
    PortView, PublishRequest, StatsView,
};

fn attach_request(a: AttachArgs) -> AttachRequest {
    let netns = std::path::absolute(&a.netns).unwrap_or(a.netns);
    AttachRequest {
        name: a.name,
        netns,
        netns_handle: None,
        net: a.net,
        ifname: Some(a.ifname),
        hostname: a.hostname,
        mac_address: a.mac_address,
        ip: a.ip,
        ip6: a.ip6,
        etc_dir: a.etc_dir.map(|d| std::path::absolute(&d).unwrap_or(d)),
        publish: a.publish,
        publish_all: a.publish_all,
        expose: a.expose,
        link: a.link,
        dns: a.dns,
        dns_search: a.dns_search,
        reserve_ports: None,
    }
}

pub(super) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Runs one client subcommand against the daemon; the text to print, or the error message.
pub async fn run(cmd: Command, socket: &std::path::Path) -> Result<String, String> {
    let c = Client::new(socket);
    let e = |e: ClientError| e.to_string();
    match cmd {
        Command::Daemon(_)
        | Command::InstallUnit { .. }
        | Command::Cni { .. }
        | Command::DockerPlugin { .. }
        | Command::Completion { .. }
        | Command::Version { .. }
        | Command::Man { .. }
        | Command::Monitor(_)
        | Command::Doctor { .. } => unreachable!("handled in main"),
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
        Command::Ls { json } => {
            let list: Vec<EndpointView> = c.get("/v1/endpoints").await.map_err(e)?;
            if json {
                return Ok(serde_json::to_string_pretty(&list).unwrap_or_default());
            }
            Ok(output::format_ls(&list))
        }
        Command::Inspect { name } => {
            let v: serde_json::Value = c.get(&format!("/v1/endpoints/{name}")).await.map_err(e)?;
            Ok(pretty(&v))
        }
        Command::Port { name, port, json } => {
            let v: EndpointView = c.get(&format!("/v1/endpoints/{name}")).await.map_err(e)?;
            if json {
                let ports = output::select_ports(&v, port.as_deref())?;
                return Ok(serde_json::to_string_pretty(&ports).unwrap_or_default());
            }
            output::format_port(&v, port.as_deref())
        }
        Command::Publish { name, specs } => {
            let progress = crate::ops::progress::Progress::start(format!(
                "publishing {} on {name}",
                specs.join(" ")
            ));
            let (path, req) = (
                format!("/v1/endpoints/{name}/ports"),
                PublishRequest { publish: specs },
            );
            let post = c.post::<_, Vec<PortView>>(&path, &req);
            let ports = if crate::ops::progress::enabled() {
                with_daemon_count(&c, &format!("publish {name}"), post).await
            } else {
                post.await
            }
            .map_err(e)?;
            drop(progress);
            Ok(output::port_lines(ports.iter()).join("\n"))
        }
        Command::P2p { name1, name2 } => {
            let _: serde_json::Value = c
                .post("/v1/p2p", &P2pRequest { name1, name2 })
                .await
                .map_err(e)?;
            Ok(String::new())
        }
        Command::Network { action } => network(&c, action).await,
        Command::Status => {
            let v: serde_json::Value = c.get("/v1/status").await.map_err(e)?;
            Ok(pretty(&v))
        }
        Command::Filter { action } => {
            let (action, cidrs) = match action {
                FilterAction::Allow { cidrs } => ("allow", cidrs),
                FilterAction::Deny { cidrs } => ("deny", cidrs),
                FilterAction::Rm { cidrs } => ("rm", cidrs),
                FilterAction::Ls { json: true } => {
                    let v: serde_json::Value = c.get("/v1/filters").await.map_err(e)?;
                    return Ok(pretty(&v));
                }
                FilterAction::Ls { json: false } => ("ls", Vec::new()),
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
            Ok(output::format_filters(&v))
        }
        Command::Stats { json } => {
            let v: StatsView = c.get("/v1/stats").await.map_err(e)?;
            if json {
                return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Ok(output::format_stats(&v))
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
            Ok(output::format_ct(&v))
        }
    }
}

async fn network(c: &Client<'_>, action: NetworkAction) -> Result<String, String> {
    let e = |e: ClientError| e.to_string();
    match action {
        NetworkAction::Create {
            name,
            driver,
            subnet,
            ipv6,
            gateway,
            ip_range,
            opts,
            internal,
            flags,
        } => {
            // Docker's --subnet is repeatable: one IPv4 and (with --ipv6) one IPv6 subnet.
            let (v6, v4): (Vec<String>, Vec<String>) =
                subnet.into_iter().partition(|s| s.contains(':'));
            if v4.len() > 1 || v6.len() > 1 {
                return Err("--subnet: give at most one IPv4 and one IPv6 subnet".to_string());
            }
            let options = super::netopts::driver_options(&opts, &flags)?;
            let req = NetworkCreateRequest {
                name,
                driver: Some(driver),
                subnet: v4.into_iter().next(),
                subnet_v6: v6.into_iter().next(),
                ipv6,
                gateway,
                ip_range,
                options,
                internal,
            };
            let v: NetworkView = c.post("/v1/networks", &req).await.map_err(e)?;
            Ok(v.name)
        }
        NetworkAction::Rm { names } => {
            for n in &names {
                c.call("DELETE", &format!("/v1/networks/{n}"), None)
                    .await
                    .map_err(e)?;
            }
            Ok(names.join("\n"))
        }
        NetworkAction::Ls { json } => {
            let list: Vec<NetworkView> = c.get("/v1/networks").await.map_err(e)?;
            if json {
                return Ok(serde_json::to_string_pretty(&list).unwrap_or_default());
            }
            Ok(output::format_networks(&list))
        }
        NetworkAction::Inspect { name } => {
            let v: serde_json::Value = c.get(&format!("/v1/networks/{name}")).await.map_err(e)?;
            Ok(pretty(&v))
        }
    }
}

/// Runs `op` (a request the daemon counts as `of`) while showing the daemon's count
/// (`GET /v1/progress`, asked every 100 ms, and once more when `op` succeeded) on this
/// process's progress line. A count of another operation is not shown, nor, while `op` runs,
/// a finished one (an earlier request's of the same name, still there while `op` waits for
/// the engine); a failed `op` leaves no count, so its line is erased.
async fn with_daemon_count<T>(
    c: &Client<'_>,
    of: &str,
    op: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    use crate::ops::progress::{CountView, STEPS};
    let show = |v: Result<CountView, ClientError>, finished: bool| {
        if let Some(v) = v
            .ok()
            .filter(|v| v.of == of && (finished || v.done < v.total))
        {
            STEPS.mirror(&v);
        }
    };
    tokio::pin!(op);
    let r = loop {
        tokio::select! {
            r = &mut op => break r,
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                show(c.get("/v1/progress").await, false);
            }
        }
    };
    match &r {
        Ok(_) => show(c.get("/v1/progress").await, true),
        Err(_) => STEPS.clear(),
    }
    r
}
