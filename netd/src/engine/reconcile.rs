//! The second half of a start: the saved endpoints reconciled with what the kernel holds
//! (issue 13: thousands of endpoints within seconds). Each step works from one listing of the
//! namespace's interfaces and changes only what differs: vanished endpoints are detached,
//! veths whose filters are in place cost one filter dump per hook (the others are attached
//! again), the maps are diffed against what their pins hold, and the state is written only
//! where the start changed it.

use std::collections::{HashMap, HashSet};

use super::store::Touched;
use super::{Engine, EngineError, timing};
use crate::spec::NetMode;

/// The interfaces of the calling thread's network namespace, (ifindex, name): one dump.
fn list_interfaces() -> Result<Vec<(u32, String)>, EngineError> {
    let list = nix::net::if_::if_nameindex()
        .map_err(|e| EngineError::Internal(format!("cannot list the interfaces: {e}")))?;
    Ok(list
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect())
}

impl Engine {
    /// The second half of [`Engine::start`]: reconciles the saved endpoints with what is
    /// there (vanished ones detached, veths' programs adopted, stale attachments pruned),
    /// writes the maps and records what the start changed.
    pub async fn reconcile_start(&mut self) -> Result<(), EngineError> {
        let mut t = timing::Phases::new();
        let engine = self;
        engine.reconcile().await?;
        t.mark("reconcile");
        engine.restore_ndp_proxies().await;
        t.mark("ndp");
        engine.sync_dataplane().await?;
        t.mark("maps");
        // Every hook runs this netd's programs now (the XDP pre-filter is set by the sync):
        // maps left in an older layout can go.
        if let Some(dp) = engine.dp.as_mut() {
            dp.finish_migration()?;
        }
        t.mark("migration");
        // The start's own changes (binding ids, network ids; reconciled endpoints recorded
        // theirs). A state.json from before the journal, or a stale journal, is taken over
        // with a snapshot (the store is behind); a journal due for compaction is compacted.
        let unsaved = std::mem::take(&mut engine.unsaved);
        let touched: Vec<Touched<'_>> = unsaved.iter().map(|n| Touched::Endpoint(n)).collect();
        engine.persist(&touched)?;
        t.mark("persist");
        engine.reconciling = false;
        t.log(
            "start",
            &format!("{} endpoints", engine.state.endpoints.len()),
        );
        Ok(())
    }

    /// Drops endpoints whose namespace is gone, re-attaches programs to the rest and prunes
    /// pinned attachments of interfaces that no longer belong to anyone.
    async fn reconcile(&mut self) -> Result<(), EngineError> {
        // Joiners (--net container:X) first: detaching X refuses while they are attached.
        let mut names: Vec<String> = self.state.endpoints.keys().cloned().collect();
        names.sort_by_key(|n| !matches!(self.state.endpoints[n].net, NetMode::Container(_)));
        let mut t = timing::Phases::new();
        // One dump of the namespace's interfaces, not one request per endpoint; the orphan
        // search and the prune work from it too (no request creates interfaces meanwhile:
        // changes wait for the reconcile).
        let interfaces = list_interfaces()?;
        let present: HashMap<&str, u32> =
            interfaces.iter().map(|(i, n)| (n.as_str(), *i)).collect();
        t.mark("list_links");
        // `netd daemon` on a terminal shows "k of N endpoints" while this runs.
        let steps = &crate::ops::progress::STEPS;
        steps.begin(names.len() as u64, "endpoints");
        for name in names {
            steps.step();
            let ep = &self.state.endpoints[&name];
            // A bridged endpoint's veth dies with its namespace, so the veth is what tells:
            // its netns path may be a bind mount the daemon cannot see (podman's CNI_NETNS
            // lives in podman's mount namespace). Without a veth, the path is all there is.
            let gone = match &ep.host_ifname {
                Some(h) => !present.contains_key(h.as_str()),
                None => crate::wiring::netns::open(&ep.netns).is_err(),
            };
            if gone {
                tracing::info!(container = %name, "network namespace or veth vanished while the daemon was away; cleaning up");
                // A cleanup that half fails must not keep the daemon from starting.
                if let Err(e) = self.detach(&name).await {
                    tracing::warn!(container = %name, "cleanup: {e}");
                }
            }
        }
        steps.end();
        t.mark("vanished");
        if let Some(dp) = self.dp.as_mut() {
            let mut keep: HashSet<&str> = self.uplinks.iter().map(String::as_str).collect();
            let mut veths = Vec::new();
            for h in self
                .state
                .endpoints
                .values()
                .filter_map(|e| e.host_ifname.as_deref())
            {
                keep.insert(h);
                match present.get(h) {
                    Some(&ifindex) => veths.push((ifindex, h)),
                    // A vanished endpoint whose cleanup failed: the attach names the error.
                    None => {
                        dp.attach_container_veth(h)?;
                    }
                }
            }
            let redone = dp.adopt_container_veths(&veths)?;
            if !redone.is_empty() {
                tracing::info!(
                    count = redone.len(),
                    of = veths.len(),
                    "container veths whose filters were missing or ran other programs were attached again"
                );
            }
            t.mark("adopt_veths");
            // Veths of endpoints detached by a daemon that died before deleting them: deleted
            // now, their filters kept until they are gone (never on the bridge unpoliced).
            let orphans = dp.orphaned_container_veths(&keep, &interfaces);
            for (_, ifname) in &orphans {
                keep.insert(ifname);
            }
            t.mark("orphans");
            dp.prune_among(&keep, &interfaces)?;
            t.mark("prune");
            for (ifindex, ifname) in orphans {
                tracing::info!(%ifname, "deleting the veth of a container detached before the restart");
                self.reaper
                    .queue(crate::wiring::reaper::Doomed { ifindex, ifname });
            }
        }
        t.log(
            "reconcile",
            &format!("{} endpoints", self.state.endpoints.len()),
        );
        Ok(())
    }

    /// NDP proxy entries do not outlive the host namespace's neighbour table being flushed,
    /// and the uplinks may have changed: put back what each endpoint needs (only endpoints
    /// with a global IPv6 address need any, or had some recorded).
    async fn restore_ndp_proxies(&mut self) {
        let names: Vec<String> = self
            .state
            .endpoints
            .values()
            .filter(|e| {
                e.ipv6.as_ref().is_some_and(|l| l.global.is_some()) || !e.ndp_proxy.is_empty()
            })
            .map(|e| e.name.clone())
            .collect();
        let mut changed = Vec::new();
        for n in names {
            let ep = self.state.endpoints[&n].clone();
            match self.add_ndp_proxy(&ep).await {
                Ok(on) if on != ep.ndp_proxy => {
                    if let Some(e) = self.state.endpoints.get_mut(&n) {
                        e.ndp_proxy = on;
                        changed.push(n.clone());
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(container = %n, "NDP proxy: {e}"),
            }
        }
        if !changed.is_empty() {
            let touched: Vec<Touched<'_>> = changed.iter().map(|n| Touched::Endpoint(n)).collect();
            if let Err(e) = self.persist(&touched) {
                tracing::warn!("{e}");
            }
        }
    }
}
