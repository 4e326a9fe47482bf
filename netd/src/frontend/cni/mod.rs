//! The CNI front end: the `netd-cni` plugin binary (CNI spec 0.4.0, 1.0.0 and 1.1.0), which a
//! runtime such as podman runs for every container, and `netd cni install`, which puts it into a
//! CNI plugin directory with a conflist for a netd network.
//!
//! The plugin parses stdin and the `CNI_*` environment ([`conf`]), turns the command into one
//! or two calls on the daemon's API socket ([`client`]) and prints a result or a CNI error
//! ([`result`]). It replaces the reference chain (bridge, host-local, portmap, firewall,
//! tuning): the daemon wires the veth, leases the address and publishes the ports.
//!
//! `CNI_NETNS` is a bind mount in the runtime's mount namespace, which the daemon may not
//! share: the plugin opens it and sends `/proc/<plugin pid>/fd/<n>` as the request's
//! `netns_handle`; the daemon opens that while the plugin waits for the answer.
//!
//! Bookkeeping for GC (1.1): ADD records `{containerID, ifname, name}` under
//! `<dataDir>/<network name>/` (default dataDir `/var/lib/cni/netd-cni`), DEL removes it.

pub mod client;
pub mod conf;
pub mod install;
pub mod result;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use self::client::Api;
use self::conf::{Cmd, Invocation};
use self::result::CniError;
use crate::engine::view::EndpointView;
use crate::frontend::http::types::AttachRequest;

/// Where ADD records attachments for GC when the config names no `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/netd-cni";

/// The `netd-cni` binary.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let env = |k: &str| std::env::var(k).ok();
    let cmd = conf::command(&env);
    // VERSION may come with an empty stdin; read what there is either way.
    let read = std::io::stdin().read_to_end(&mut stdin);
    let asked = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string));
    let outcome = match (cmd, read) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(CniError::new(
            CniError::IO,
            format!("cannot read the network configuration from stdin: {e}"),
        )),
        (Ok(Cmd::Version), Ok(_)) => Ok(Some(result::version_json(asked.as_deref()))),
        (Ok(cmd), Ok(_)) => conf::parse(cmd, &stdin, &env).and_then(|inv| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CniError::new(CniError::IO, format!("cannot start a runtime: {e}")))?;
            rt.block_on(run(&inv))
        }),
    };
    let version = asked
        .filter(|v| conf::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| conf::SUPPORTED[conf::SUPPORTED.len() - 1].to_string());
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command; `Some` is the result to print.
pub async fn run(inv: &Invocation) -> Result<Option<Value>, CniError> {
    let default_timeout = if inv.cmd == Cmd::Add { 30 } else { 10 };
    let api = Api::new(
        inv.socket_path()?,
        Duration::from_secs(inv.conf.timeout.unwrap_or(default_timeout)),
    );
    match inv.cmd {
        Cmd::Add => add(inv, &api).await.map(Some),
        Cmd::Del => del(inv, &api).await.map(|()| None),
        Cmd::Check => check(inv, &api).await.map(|()| None),
        Cmd::Status => status(inv, &api).await.map(|()| None),
        Cmd::Gc => gc(inv, &api).await.map(|()| None),
        Cmd::Version => Ok(Some(result::version_json(Some(&inv.conf.cni_version)))),
    }
}

fn checked_name(inv: &Invocation) -> Result<String, CniError> {
    let name = inv.endpoint_name();
    crate::spec::validate_container_name(&name).map_err(|e| {
        CniError::new(
            CniError::INVALID_ENV,
            format!("container name from K8S_POD_NAME/CNI_CONTAINERID: {e}"),
        )
    })?;
    Ok(name)
}

/// ADD's netd name: the container's, unless an endpoint of that name already sits in the same
/// namespace on another interface (the container's attachment to another network): then
/// [`Invocation::secondary_name`].
async fn add_name(inv: &Invocation, api: &Api) -> Result<String, CniError> {
    let name = checked_name(inv)?;
    let (status, body) = api
        .call("GET", &format!("/v1/endpoints/{name}"), None)
        .await?;
    if status == 404 {
        return Ok(name);
    }
    let view: EndpointView = client::decode(status, &body)?;
    let same_ns = inv.netns.as_deref() == Some(view.netns.as_path());
    if same_ns && view.ifname.as_deref() != Some(inv.ifname.as_str()) {
        let second = inv.secondary_name();
        crate::spec::validate_container_name(&second).map_err(|e| {
            CniError::new(
                CniError::INVALID_ENV,
                format!("name of the attachment on {}: {e}", inv.ifname),
            )
        })?;
        return Ok(second);
    }
    // Someone else's: the daemon refuses the name as in use.
    Ok(name)
}

/// The netd name of this attachment if the daemon has it (DEL, CHECK): the container's own
/// name or, for a further interface, [`Invocation::secondary_name`].
async fn existing(inv: &Invocation, api: &Api) -> Result<Option<(String, EndpointView)>, CniError> {
    for name in [inv.endpoint_name(), inv.secondary_name()] {
        if crate::spec::validate_container_name(&name).is_ok() {
            if let Some(v) = ours(inv, api, &name).await? {
                return Ok(Some((name, v)));
            }
        }
    }
    Ok(None)
}

async fn add(inv: &Invocation, api: &Api) -> Result<Value, CniError> {
    let name = add_name(inv, api).await?;
    let netns = inv.netns.clone().expect("parse requires CNI_NETNS for ADD");
    // Held open until the daemon answers: the daemon opens the namespace through this fd.
    let ns = std::fs::File::open(&netns).map_err(|e| {
        CniError::new(
            CniError::IO,
            format!("cannot open CNI_NETNS {}: {e}", netns.display()),
        )
    })?;
    let handle = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
    let req = AttachRequest {
        name: name.clone(),
        netns: netns.clone(),
        netns_handle: Some(handle.into()),
        net: inv.conf.network.clone().unwrap_or_default(),
        ifname: Some(inv.ifname.clone()),
        mac_address: inv.requested_mac(),
        ip: inv.requested_ip()?,
        publish: inv
            .conf
            .runtime_config
            .port_mappings
            .iter()
            .map(|p| p.publish_spec())
            .collect(),
        reserve_ports: inv.conf.reserve_ports,
        ..Default::default()
    };
    let body = serde_json::to_vec(&req).expect("serialises");
    let mut view: EndpointView = api.call_json("POST", "/v1/endpoints", Some(body)).await?;
    drop(ns);
    result::dns_from_resolv_conf(&mut view);
    let res = match result::add_result(&inv.conf.cni_version, &view, &netns.to_string_lossy()) {
        Ok(r) => r,
        Err(msg) => {
            // Leave nothing behind when the answer cannot be reported.
            let _ = api
                .call("DELETE", &format!("/v1/endpoints/{name}"), None)
                .await;
            return Err(CniError::new(CniError::DAEMON_FAILED, msg));
        }
    };
    if let Err(e) = record(inv, &name) {
        let _ = api
            .call("DELETE", &format!("/v1/endpoints/{name}"), None)
            .await;
        return Err(e);
    }
    Ok(res)
}

/// The daemon's endpoint `name` if it is this attachment's (same network and interface);
/// `None` when there is none, or it belongs to someone else.
async fn ours(inv: &Invocation, api: &Api, name: &str) -> Result<Option<EndpointView>, CniError> {
    let (status, body) = api
        .call("GET", &format!("/v1/endpoints/{name}"), None)
        .await?;
    if status == 404 {
        return Ok(None);
    }
    let view: EndpointView = client::decode(status, &body)?;
    let same_if = view.ifname.as_deref() == Some(inv.ifname.as_str());
    let want = inv
        .conf
        .network
        .as_deref()
        .filter(|n| !n.is_empty() && *n != "bridge")
        .unwrap_or(crate::engine::DEFAULT_NETWORK);
    let same_net = view.network.as_deref() == Some(want);
    Ok((same_if && same_net).then_some(view))
}

/// DEL: idempotent. An endpoint that is already gone (a second DEL, a vanished namespace the
/// daemon reaped, a daemon that lost it) is success.
async fn del(inv: &Invocation, api: &Api) -> Result<(), CniError> {
    let name = existing(inv, api).await?.map(|(n, _)| n);
    del_named(inv, api, name.as_deref()).await
}

/// DEL of the endpoint `name` if it is this attachment's (GC passes the name ADD recorded).
async fn del_named(inv: &Invocation, api: &Api, name: Option<&str>) -> Result<(), CniError> {
    let name = match name {
        Some(n) if crate::spec::validate_container_name(n).is_ok() => {
            ours(inv, api, n).await?.map(|_| n)
        }
        _ => None,
    };
    if let Some(name) = name {
        let (status, body) = api
            .call("DELETE", &format!("/v1/endpoints/{name}"), None)
            .await?;
        if status != 404 {
            client::expect_ok(status, &body)?;
        }
    }
    forget(inv, &inv.container_id, &inv.ifname);
    if inv.cmd == Cmd::Del {
        keep_default_route(inv, api).await?;
    }
    Ok(())
}

/// After a DEL (`podman network disconnect` of the network whose interface held the default
/// route): when the namespace is left without an IPv4 default route but another netd
/// endpoint in it has a gateway, the default route goes through that one, as Docker moves it
/// to a remaining network. Every DEL checks, so a retried DEL mends it too.
///
/// The daemon deletes a detached endpoint's veth in the background, but its detach has taken
/// the container end's addresses, and so the routes through it, before it answers.
async fn keep_default_route(inv: &Invocation, api: &Api) -> Result<(), CniError> {
    let Some(netns) = inv.netns.as_deref() else {
        return Ok(());
    };
    // A namespace that is gone (the container stopped) needs no route.
    let Ok(ns) = std::fs::File::open(netns) else {
        return Ok(());
    };
    let all: Vec<EndpointView> = api.call_json("GET", "/v1/endpoints", None).await?;
    let Some((gw, ifname)) = all
        .iter()
        .filter(|v| v.netns == netns && v.ifname.as_deref() != Some(inv.ifname.as_str()))
        .find_map(|v| Some((v.gateway.as_deref()?.parse().ok()?, v.ifname.clone()?)))
    else {
        return Ok(());
    };
    let io = |e: crate::wiring::WiringError| {
        CniError::new(
            CniError::IO,
            format!(
                "cannot move the default route to {ifname} in {}: {e}",
                netns.display()
            ),
        )
    };
    let nl = crate::wiring::netns::netlink_in(&ns).map_err(io)?;
    let has_default = nl
        .routes_v4()
        .await
        .map_err(io)?
        .iter()
        .any(|r| r.dest.prefix_len() == 0);
    if !has_default {
        nl.add_default_route(gw).await.map_err(io)?;
    }
    Ok(())
}

async fn check(inv: &Invocation, api: &Api) -> Result<(), CniError> {
    let name = checked_name(inv)?;
    let Some((_, view)) = existing(inv, api).await? else {
        return Err(CniError::new(
            CniError::UNKNOWN_CONTAINER,
            format!("netd has no endpoint {name} with interface {}", inv.ifname),
        ));
    };
    if let Some(prev) = &inv.conf.prev_result {
        result::check_against(prev, &view)?;
    }
    Ok(())
}

/// STATUS (1.1): ready when the daemon answers and the network exists.
async fn status(inv: &Invocation, api: &Api) -> Result<(), CniError> {
    let unavailable = |e: CniError| CniError::new(CniError::NOT_AVAILABLE, e.msg);
    let (s, body) = api
        .call("GET", "/v1/status", None)
        .await
        .map_err(unavailable)?;
    client::expect_ok(s, &body).map_err(unavailable)?;
    if let Some(n) = &inv.conf.network {
        let (s, body) = api
            .call("GET", &format!("/v1/networks/{n}"), None)
            .await
            .map_err(unavailable)?;
        client::expect_ok(s, &body).map_err(unavailable)?;
    }
    Ok(())
}

/// GC (1.1): detaches every attachment ADD recorded for this network that is not in
/// `cni.dev/valid-attachments`.
async fn gc(inv: &Invocation, api: &Api) -> Result<(), CniError> {
    let valid = inv.conf.valid_attachments.clone().unwrap_or_default();
    let dir = records_dir(inv);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for e in entries.flatten() {
        let Ok(text) = std::fs::read(e.path()) else {
            continue;
        };
        let Ok(rec) = serde_json::from_slice::<Record>(&text) else {
            continue;
        };
        let att = conf::Attachment {
            container_id: rec.container_id.clone(),
            ifname: rec.ifname.clone(),
        };
        if valid.contains(&att) {
            continue;
        }
        let one = Invocation {
            cmd: Cmd::Del,
            container_id: rec.container_id,
            netns: None,
            ifname: rec.ifname,
            args: BTreeMap::new(),
            conf: inv.conf.clone(),
        };
        // Keep going after an error; report them all.
        if let Err(e) = del_named(&one, api, Some(&rec.name)).await {
            errors.push(e.msg);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(CniError::DAEMON_FAILED, errors.join("; ")))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    name: String,
}

fn records_dir(inv: &Invocation) -> std::path::PathBuf {
    let base = inv.conf.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR);
    std::path::Path::new(base).join(if inv.conf.name.is_empty() {
        "default"
    } else {
        &inv.conf.name
    })
}

fn record_path(inv: &Invocation, container_id: &str, ifname: &str) -> std::path::PathBuf {
    // Container IDs and interface names never hold '/'; keep it that way for the file name.
    let safe = |s: &str| s.replace('/', "_");
    records_dir(inv).join(format!("{}-{}", safe(container_id), safe(ifname)))
}

fn record(inv: &Invocation, name: &str) -> Result<(), CniError> {
    let path = record_path(inv, &inv.container_id, &inv.ifname);
    let rec = Record {
        container_id: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
        name: name.to_string(),
    };
    let io = |e: std::io::Error| {
        CniError::new(
            CniError::IO,
            format!("cannot record the attachment in {}: {e}", path.display()),
        )
    };
    std::fs::create_dir_all(records_dir(inv)).map_err(io)?;
    crate::fsutil::write_atomic(&path, &serde_json::to_string(&rec).expect("serialises"))
        .map_err(|e| CniError::new(CniError::IO, e.to_string()))
}

fn forget(inv: &Invocation, container_id: &str, ifname: &str) {
    let _ = std::fs::remove_file(record_path(inv, container_id, ifname));
}
