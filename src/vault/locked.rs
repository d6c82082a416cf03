//! The page that holds the vault's keys while it is unlocked.
//!
//! Where the kernel offers it, the page comes from `memfd_secret(2)`: removed from the kernel's
//! direct map, so not even the kernel (nor `/proc/<pid>/mem`, nor a core dump, nor swap) sees
//! it. Elsewhere it is an anonymous mapping locked into RAM (`mlock`: never swapped) and excluded
//! from core dumps (`MADV_DONTDUMP`). Either way it is zeroed before it is unmapped, on lock and
//! on exit (drop).
//!
//! This is the only `unsafe` of the vault: mapping and unmapping a page and viewing it as a
//! byte slice. The rest of the crate sees a safe, fixed-size `&[u8]` / `&mut [u8]`. The crate
//! denies `unsafe_code`; each block here is allowed on its own, with why it is sound.

use std::io;
use std::ptr::NonNull;
use zeroize::Zeroize;

/// How the page is protected (shown by `doctor` and the start-up line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// `memfd_secret`: out of the kernel's direct map, never swapped or dumped.
    Secret,
    /// `mlock` + `MADV_DONTDUMP`: never swapped, not in core dumps.
    Locked,
    /// Neither was allowed (e.g. `RLIMIT_MEMLOCK` is 0): ordinary memory of a non-dumpable
    /// process.
    Plain,
}

impl Protection {
    /// A short description for status screens.
    pub fn describe(self) -> &'static str {
        match self {
            Protection::Secret => "memfd_secret page",
            Protection::Locked => "mlock'ed page",
            Protection::Plain => "ordinary memory (mlock refused)",
        }
    }
}

/// One page of key material; zeroed and unmapped on drop.
pub struct KeyPage {
    ptr: NonNull<u8>,
    len: usize,
    protection: Protection,
}

// SAFETY: the page is owned exclusively by this value (no aliasing pointer escapes); access goes
// through `&self` / `&mut self`, so the usual borrow rules serialise it.
#[allow(unsafe_code)] // A raw pointer is not Send by default: this one is owned, so it may move.
unsafe impl Send for KeyPage {}
// SAFETY: as above; shared access is read-only.
#[allow(unsafe_code)] // As above: `&KeyPage` only ever reads the page.
unsafe impl Sync for KeyPage {}

impl std::fmt::Debug for KeyPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPage({:?}, <redacted>)", self.protection)
    }
}

impl KeyPage {
    /// A zeroed page: `memfd_secret` when the kernel has it, else `mlock`, else plain memory.
    pub fn new() -> io::Result<KeyPage> {
        // SAFETY: sysconf has no memory-safety preconditions.
        #[allow(unsafe_code)] // The page size, from libc.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let len = usize::try_from(page)
            .ok()
            .filter(|&l| l >= 4096)
            .unwrap_or(4096);
        if let Some(p) = Self::secret(len) {
            return Ok(p);
        }
        // SAFETY: a fresh private anonymous mapping; the arguments are valid and the result is
        // checked against MAP_FAILED before use.
        #[allow(unsafe_code)] // mmap: the page itself.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // SAFETY: `ptr..ptr+len` is the mapping just created.
        #[allow(unsafe_code)] // mlock: keep it out of swap.
        let locked = unsafe { libc::mlock(ptr.as_ptr().cast(), len) } == 0;
        // SAFETY: as above; advice only, failure is harmless (the process is non-dumpable too).
        #[allow(unsafe_code)] // madvise: keep it out of core dumps.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTDUMP)
        };
        Ok(KeyPage {
            ptr,
            len,
            protection: if locked {
                Protection::Locked
            } else {
                Protection::Plain
            },
        })
    }

    /// A `memfd_secret` page, or `None` when the kernel refuses (not built in, not enabled with
    /// `secretmem.enable`, or the memlock limit).
    fn secret(len: usize) -> Option<KeyPage> {
        // SAFETY: a raw system call with an integer flag argument; the result is checked.
        #[allow(unsafe_code)] // memfd_secret has no libc wrapper.
        let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and is owned here alone.
        #[allow(unsafe_code)] // Taking ownership of a raw descriptor.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(len as u64).ok()?;
        // SAFETY: maps `len` bytes of the secret memfd just sized to `len`; checked below.
        #[allow(unsafe_code)] // mmap of the secret descriptor.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        // The mapping keeps the memory; the descriptor is closed when `file` drops.
        let ptr = NonNull::new(ptr.cast::<u8>())?;
        Some(KeyPage {
            ptr,
            len,
            protection: Protection::Secret,
        })
    }

    /// How this page is protected.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// The page's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live read-write mapping owned by `self`.
        #[allow(unsafe_code)] // The mapping seen as a slice.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) };
        bytes
    }

    /// The page's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` guarantees exclusive access.
        #[allow(unsafe_code)] // The mapping seen as a writable slice.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) };
        bytes
    }
}

impl Drop for KeyPage {
    fn drop(&mut self) {
        self.bytes_mut().zeroize();
        // SAFETY: unmaps exactly the mapping created in `new`; nothing refers to it afterwards.
        #[allow(unsafe_code)] // munmap of our own page.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_zeroed_writable_and_protected() {
        let mut p = KeyPage::new().unwrap();
        assert!(p.bytes().len() >= 4096);
        assert!(p.bytes().iter().all(|&b| b == 0));
        p.bytes_mut()[..4].copy_from_slice(b"key!");
        assert_eq!(&p.bytes()[..4], b"key!");
        assert!(!format!("{p:?}").contains("key!"));
        // On this kernel family (5.14+ with secretmem) or with a memlock limit, never plain.
        assert_ne!(p.protection(), Protection::Plain, "{:?}", p.protection());
    }
}
