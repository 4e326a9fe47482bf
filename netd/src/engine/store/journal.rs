//! The journal's records and framing: `u32 length (LE) | u32 crc32 of the payload (LE) |
//! payload (JSON)`, read back record by record with a torn tail dropped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::super::state::{Endpoint, PortBinding, State, StateError};
use super::Meta;
use crate::spec::PublishSpec;

/// A record larger than this is damage, not data.
const MAX_RECORD: u32 = 256 << 20;
pub(super) const FRAME: usize = 8;

/// One journal record as read back. New kinds may be added; existing ones keep their shape
/// (fields added later carry serde defaults).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Record {
    Header {
        generation: u64,
    },
    Meta(Meta),
    Held(BTreeMap<Ipv4Addr, String>),
    PutEndpoint(Box<Endpoint>),
    RemoveEndpoint {
        name: String,
    },
    AddPorts {
        endpoint: String,
        ports: Vec<PortBinding>,
        publish: Vec<PublishSpec>,
    },
}

/// The same records as written (borrowed: an endpoint is not copied to be written).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RecordOut<'a> {
    Header {
        generation: u64,
    },
    Meta(&'a Meta),
    Held(&'a BTreeMap<Ipv4Addr, String>),
    PutEndpoint(&'a Endpoint),
    RemoveEndpoint {
        name: &'a str,
    },
    AddPorts {
        endpoint: &'a str,
        ports: &'a [PortBinding],
        publish: &'a [PublishSpec],
    },
}

pub(super) fn frame(out: &mut Vec<u8>, rec: &RecordOut<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME]);
    serde_json::to_writer(&mut *out, rec).expect("records serialise");
    let payload = &out[start + FRAME..];
    let len = u32::try_from(payload.len()).expect("record under 4 GiB");
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
}

/// The journal's records and where the valid part ends.
pub(super) struct Parsed {
    pub(super) records: Vec<(u64, Record)>,
    /// Offset after the last valid record; bytes after it are a torn tail.
    pub(super) valid_len: u64,
}

pub(super) fn parse_journal(path: &Path, data: &[u8]) -> Result<Parsed, StateError> {
    let corrupt = |offset: usize, why: String| StateError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        why,
    };
    let mut records = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        let torn = rest.len() < FRAME || rest.iter().all(|&b| b == 0);
        if torn {
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(corrupt(
                off,
                format!("record length {len} is not plausible"),
            ));
        }
        let end = FRAME + len as usize;
        if rest.len() < end {
            // Cut short by a crash during the append.
            break;
        }
        let payload = &rest[FRAME..end];
        if crc32fast::hash(payload) != crc {
            if rest.len() == end {
                // The last record, damaged: the append that a crash interrupted.
                break;
            }
            return Err(corrupt(off, "checksum mismatch".into()));
        }
        let rec: Record = serde_json::from_slice(payload)
            .map_err(|e| corrupt(off, format!("unreadable record: {e}")))?;
        records.push((off as u64, rec));
        off += end;
    }
    Ok(Parsed {
        records,
        valid_len: off as u64,
    })
}

pub(super) fn apply(state: &mut State, rec: Record) {
    match rec {
        Record::Header { .. } => {}
        Record::Meta(m) => {
            state.network = m.network;
            state.filters = m.filters;
            state.networks = m.networks;
            state.next_binding_id = m.next_binding_id;
            state.held6 = m.held6;
        }
        Record::Held(h) => state.held = h,
        Record::PutEndpoint(e) => {
            state.endpoints.insert(e.name.clone(), *e);
        }
        Record::RemoveEndpoint { name } => {
            state.endpoints.remove(&name);
        }
        Record::AddPorts {
            endpoint,
            ports,
            publish,
        } => {
            if let Some(e) = state.endpoints.get_mut(&endpoint) {
                e.ports.extend(ports);
                e.publish.extend(publish);
            }
        }
    }
}
