//! What the plugin prints: the ADD result built from netd's endpoint view, the VERSION answer,
//! and CNI error objects (CNI spec 1.1, "Success" and "Error").

use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::view::EndpointView;

/// A CNI error: `{"cniVersion", "code", "msg", "details"}` on stdout, non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl CniError {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADDs now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific (100+): the daemon refused the request because something is in use
    /// (a name, an address, a host port).
    pub const CONFLICT: u32 = 100;
    /// Plugin-specific: the daemon failed while applying the request.
    pub const DAEMON_FAILED: u32 = 101;

    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = Some(d.into());
        self
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if let Some(d) = &self.details {
            v["details"] = json!(d);
        }
        v
    }
}

/// VERSION's answer.
pub fn version_json(asked: Option<&str>) -> Value {
    let latest = super::conf::SUPPORTED[super::conf::SUPPORTED.len() - 1];
    let v = asked
        .filter(|a| super::conf::SUPPORTED.contains(a))
        .unwrap_or(latest);
    json!({"cniVersion": v, "supportedVersions": super::conf::SUPPORTED})
}

#[derive(Debug, Serialize)]
struct Interface<'a> {
    name: &'a str,
    mac: &'a str,
    sandbox: String,
}

/// The ADD result for `ep` (the container's interface, its address, default route and DNS)
/// in the config's `cni_version` (0.4.0 results carry `ips[].version`).
pub fn add_result(cni_version: &str, ep: &EndpointView, sandbox: &str) -> Result<Value, String> {
    let ifname = ep.ifname.as_deref().unwrap_or("eth0");
    let mac = ep
        .mac
        .as_deref()
        .ok_or("the daemon answered without a MAC")?;
    let ip = ep
        .ip
        .as_deref()
        .ok_or("the daemon answered without an IP")?;
    let len = ep
        .prefix_len
        .ok_or("the daemon answered without a prefix length")?;
    let mut addr = json!({"address": format!("{ip}/{len}"), "interface": 0});
    if let Some(gw) = &ep.gateway {
        addr["gateway"] = json!(gw);
    }
    if cni_version == "0.4.0" {
        addr["version"] = json!("4");
    }
    let mut routes: Vec<Value> = match &ep.gateway {
        Some(gw) => vec![json!({"dst": "0.0.0.0/0", "gw": gw})],
        None => Vec::new(),
    };
    let mut ips = vec![addr];
    // A dual-stack network's lease: the global address, its default route via the lease's
    // next hop (the bridge's fe80::1 unless --default-gateway-v6).
    if let (Some(ip6), Some(len6)) = (&ep.global_ipv6, ep.global_ipv6_prefix_len) {
        let mut a6 = json!({"address": format!("{ip6}/{len6}"), "interface": 0});
        if let Some(gw6) = &ep.ipv6_gateway {
            a6["gateway"] = json!(gw6);
            routes.push(json!({"dst": "::/0", "gw": gw6}));
        }
        if cni_version == "0.4.0" {
            a6["version"] = json!("6");
        }
        ips.push(a6);
    }
    let iface = Interface {
        name: ifname,
        mac,
        sandbox: sandbox.to_string(),
    };
    let mut dns = json!({});
    if !ep.dns.is_empty() {
        dns["nameservers"] = json!(ep.dns);
    }
    if !ep.dns_search.is_empty() {
        dns["search"] = json!(ep.dns_search);
    }
    Ok(json!({
        "cniVersion": cni_version,
        "interfaces": [iface],
        "ips": ips,
        "routes": routes,
        "dns": dns,
    }))
}

/// The endpoint's `dns` and `dns_search` are only its own settings (a CNI ADD sets none);
/// what the container is to use is in the resolv.conf netd wrote for it (the daemon's
/// `--dns`/`--dns-search`, else the host's servers): the result lists that file's servers and
/// search domains. Unreadable (another mount namespace): the endpoint's own lists stay.
pub fn dns_from_resolv_conf(ep: &mut EndpointView) {
    if let Ok(text) = std::fs::read_to_string(ep.etc_dir.join("resolv.conf")) {
        let conf = crate::dnsfiles::parse_resolv_conf(&text);
        ep.dns = conf.nameservers.iter().map(ToString::to_string).collect();
        ep.dns_search = conf.search;
    }
}

/// CHECK: the endpoint the daemon has must still be what ADD returned.
pub fn check_against(prev: &Value, ep: &EndpointView) -> Result<(), CniError> {
    let mismatch = |what: &str, want: &str, have: &str| {
        Err(CniError::new(
            CniError::INVALID_CONFIG,
            format!("{what} is {have} now, but ADD returned {want}"),
        ))
    };
    let have_ip = match (&ep.ip, ep.prefix_len) {
        (Some(ip), Some(len)) => format!("{ip}/{len}"),
        _ => String::new(),
    };
    if let Some(want) = prev["ips"][0]["address"].as_str()
        && want != have_ip
    {
        return mismatch("the address", want, &have_ip);
    }
    let have_mac = ep.mac.clone().unwrap_or_default();
    if let Some(want) = prev["interfaces"][0]["mac"].as_str()
        && !want.eq_ignore_ascii_case(&have_mac)
    {
        return mismatch("the MAC", want, &have_mac);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> EndpointView {
        serde_json::from_value(json!({
            "name": "web", "netns": "/run/netns/x", "net": "blue", "network": "blue",
            "ifname": "eth1", "ip": "10.77.0.2", "prefix_len": 24, "mac": "02:42:0a:4d:00:02",
            "gateway": "10.77.0.1", "hostname": "web", "host_ifname": "veth1", "etc_dir": "/e",
            "ports": [], "exposed": [], "links": [], "p2p": [], "dns": [], "dns_search": []
        }))
        .unwrap()
    }

    #[test]
    fn results_in_both_versions() {
        let r = add_result("0.4.0", &view(), "/run/netns/x").unwrap();
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(r["ips"][0]["address"], "10.77.0.2/24");
        assert_eq!(r["ips"][0]["interface"], 0);
        assert_eq!(r["interfaces"][0]["name"], "eth1");
        assert_eq!(r["interfaces"][0]["sandbox"], "/run/netns/x");
        assert_eq!(r["routes"][0]["gw"], "10.77.0.1");
        let r = add_result("1.0.0", &view(), "/run/netns/x").unwrap();
        assert!(r["ips"][0].get("version").is_none());
        assert!(check_against(&r, &view()).is_ok());
        let mut other = view();
        other.ip = Some("10.77.0.3".into());
        assert_eq!(
            check_against(&r, &other).unwrap_err().code,
            CniError::INVALID_CONFIG
        );
        assert_eq!(version_json(Some("0.4.0"))["cniVersion"], "0.4.0");
        assert_eq!(version_json(None)["supportedVersions"][2], "1.1.0");
    }

    #[test]
    fn dns_is_the_resolv_conf_netd_wrote() {
        let dir = crate::fsutil::test_util::TempDir::new("cni-dns");
        let mut v = view();
        v.etc_dir = dir.0.clone();
        dns_from_resolv_conf(&mut v);
        assert!(v.dns.is_empty(), "no file: the endpoint's own (empty) list");
        std::fs::write(
            dir.0.join("resolv.conf"),
            "search example.test\nnameserver 192.0.2.53\noptions ndots:2\n",
        )
        .unwrap();
        dns_from_resolv_conf(&mut v);
        let r = add_result("1.0.0", &v, "/x").unwrap();
        assert_eq!(
            r["dns"],
            json!({"nameservers": ["192.0.2.53"], "search": ["example.test"]})
        );
    }

    #[test]
    fn dual_stack_results_list_the_ipv6_lease() {
        let mut v = view();
        assert_eq!(
            add_result("0.4.0", &v, "/x").unwrap()["ips"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        v.global_ipv6 = Some("2001:db8:5::242:a4d:2".into());
        v.global_ipv6_prefix_len = Some(64);
        v.link_local_ipv6 = Some("fe80::42:aff:fe4d:2".into());
        v.ipv6_gateway = Some("fe80::1".into());
        let r = add_result("0.4.0", &v, "/x").unwrap();
        assert_eq!(r["ips"][1]["address"], "2001:db8:5::242:a4d:2/64");
        assert_eq!(r["ips"][1]["version"], "6");
        assert_eq!(r["ips"][1]["gateway"], "fe80::1");
        assert_eq!(r["ips"][1]["interface"], 0);
        assert_eq!(r["routes"][1]["dst"], "::/0");
        assert_eq!(r["routes"][1]["gw"], "fe80::1");
        let r = add_result("1.0.0", &v, "/x").unwrap();
        assert!(r["ips"][1].get("version").is_none());
        assert!(check_against(&r, &v).is_ok());
    }
}
