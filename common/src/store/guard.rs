//! Survive an image that shrinks under us, or a file system that fills up.
//!
//! Touching a page of a shared file map that lies past the file's end raises SIGBUS, and so
//! does a store into a hole of a sparse file when the file system has no block left for it;
//! either would end the process: another program only has to truncate an exported image. This
//! module installs a SIGBUS handler that, for a fault inside one of the registered image
//! maps, puts a page of zeros over the faulting page (so the interrupted copy completes) and
//! marks that map as faulted; the store then reports the read or write as an I/O error (ATA
//! UNC, SCSI MEDIUM ERROR) instead of returning the zeros or acknowledging the write. A fault anywhere else is a real bug:
//! the handler restores the default action and the fault repeats and kills the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Image maps that can be guarded at once; more are served unguarded (and say so).
const SLOTS: usize = 256;

struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    writable: AtomicBool,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    writable: AtomicBool::new(false),
    faulted: AtomicBool::new(false),
};
static SLOTS_TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A registered map range; unregistered on drop.
pub(super) struct Guard {
    slot: Option<usize>,
}

impl Guard {
    /// Guard `[start, start + len)`, a map that is `writable` or not. Returns an unguarded
    /// handle when the table is full or the handler could not be installed.
    pub(super) fn register(start: usize, len: usize, writable: bool) -> Guard {
        INSTALL.call_once(install);
        if !INSTALLED.load(Ordering::Acquire) || len == 0 {
            return Guard { slot: None };
        }
        for (i, s) in SLOTS_TABLE.iter().enumerate() {
            // Claim a free slot by its start; publish the end after.
            if s.start
                .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.faulted.store(false, Ordering::Release);
                s.writable.store(writable, Ordering::Release);
                s.end.store(start + len, Ordering::Release);
                return Guard { slot: Some(i) };
            }
        }
        tracing::warn!("more than {SLOTS} image maps: this one is not guarded against truncation");
        Guard { slot: None }
    }

    /// Whether a read of this map ever hit a page past the file's end.
    pub(super) fn faulted(&self) -> bool {
        self.slot
            .is_some_and(|i| SLOTS_TABLE[i].faulted.load(Ordering::Acquire))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            SLOTS_TABLE[i].end.store(0, Ordering::Release);
            SLOTS_TABLE[i].start.store(0, Ordering::Release);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

static PAGE: AtomicUsize = AtomicUsize::new(4096);

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo_t to an SA_SIGINFO handler; for SIGBUS si_addr
    // is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for s in SLOTS_TABLE.iter() {
        let start = s.start.load(Ordering::Acquire);
        let end = s.end.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr < end {
            s.faulted.store(true, Ordering::Release);
            let base = addr & !(page - 1);
            // A write fault (ENOSPC filling a hole, or a shrunk file) needs a writable page so
            // that the interrupted store completes; what it stores is lost, and the flag makes
            // the store report the write as failed, never as done.
            let prot = if s.writable.load(Ordering::Acquire) {
                libc::PROT_READ | libc::PROT_WRITE
            } else {
                libc::PROT_READ
            };
            // SAFETY: `base` is a page inside one of our own image maps (checked above), which
            // stays mapped while registered; replacing it with a private zero page changes only
            // what that map shows, and mmap is a plain system call, safe in a signal handler.
            let p = unsafe {
                libc::mmap(
                    base as *mut libc::c_void,
                    page,
                    prot,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                return;
            }
            break;
        }
    }
    // Not ours (or the remedy failed): take the default action when the fault repeats.
    // SAFETY: signal() with SIG_DFL has no memory-safety preconditions.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

fn install() {
    PAGE.store(page_size(), Ordering::Relaxed);
    // SAFETY: sigaction is plain old data, so zeroed is a valid start; the handler only reads
    // atomics, calls mmap/signal, and returns, all async-signal-safe in practice on Linux.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut())
    };
    if rc == 0 {
        INSTALLED.store(true, Ordering::Release);
    } else {
        tracing::warn!("cannot install the SIGBUS guard; a truncated image would end l2san");
    }
}
