//! `netd-connrate`: a connect/request/close load generator and its server, the same binary for
//! every system under test.
//!
//! - `server --port P [--bind ADDR] [--max-secs S]`: accepts on ADDR:P (0.0.0.0; `::` takes
//!   IPv6 and IPv4 clients, as the namespace's `bindv6only` is 0); for each connection reads one
//!   request line, writes `OK\n` and closes (the server closes first, as HTTP/1.0 does, so the
//!   client's ports never sit in TIME_WAIT). Exits by itself after S seconds.
//! - `client --addr IP:P --secs S [--threads T] [--max-conns M]` (or `[IPv6]:P`): T threads
//!   each loop connect / send `GET\n` / read to EOF / check the reply / close, until S seconds or M
//!   connections in all; prints one JSON object: `conns`, `errors`, `secs`, `conns_per_s`,
//!   `p50_us`, `p99_us`.
//! - `echo --addr IP:P --token T [--udp] [--timeout-ms MS]`: one exchange with an echo service
//!   (the bench's correctness checks): sends `T` (a line over TCP, or a datagram over UDP,
//!   retried 4 times) and exits 0 only if `T` comes back (TCP: connect and reply within MS).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "netd-connrate")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Server {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "0.0.0.0")]
        bind: std::net::IpAddr,
        #[arg(long, default_value_t = 3600)]
        max_secs: u64,
        #[arg(long, default_value_t = 4)]
        threads: u32,
    },
    Client {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        secs: f64,
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 200_000)]
        max_conns: u64,
    },
    Echo {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        token: String,
        #[arg(long)]
        udp: bool,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

const REQUEST: &[u8] = b"GET\n";
const REPLY: &[u8] = b"OK\n";
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> Result<()> {
    match Cli::parse().mode {
        Mode::Server {
            port,
            bind,
            max_secs,
            threads,
        } => server(
            SocketAddr::new(bind, port),
            Duration::from_secs(max_secs),
            threads,
        ),
        Mode::Client {
            addr,
            secs,
            threads,
            max_conns,
        } => client(addr, Duration::from_secs_f64(secs), threads, max_conns),
        Mode::Echo {
            addr,
            token,
            udp,
            timeout_ms,
        } => {
            if udp {
                echo_udp(addr, &token)
            } else {
                echo_tcp(addr, &token, Duration::from_millis(timeout_ms))
            }
        }
    }
}

fn echo_tcp(addr: SocketAddr, token: &str, timeout: Duration) -> Result<()> {
    use std::io::BufRead as _;
    let s =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    (&s).write_all(format!("{token}\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut line)
        .with_context(|| format!("no reply from {addr} within {timeout:?}"))?;
    anyhow::ensure!(
        line.trim_end() == token,
        "{addr} answered {line:?}, expected {token:?}"
    );
    Ok(())
}

fn echo_udp(addr: SocketAddr, token: &str) -> Result<()> {
    let any: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 256];
    for _ in 0..4 {
        s.send(token.as_bytes())?;
        if let Ok(n) = s.recv(&mut buf) {
            anyhow::ensure!(
                buf[..n] == *token.as_bytes(),
                "udp {addr} answered {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
            return Ok(());
        }
    }
    anyhow::bail!("no udp answer from {addr}")
}

fn server(addr: SocketAddr, max: Duration, threads: u32) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    // The watchdog bounds the server's life even if nobody kills it.
    std::thread::spawn(move || {
        std::thread::sleep(max);
        std::process::exit(0);
    });
    let mut handles = vec![];
    for _ in 0..threads.max(1) {
        let l = listener.try_clone()?;
        handles.push(std::thread::spawn(move || {
            loop {
                if let Ok((s, _)) = l.accept() {
                    let _ = serve(s);
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    s.write_all(REPLY)
}

fn one(addr: &SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    s.write_all(REQUEST)?;
    let mut reply = Vec::with_capacity(8);
    s.read_to_end(&mut reply)?;
    if reply != REPLY {
        return Err(std::io::Error::other("wrong reply"));
    }
    Ok(())
}

fn client(addr: SocketAddr, secs: Duration, threads: u32, max_conns: u64) -> Result<()> {
    let started = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + secs;
    let mut handles = vec![];
    for _ in 0..threads.max(1) {
        let (started, errors) = (started.clone(), errors.clone());
        handles.push(std::thread::spawn(move || {
            let mut lat_us = Vec::new();
            while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < max_conns {
                let t = Instant::now();
                match one(&addr) {
                    Ok(()) => lat_us.push(t.elapsed().as_secs_f64() * 1e6),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat_us
        }));
    }
    let mut lat: Vec<f64> = vec![];
    for h in handles {
        lat.extend(h.join().unwrap_or_default());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize]
    };
    let out = serde_json::json!({
        "conns": lat.len(),
        "errors": errors.load(Ordering::Relaxed),
        "secs": elapsed,
        "conns_per_s": lat.len() as f64 / elapsed,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
    });
    println!("{out}");
    Ok(())
}
