//! The pin directory on a host whose /sys/fs/bpf is not a bpffs (a minimal VM, a fresh
//! machine): the dataplane mounts one at /sys/fs/bpf and pins under it. Runs in a private
//! mount namespace (a thread that unshared CLONE_NEWNS with every mount made private), so the
//! machine's own mounts never change and the bpffs vanishes with the thread.

use std::path::{Path, PathBuf};

use netd::dataplane::{Dataplane, DataplaneConfig};
use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::unique;

fn is_bpffs(p: &Path) -> bool {
    statfs(p).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Runs `f` on a thread in a new mount namespace whose mounts are all private, with
/// /sys/fs/bpf unmounted (inside that namespace only) when it is a bpffs.
fn in_private_mounts<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make every mount private");
            while is_bpffs(Path::new("/sys/fs/bpf")) {
                umount2("/sys/fs/bpf", MntFlags::MNT_DETACH).expect("umount /sys/fs/bpf");
            }
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn config(pin_dir: PathBuf) -> DataplaneConfig {
    DataplaneConfig {
        pin_dir,
        ct_max: 1024,
    }
}

#[test]
fn pin_dir_under_sys_fs_bpf_mounts_a_bpffs_there() {
    let outside_was_bpffs = is_bpffs(Path::new("/sys/fs/bpf"));
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", unique("-netd")));
    in_private_mounts(|| {
        assert!(!is_bpffs(Path::new("/sys/fs/bpf")), "precondition");
        // What failed before: sysfs refuses to create the directory.
        assert!(
            std::fs::create_dir(&pin_dir).is_err(),
            "a plain /sys/fs/bpf accepts directories: the test cannot show the fix"
        );
        let dp = Dataplane::open(&config(pin_dir.clone())).expect("open under /sys/fs/bpf");
        assert!(
            is_bpffs(Path::new("/sys/fs/bpf")),
            "a bpffs is mounted at /sys/fs/bpf itself"
        );
        assert!(
            netd::dataplane::pinned_map(&pin_dir, netd_common::MAP_CT).exists(),
            "maps pinned under it"
        );
        // The pin directory is a plain directory on that bpffs, not a mount of its own.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&format!(" {} ", pin_dir.display())),
            "no second mount at the pin directory:\n{mounts}"
        );
        drop(dp);
        // A second open (a restarted daemon) reuses the mount and the pins.
        let count = |m: &str| m.lines().filter(|l| l.contains(" /sys/fs/bpf ")).count();
        let before = count(&mounts);
        let dp = Dataplane::open(&config(pin_dir.clone())).expect("reopen");
        let after = count(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        assert_eq!(before, after, "no stacked bpffs mounts on restart");
        drop(dp);
    });
    assert_eq!(
        is_bpffs(Path::new("/sys/fs/bpf")),
        outside_was_bpffs,
        "the machine's /sys/fs/bpf is untouched"
    );
    assert!(!pin_dir.exists() || outside_was_bpffs);
}

#[test]
fn pin_dir_elsewhere_gets_its_own_bpffs() {
    let pin_dir = PathBuf::from(format!("/run/{}", unique("-netd")));
    in_private_mounts(|| {
        let dp = Dataplane::open(&config(pin_dir.clone())).expect("open under /run");
        assert!(
            is_bpffs(&pin_dir),
            "a bpffs is mounted at the pin directory"
        );
        assert!(
            !is_bpffs(Path::new("/sys/fs/bpf")),
            "/sys/fs/bpf is left alone when the pins live elsewhere"
        );
        drop(dp);
    });
    // The mount lived in the private namespace; the empty directory is ours to remove.
    let _ = std::fs::remove_dir(&pin_dir);
}
