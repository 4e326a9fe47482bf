//! Taking a detached container's veth out of sight at once, before its deletion: the
//! deletion itself waits for an RCU barrier (20-70 ms) and runs in the background
//! ([`super::reaper`]), but what users and the next attach see must be gone when a detach
//! returns. Each request here is one netlink round trip without that wait.

use super::{Netlink, WiringError, nl};
use futures::TryStreamExt;

impl Netlink {
    /// `ip link set DEV down`: its routes go (IPv4 routes through it, its IPv6 addresses
    /// and routes), and a veth's peer loses its carrier.
    pub async fn set_down(&self, index: u32) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .down()
            .execute()
            .await
            .map_err(nl(format!("setting interface #{index} down")))
    }

    /// `ip link set DEV nomaster`: a bridge port leaves its bridge, and the bridge forgets the
    /// forwarding entries it learned on it.
    pub async fn set_nomaster(&self, index: u32) -> Result<(), WiringError> {
        self.handle
            .link()
            .set(index)
            .nocontroller()
            .execute()
            .await
            .map_err(nl(format!("taking interface #{index} off its bridge")))
    }

    /// Removes every address (both families) of one interface, and with them the routes that
    /// came with them. An address already gone (a secondary that went with its primary) is
    /// fine.
    pub async fn flush_addresses(&self, index: u32) -> Result<(), WiringError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl(format!("listing the addresses of interface #{index}")))?;
        for m in msgs.into_iter().filter(|m| m.header.index == index) {
            match self.handle.address().del(m).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENODEV => {}
                Err(e) => {
                    return Err(nl(format!("removing an address of interface #{index}"))(e));
                }
            }
        }
        Ok(())
    }
}
