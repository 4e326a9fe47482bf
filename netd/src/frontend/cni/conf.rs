//! What the runtime hands the plugin: the network configuration on stdin and the `CNI_*`
//! environment, parsed into one [`Invocation`] (CNI spec 1.1, "Parameters" and "Network
//! configuration").

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::result::CniError;

/// Versions this plugin speaks, oldest first (VERSION lists them).
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// The daemon's socket when the config names none (the same form as `netd -H`).
pub const DEFAULT_SOCKET: &str = "unix:///run/netd/netd.sock";

/// The plugin's network configuration (one entry of a conflist's `plugins`, with `name` and
/// `cniVersion` copied in by libcni).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The netd network to attach to (`netd network create`); absent: the default network.
    #[serde(default)]
    pub network: Option<String>,
    /// `unix:///PATH` of the daemon's API.
    #[serde(default)]
    pub socket: Option<String>,
    /// Seconds to wait for the daemon (default 30 for ADD, 10 otherwise).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Where ADD records attachments for GC (default [`super::DEFAULT_DATA_DIR`]).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// false: the runtime holds published host ports itself (podman's
    /// `enable_port_reservation = true`), so the daemon must not (default true).
    #[serde(default)]
    pub reserve_ports: Option<bool>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// GC (1.1): the attachments the runtime still uses.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The result of the ADD (DEL, CHECK).
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Requested addresses (`--ip`), `A.B.C.D` or `A.B.C.D/len`.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Requested MAC (`--mac-address`).
    #[serde(default)]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

impl PortMapping {
    /// The `-p` spec netd parses: `[HOSTIP:]HOSTPORT:PORT/PROTO`.
    pub fn publish_spec(&self) -> String {
        let proto = self
            .protocol
            .as_deref()
            .unwrap_or("tcp")
            .to_ascii_lowercase();
        match self.host_ip.as_deref().filter(|h| !h.is_empty()) {
            Some(ip) => format!("{ip}:{}:{}/{proto}", self.host_port, self.container_port),
            None => format!("{}:{}/{proto}", self.host_port, self.container_port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// One run of the plugin: command, environment and config.
#[derive(Debug)]
pub struct Invocation {
    pub cmd: Cmd,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: BTreeMap<String, String>,
    pub conf: NetConf,
}

impl Invocation {
    /// The netd container name: `K8S_POD_NAME` from CNI_ARGS (podman puts the container's name
    /// there), else the first 12 characters of the container ID (as `docker ps` shows it).
    pub fn endpoint_name(&self) -> String {
        match self.args.get("K8S_POD_NAME").filter(|n| !n.is_empty()) {
            Some(n) => n.clone(),
            None => self.container_id.chars().take(12).collect(),
        }
    }

    /// The name of a further attachment of the same container (a container on two networks,
    /// podman's eth0 and eth1): netd names are unique, so it is `<name>-<ifname>`.
    pub fn secondary_name(&self) -> String {
        format!("{}-{}", self.endpoint_name(), self.ifname)
    }

    /// The socket path from the config's `socket`.
    pub fn socket_path(&self) -> Result<PathBuf, CniError> {
        let s = self.conf.socket.as_deref().unwrap_or(DEFAULT_SOCKET);
        match s.strip_prefix("unix://") {
            Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
            _ => Err(CniError::new(
                CniError::INVALID_CONFIG,
                format!("socket {s:?}: expected unix:///absolute/path"),
            )),
        }
    }

    /// `ips` from runtimeConfig, else `IP=` from CNI_ARGS: the address only.
    pub fn requested_ip(&self) -> Result<Option<String>, CniError> {
        let ips = &self.conf.runtime_config.ips;
        if ips.len() > 1 {
            return Err(CniError::new(
                CniError::INVALID_CONFIG,
                format!("ips {ips:?}: netd gives each interface one IPv4 address"),
            ));
        }
        let ip = ips.first().or(self.args.get("IP"));
        Ok(ip.map(|s| s.split('/').next().unwrap_or(s).to_string()))
    }

    /// `mac` from runtimeConfig, else `MAC=` from CNI_ARGS.
    pub fn requested_mac(&self) -> Option<String> {
        self.conf
            .runtime_config
            .mac
            .clone()
            .or_else(|| self.args.get("MAC").cloned())
            .filter(|m| !m.is_empty())
    }
}

/// The command alone (VERSION needs neither config nor container).
pub fn command(env: &dyn Fn(&str) -> Option<String>) -> Result<Cmd, CniError> {
    match env("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(Cmd::Add),
        Some("DEL") => Ok(Cmd::Del),
        Some("CHECK") => Ok(Cmd::Check),
        Some("VERSION") => Ok(Cmd::Version),
        Some("STATUS") => Ok(Cmd::Status),
        Some("GC") => Ok(Cmd::Gc),
        Some(other) => Err(CniError::new(
            CniError::INVALID_ENV,
            format!("CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, VERSION, STATUS or GC"),
        )),
        None => Err(CniError::new(
            CniError::INVALID_ENV,
            "CNI_COMMAND is not set",
        )),
    }
}

/// Parses the config and checks the environment `cmd` needs.
pub fn parse(
    cmd: Cmd,
    stdin: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, CniError> {
    let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            CniError::DECODE,
            format!("network configuration on stdin is not valid: {e}"),
        )
    })?;
    if !SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            CniError::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not supported (netd-cni speaks {})",
                conf.cni_version,
                SUPPORTED.join(", ")
            ),
        )
        .details(conf.cni_version.clone()));
    }
    if matches!(cmd, Cmd::Status | Cmd::Gc) && conf.cni_version != "1.1.0" {
        return Err(CniError::new(
            CniError::INCOMPATIBLE_VERSION,
            format!(
                "{} needs cniVersion 1.1.0, not {}",
                if cmd == Cmd::Gc { "GC" } else { "STATUS" },
                conf.cni_version
            ),
        ));
    }
    let need = |k: &str| {
        env(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CniError::new(CniError::INVALID_ENV, format!("{k} is not set")))
    };
    let per_container = matches!(cmd, Cmd::Add | Cmd::Del | Cmd::Check);
    let (container_id, ifname) = if per_container {
        (need("CNI_CONTAINERID")?, need("CNI_IFNAME")?)
    } else {
        (String::new(), String::new())
    };
    // DEL may come after the namespace is gone; ADD and CHECK need it.
    let netns = match cmd {
        Cmd::Add | Cmd::Check => Some(PathBuf::from(need("CNI_NETNS")?)),
        _ => env("CNI_NETNS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let args = parse_args(env("CNI_ARGS").as_deref().unwrap_or(""))?;
    Ok(Invocation {
        cmd,
        container_id,
        netns,
        ifname,
        args,
        conf,
    })
}

/// Keys of CNI_ARGS this plugin reads or knows to be harmless.
const KNOWN_ARGS: [&str; 7] = [
    "IgnoreUnknown",
    "IP",
    "MAC",
    "K8S_POD_NAME",
    "K8S_POD_NAMESPACE",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// `CNI_ARGS`: `K=V;K=V`. An unknown key is refused unless `IgnoreUnknown` is true.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for kv in s.split(';').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CniError::new(
                CniError::INVALID_ENV,
                format!("CNI_ARGS {s:?}: {kv:?} is not KEY=VALUE"),
            )
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    let ignore = out
        .get("IgnoreUnknown")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
    if !ignore && let Some(k) = out.keys().find(|k| !KNOWN_ARGS.contains(&k.as_str())) {
        return Err(CniError::new(
            CniError::INVALID_ENV,
            format!("CNI_ARGS: unknown key {k:?} (set IgnoreUnknown=1 to allow it)"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn podman_add_is_parsed() {
        let stdin = br#"{"cniVersion":"0.4.0","name":"blue","type":"netd-cni","network":"blue",
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""},
            {"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"127.0.0.1"}]}}"#;
        let e = env(&[
            ("CNI_CONTAINERID", "0123456789abcdef"),
            ("CNI_NETNS", "/run/netns/cni-1"),
            ("CNI_IFNAME", "eth1"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:09;X=1",
            ),
        ]);
        let inv = parse(Cmd::Add, stdin, &e).unwrap();
        assert_eq!(inv.endpoint_name(), "web");
        assert_eq!(inv.secondary_name(), "web-eth1");
        assert_eq!(inv.ifname, "eth1");
        assert_eq!(inv.requested_mac().as_deref(), Some("02:00:00:00:00:09"));
        let specs: Vec<String> = inv
            .conf
            .runtime_config
            .port_mappings
            .iter()
            .map(|p| p.publish_spec())
            .collect();
        assert_eq!(specs, ["8080:80/tcp", "127.0.0.1:53:5353/udp"]);
        assert_eq!(
            inv.socket_path().unwrap(),
            PathBuf::from("/run/netd/netd.sock")
        );
    }

    #[test]
    fn bad_input_gives_the_right_codes() {
        let e = env(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]);
        let code = |stdin: &[u8], cmd| parse(cmd, stdin, &e).unwrap_err().code;
        assert_eq!(code(b"{", Cmd::Add), CniError::DECODE);
        assert_eq!(
            code(br#"{"cniVersion":"0.3.1"}"#, Cmd::Add),
            CniError::INCOMPATIBLE_VERSION
        );
        // ADD needs CNI_NETNS; DEL does not.
        assert_eq!(
            code(br#"{"cniVersion":"1.0.0"}"#, Cmd::Add),
            CniError::INVALID_ENV
        );
        assert!(parse(Cmd::Del, br#"{"cniVersion":"1.0.0"}"#, &e).is_ok());
        assert_eq!(parse_args("FOO=1").unwrap_err().code, CniError::INVALID_ENV);
        let id = env(&[
            ("CNI_CONTAINERID", "0123456789abcdef"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IP=10.1.0.9"),
        ]);
        let inv = parse(Cmd::Del, br#"{"cniVersion":"1.0.0"}"#, &id).unwrap();
        assert_eq!(inv.endpoint_name(), "0123456789ab");
        assert_eq!(inv.requested_ip().unwrap().as_deref(), Some("10.1.0.9"));
    }
}
