//! [`Volume`]: what the command layers (ATA, SCSI) need of the bytes behind an export, and
//! [`Backing`]: what an export serves, one image for every client or a base image with an
//! overlay per client.
//!
//! The command layers run each request against a `&dyn Volume` that the protocol layer picks
//! for the client that sent it: [`Backing::volume`] with the client's [`ClientKey`] (AoE:
//! source MAC; FCoE: initiator WWPN). For a plain image that is the image itself; for an
//! overlay export it is that client's view ([`OverlayVolume`]). Picking a volume costs no
//! allocation and no lock.

use std::sync::Arc;

use super::overlay::{ClientKey, OverlaySet, OverlayVolume};
use super::{Durability, Image, StoreError, SECTOR_SIZE};

/// Bytes at an offset, as a disk: the store seen by one request.
///
/// `Send + Sync`: workers on several threads use one volume at once. Concurrent writes to the
/// same bytes leave one of them (as on a disk); a write that returned `Ok` is durable as
/// [`durability`](Volume::durability) says.
pub trait Volume: Send + Sync + std::fmt::Debug {
    /// Capacity in bytes (a multiple of [`SECTOR_SIZE`]).
    fn len_bytes(&self) -> u64;
    /// Capacity in 512-byte sectors.
    fn sectors(&self) -> u64 {
        self.len_bytes() / SECTOR_SIZE
    }
    /// Writes are refused ([`StoreError::ReadOnly`]).
    fn read_only(&self) -> bool;
    fn durability(&self) -> Durability;
    /// Whether an acknowledged write may still be volatile: what IDENTIFY word 85 bit 5 and
    /// MODE SENSE page 08h WCE report.
    fn write_cache_enabled(&self) -> bool {
        !self.read_only() && self.durability() == Durability::Writeback
    }
    /// Copy `buf.len()` bytes at `offset` into `buf`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;
    /// Write `data` at `offset`, durable as the mode says when this returns.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Make every acknowledged write stable.
    fn flush(&self) -> Result<(), StoreError>;
}

impl Volume for Image {
    fn len_bytes(&self) -> u64 {
        Image::len_bytes(self)
    }
    fn read_only(&self) -> bool {
        Image::read_only(self)
    }
    fn durability(&self) -> Durability {
        Image::durability(self)
    }
    fn write_cache_enabled(&self) -> bool {
        Image::write_cache_enabled(self)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        Image::read_at(self, offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        Image::write_at(self, offset, data)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Image::flush(self)
    }
}

/// So that `&Arc<Image>` (how targets hold images) is a `&dyn Volume` as it is.
impl<V: Volume + ?Sized> Volume for Arc<V> {
    fn len_bytes(&self) -> u64 {
        (**self).len_bytes()
    }
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn durability(&self) -> Durability {
        (**self).durability()
    }
    fn write_cache_enabled(&self) -> bool {
        (**self).write_cache_enabled()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        (**self).write_at(offset, data)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
}

/// What an export serves.
#[derive(Debug, Clone)]
pub enum Backing {
    /// One image, the same bytes for every client.
    Image(Arc<Image>),
    /// A read-only base image with a copy-on-write overlay per client.
    Overlays(Arc<OverlaySet>),
}

impl From<Arc<Image>> for Backing {
    fn from(image: Arc<Image>) -> Backing {
        Backing::Image(image)
    }
}

impl From<Arc<OverlaySet>> for Backing {
    fn from(set: Arc<OverlaySet>) -> Backing {
        Backing::Overlays(set)
    }
}

impl Backing {
    /// The volume that `client`'s requests run against: the image, or the client's overlay
    /// view (its writes create its overlay). No allocation, no lock.
    pub fn volume(&self, client: &ClientKey) -> ClientVolume<'_> {
        match self {
            Backing::Image(image) => ClientVolume::Image(image),
            Backing::Overlays(set) => ClientVolume::Overlay(set.volume(client)),
        }
    }

    /// The volume for a request whose client is not known: the image; for an overlay export
    /// the base, read-only (its `flush` flushes every overlay).
    pub fn shared_volume(&self) -> ClientVolume<'_> {
        match self {
            Backing::Image(image) => ClientVolume::Image(image),
            Backing::Overlays(set) => ClientVolume::Overlay(set.shared_volume()),
        }
    }

    /// Whether `other` is the very same image or overlays (not merely equal contents).
    pub fn same_as(&self, other: &Backing) -> bool {
        match (self, other) {
            (Backing::Image(a), Backing::Image(b)) => Arc::ptr_eq(a, b),
            (Backing::Overlays(a), Backing::Overlays(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The image, or the base image of an overlay export.
    pub fn image(&self) -> &Arc<Image> {
        match self {
            Backing::Image(image) => image,
            Backing::Overlays(set) => set.base(),
        }
    }

    /// The overlays, for an overlay export.
    pub fn overlays(&self) -> Option<&Arc<OverlaySet>> {
        match self {
            Backing::Image(_) => None,
            Backing::Overlays(set) => Some(set),
        }
    }

    pub fn len_bytes(&self) -> u64 {
        self.image().len_bytes()
    }
    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.len_bytes() / SECTOR_SIZE
    }
    /// Whether clients may write (an overlay export takes writes: into the overlays).
    pub fn read_only(&self) -> bool {
        match self {
            Backing::Image(image) => image.read_only(),
            Backing::Overlays(_) => false,
        }
    }
    pub fn durability(&self) -> Durability {
        match self {
            Backing::Image(image) => image.durability(),
            Backing::Overlays(set) => set.options().durability,
        }
    }
    /// What IDENTIFY and MODE SENSE report as the write cache.
    pub fn write_cache_enabled(&self) -> bool {
        !self.read_only() && self.durability() == Durability::Writeback
    }

    /// Make every acknowledged write stable: the image, or every overlay.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Backing::Image(image) => image.flush(),
            Backing::Overlays(set) => set.flush(),
        }
    }

    /// Flush what was written since the last flush (the periodic flusher). True if anything
    /// was flushed.
    pub fn flush_if_dirty(&self) -> Result<bool, StoreError> {
        match self {
            Backing::Image(image) => image.flush_if_dirty(),
            Backing::Overlays(set) => set.flush_if_dirty(),
        }
    }
}

/// The volume of one request: see [`Backing::volume`].
#[derive(Debug, Clone)]
pub enum ClientVolume<'a> {
    Image(&'a Image),
    Overlay(OverlayVolume<'a>),
}

impl Volume for ClientVolume<'_> {
    fn len_bytes(&self) -> u64 {
        match self {
            ClientVolume::Image(i) => i.len_bytes(),
            ClientVolume::Overlay(o) => o.len_bytes(),
        }
    }
    fn read_only(&self) -> bool {
        match self {
            ClientVolume::Image(i) => i.read_only(),
            ClientVolume::Overlay(o) => o.read_only(),
        }
    }
    fn durability(&self) -> Durability {
        match self {
            ClientVolume::Image(i) => i.durability(),
            ClientVolume::Overlay(o) => o.durability(),
        }
    }
    fn write_cache_enabled(&self) -> bool {
        match self {
            ClientVolume::Image(i) => i.write_cache_enabled(),
            ClientVolume::Overlay(o) => o.write_cache_enabled(),
        }
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        match self {
            ClientVolume::Image(i) => i.read_at(offset, buf),
            ClientVolume::Overlay(o) => o.read_at(offset, buf),
        }
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        match self {
            ClientVolume::Image(i) => i.write_at(offset, data),
            ClientVolume::Overlay(o) => o.write_at(offset, data),
        }
    }
    fn flush(&self) -> Result<(), StoreError> {
        match self {
            ClientVolume::Image(i) => i.flush(),
            ClientVolume::Overlay(o) => o.flush(),
        }
    }
}
