//! `netd monitor --pcap FILE`: the dropped packets' heads in the classic pcap format (what
//! tcpdump -r and tshark read): microsecond timestamps, LINKTYPE_ETHERNET, snaplen
//! [`netd_common::EVENT_HEAD_MAX`], each record's original length the packet's.

use std::io::Write;

/// pcap's magic for microsecond timestamps, written in host order (readers detect it).
const MAGIC_US: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;

/// The 24-byte file header.
pub fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&MAGIC_US.to_ne_bytes());
    h.extend_from_slice(&2u16.to_ne_bytes());
    h.extend_from_slice(&4u16.to_ne_bytes());
    h.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
    h.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
    h.extend_from_slice(&(netd_common::EVENT_HEAD_MAX as u32).to_ne_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

/// One record: 16-byte header, then `data` (the captured head) of a packet `orig_len` long.
pub fn record(time_ns: u64, data: &[u8], orig_len: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(16 + data.len());
    r.extend_from_slice(&((time_ns / 1_000_000_000) as u32).to_ne_bytes());
    r.extend_from_slice(&(((time_ns % 1_000_000_000) / 1000) as u32).to_ne_bytes());
    r.extend_from_slice(&(data.len() as u32).to_ne_bytes());
    r.extend_from_slice(&orig_len.max(data.len() as u32).to_ne_bytes());
    r.extend_from_slice(data);
    r
}

/// A pcap file being written; every record is flushed at once, so `tcpdump -r` sees the
/// packets while the monitor still runs.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&header())?;
        out.flush()?;
        Ok(Self { out })
    }

    pub fn packet(&mut self, time_ns: u64, data: &[u8], orig_len: u32) -> std::io::Result<()> {
        self.out.write_all(&record(time_ns, data, orig_len))?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let h = header();
        assert_eq!(h.len(), 24);
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), MAGIC_US);
        assert_eq!(u32::from_ne_bytes(h[20..24].try_into().unwrap()), 1);
        let r = record(1_500_000_123_456, &[1, 2, 3], 60);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 1500);
        assert_eq!(u32::from_ne_bytes(r[4..8].try_into().unwrap()), 123);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 3);
        assert_eq!(u32::from_ne_bytes(r[12..16].try_into().unwrap()), 60);
        assert_eq!(&r[16..], &[1, 2, 3]);
    }
}
