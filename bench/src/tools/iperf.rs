//! iperf3 (3.12): TCP throughput with 1 or 2 streams and UDP packets per second with small
//! datagrams. The client's `-J` report is parsed.

use std::path::Path;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::Values;
use crate::proc::{Proc, in_ns_cg, run};

/// The port iperf3 servers listen on (TCP control + data, and UDP data).
pub const PORT: u16 = 5201;
/// UDP payload size for the packet-rate test.
pub const UDP_LEN: u32 = 64;

/// `iperf3 -s -p <port>` inside `netns` (and `cgroup`, see [`in_ns_cg`]).
pub fn server(netns: &Path, cgroup: Option<&Path>, port: u16) -> Result<Proc> {
    Proc::spawn(
        "iperf3 server",
        in_ns_cg(netns, cgroup, &["iperf3", "-s", "-p", &port.to_string()]),
    )
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Tcp { streams: u32 },
    UdpSmall,
}

/// Runs the client from `netns` (and `cgroup`) against `ip:port` for `secs` seconds (with `-6`
/// for an IPv6 address; the server, `iperf3 -s`, listens on both families).
pub fn client(
    netns: &Path,
    cgroup: Option<&Path>,
    ip: &str,
    port: u16,
    mode: Mode,
    secs: u32,
) -> Result<Values> {
    let port = port.to_string();
    let secs_s = secs.to_string();
    let mut argv = vec![
        "iperf3",
        "-c",
        ip,
        "-p",
        &port,
        "-t",
        &secs_s,
        "-J",
        "--connect-timeout",
        "2000",
    ];
    if ip.contains(':') {
        argv.push("-6");
    }
    let streams;
    let len = UDP_LEN.to_string();
    match mode {
        Mode::Tcp { streams: n } => {
            streams = n.to_string();
            argv.extend(["-P", &streams]);
        }
        Mode::UdpSmall => argv.extend(["-u", "-l", &len, "-b", "0"]),
    }
    let limit = Duration::from_secs(u64::from(secs) + 15);
    let f = run("iperf3 client", in_ns_cg(netns, cgroup, &argv), limit)?;
    let v = parse(&f.stdout, mode)
        .with_context(|| format!("iperf3 {argv:?} (exit {}): {}", f.status, f.stderr.trim()))?;
    Ok(v)
}

/// Parses iperf3's JSON report: `gbps` for TCP (receiver side); `pps`, `loss_pct` and `gbps`
/// for UDP (datagrams that arrived per second).
pub fn parse(json: &str, mode: Mode) -> Result<Values> {
    let v: Value = serde_json::from_str(json).context("iperf3 output is not JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    let end = v.get("end").context("no `end` in the iperf3 report")?;
    let mut out = Values::new();
    match mode {
        Mode::Tcp { .. } => {
            let bps = end["sum_received"]["bits_per_second"]
                .as_f64()
                .context("no end.sum_received.bits_per_second")?;
            out.insert("gbps".into(), bps / 1e9);
        }
        Mode::UdpSmall => {
            let sum = &end["sum"];
            let packets = sum["packets"].as_f64().context("no end.sum.packets")?;
            let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
            let secs = sum["seconds"].as_f64().context("no end.sum.seconds")?;
            if secs <= 0.0 || packets <= 0.0 {
                bail!("iperf3 UDP moved no packets");
            }
            out.insert("pps".into(), (packets - lost).max(0.0) / secs);
            out.insert("loss_pct".into(), 100.0 * lost / packets);
            out.insert(
                "gbps".into(),
                sum["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_receiver_throughput() {
        let j = r#"{"start":{},"intervals":[],"end":{"sum_sent":{"bits_per_second":2.1e10},
                   "sum_received":{"bits_per_second":2.0e10}}}"#;
        let v = parse(j, Mode::Tcp { streams: 1 }).unwrap();
        assert_eq!(v["gbps"], 20.0);
    }

    #[test]
    fn parses_udp_packet_rate_net_of_loss() {
        let j = r#"{"end":{"sum":{"start":0,"end":1.000225,"seconds":2.0,"bytes":21093760,
                   "bits_per_second":168744680.1,"jitter_ms":0.0016,"lost_packets":5000,
                   "packets":205000,"lost_percent":2.4,"sender":true}}}"#;
        let v = parse(j, Mode::UdpSmall).unwrap();
        assert_eq!(v["pps"], 100000.0);
        assert!((v["loss_pct"] - 2.439).abs() < 0.01);
    }

    #[test]
    fn reports_iperf_errors() {
        let j = r#"{"start":{},"error":"unable to connect to server: Connection refused"}"#;
        let e = parse(j, Mode::Tcp { streams: 1 }).unwrap_err();
        assert!(e.to_string().contains("Connection refused"), "{e}");
        assert!(parse("not json", Mode::UdpSmall).is_err());
    }
}
