//! Memory shared with the kernel for AF_XDP: the UMEM and the four single-producer,
//! single-consumer rings (linux/if_xdp.h, Documentation/networking/af_xdp.rst).
//!
//! Each ring is a power-of-two array of descriptors plus a producer and a consumer index
//! (free-running u32s, masked on use) and a flags word, all in one mapping whose offsets the
//! kernel reports through XDP_MMAP_OFFSETS. We are the producer of the fill and TX rings and
//! the consumer of the RX and completion rings. Indices are published with Release after the
//! descriptors are written and read with Acquire before the descriptors are read, which is
//! the ordering the kernel side (smp_load_acquire/smp_store_release in xsk_queue.h) pairs with.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One memory mapping, unmapped on drop.
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory with no thread affinity. Who may read or write which part
// of it is governed by the ring protocol and by the owners of the frames (see `XdpRx` and
// `XdpTx`), never by which thread holds the `Mmap`.
unsafe impl Send for Mmap {}
// SAFETY: `Mmap` itself hands out only raw pointers; every dereference is an unsafe block of
// its user that argues why no other party writes the same bytes at the same time.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Anonymous, private, zeroed memory for the UMEM, populated at once so that the kernel
    /// does not fault pages in on the receive path.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel: no existing memory is
        // affected. The result is checked against MAP_FAILED before use and unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Mmap::checked(ptr, len)
    }

    /// The ring of `fd` at page offset `pgoff` (one of the XDP_*PGOFF_* constants).
    fn ring(fd: RawFd, len: usize, pgoff: u64) -> io::Result<Mmap> {
        // SAFETY: maps the ring the kernel allocated for this socket when its size was set;
        // the length is the one derived from the kernel's own offsets plus our ring size, the
        // offset is the ABI constant selecting that ring, MAP_SHARED as af_xdp.rst requires.
        // The result is checked against MAP_FAILED before use and unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        Mmap::checked(ptr, len)
    }

    fn checked(ptr: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(Mmap { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: exactly the address and length mmap returned; every borrow of the memory
        // (frame slices, ring pointers) is tied to an owner that holds this `Mmap` alive.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One AF_XDP ring of descriptors of type `T` (`u64` UMEM addresses for the fill and
/// completion rings, `xdp_desc` for RX and TX).
pub(crate) struct Ring<T: Copy> {
    map: Mmap,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    size: u32,
    /// Our copy of the index we own, published by `submit`/`release`.
    cached_prod: u32,
    /// Our copy of the other side's index, refreshed when it looks exhausted.
    cached_cons: u32,
    _desc: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    /// Map a ring of `size` descriptors (a power of two) described by `off`.
    pub(crate) fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> io::Result<Ring<T>> {
        assert!(size.is_power_of_two());
        let bad = || io::Error::other("kernel reported AF_XDP ring offsets outside the ring");
        let desc = usize::try_from(off.desc).map_err(|_| bad())?;
        let len = desc
            .checked_add(size as usize * std::mem::size_of::<T>())
            .ok_or_else(bad)?;
        let index = |o: u64| -> io::Result<usize> {
            let o = usize::try_from(o).map_err(|_| bad())?;
            if o % 4 != 0 || o + 4 > len {
                return Err(bad());
            }
            Ok(o)
        };
        let (producer, consumer, flags) = (
            index(off.producer)?,
            index(off.consumer)?,
            index(off.flags)?,
        );
        if desc % std::mem::align_of::<T>() != 0 {
            return Err(bad());
        }
        let map = Mmap::ring(fd, len, pgoff)?;
        let mut ring = Ring {
            map,
            producer,
            consumer,
            flags,
            desc,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _desc: PhantomData,
        };
        // A fresh ring starts at 0/0, but read the kernel's values rather than assume it.
        ring.cached_prod = ring.index(ring.producer).load(Ordering::Acquire);
        ring.cached_cons = ring.index(ring.consumer).load(Ordering::Acquire);
        Ok(ring)
    }

    fn index(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` was checked in `map` to be 4-byte aligned with 4 bytes inside the
        // mapping, which lives as long as `self`. The kernel accesses these words only
        // atomically (READ_ONCE/WRITE_ONCE, acquire/release), so sharing them as AtomicU32
        // is how both sides already treat them.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(offset).cast()) }
    }

    fn slot(&self, index: u32) -> *mut T {
        // In bounds: (index & mask) < size, and the mapping holds `size` descriptors from
        // `desc` on (checked in `map`); `desc` is aligned for T.
        self.map
            .as_ptr()
            .wrapping_add(self.desc)
            .cast::<T>()
            .wrapping_add((index & self.mask) as usize)
    }

    /// Whether the kernel asks to be woken (XDP_USE_NEED_WAKEUP) to make progress.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, TX) ----

    /// Free slots, refreshing the consumer index only when `want` do not seem free.
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.index(self.consumer).load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Write one descriptor; it becomes visible to the kernel at the next `submit`.
    /// Returns false (and writes nothing) when the ring is full.
    pub(crate) fn push(&mut self, value: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        // SAFETY: the slot is inside the mapping (see `slot`) and aligned for T. It is free:
        // the kernel consumed it (its consumer index, read with Acquire, is past it) or never
        // had it, and it will not read it before we publish a producer index past it.
        unsafe { self.slot(self.cached_prod).write(value) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Publish every pushed descriptor.
    pub(crate) fn submit(&self) {
        self.index(self.producer)
            .store(self.cached_prod, Ordering::Release);
    }

    /// Descriptors published or pushed that the kernel has not consumed yet.
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.cached_cons = self.index(self.consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    // ---- consumer side (RX, completion) ----

    /// Take the next descriptor the kernel produced, if any. The slot is handed back at the
    /// next `release`.
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.cached_cons == self.cached_prod {
            self.cached_prod = self.index(self.producer).load(Ordering::Acquire);
            if self.cached_cons == self.cached_prod {
                return None;
            }
        }
        // SAFETY: the slot is inside the mapping and aligned (see `slot`). The kernel wrote it
        // before publishing a producer index past it (read above with Acquire) and will not
        // overwrite it before we publish a consumer index past it in `release`.
        let value = unsafe { self.slot(self.cached_cons).read() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        Some(value)
    }

    /// Hand every popped slot back to the kernel.
    pub(crate) fn release(&self) {
        self.index(self.consumer)
            .store(self.cached_cons, Ordering::Release);
    }
}

// SAFETY: the ring mapping is reached only through `&mut self` (descriptor slots) or atomics
// (indices, flags), so moving a `Ring` to another thread moves sole user-side access with it.
unsafe impl<T: Copy + Send> Send for Ring<T> {}
