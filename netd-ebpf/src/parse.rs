//! Bounds-checked header access: Ethernet, IPv4 (IHL and options honoured) and the L4 fields
//! that NAT and policy need. Reads go through `bpf_skb_load_bytes`/`bpf_xdp_load_bytes`, so a
//! short packet is an error, never an out-of-bounds read, and the offsets may be variable.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use netd_common::{DROP_MALFORMED, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Offsets of IPv4 header fields in the frame.
pub const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub const IP_SADDR_OFF: usize = ETH_HLEN + 12;
pub const IP_DADDR_OFF: usize = ETH_HLEN + 16;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROB: u8 = 12;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the L4 fields of a [`Pkt`] hold.
/// TCP or UDP: `sport`/`dport` are the ports.
pub const L4_PORTS: u8 = 0;
/// ICMP echo request or reply: `sport` = `dport` = the echo id.
pub const L4_ECHO: u8 = 1;
/// ICMP error (destination unreachable, time exceeded, parameter problem): quotes a packet.
pub const L4_ICMP_ERR: u8 = 2;
/// Any other protocol or ICMP type: no ports (both 0).
pub const L4_OTHER: u8 = 3;

/// Not a fragment.
pub const FRAG_NONE: u8 = 0;
/// First fragment (offset 0, more fragments): carries the L4 header.
pub const FRAG_FIRST: u8 = 1;
/// A later fragment: no L4 header; ports come from `frag` (0 until then).
pub const FRAG_LATER: u8 = 2;

/// A frame the programs can read.
pub trait Packet {
    /// Reads a `T` at `off` bytes from the start of the frame.
    fn read<T: Copy>(&self, off: usize) -> Result<T, ()>;
    /// Length of the whole frame.
    fn frame_len(&self) -> u32;
}

impl Packet for TcContext {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Result<T, ()> {
        self.load(off).map_err(|_| ())
    }

    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.len()
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Result<T, ()> {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes at most size_of::<T>() bytes into `v` and fails (leaving it
        // unread) when the frame is shorter.
        let ret = unsafe {
            bpf_xdp_load_bytes(
                self.ctx,
                off as u32,
                v.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
            )
        };
        if ret == 0 {
            // SAFETY: fully written by the helper.
            Ok(unsafe { v.assume_init() })
        } else {
            Err(())
        }
    }

    #[inline(always)]
    fn frame_len(&self) -> u32 {
        // SAFETY: ctx is the xdp_md the kernel passed in.
        unsafe { bpf_xdp_get_buff_len(self.ctx) as u32 }
    }
}

/// A frame seen past `shift` bytes of VLAN tags: reads at `off` read the frame at
/// `off + shift`, so an 802.1Q/802.1ad-tagged frame parses like an untagged one (the tags sit
/// between the MAC addresses and the EtherType).
pub struct Untagged<'a, P> {
    pub frame: &'a P,
    pub shift: usize,
}

impl<P: Packet> Packet for Untagged<'_, P> {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Result<T, ()> {
        self.frame.read(off + self.shift)
    }

    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.frame.frame_len().saturating_sub(self.shift as u32)
    }
}

/// Bytes of VLAN tags (at most two: 802.1ad outside 802.1Q) before the frame's EtherType.
#[inline(always)]
pub fn vlan_tags_len<P: Packet>(p: &P) -> Result<usize, u32> {
    let mut shift = 0;
    let mut i = 0;
    while i < 2 {
        let et = p
            .read::<u16>(12 + shift)
            .map(u16::from_be)
            .map_err(|()| DROP_MALFORMED)?;
        if et != ETH_P_8021Q && et != ETH_P_8021AD {
            break;
        }
        shift += 4;
        i += 1;
    }
    Ok(shift)
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub csum: u16,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TcpHdr {
    ports: [u16; 2],
    seq: u32,
    ack: u32,
    doff: u8,
    flags: u8,
    window: u16,
    csum: u16,
    urg: u16,
}

/// The first 8 bytes of UDP and ICMP headers (and of a TCP header's ports).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L4Head {
    pub a: u16,
    pub b: u16,
    pub c: u16,
    pub d: u16,
}

/// An IPv4 packet's addresses and L4 identity. Addresses and ports are network byte order.
#[derive(Clone, Copy)]
pub struct Pkt {
    pub saddr: u32,
    pub daddr: u32,
    /// Offset of the L4 header in the frame (14 + IHL * 4).
    pub l4_off: u32,
    pub sport: u16,
    pub dport: u16,
    /// IPv4 identification (network byte order), for fragments.
    pub ip_id: u16,
    pub proto: u8,
    /// `L4_*`.
    pub kind: u8,
    /// `FRAG_*`.
    pub frag: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
}

impl Pkt {
    /// Does this packet carry the L4 header (and its checksum)?
    #[inline(always)]
    pub fn has_l4(&self) -> bool {
        self.frag != FRAG_LATER
    }
}

/// The frame's EtherType (host order).
#[inline(always)]
pub fn ethertype<P: Packet>(p: &P) -> Result<u16, u32> {
    p.read::<u16>(12)
        .map(u16::from_be)
        .map_err(|()| DROP_MALFORMED)
}

/// Parses an Ethernet frame: `Ok(None)` when it is not IPv4 (ARP, IPv6, VLAN: passed on),
/// `Err(DROP_MALFORMED)` when it claims IPv4 but its headers are truncated or inconsistent.
#[inline(always)]
pub fn ipv4<P: Packet>(p: &P) -> Result<Option<Pkt>, u32> {
    if ethertype(p)? != ETH_P_IP {
        return Ok(None);
    }
    ipv4_hdr(p).map(Some)
}

#[inline(always)]
fn ipv4_hdr<P: Packet>(p: &P) -> Result<Pkt, u32> {
    let ip: Ipv4Hdr = p.read(ETH_HLEN).map_err(|()| DROP_MALFORMED)?;
    let ihl = u32::from(ip.ver_ihl & 0x0f) * 4;
    if ip.ver_ihl >> 4 != 4 || ihl < 20 {
        return Err(DROP_MALFORMED);
    }
    let tot_len = u32::from(u16::from_be(ip.tot_len));
    let avail = p.frame_len().saturating_sub(ETH_HLEN as u32);
    // tot_len 0 is how BIG TCP (GSO packets over 64 KiB) marks its length as "the skb's".
    if tot_len != 0 && (tot_len < ihl || tot_len > avail) || ihl > avail {
        return Err(DROP_MALFORMED);
    }
    let l4_len = if tot_len == 0 {
        avail - ihl
    } else {
        tot_len - ihl
    };
    let frag_off = u16::from_be(ip.frag_off);
    let frag = if frag_off & 0x1fff != 0 {
        FRAG_LATER
    } else if frag_off & 0x2000 != 0 {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
    let mut pkt = Pkt {
        saddr: ip.saddr,
        daddr: ip.daddr,
        l4_off: ETH_HLEN as u32 + ihl,
        sport: 0,
        dport: 0,
        ip_id: ip.id,
        proto: ip.proto,
        kind: L4_OTHER,
        frag,
        tcp_flags: 0,
        icmp_type: 0,
    };
    match ip.proto {
        IPPROTO_TCP => pkt.kind = L4_PORTS,
        IPPROTO_UDP => pkt.kind = L4_PORTS,
        IPPROTO_ICMP => pkt.kind = L4_ECHO, // refined below once the type is known
        _ => return Ok(pkt),
    }
    if frag == FRAG_LATER {
        return Ok(pkt);
    }
    l4_hdr(p, &mut pkt, l4_len)?;
    Ok(pkt)
}

#[inline(always)]
fn l4_hdr<P: Packet>(p: &P, pkt: &mut Pkt, l4_len: u32) -> Result<(), u32> {
    let off = pkt.l4_off as usize;
    if pkt.proto == IPPROTO_TCP {
        let t: TcpHdr = p.read(off).map_err(|()| DROP_MALFORMED)?;
        if l4_len < 20 || u32::from(t.doff >> 4) * 4 < 20 {
            return Err(DROP_MALFORMED);
        }
        pkt.sport = t.ports[0];
        pkt.dport = t.ports[1];
        pkt.tcp_flags = t.flags;
        return Ok(());
    }
    let h: L4Head = p.read(off).map_err(|()| DROP_MALFORMED)?;
    if l4_len < 8 {
        return Err(DROP_MALFORMED);
    }
    if pkt.proto == IPPROTO_UDP {
        pkt.sport = h.a;
        pkt.dport = h.b;
        return Ok(());
    }
    // ICMP: type and code are the first two bytes.
    let ty = (u16::from_be(h.a) >> 8) as u8;
    pkt.icmp_type = ty;
    pkt.kind = match ty {
        ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
            pkt.sport = h.c;
            pkt.dport = h.c;
            L4_ECHO
        }
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROB => L4_ICMP_ERR,
        _ => L4_OTHER,
    };
    Ok(())
}
