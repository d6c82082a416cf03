//! The caller chain (SPEC §10): who launched the peer. Its parent, grandparent… up to
//! [`MAX_HOPS`], each pinned through its `/proc/<pid>` directory and identified like the peer
//! (path, hash of the opened executable through the same cache, argv). The walk stops at pid 1,
//! at a process of another uid or another user namespace, and at the user's service manager
//! (`systemd --user`): none of those is part of what the user launched.

use super::cache::HashCache;
use super::process::ProcDir;
use super::{Context, Hashing, Link};

/// Most ancestors recorded.
pub const MAX_HOPS: usize = 4;

/// The ancestors of the process behind `dir`, whose parent was `ppid` when its status was read,
/// parent first. `None` when `hashing` is cache-only and an ancestor's executable is not cached
/// yet. Each status is read once per hop plus the re-check that pins the parent.
pub(crate) fn ancestors(
    dir: &ProcDir,
    ppid: i32,
    ctx: &Context,
    cache: &HashCache,
    hashing: Hashing,
) -> Option<Vec<Link>> {
    let mut links = Vec::new();
    let me = super::own_uid();
    let mut ppid = ppid;
    let mut ancestor: Option<ProcDir> = None;
    while links.len() < MAX_HOPS && ppid > 1 {
        let Ok(parent) = ProcDir::open(ppid) else {
            break;
        };
        // Still the child's parent after it was opened: then it is the process that launched
        // the child, not a newcomer that reused the pid of one that exited.
        let child = ancestor.as_ref().unwrap_or(dir);
        if child.status().ok().map(|s| s.ppid) != Some(ppid) {
            break;
        }
        let status = match parent.status() {
            Ok(s) if s.uid == me => s,
            _ => break,
        };
        if ctx.user_ns.is_none() || parent.user_ns().ok() != ctx.user_ns {
            break;
        }
        let path = parent.read_link("exe").unwrap_or_default();
        if path.file_name().is_some_and(|n| n == "systemd") {
            break;
        }
        let hash = match super::exe_hash(&parent, cache, hashing) {
            Ok(Some((h, _))) => Some(h),
            Ok(None) => return None,
            Err(_) => None,
        };
        links.push(Link {
            path: path.display().to_string(),
            hash,
            pid: ppid,
            argv: super::kept_argv(parent.cmdline()),
        });
        ppid = status.ppid;
        ancestor = Some(parent);
    }
    Some(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_process_sees_this_test_as_its_parent() {
        // `sh -c 'sleep'` under this test: its chain starts with this test binary.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5; true"])
            .spawn()
            .unwrap();
        let cache = HashCache::new();
        let ctx = Context::current();
        let pid = child.id() as i32;
        let dir = ProcDir::open(pid).unwrap();
        let ppid = dir.status().unwrap().ppid;
        let ancestors = |cache: &HashCache, hashing| ancestors(&dir, ppid, &ctx, cache, hashing);
        assert_eq!(
            ancestors(&HashCache::new(), Hashing::CachedOnly),
            None,
            "a cold cache makes a cache-only walk give up rather than hash"
        );
        let chain = ancestors(&cache, Hashing::Allowed).unwrap();
        let again = ancestors(&cache, Hashing::CachedOnly);
        let _ = child.kill();
        let _ = child.wait();
        assert!(!chain.is_empty() && chain.len() <= MAX_HOPS, "{chain:?}");
        assert_eq!(chain[0].pid, std::process::id() as i32);
        let me = std::env::current_exe().unwrap();
        assert_eq!(chain[0].path, me.display().to_string());
        assert_eq!(
            chain[0].hash.as_ref(),
            Some(&super::super::hash_path(&me).unwrap())
        );
        assert_eq!(
            again.as_ref(),
            Some(&chain),
            "warm cache: same chain, no hashing"
        );
    }
}
