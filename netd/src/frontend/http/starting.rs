//! Read answers while a restarted daemon reconciles (issue 13): the reconcile of thousands of
//! saved endpoints holds the engine for seconds, and the API must answer sooner. Before the
//! reconcile starts, the daemon takes a [`Starting`] snapshot of the read answers (status,
//! endpoints, networks, filters), computed by the engine itself from the saved state; until
//! the reconcile is done those reads are answered from it, with `"state": "reconciling"` in
//! the status (a brief one: without the lists of attached programs, maps and counters). Every other request (anything that changes something, and the counters and
//! conntrack reads) waits for the engine as before, so no change acts on a half-reconciled
//! state.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Serialize;

use crate::engine::Engine;
use crate::engine::view::SavedEndpoints;

/// The read answers of an engine that is not reconciled yet: (HTTP status, JSON body). The
/// status and the networks are made at once; the endpoints (thousands, with tens of thousands
/// of published ports) from a copy of their records, on the first request that wants them,
/// so the first answer does not wait for their views.
pub struct Starting {
    status: (u16, Vec<u8>),
    saved: SavedEndpoints,
    endpoints: OnceLock<Vec<u8>>,
    networks: Vec<u8>,
    network: HashMap<String, Vec<u8>>,
    filters: Vec<u8>,
}

static CURRENT: RwLock<Option<Arc<Starting>>> = RwLock::new(None);

fn body<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_else(|e| e.to_string().into_bytes())
}

impl Starting {
    /// The answers `engine` gives now.
    pub fn capture(engine: &Engine) -> Self {
        let status = (200, body(&engine.brief_status()));
        let nets = engine.networks();
        let network = nets
            .iter()
            .filter_map(|n| {
                let v = engine.network(&n.name).ok()?;
                Some((n.name.clone(), body(&v)))
            })
            .collect();
        Self {
            status,
            saved: engine.saved_endpoints(),
            endpoints: OnceLock::new(),
            networks: body(&nets),
            network,
            filters: body(&engine.filters()),
        }
    }

    /// Answers reads from `self` until [`Starting::done`].
    pub fn install(self) {
        *CURRENT.write().expect("starting snapshot") = Some(Arc::new(self));
    }

    /// The engine is reconciled: reads go to it again.
    pub fn done() {
        *CURRENT.write().expect("starting snapshot") = None;
    }

    /// The answer to `GET segs` while the engine reconciles, None when it does not (or the
    /// request is not a read answered here).
    pub(super) fn answer(method: &str, segs: &[&str]) -> Option<(u16, Vec<u8>)> {
        if method != "GET" {
            return None;
        }
        let s = CURRENT.read().ok()?.clone()?;
        Some(match segs {
            ["v1", "status"] => s.status.clone(),
            ["v1", "endpoints"] => (
                200,
                s.endpoints.get_or_init(|| body(&s.saved.list())).clone(),
            ),
            // Other names (aliases, unknown ones) wait for the engine's own answer.
            ["v1", "endpoints", name] => (200, body(&s.saved.inspect(name)?)),
            ["v1", "networks"] => (200, s.networks.clone()),
            ["v1", "networks", name] => (200, s.network.get(*name)?.clone()),
            ["v1", "filters"] => (200, s.filters.clone()),
            _ => return None,
        })
    }
}
