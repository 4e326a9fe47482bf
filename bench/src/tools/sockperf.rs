//! sockperf (3.7) ping-pong: TCP and UDP request/response latency. sockperf prints one-way
//! latency (half the round trip) in microseconds; its text summary is parsed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::Values;
use crate::proc::{Proc, in_ns_cg, run};

/// The port sockperf servers listen on (one TCP and one UDP server).
pub const PORT: u16 = 11111;

/// `sockperf sr [--tcp] -i 0.0.0.0 -p <port>` inside `netns` (and `cgroup`).
pub fn server(netns: &Path, cgroup: Option<&Path>, port: u16, tcp: bool) -> Result<Proc> {
    let port = port.to_string();
    let mut argv = vec!["sockperf", "sr", "-i", "0.0.0.0", "-p", &port];
    if tcp {
        argv.push("--tcp");
    }
    Proc::spawn("sockperf server", in_ns_cg(netns, cgroup, &argv))
}

/// `sockperf pp` from `netns` to `ip:port` for `secs` seconds (sockperf spends the first
/// 400 ms warming up).
pub fn client(
    netns: &Path,
    cgroup: Option<&Path>,
    ip: &str,
    port: u16,
    tcp: bool,
    secs: u32,
) -> Result<Values> {
    let port = port.to_string();
    let secs_s = secs.to_string();
    let mut argv = vec!["sockperf", "pp", "-i", ip, "-p", &port, "-t", &secs_s];
    if tcp {
        argv.push("--tcp");
    }
    let limit = Duration::from_secs(u64::from(secs) + 15);
    let f = run("sockperf client", in_ns_cg(netns, cgroup, &argv), limit)?;
    let text = format!("{}\n{}", f.stdout, f.stderr);
    parse(&text).with_context(|| format!("sockperf {argv:?} (exit {})", f.status))
}

/// `p50_us`, `p99_us`, `avg_us` and `observations` from sockperf's summary.
pub fn parse(text: &str) -> Result<Values> {
    let mut out = Values::new();
    for line in text.lines() {
        if let Some((k, v)) = line
            .split_once("percentile ")
            .and_then(|(_, r)| r.split_once('='))
        {
            let key = match k.trim() {
                "50.000" => "p50_us",
                "99.000" => "p99_us",
                _ => continue,
            };
            out.insert(key.into(), number(v)?);
        } else if let Some(r) = line.split_once("avg-latency=").map(|(_, r)| r) {
            out.insert(
                "avg_us".into(),
                number(r.split_whitespace().next().unwrap_or(""))?,
            );
        } else if let Some(r) = line.split_once("Total ").map(|(_, r)| r)
            && let Some(n) = r.split_whitespace().next()
            && r.contains("observations")
        {
            out.insert("observations".into(), number(n)?);
        }
    }
    if !out.contains_key("p50_us") || !out.contains_key("p99_us") {
        let tail: Vec<&str> = text.lines().rev().take(4).collect();
        bail!("no percentiles in sockperf output (last lines: {tail:?})");
    }
    Ok(out)
}

fn number(s: &str) -> Result<f64> {
    let s = s.trim().trim_end_matches(|c: char| !c.is_ascii_digit());
    s.parse().with_context(|| format!("not a number: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str =
        "sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=8077; ReceivedMessages=8077
sockperf: \x1b[2;35m====> avg-latency=34.060 (std-dev=21.963)\x1b[0m
sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Summary: Latency is 34.060 usec
sockperf: \x1b[2;35mTotal 8077 observations\x1b[0m; each percentile contains 80.77 observations
sockperf: ---> <MAX> observation = 1659.839
sockperf: ---> percentile 99.999 = 1659.839
sockperf: ---> percentile 99.000 =   63.246
sockperf: ---> percentile 90.000 =   48.176
sockperf: ---> percentile 50.000 =   31.857
sockperf: ---> <MIN> observation =   13.705";

    #[test]
    fn parses_percentiles_through_colour_codes() {
        let v = parse(OUT).unwrap();
        assert_eq!(v["p50_us"], 31.857);
        assert_eq!(v["p99_us"], 63.246);
        assert_eq!(v["avg_us"], 34.060);
        assert_eq!(v["observations"], 8077.0);
    }

    #[test]
    fn fails_without_percentiles() {
        let e = parse("sockperf: ERROR: Failed to connect").unwrap_err();
        assert!(e.to_string().contains("no percentiles"), "{e}");
    }
}
