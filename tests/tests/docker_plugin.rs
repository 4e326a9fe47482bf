//! The Docker plugin protocol (network and IPAM driver `netd`) on the daemon's API socket,
//! driven with the JSON bodies dockerd 20.10 sends, in the order libnetwork sends them; the
//! test plays libnetwork's part after Join (moving SrcName into the sandbox, as libnetwork
//! does). Real TCP from the outside reaches the container through the published port with
//! the client's own address; everything goes away again on the way back.

use std::time::Duration;

use netd_tests::ipv6::no_dad;
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, World, daemon::Daemon, tcp_request_until, tcp_server};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(5);
const NID: &str = "5f0a6c1e2b3d4f5061728394a5b6c7d8e9f00112233445566778899aabbccdd";
const EID: &str = "e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff00";

/// `POST /<method>` with a JSON body on the daemon's socket; the status and the JSON answer.
fn call(d: &Daemon, method: &str, body: Value) -> (u16, Value) {
    let (status, body) = d.http(
        "POST",
        &format!("/{method}"),
        &["Accept: application/vnd.docker.plugins.v1.2+json"],
        &body.to_string(),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A call that must succeed: no `Err`/`Error` in the answer.
fn ok(d: &Daemon, method: &str, body: Value) -> Value {
    let (st, v) = call(d, method, body.clone());
    assert_eq!(st, 200, "{method} {body}: {v}");
    assert!(
        v.get("Err").is_none() && v.get("Error").is_none(),
        "{method} {body}: {v}"
    );
    v
}

/// A call that must be refused; the error text.
fn refused(d: &Daemon, method: &str, body: Value) -> String {
    let (_, v) = call(d, method, body.clone());
    let e = v.get("Err").or_else(|| v.get("Error"));
    e.and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{method} {body} was not refused: {v}"))
        .to_string()
}

/// A call about the test's endpoint (Leave, DeleteEndpoint, EndpointOperInfo, ...).
fn on_endpoint(d: &Daemon, method: &str) -> Value {
    ok(d, method, json!({"NetworkID": NID, "EndpointID": EID}))
}

/// Join, as dockerd sends it: the sandbox's namespace file does not exist yet (runc creates
/// the namespace later and libnetwork's SetKey moves the interface).
fn join(d: &Daemon) -> Value {
    ok(
        d,
        "NetworkDriver.Join",
        json!({"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/run/docker/netns/netdt-not-yet", "Options": {}}),
    )
}

/// RequestAddress of `addr` ("" for any) from `pool`.
fn address(d: &Daemon, pool: &str, addr: &str) -> Value {
    ok(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool, "Address": addr}),
    )
}

/// RequestAddress of the gateway of `pool`.
fn gateway(d: &Daemon, pool: &str) -> Value {
    ok(
        d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    )
}

/// ReleaseAddress of `addr` back to `pool`.
fn release(d: &Daemon, pool: &str, addr: &str) {
    ok(
        d,
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": addr}),
    );
}

#[test]
fn plugin_protocol_serves_a_container_end_to_end() {
    let w = World::new();
    let mut d = w.daemon(&["--bip", BIP]);
    let act = ok(&d, "Plugin.Activate", json!({}));
    assert_eq!(act["Implements"], json!(["NetworkDriver", "IpamDriver"]));
    assert_eq!(
        ok(&d, "NetworkDriver.GetCapabilities", json!({}))["Scope"],
        "local"
    );
    let caps = ok(&d, "IpamDriver.GetCapabilities", json!({}));
    assert_eq!(caps["RequiresMACAddress"], false);
    ok(&d, "IpamDriver.GetDefaultAddressSpaces", json!({}));

    // docker network create -d netd --ipam-driver netd --subnet 10.78.0.0/24
    let pool = ok(
        &d,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "netd-local", "Pool": "10.78.0.0/24", "SubPool": "", "Options": {}, "V6": false}),
    );
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    assert_eq!(pool["Pool"], "10.78.0.0/24");
    let e = refused(
        &d,
        "IpamDriver.RequestPool",
        json!({"Pool": "10.78.0.0/25"}),
    );
    assert!(e.contains("overlaps"), "{e}");
    let gw = gateway(&d, &pool_id);
    assert_eq!(gw["Address"], "10.78.0.1/24");
    // A network whose addresses come from Docker's IPAM is refused, saying what to add.
    let e = refused(
        &d,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "a".repeat(64), "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "172.30.0.0/16", "Gateway": "172.30.0.1/16"}]}),
    );
    assert!(e.contains("--ipam-driver netd"), "{e}");
    assert!(!d.netd_ok(&["network", "ls"]).contains("d-aaaaaaaaaaaa"));
    ok(
        &d,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NID,
               "Options": {"com.docker.network.enable_ipv6": false,
                           "com.docker.network.generic": {"netd.name": "dnet",
                               "com.docker.network.bridge.name": "netdt-dk"}},
               "IPv4Data": [{"AddressSpace": "netd-local", "Pool": "10.78.0.0/24", "Gateway": "10.78.0.1/24"}]}),
    );
    let n: Value = serde_json::from_str(&d.netd_ok(&["network", "inspect", "dnet"])).unwrap();
    assert_eq!(n["subnet"], "10.78.0.0/24");
    assert_eq!(n["bridge"], "netdt-dk");

    // dockerd does not replay CreateNetwork after a restart: the mapping is netd's to keep.
    d.restart();

    // docker run --network dnet -p 8080:80 ...
    let a = address(&d, &pool_id, "");
    assert_eq!(a["Address"], "10.78.0.2/24");
    let e = refused(
        &d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "10.78.0.2"}),
    );
    assert!(e.contains("already in use"), "{e}");
    // netd's own CLI sees Docker's lease: `netd attach --ip` of that address is refused.
    let other = w.container("other");
    let e = d.netd_err(&[
        "attach",
        "other",
        "--netns",
        other.path_str(),
        "--network",
        "dnet",
        "--ip",
        "10.78.0.2",
    ]);
    assert!(e.contains("already in use"), "{e}");
    let ep = ok(
        &d,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NID, "EndpointID": EID,
               "Interface": {"Address": "10.78.0.2/24", "AddressIPv6": "", "MacAddress": ""},
               "Options": {"netd.name": "web", "com.docker.network.endpoint.exposedports": []}}),
    );
    // Only what the request left empty comes back.
    assert_eq!(ep["Interface"], json!({"MacAddress": "02:42:0a:4e:00:02"}));
    let sandbox = w.container("web");
    let j = join(&d);
    assert_eq!(j["Gateway"], "10.78.0.1");
    assert_eq!(j["InterfaceName"]["DstPrefix"], "eth");
    let src = j["InterfaceName"]["SrcName"].as_str().unwrap().to_string();
    assert_eq!(w.host.mac(&src), "02:42:0a:4e:00:02");
    // libnetwork's part: move SrcName into the sandbox, rename, address, route.
    w.host.ip(&["link", "set", &src, "netns", sandbox.name()]);
    sandbox.ip(&["link", "set", &src, "name", "eth0"]);
    sandbox.ip(&["addr", "add", "10.78.0.2/24", "dev", "eth0"]);
    sandbox.ip(&["link", "set", "eth0", "up"]);
    sandbox.ip(&["link", "set", "lo", "up"]);
    sandbox.ip(&["route", "add", "default", "via", "10.78.0.1"]);
    let portmap = json!([{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
                         {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 0, "HostPortEnd": 0}]);
    let prog = json!({"NetworkID": NID, "EndpointID": EID,
                      "Options": {"com.docker.network.portmap": portmap}});
    ok(
        &d,
        "NetworkDriver.ProgramExternalConnectivity",
        prog.clone(),
    );
    // Idempotent: a second call replaces the first one's ports.
    ok(&d, "NetworkDriver.ProgramExternalConnectivity", prog);
    let v = d.inspect("web");
    assert_eq!(v["ip"], "10.78.0.2");
    assert_eq!(v["ports"].as_array().unwrap().len(), 2, "{v}");
    assert!(d.ls_has("web"));
    let picked = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["host_port"].as_u64().unwrap())
        .find(|p| *p != 8080)
        .unwrap();
    let srv = tcp_server(&sandbox, 80);
    netd_tests::tcp_arrives_from(
        &w.outside,
        &format!("{HOST_UPLINK_IP}:8080"),
        &srv,
        OUTSIDE_IP,
    );
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:{picked}"), T).unwrap(),
        "ping"
    );
    // A netd restart keeps the endpoint (its namespace path never existed for netd: the host
    // veth says it lives) and its ports.
    d.restart();
    assert!(d.ls_has("web"));
    assert_eq!(
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap(),
        "ping"
    );
    let info = on_endpoint(&d, "NetworkDriver.EndpointOperInfo");
    assert_eq!(info["Value"]["netd.name"], "web");
    // `--ip`: the requested address is the one held.
    let a2 = address(&d, &pool_id, "10.78.0.9");
    assert_eq!(a2["Address"], "10.78.0.9/24");

    // docker rm -f: Revoke -> Leave -> DeleteEndpoint -> ReleaseAddress.
    on_endpoint(&d, "NetworkDriver.RevokeExternalConnectivity");
    assert_eq!(d.inspect("web")["ports"], json!([]));
    on_endpoint(&d, "NetworkDriver.Leave");
    assert!(!d.ls_has("web"));
    assert!(
        w.host.link(&format!("veth{}", &src[4..])).is_none(),
        "host veth left behind"
    );
    // Between Leave and ReleaseAddress the address stays Docker's.
    let e = refused(
        &d,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "10.78.0.2"}),
    );
    assert!(e.contains("already in use"), "{e}");
    on_endpoint(&d, "NetworkDriver.DeleteEndpoint");
    release(&d, &pool_id, "10.78.0.2");
    release(&d, &pool_id, "10.78.0.9");
    let again = address(&d, &pool_id, "");
    assert_eq!(again["Address"], "10.78.0.2/24");
    release(&d, &pool_id, "10.78.0.2");

    // docker network rm
    ok(&d, "NetworkDriver.DeleteNetwork", json!({"NetworkID": NID}));
    release(&d, &pool_id, "10.78.0.1");
    ok(&d, "IpamDriver.ReleasePool", json!({"PoolID": pool_id}));
    assert!(!d.netd_ok(&["network", "ls"]).contains("dnet"));
    assert!(w.host.link("netdt-dk").is_none(), "bridge left behind");
    let (st, _) = call(&d, "NetworkDriver.NoSuchCall", json!({}));
    assert_eq!(st, 404);
}

#[test]
fn docker_plugin_install_writes_the_spec_file() {
    let dir = std::env::temp_dir().join(format!("netdt-spec-{}", std::process::id()));
    let out = std::process::Command::new(netd_tests::daemon::netd_bin())
        .args([
            "-H",
            "unix:///run/netd-x/netd.sock",
            "docker-plugin",
            "install",
            "--dest",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = std::fs::read_to_string(dir.join("netd.spec")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(spec, "unix:///run/netd-x/netd.sock\n");
}

/// `docker network create --ipv6 --subnet V4 --subnet V6 --ipam-driver netd` as libnetwork
/// drives it: the IPv6 pool's gateway is the bridge's fe80::1 (in the pool data), addresses
/// come from ::1 up and are checked, CreateEndpoint takes only an address netd handed out,
/// Join makes it the engine's lease and answers the IPv6 gateway; refusals say what to change.
#[test]
fn plugin_protocol_ipv6_pools_addresses_and_refusals() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let v6 = |pool: &str, sub: &str| json!({"AddressSpace": "netd-local", "Pool": pool, "SubPool": sub, "Options": {}, "V6": true});
    let e = refused(&d, "IpamDriver.RequestPool", v6("", ""));
    assert!(e.contains("add --subnet PREFIX"), "{e}");
    let e = refused(&d, "IpamDriver.RequestPool", v6("2001:db8:7::1/64", ""));
    assert!(e.contains("not a network address"), "{e}");
    let e = refused(
        &d,
        "IpamDriver.RequestPool",
        v6("2001:db8:7::/64", "2001:db8:7::/80"),
    );
    assert!(e.contains("--ip-range"), "{e}");
    let p6 = ok(&d, "IpamDriver.RequestPool", v6("2001:db8:7::/64", ""));
    assert_eq!(p6["Pool"], "2001:db8:7::/64");
    assert_eq!(p6["Data"]["com.docker.network.gateway"], "fe80::1/64");
    let pool6 = p6["PoolID"].as_str().unwrap().to_string();
    let e = refused(&d, "IpamDriver.RequestPool", v6("2001:db8:7::/80", ""));
    assert!(e.contains("overlaps"), "{e}");
    let gw_req = |addr: &str| json!({"PoolID": pool6, "Address": addr, "Options": {"RequestAddressType": "com.docker.network.gateway"}});
    let e = refused(&d, "IpamDriver.RequestAddress", gw_req("2001:db8:7::1"));
    assert!(e.contains("fe80::1; leave it out"), "{e}");
    assert_eq!(
        ok(&d, "IpamDriver.RequestAddress", gw_req(""))["Address"],
        "fe80::1/64"
    );
    let p4 = ok(
        &d,
        "IpamDriver.RequestPool",
        json!({"Pool": "10.78.5.0/24", "V6": false}),
    );
    let pool4 = p4["PoolID"].as_str().unwrap().to_string();
    gateway(&d, &pool4);
    let opts = json!({"com.docker.network.enable_ipv6": true,
                      "com.docker.network.generic": {"netd.name": "d6"}});
    let v4data =
        json!([{"AddressSpace": "netd-local", "Pool": "10.78.5.0/24", "Gateway": "10.78.5.1/24"}]);
    let e = refused(
        &d,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NID, "Options": opts, "IPv4Data": v4data,
               "IPv6Data": [{"Pool": "2001:db8:8::/64", "Gateway": "2001:db8:8::1/64"}]}),
    );
    assert!(e.contains("is not netd's"), "{e}");
    ok(
        &d,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NID, "Options": opts, "IPv4Data": v4data,
               "IPv6Data": [{"Pool": "2001:db8:7::/64", "Gateway": "fe80::1/64"}]}),
    );
    let n: Value = serde_json::from_str(&d.netd_ok(&["network", "inspect", "d6"])).unwrap();
    assert_eq!(
        (&n["ipv6"], &n["subnet_v6"]),
        (&json!(true), &json!("2001:db8:7::/64"))
    );

    let addr6 = |a: &str| json!({"PoolID": pool6, "Address": a});
    assert_eq!(
        ok(&d, "IpamDriver.RequestAddress", addr6(""))["Address"],
        "2001:db8:7::1/64"
    );
    assert_eq!(
        ok(&d, "IpamDriver.RequestAddress", addr6(""))["Address"],
        "2001:db8:7::2/64"
    );
    let e = refused(&d, "IpamDriver.RequestAddress", addr6("2001:db8:7::1"));
    assert!(e.contains("already in use"), "{e}");
    let e = refused(&d, "IpamDriver.RequestAddress", addr6("2001:db8:9::1"));
    assert!(e.contains("outside the container IPv6 subnet"), "{e}");
    release(&d, &pool6, "2001:db8:7::2/64");
    assert_eq!(
        ok(&d, "IpamDriver.RequestAddress", addr6(""))["Address"],
        "2001:db8:7::2/64"
    );
    let a4 = address(&d, &pool4, "");
    let endpoint = |v6: &str| {
        json!({"NetworkID": NID, "EndpointID": EID, "Options": {},
        "Interface": {"Address": a4["Address"], "AddressIPv6": v6, "MacAddress": ""}})
    };
    let e = refused(
        &d,
        "NetworkDriver.CreateEndpoint",
        endpoint("2001:db8:7::99/64"),
    );
    assert!(e.contains("was not handed out by netd's IPAM"), "{e}");
    ok(
        &d,
        "NetworkDriver.CreateEndpoint",
        endpoint("2001:db8:7::1/64"),
    );
    let j = join(&d);
    assert_eq!(j["Gateway"], "10.78.5.1");
    assert_eq!(j["GatewayIPv6"], "fe80::1");
    let ls: Value = serde_json::from_str(&d.netd_ok(&["ls", "--json"])).unwrap();
    let ep = &ls.as_array().unwrap()[0];
    assert_eq!(ep["global_ipv6"], "2001:db8:7::1", "{ep}");

    on_endpoint(&d, "NetworkDriver.Leave");
    on_endpoint(&d, "NetworkDriver.DeleteEndpoint");
    for a in ["2001:db8:7::1/64", "2001:db8:7::2/64"] {
        release(&d, &pool6, a);
    }
    ok(&d, "NetworkDriver.DeleteNetwork", json!({"NetworkID": NID}));
    ok(&d, "IpamDriver.ReleasePool", json!({"PoolID": pool6}));
    assert!(!d.netd_ok(&["network", "ls"]).contains("d6"));
    assert!(w.host.links_with_prefix("veth").is_empty());
}

/// `ip -6 neigh show proxy dev up0` in the host namespace.
fn ndp_proxies(w: &World) -> String {
    w.host.ip(&[
        "-6",
        "neigh",
        "show",
        "proxy",
        "dev",
        netd_tests::world::UPLINK,
    ])
}

/// Issue 10: the IPv6 address Docker's IPAM hands out is the engine's from RequestAddress on
/// (a /120 takes addresses in order, so a `netd attach` in between would have got it): netd's
/// own attach gets the next one, `--ip6` of it is refused naming the holder, Join makes it the
/// Docker endpoint's lease, Leave holds it again, ReleaseAddress frees it. The endpoint gets
/// an NDP proxy entry on the uplink from Join to Leave: the outside, with no route to the
/// network's /120, pings it over its /64.
#[test]
fn plugin_ipv6_address_is_held_from_request_and_ndp_proxied_from_join() {
    let w = World::new();
    no_dad(&w.host);
    no_dad(&w.outside);
    // The uplink's on-link /64 holds the network's /120 (for the NDP proxy entries).
    let up = netd_tests::world::UPLINK;
    w.host
        .ip(&["-6", "addr", "add", "2001:db8::c001/64", "dev", up, "nodad"]);
    w.outside.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8::c0ff/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let d = w.daemon(&["--bip", BIP]);
    let p6 = ok(
        &d,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "netd-local", "Pool": "2001:db8::d000/120", "SubPool": "", "Options": {}, "V6": true}),
    );
    let pool6 = p6["PoolID"].as_str().unwrap().to_string();
    let p4 = ok(
        &d,
        "IpamDriver.RequestPool",
        json!({"Pool": "10.78.6.0/24", "V6": false}),
    );
    let pool4 = p4["PoolID"].as_str().unwrap().to_string();
    gateway(&d, &pool4);
    ok(
        &d,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": NID,
               "Options": {"com.docker.network.enable_ipv6": true,
                           "com.docker.network.generic": {"netd.name": "d6"}},
               "IPv4Data": [{"AddressSpace": "netd-local", "Pool": "10.78.6.0/24", "Gateway": "10.78.6.1/24"}],
               "IPv6Data": [{"Pool": "2001:db8::d000/120", "Gateway": "fe80::1/64"}]}),
    );
    // docker run --network d6: RequestAddress (v4, v6) ... and before Join, a netd attach.
    let a4 = address(&d, &pool4, "");
    let a6 = address(&d, &pool6, "");
    assert_eq!(a6["Address"], "2001:db8::d001/120");
    let other = w.container("other");
    let v = d.attach("other", &other, &["--network", "d6"]);
    assert_eq!(v["global_ipv6"], "2001:db8::d002", "{v}");
    let taker = w.container("taker");
    let e = d.netd_err(&[
        "attach",
        "taker",
        "--netns",
        taker.path_str(),
        "--network",
        "d6",
        "--ip6",
        "2001:db8::d001",
    ]);
    assert!(
        e.contains("2001:db8::d001 is already in use by \"docker endpoint on d6\""),
        "{e}"
    );

    ok(
        &d,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NID, "EndpointID": EID, "Options": {"netd.name": "web"},
               "Interface": {"Address": a4["Address"], "AddressIPv6": "2001:db8::d001/120", "MacAddress": ""}}),
    );
    let j = join(&d);
    assert_eq!(j["GatewayIPv6"], "fe80::1");
    assert_eq!(d.inspect("web")["global_ipv6"], "2001:db8::d001");
    // NDP proxying (issue 10): from Join, the uplink answers for the Docker endpoint's
    // address as for netd's own containers on the uplink's /64.
    let proxies = ndp_proxies(&w);
    assert!(
        proxies.contains("2001:db8::d001") && proxies.contains("2001:db8::d002"),
        "{proxies}"
    );
    let src = j["InterfaceName"]["SrcName"].as_str().unwrap().to_string();
    let sandbox = w.container("web");
    sandbox.run_ok(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    w.host.ip(&["link", "set", &src, "netns", sandbox.name()]);
    sandbox.ip(&["link", "set", &src, "name", "eth0"]);
    sandbox.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8::d001/120",
        "dev",
        "eth0",
        "nodad",
    ]);
    sandbox.ip(&["link", "set", "eth0", "up"]);
    sandbox.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
    ]);
    // The outside has no route to the /120: only the proxy entry makes it reachable.
    assert!(
        sandbox.ping("2001:db8::c0ff", T) && w.outside.ping("2001:db8::d001", T),
        "outside <-> web over IPv6: host proxies {}",
        proxies
    );

    on_endpoint(&d, "NetworkDriver.Leave");
    let proxies = ndp_proxies(&w);
    assert!(
        !proxies.contains("2001:db8::d001") && proxies.contains("2001:db8::d002"),
        "web's entry goes at Leave: {proxies}"
    );
    // Between Leave and ReleaseAddress the address stays Docker's.
    let e = d.netd_err(&[
        "attach",
        "taker",
        "--netns",
        taker.path_str(),
        "--network",
        "d6",
        "--ip6",
        "2001:db8::d001",
    ]);
    assert!(e.contains("already in use"), "{e}");
    on_endpoint(&d, "NetworkDriver.DeleteEndpoint");
    release(&d, &pool6, "2001:db8::d001/120");
    let v = d.attach(
        "taker",
        &taker,
        &["--network", "d6", "--ip6", "2001:db8::d001"],
    );
    assert_eq!(v["global_ipv6"], "2001:db8::d001", "{v}");
    d.netd_ok(&["detach", "taker"]);
    d.netd_ok(&["detach", "other"]);
}
