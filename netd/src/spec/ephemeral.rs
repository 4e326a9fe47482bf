//! The kernel's ephemeral port range that `-P` draws from (read from /proc).

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::*;

// ---------------------------------------------------------------------------------------------
// Ephemeral ports for -P

/// The host's ephemeral port settings, which `-P` allocates from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralPorts {
    /// `ip_local_port_range`: lowest and highest port, inclusive.
    pub range: (u16, u16),
    /// `ip_local_reserved_ports`: ports the kernel never hands out, nor does netd.
    pub reserved: Vec<PortRange>,
}

impl EphemeralPorts {
    /// Whether `port` is in the range and not reserved.
    pub fn is_usable(&self, port: u16) -> bool {
        (self.range.0..=self.range.1).contains(&port)
            && !self.reserved.iter().any(|r| r.contains(port))
    }

    /// The usable ports, in order.
    pub fn usable(&self) -> impl Iterator<Item = u16> + '_ {
        (self.range.0..=self.range.1).filter(|&port| self.is_usable(port))
    }
}

/// Parses the content of `/proc/sys/net/ipv4/ip_local_port_range`, e.g. "32768\t60999\n".
pub fn parse_local_port_range(content: &str) -> Result<(u16, u16), SpecError> {
    parse_local_port_range_at(
        &Path::new(PROC_IPV4_DIR).join(LOCAL_PORT_RANGE_FILE),
        content,
    )
}

/// Parses the content of `/proc/sys/net/ipv4/ip_local_reserved_ports`: empty, or a comma
/// separated list of ports and ranges such as "8080,9000-9010\n".
pub fn parse_reserved_ports(content: &str) -> Result<Vec<PortRange>, SpecError> {
    parse_reserved_ports_at(
        &Path::new(PROC_IPV4_DIR).join(LOCAL_RESERVED_PORTS_FILE),
        content,
    )
}

/// Reads the ephemeral port settings of the calling thread's network namespace.
pub fn read_ephemeral_ports() -> Result<EphemeralPorts, SpecError> {
    read_ephemeral_ports_from(Path::new(PROC_IPV4_DIR))
}

/// Reads a sysctl file with one read(2). Linux's large-bitmap sysctls
/// (ip_local_reserved_ports) answer only a read at offset 0, so `read_to_string`'s first
/// 32-byte probe would be all it gets: a list longer than that came back cut.
pub fn read_sysctl(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut f = fs::File::open(path)?;
    // 65 535 single ports spell out in under 400 kB.
    let mut buf = vec![0u8; 1 << 20];
    let n = f.read(&mut buf)?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads `ip_local_port_range` and `ip_local_reserved_ports` from `dir` (normally
/// [`PROC_IPV4_DIR`]). A missing reserved-ports file means no reserved ports.
pub fn read_ephemeral_ports_from(dir: &Path) -> Result<EphemeralPorts, SpecError> {
    let range_path = dir.join(LOCAL_PORT_RANGE_FILE);
    let content = fs::read_to_string(&range_path).map_err(|source| SpecError::Read {
        path: range_path.clone(),
        source,
    })?;
    let range = parse_local_port_range_at(&range_path, &content)?;

    let reserved_path = dir.join(LOCAL_RESERVED_PORTS_FILE);
    let reserved = match read_sysctl(&reserved_path) {
        Ok(content) => parse_reserved_ports_at(&reserved_path, &content)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(SpecError::Read {
                path: reserved_path,
                source,
            });
        }
    };
    Ok(EphemeralPorts { range, reserved })
}

fn parse_local_port_range_at(path: &Path, content: &str) -> Result<(u16, u16), SpecError> {
    let fail = |reason: String| SpecError::ProcFile {
        path: path.to_owned(),
        input: content.to_owned(),
        reason,
    };
    let fields: Vec<&str> = content.split_whitespace().collect();
    let [low, high] = fields[..] else {
        return Err(fail(
            "expected two port numbers, the lowest and the highest ephemeral port".to_owned(),
        ));
    };
    let low = parse_port_number("the lowest port", low).map_err(fail)?;
    let high = parse_port_number("the highest port", high).map_err(fail)?;
    if low > high {
        return Err(fail(format!(
            "the lowest port {low} is above the highest port {high}"
        )));
    }
    Ok((low, high))
}

fn parse_reserved_ports_at(path: &Path, content: &str) -> Result<Vec<PortRange>, SpecError> {
    let content_trimmed = content.trim();
    if content_trimmed.is_empty() {
        return Ok(Vec::new());
    }
    content_trimmed
        .split(',')
        .map(|entry| {
            parse_port_range("reserved port", entry.trim()).map_err(|reason| SpecError::ProcFile {
                path: path.to_owned(),
                input: content.to_owned(),
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

    // --- Ephemeral ports ---

    #[test]
    fn local_port_range_content() {
        assert_eq!(
            parse_local_port_range("32768\t60999\n").unwrap(),
            (32768, 60999)
        );
        assert_eq!(parse_local_port_range("1024 65535").unwrap(), (1024, 65535));
        assert_eq!(
            parse_local_port_range("5000\t5000\n").unwrap(),
            (5000, 5000)
        );
        assert_eq!(
            err(parse_local_port_range("60999\t32768\n")),
            "unexpected content \"60999\\t32768\\n\" in /proc/sys/net/ipv4/ip_local_port_range: \
             the lowest port 60999 is above the highest port 32768"
        );
        for bad in ["", "\n", "32768", "1 2 3"] {
            assert_err(parse_local_port_range(bad), &["expected two port numbers"]);
        }
        assert_err(
            parse_local_port_range("abc 60999"),
            &[r#"the lowest port "abc" is not a number"#],
        );
        assert_err(
            parse_local_port_range("0 100"),
            &[r#"the lowest port "0" is not a number"#],
        );
        assert_err(
            parse_local_port_range("1 70000"),
            &[r#"the highest port "70000" is not a number"#],
        );
    }

    #[test]
    fn reserved_ports_content() {
        assert_eq!(parse_reserved_ports("").unwrap(), []);
        assert_eq!(parse_reserved_ports("\n").unwrap(), []);
        assert_eq!(parse_reserved_ports("8080\n").unwrap(), [range(8080, 8080)]);
        assert_eq!(
            parse_reserved_ports("8080,9000-9010\n").unwrap(),
            [range(8080, 8080), range(9000, 9010)]
        );
        assert_err(
            parse_reserved_ports("8080,,9000\n"),
            &["ip_local_reserved_ports", "reserved port is empty"],
        );
        assert_err(
            parse_reserved_ports("abc"),
            &[r#"reserved port "abc" is not a number"#],
        );
        assert_err(
            parse_reserved_ports("9010-9000"),
            &["reserved port range 9010-9000 ends before it starts"],
        );
    }

    #[test]
    fn ephemeral_port_usability() {
        let ports = EphemeralPorts {
            range: (32768, 32800),
            reserved: vec![range(32770, 32770), range(32790, 32799)],
        };
        assert!(!ports.is_usable(32767));
        assert!(ports.is_usable(32768));
        assert!(ports.is_usable(32769));
        assert!(!ports.is_usable(32770));
        assert!(!ports.is_usable(32790));
        assert!(!ports.is_usable(32799));
        assert!(ports.is_usable(32800));
        assert!(!ports.is_usable(32801));
        assert_eq!(ports.usable().count(), 33 - 1 - 10);
        assert_eq!(
            ports.usable().take(3).collect::<Vec<_>>(),
            [32768, 32769, 32771]
        );

        let json = serde_json::to_string(&ports).unwrap();
        assert_eq!(
            serde_json::from_str::<EphemeralPorts>(&json).unwrap(),
            ports
        );
    }

    /// A scratch directory removed on drop, even when the test fails.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("netd-spec-test-{}-{name}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_ephemeral_ports_from_a_directory() {
        let dir = TempDir::new("read");
        fs::write(dir.0.join("ip_local_port_range"), "40000\t40100\n").unwrap();
        fs::write(dir.0.join("ip_local_reserved_ports"), "40050-40059\n").unwrap();
        let ports = read_ephemeral_ports_from(&dir.0).unwrap();
        assert_eq!(ports.range, (40000, 40100));
        assert_eq!(ports.reserved, [range(40050, 40059)]);

        // Without the reserved list nothing is reserved.
        fs::remove_file(dir.0.join("ip_local_reserved_ports")).unwrap();
        assert_eq!(read_ephemeral_ports_from(&dir.0).unwrap().reserved, []);

        // Parse errors name the file that was read.
        fs::write(dir.0.join("ip_local_port_range"), "garbage\n").unwrap();
        let text = err(read_ephemeral_ports_from(&dir.0));
        assert!(
            text.contains(&dir.0.join("ip_local_port_range").display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn reading_a_missing_range_file_names_it() {
        let dir = TempDir::new("missing");
        let e = read_ephemeral_ports_from(&dir.0).unwrap_err();
        let SpecError::Read { path, source } = &e else {
            panic!("expected a read error, got {e:?}");
        };
        assert_eq!(path, &dir.0.join("ip_local_port_range"));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }

    #[test]
    fn reads_the_hosts_ephemeral_ports() {
        let ports = read_ephemeral_ports().unwrap();
        assert!(
            ports.range.0 >= 1 && ports.range.0 <= ports.range.1,
            "{ports:?}"
        );
    }
}
