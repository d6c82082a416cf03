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

/// The ancestors of `pid`, parent first. `None` when `hashing` is cache-only and an ancestor's
/// executable is not cached yet.
pub(crate) fn ancestors(
    pid: i32,
    ctx: &Context,
    cache: &HashCache,
    hashing: Hashing,
) -> Option<Vec<Link>> {
    let mut links = Vec::new();
    let Ok(mut child) = ProcDir::open(pid) else {
        return Some(links);
    };
    let me = nix::unistd::geteuid().as_raw();
    while links.len() < MAX_HOPS {
        let Ok((ppid, _)) = child.parent_and_uid() else {
            break;
        };
        if ppid <= 1 {
            break;
        }
        let Ok(parent) = ProcDir::open(ppid) else {
            break;
        };
        // Still the child's parent after it was opened: then it is the process that launched
        // the child, not a newcomer that reused the pid of one that exited.
        if child.parent_and_uid().ok().map(|(p, _)| p) != Some(ppid) {
            break;
        }
        match parent.parent_and_uid() {
            Ok((_, uid)) if uid == me => {}
            _ => break,
        }
        if ctx.user_ns.is_none() || parent.user_ns().ok() != ctx.user_ns {
            break;
        }
        let path = parent.read_link("exe").unwrap_or_default();
        if path.file_name().is_some_and(|n| n == "systemd") {
            break;
        }
        let hash = match parent.open_file("exe") {
            Ok(f) => match hashing {
                Hashing::Allowed => cache.hash_file(&f).ok(),
                Hashing::CachedOnly => match cache.cached(&f) {
                    Ok(Some(h)) => Some(h),
                    Ok(None) => return None,
                    Err(_) => None,
                },
            },
            Err(_) => None,
        };
        links.push(Link {
            path: path.display().to_string(),
            hash,
            pid: ppid,
            argv: parent.cmdline(),
        });
        child = parent;
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
        assert_eq!(
            ancestors(pid, &ctx, &HashCache::new(), Hashing::CachedOnly),
            None,
            "a cold cache makes a cache-only walk give up rather than hash"
        );
        let chain = ancestors(pid, &ctx, &cache, Hashing::Allowed).unwrap();
        let again = ancestors(pid, &ctx, &cache, Hashing::CachedOnly);
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
