//! Frame building from scratch (IPv4/IPv6, ARP, VLAN) and ICMP-quoted tuples.

use super::*;

// ------------------------------------------------------------------------------------------
// Frames.

/// An Ethernet/IPv4 frame under construction.
#[derive(Clone)]
pub struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    saddr: [u8; 4],
    daddr: [u8; 4],
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    tcp_seq: u32,
    tcp_ack: u32,
    icmp_type: u8,
    icmp_code: u8,
    ip_id: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
    udp_csum: bool,
}

impl Frame {
    fn new(saddr: [u8; 4], daddr: [u8; 4], proto: u8, sport: u16, dport: u16) -> Self {
        Self {
            src_mac: CLIENT_MAC,
            dst_mac: UPLINK_MAC,
            saddr,
            daddr,
            proto,
            sport,
            dport,
            tcp_flags: TCP_ACK,
            tcp_seq: 0x0102_0304,
            tcp_ack: 0,
            icmp_type: 0,
            icmp_code: 0,
            ip_id: 0x1111,
            options: Vec::new(),
            payload: Vec::new(),
            udp_csum: true,
        }
    }

    pub fn tcp(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16) -> Self {
        Self::new(s, d, IPPROTO_TCP, sport, dport)
    }

    pub fn udp(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16) -> Self {
        Self::new(s, d, IPPROTO_UDP, sport, dport)
    }

    /// ICMP echo request/reply with `id`.
    pub fn echo(s: [u8; 4], d: [u8; 4], ty: u8, id: u16) -> Self {
        let mut f = Self::new(s, d, IPPROTO_ICMP, id, 7);
        f.icmp_type = ty;
        f
    }

    /// ICMP error of `ty`/`code` quoting `quoted` (an IPv4 packet without Ethernet header).
    pub fn icmp_error(s: [u8; 4], d: [u8; 4], ty: u8, code: u8, quoted: &[u8]) -> Self {
        let mut f = Self::new(s, d, IPPROTO_ICMP, 0, 0);
        f.icmp_type = ty;
        f.icmp_code = code;
        f.payload = quoted.to_vec();
        f
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The TCP sequence number (host order).
    pub fn seq(mut self, seq: u32) -> Self {
        self.tcp_seq = seq;
        self
    }

    /// The TCP acknowledgement number (host order).
    pub fn ack(mut self, ack: u32) -> Self {
        self.tcp_ack = ack;
        self
    }

    pub fn flags(mut self, f: u8) -> Self {
        self.tcp_flags = f;
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    pub fn options(mut self, o: &[u8]) -> Self {
        assert!(o.len().is_multiple_of(4) && o.len() <= 40);
        self.options = o.to_vec();
        self
    }

    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip_id = id;
        self
    }

    pub fn no_udp_csum(mut self) -> Self {
        self.udp_csum = false;
        self
    }

    /// The L4 header and payload, checksummed.
    fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        match self.proto {
            IPPROTO_TCP => {
                l4.extend_from_slice(&self.sport.to_be_bytes());
                l4.extend_from_slice(&self.dport.to_be_bytes());
                l4.extend_from_slice(&self.tcp_seq.to_be_bytes());
                l4.extend_from_slice(&self.tcp_ack.to_be_bytes());
                l4.extend_from_slice(&[0x50, self.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
            }
            IPPROTO_UDP => {
                l4.extend_from_slice(&self.sport.to_be_bytes());
                l4.extend_from_slice(&self.dport.to_be_bytes());
                l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            _ => {
                l4.extend_from_slice(&[self.icmp_type, self.icmp_code, 0, 0]);
                if self.icmp_type == ICMP_ECHO_REQUEST || self.icmp_type == ICMP_ECHO_REPLY {
                    l4.extend_from_slice(&self.sport.to_be_bytes());
                    l4.extend_from_slice(&0x0001u16.to_be_bytes());
                } else {
                    l4.extend_from_slice(&[0; 4]);
                }
            }
        }
        l4.extend_from_slice(&self.payload);
        let (off, pseudo) = match self.proto {
            IPPROTO_TCP => (16, true),
            IPPROTO_UDP => (6, true),
            _ => (2, false),
        };
        if self.proto != IPPROTO_UDP || self.udp_csum {
            let mut c = if pseudo {
                l4_checksum(self.saddr, self.daddr, self.proto, &l4)
            } else {
                !fold(sum16(&l4))
            };
            if self.proto == IPPROTO_UDP && c == 0 {
                c = 0xffff;
            }
            l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
        }
        l4
    }

    fn ip_header(&self, l4_len: usize, frag_field: u16) -> Vec<u8> {
        let ihl = 20 + self.options.len();
        let mut h = vec![0x40 | (ihl / 4) as u8, 0];
        h.extend_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
        h.extend_from_slice(&self.ip_id.to_be_bytes());
        h.extend_from_slice(&frag_field.to_be_bytes());
        h.extend_from_slice(&[64, self.proto, 0, 0]);
        h.extend_from_slice(&self.saddr);
        h.extend_from_slice(&self.daddr);
        h.extend_from_slice(&self.options);
        let c = !fold(sum16(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn eth(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut f = self.eth();
        f.extend_from_slice(&self.ip_header(l4.len(), 0));
        f.extend_from_slice(&l4);
        f
    }

    /// The IPv4 packet without its Ethernet header (for quoting in ICMP errors).
    pub fn ip_packet(&self) -> Vec<u8> {
        self.bytes()[14..].to_vec()
    }

    /// Two fragments: the first carries `first_len` bytes (a multiple of 8) of the L4
    /// datagram, the second the rest.
    pub fn fragments(&self, first_len: usize) -> (Vec<u8>, Vec<u8>) {
        assert_eq!(first_len % 8, 0);
        let l4 = self.l4();
        let mut a = self.eth();
        a.extend_from_slice(&self.ip_header(first_len, 0x2000));
        a.extend_from_slice(&l4[..first_len]);
        let mut b = self.eth();
        b.extend_from_slice(&self.ip_header(l4.len() - first_len, (first_len / 8) as u16));
        b.extend_from_slice(&l4[first_len..]);
        (a, b)
    }
}

/// `frame` with another Ethernet source (and the bridge as destination).
pub fn with_macs(frame: &[u8], src: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&BRIDGE_MAC);
    f[6..12].copy_from_slice(&src);
    f
}

/// An ARP request from (sha, spa) for tpa.
pub fn arp_frame(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// `frame` with a VLAN tag (TPID `tpid`: 0x8100 for 802.1Q, 0x88a8 for 802.1ad; VLAN id 5)
/// after the MAC addresses.
pub fn vlan_tagged(frame: &[u8], tpid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&[0, 5]);
    f.extend_from_slice(&frame[12..]);
    f
}

/// A minimal IPv6 frame (UDP to ff02::1) from `mac`.
pub fn ipv6_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
    f
}

/// What an ICMP error quotes: the IPv4 header and 8 bytes of `f`.
pub fn quote(f: &Frame) -> Vec<u8> {
    let p = f.ip_packet();
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[..ihl + 8].to_vec()
}

/// (saddr, daddr, sport, dport) of the packet an ICMP error frame quotes.
pub fn quoted_tuple(frame: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let inner = 14 + ihl(frame) + 8;
    let mut f = frame[..14].to_vec();
    f.extend_from_slice(&frame[inner..]);
    tuple(&f)
}

/// The quoted IPv4 header's checksum, and the quoted echo's ICMP checksum when it is one.
pub fn assert_quoted_csums(frame: &[u8]) {
    let inner = 14 + ihl(frame) + 8;
    let ihl_in = usize::from(frame[inner] & 0x0f) * 4;
    assert_eq!(
        fold(sum16(&frame[inner..inner + ihl_in])),
        0xffff,
        "quoted IPv4 header checksum"
    );
}
