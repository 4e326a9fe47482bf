//! Links: `--link` allowances (ICC exceptions) under `--icc false`.

use bytemuck::{Pod, Zeroable};

/// `HashMap<LinkKey, LinkPorts>`: `--link` allowances under `--icc false`.
pub const MAP_LINKS: &str = "NETD_LINKS";
pub const LINKS_MAX: u32 = 65536;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct LinkKey {
    /// The linking container (client), network byte order.
    pub src_ip: u32,
    /// The linked container (server), network byte order.
    pub dst_ip: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<LinkKey>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PortPair {
    /// Host byte order, inclusive.
    pub start: u16,
    pub end: u16,
}

pub const LINK_PORT_RANGES: usize = 16;

/// The target's exposed port ranges the linking container may reach.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LinkPorts {
    pub count: u32,
    pub _pad: u32,
    pub ranges: [PortPair; LINK_PORT_RANGES],
}
const _: () = assert!(core::mem::size_of::<LinkPorts>() == 72);

impl LinkPorts {
    /// Does the allowance cover `port` (host order)?
    #[inline(always)]
    pub fn allows(&self, port: u16) -> bool {
        let mut i = 0;
        while i < LINK_PORT_RANGES {
            if (i as u32) < self.count && port >= self.ranges[i].start && port <= self.ranges[i].end
            {
                return true;
            }
            i += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ports_allow() {
        let mut lp = LinkPorts {
            count: 2,
            ..Default::default()
        };
        lp.ranges[0] = PortPair { start: 80, end: 80 };
        lp.ranges[1] = PortPair {
            start: 8000,
            end: 8010,
        };
        lp.ranges[2] = PortPair { start: 22, end: 22 };
        assert!(lp.allows(80) && lp.allows(8005) && !lp.allows(22) && !lp.allows(81));
    }
}
