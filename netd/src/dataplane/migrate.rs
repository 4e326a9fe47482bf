//! Migrating pinned maps across a layout change (hitless upgrade).
//!
//! Every map has a layout version ([`netd_common::MapLayout::version`]) that is part of its pin
//! name (see [`PinLayout::map_at`]). A netd that finds a map pinned at an older version than
//! its own:
//!
//! 1. [`plan`]: checks the old pin against that version's layout
//!    ([`netd_common::MAP_LAYOUT_HISTORY`]) and finds the conversions that lead to the current
//!    one ([`CONVERSIONS`]); a pin of a *newer* version (a downgrade) or one without a way to
//!    the current layout is refused before anything is created.
//! 2. The loader creates the new map at the new pin name (same `max_entries` as the old one),
//!    and [`Pending::copy`] copies every entry converted, while the old programs keep running
//!    on the old map.
//! 3. Attaching swaps the programs in (`bpf_link_update` for TCX and XDP links, `tc filter
//!    replace` for netlink filters): from then on the interfaces use the new map.
//! 4. [`super::Dataplane::finish_migration`] waits until no loaded program uses the old map,
//!    copies what changed in between (the delta: entries the old programs created or updated
//!    after step 2, where the per-map `prefer_old` rule decides which copy wins), and unpins
//!    the old map.
//!
//! An old pin of version 1 (named like a netd from before versioning expects) is replaced by a
//! tombstone: a one-entry BPF array named [`TOMBSTONE`] holding the version the map moved to.
//! Such a netd refuses it as an incompatible pin instead of starting over empty maps, and a
//! versioned netd older than that version refuses it as a downgrade.
//!
//! A start that dies half-way leaves both pins; the next start resumes at step 2 (copying is
//! a merge, never a blind overwrite). New maps slot in by adding their old layout to
//! `MAP_LAYOUT_HISTORY` and a [`Conversion`] here.

use std::{
    os::fd::{AsFd as _, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use netd_common::{
    CtEntry, MAP_CT, MAP_LAYOUT_HISTORY, MAP_LAYOUTS, MapLayout, layouts::CtEntryV1,
};

use super::{DataplaneError, pins::PinLayout, sys};

/// An entry (key, value) as raw bytes.
type Entry = (Vec<u8>, Vec<u8>);

/// One step of a map's layout history: entries of version `from` become entries of version
/// `from + 1`.
pub(super) struct Conversion {
    pub map: &'static str,
    pub from: u32,
    /// An old entry (key, value) as the next version's (key, value).
    pub convert: fn(&[u8], &[u8]) -> Entry,
    /// For a key both maps hold: does the (converted) old value win over the new map's? The
    /// new programs may have updated the flow already, or the old ones may have seen it last.
    pub prefer_old: fn(&[u8], &[u8]) -> bool,
}

/// Every layout change netd can migrate; a new one adds a line.
pub(super) const CONVERSIONS: &[Conversion] = &[Conversion {
    map: MAP_CT,
    from: 1,
    convert: ct_v1_to_v2,
    prefer_old: ct_seen_later,
}];

fn ct_v1_to_v2(key: &[u8], value: &[u8]) -> Entry {
    let old: CtEntryV1 = bytemuck::pod_read_unaligned(value);
    let new = CtEntry::from(old);
    (key.to_vec(), bytemuck::bytes_of(&new).to_vec())
}

/// The copy whose flow direction saw the later packet wins (the other is stale).
fn ct_seen_later(old: &[u8], new: &[u8]) -> bool {
    let old: CtEntry = bytemuck::pod_read_unaligned(old);
    let new: CtEntry = bytemuck::pod_read_unaligned(new);
    old.last_seen_ns > new.last_seen_ns
}

/// A map being migrated from an old pin to the current one.
pub(super) struct Pending {
    pub layout: &'static MapLayout,
    pub from: u32,
    pub old_path: PathBuf,
    pub new_path: PathBuf,
    old: OwnedFd,
    old_id: u32,
    old_layout: &'static MapLayout,
    /// The old map's size, which the new map keeps (as a reused pin keeps its size).
    pub max_entries: u32,
    steps: Vec<&'static Conversion>,
}

/// The name of the placeholder map left at a version-1 pin path (see the module docs).
pub(super) const TOMBSTONE: &str = "NETD_MOVED";

/// The version a tombstone at `path` points to, or `None` if `path` holds no tombstone.
fn tombstone_version(path: &std::path::Path) -> Option<u32> {
    let info = aya::maps::MapInfo::from_pin(path).ok()?;
    let is_array = info.map_type().map(|t| t as u32).ok() == Some(2);
    if !is_array || info.key_size() != 4 || info.value_size() != 4 {
        return None;
    }
    if info.name_as_str() != Some(TOMBSTONE) {
        return None;
    }
    let fd = sys::obj_get(path).ok()?;
    let mut v = [0u8; 4];
    sys::map_lookup_raw(fd.as_fd(), &0u32.to_ne_bytes(), &mut v).ok()?;
    Some(u32::from_ne_bytes(v))
}

/// Looks at every map's pins and returns the migrations this start needs; refuses downgrades,
/// pins whose layout is not what their version says, and versions netd cannot convert.
pub(super) fn plan(pins: &PinLayout) -> Result<Vec<Pending>, DataplaneError> {
    let mut out = Vec::new();
    for l in MAP_LAYOUTS {
        let mut versions = pins.pinned_versions(l.name)?;
        if versions.first() == Some(&1) {
            if let Some(moved_to) = tombstone_version(&pins.map_at(l.name, 1)) {
                versions.remove(0);
                if moved_to > l.version {
                    return Err(DataplaneError::Downgrade {
                        map: l.name,
                        path: pins.map_at(l.name, 1),
                        found: moved_to,
                        ours: l.version,
                    });
                }
            }
        }
        if let Some(&found) = versions.iter().find(|&&v| v > l.version) {
            return Err(DataplaneError::Downgrade {
                map: l.name,
                path: pins.map_at(l.name, found),
                found,
                ours: l.version,
            });
        }
        if versions.contains(&l.version) {
            check_layout(&pins.map_at(l.name, l.version), l)?;
        }
        for &from in versions.iter().filter(|&&v| v < l.version) {
            let old_path = pins.map_at(l.name, from);
            let no_way = || DataplaneError::NoMigration {
                map: l.name,
                path: old_path.clone(),
                from,
                to: l.version,
            };
            let old_layout = MAP_LAYOUT_HISTORY
                .iter()
                .find(|h| h.name == l.name && h.version == from)
                .ok_or_else(no_way)?;
            let info = check_layout(&old_path, old_layout)?;
            let mut steps = Vec::new();
            for v in from..l.version {
                let step = CONVERSIONS
                    .iter()
                    .find(|c| c.map == l.name && c.from == v)
                    .ok_or_else(no_way)?;
                steps.push(step);
            }
            let old = sys::obj_get(&old_path)
                .map_err(|e| DataplaneError::io("open", old_path.clone(), e))?;
            out.push(Pending {
                layout: l,
                from,
                new_path: pins.map_at(l.name, l.version),
                old_path,
                old,
                old_id: info.id(),
                old_layout,
                max_entries: info.max_entries(),
                steps,
            });
        }
    }
    Ok(out)
}

/// Refuses a pin whose kernel type or sizes are not `want`'s.
fn check_layout(
    path: &std::path::Path,
    want: &MapLayout,
) -> Result<aya::maps::MapInfo, DataplaneError> {
    let info = aya::maps::MapInfo::from_pin(path).map_err(|source| DataplaneError::MapPin {
        path: path.to_owned(),
        source,
    })?;
    let map_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
    let found = (map_type, info.key_size(), info.value_size());
    let w = (want.map_type, want.key_size, want.value_size);
    if found != w {
        return Err(DataplaneError::IncompatiblePin {
            path: path.to_owned(),
            found: format!("type {} key {} value {}", found.0, found.1, found.2),
            want: format!(
                "layout version {}: type {} key {} value {}",
                want.version, w.0, w.1, w.2
            ),
        });
    }
    Ok(info)
}

/// What one copy pass did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Copied {
    pub copied: u32,
    /// Keys the new map already held with a value that won over the old one's.
    pub kept: u32,
}

const PERCPU_TYPES: [u32; 3] = [5, 6, 10]; // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH

fn value_len(l: &MapLayout) -> Result<(usize, usize), DataplaneError> {
    if PERCPU_TYPES.contains(&l.map_type) {
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| DataplaneError::io("read", what, e))?;
        Ok(((l.value_size as usize).next_multiple_of(8), cpus))
    } else {
        Ok((l.value_size as usize, 1))
    }
}

impl Pending {
    /// Copies every entry of the old map into the new one (`new`, an fd of the current pin),
    /// converted; for a key both hold, the conversion's `prefer_old` decides.
    pub fn copy(&self) -> Result<Copied, DataplaneError> {
        let err = |e| DataplaneError::Migrate {
            map: self.layout.name,
            from: self.from,
            to: self.layout.version,
            source: e,
        };
        let new = sys::obj_get(&self.new_path).map_err(err)?;
        let (old_slot, cpus) = value_len(self.old_layout)?;
        let (new_slot, _) = value_len(self.layout)?;
        let mut key = vec![0u8; self.old_layout.key_size as usize];
        let mut next = key.clone();
        let mut old_val = vec![0u8; old_slot * cpus];
        let mut cur = vec![0u8; new_slot * cpus];
        let mut done = Copied::default();
        let mut first = true;
        // A hash walk restarts when the current key is deleted under it: bounded.
        let mut budget = u64::from(self.max_entries) * 4 + 16;
        while sys::map_next_key_raw(self.old.as_fd(), (!first).then_some(&key[..]), &mut next)
            .map_err(err)?
        {
            first = false;
            std::mem::swap(&mut key, &mut next);
            budget -= 1;
            if budget == 0 {
                break;
            }
            if !sys::map_lookup_raw(self.old.as_fd(), &key, &mut old_val).map_err(err)? {
                continue;
            }
            let mut new_key = Vec::new();
            let mut new_val = Vec::with_capacity(new_slot * cpus);
            for c in 0..cpus {
                let mut k = key.clone();
                let mut v = old_val[c * old_slot..][..self.old_layout.value_size as usize].to_vec();
                for step in &self.steps {
                    (k, v) = (step.convert)(&k, &v);
                }
                v.resize(new_slot, 0);
                new_val.extend_from_slice(&v);
                new_key = k;
            }
            if sys::map_lookup_raw(new.as_fd(), &new_key, &mut cur).map_err(err)? {
                let last = self.steps.last().expect("a migration has a step");
                let vs = self.layout.value_size as usize;
                if cur == new_val || !(last.prefer_old)(&new_val[..vs], &cur[..vs]) {
                    done.kept += 1;
                    continue;
                }
            }
            sys::map_update_raw(new.as_fd(), &new_key, &new_val).map_err(err)?;
            done.copied += 1;
        }
        Ok(done)
    }

    /// Removes the old pin; a version-1 one becomes a tombstone, swapped in by rename.
    pub fn retire(&self) -> Result<(), DataplaneError> {
        if self.from != 1 {
            return super::pins::remove_file(&self.old_path);
        }
        let err = |e| DataplaneError::Migrate {
            map: self.layout.name,
            from: self.from,
            to: self.layout.version,
            source: e,
        };
        let mut tmp = self.old_path.clone().into_os_string();
        tmp.push("@moved");
        let tmp = PathBuf::from(tmp);
        super::pins::remove_file(&tmp)?;
        let stone = sys::create_u32_array(TOMBSTONE, self.layout.version).map_err(err)?;
        sys::obj_pin(stone.as_fd(), &tmp).map_err(err)?;
        std::fs::rename(&tmp, &self.old_path).map_err(err)
    }

    /// Waits (up to `limit`) until no loaded program uses the old map; returns the programs
    /// that still do when the time is up.
    pub fn wait_unused(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let users: Vec<String> = aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .filter(|p| {
                    p.map_ids()
                        .ok()
                        .flatten()
                        .is_some_and(|ids| ids.contains(&self.old_id))
                })
                .map(|p| format!("{} (id {})", p.name_as_str().unwrap_or("?"), p.id()))
                .collect();
            if users.is_empty() || Instant::now() >= deadline {
                return users;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
