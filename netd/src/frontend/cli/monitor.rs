//! `netd monitor`: reads the daemon's `GET /v1/monitor` stream and prints each line, as text
//! or `--json`, writing the dropped packets to `--pcap FILE` besides.

use std::io::Write as _;
use std::path::Path;

use tokio::io::AsyncReadExt;

use super::args::MonitorArgs;
use super::client::Client;
use crate::ops::monitor::event::{self, Filter, Line};
use crate::ops::monitor::pcap;

pub async fn run(args: MonitorArgs, socket: &Path) -> Result<(), String> {
    let mut types = Vec::new();
    for t in &args.types {
        if t == "all" {
            types.extend(event::TYPES.iter().map(|t| (*t).to_owned()));
        } else {
            types.push(event::parse_type(t)?);
        }
    }
    let filter = Filter {
        types,
        reasons: args
            .reasons
            .iter()
            .map(|r| event::parse_reason(r))
            .collect::<Result<_, _>>()?,
        container: args.container.clone(),
        port: args.port,
    };
    let mut pcap = match &args.pcap {
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| format!("cannot create pcap file {}: {e}", p.display()))?;
            Some(
                pcap::Writer::new(std::io::BufWriter::new(f))
                    .map_err(|e| format!("cannot write pcap file {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let path = format!("/v1/monitor{}", filter.to_query());
    let (mut stream, mut buf) = Client::new(socket)
        .stream(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut events = 0u64;
    let mut chunk = [0u8; 8192];
    let stdout = std::io::stdout();
    loop {
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=nl).collect();
            let line: Line = serde_json::from_slice(&raw).map_err(|e| {
                format!(
                    "unexpected line from the daemon ({e}): {}",
                    String::from_utf8_lossy(&raw)
                )
            })?;
            let mut out = stdout.lock();
            let printed = if args.json {
                // The daemon's line as it came.
                out.write_all(&raw)
            } else if matches!(line, Line::Start { .. }) {
                eprintln!("{}", event::format_line(&line));
                Ok(())
            } else {
                writeln!(out, "{}", event::format_line(&line))
            };
            // A closed stdout (`| head`) ends the monitor.
            if printed.and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
            if let Line::Drop(d) = &line {
                if let Some(w) = pcap.as_mut() {
                    let data = event::unhex(&d.head).unwrap_or_default();
                    w.packet(d.time_ns, &data, d.len)
                        .map_err(|e| format!("cannot write the pcap file: {e}"))?;
                }
            }
            if matches!(line, Line::Drop(_) | Line::Flow(_) | Line::Verdict(_)) {
                events += 1;
                if args.count.is_some_and(|n| events >= n) {
                    return Ok(());
                }
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the monitor stream: {e}"))?;
        if n == 0 {
            return Err("the daemon closed the monitor stream".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
