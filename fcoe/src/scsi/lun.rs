//! Logical units: an image (or a base image with per-client overlays), a LUN number and a
//! stable identity.
//!
//! LUN numbers run from 0 to [`MAX_LUNS`] − 1. On the wire they use SAM-5 single-level LUN
//! addressing (§4.7): peripheral device addressing `00 LL 00 00 00 00 00 00`, which is what
//! Linux's `int_to_scsilun` and iPXE's `scsi_parse_lun` produce for numbers below 256; flat
//! space addressing (`40|hi lo ...`) is accepted too.
//!
//! Each LUN carries an NAA 6 designator (VPD page 83h), stable for a given target identity and
//! LUN number across restarts, because Linux names `/dev/disk/by-id/wwn-0x6...` and multipath
//! maps after it:
//!
//! ```text
//! byte 0        1        2        3        4..8          8..16
//!      6 | CID bits 23-0 (24)     | VSI bits 35-0 (36)   | VSI extension (64)
//! ```
//!
//! The company ID [`NAA_COMPANY_ID`] is a fixed, locally chosen value in the IEEE CID format
//! (low nibble of the first octet `1010b`: the "local" X bit set, so it can never collide with
//! an OUI assigned to a vendor). The 100 vendor-specific bits come from a fixed 64-bit mixing
//! function (splitmix64's finalizer) of the target identity and the LUN number; it is our own
//! code, so it cannot change under us with a Rust release (as `DefaultHasher` may). The unit
//! serial number (VPD 80h) is the designator in 32 hex digits.

use std::sync::Arc;

use l2san_common::store::{Backing, ClientKey, ClientVolume, Volume};
use l2san_common::Image;

use super::cdb::{block_range, BLOCK_SIZE};
use super::sense::{ScsiError, Sense};

/// How many LUNs a target can hold: LUN numbers are `0..MAX_LUNS`. REPORT LUNS for all of them
/// (8 + 8 × 64 bytes) fits the inline parameter buffer, and per-LUN state fits a `u64` mask.
pub const MAX_LUNS: usize = 64;

/// The IEEE company ID in every NAA designator (CID format, locally chosen; see above).
pub const NAA_COMPANY_ID: u32 = 0x4a_32_53;

/// The LUN number in a SAM single-level 8-byte LUN, or `None` for other address methods,
/// multi-level LUNs, and bus numbers other than 0.
pub fn decode_sam_lun(sam: &[u8; 8]) -> Option<u16> {
    if sam[2..].iter().any(|&b| b != 0) {
        return None;
    }
    match sam[0] >> 6 {
        // Peripheral device addressing: bus identifier (bits 5-0) must be 0.
        0b00 if sam[0] & 0x3f == 0 => Some(u16::from(sam[1])),
        // Flat space addressing: 14-bit LUN.
        0b01 => Some(u16::from_be_bytes([sam[0] & 0x3f, sam[1]])),
        _ => None,
    }
}

/// The SAM 8-byte form of a LUN number: peripheral addressing below 256, flat space above
/// (Linux `int_to_scsilun`). Numbers above 16383 do not exist in either form and are masked.
pub fn encode_sam_lun(lun: u16) -> [u8; 8] {
    let mut sam = [0u8; 8];
    if lun < 256 {
        sam[1] = lun as u8;
    } else {
        let [hi, lo] = (lun & 0x3fff).to_be_bytes();
        sam[0] = 0x40 | hi;
        sam[1] = lo;
    }
    sam
}

/// splitmix64's output function: a fixed bijection of u64 with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The NAA 6 designator of LUN `number` of the target identified by `target_id`.
pub fn naa_designator(target_id: u64, number: u16) -> [u8; 16] {
    let h1 = mix64(target_id ^ mix64(0x4c55_4e00_0000_0000 | u64::from(number)));
    let h2 = mix64(h1 ^ 0x6c32_7361_6e4e_4141);
    let cid = NAA_COMPANY_ID;
    let mut d = [0u8; 16];
    d[0] = 0x60 | ((cid >> 20) & 0x0f) as u8;
    d[1] = (cid >> 12) as u8;
    d[2] = (cid >> 4) as u8;
    d[3] = (((cid & 0x0f) as u8) << 4) | ((h1 >> 32) & 0x0f) as u8;
    d[4..8].copy_from_slice(&(h1 as u32).to_be_bytes());
    d[8..16].copy_from_slice(&h2.to_be_bytes());
    d
}

/// A logical unit: an image, or a base image with an overlay per client, exported under a
/// LUN number.
#[derive(Debug)]
pub struct Lun {
    number: u16,
    backing: Backing,
    naa: [u8; 16],
    serial: [u8; 32],
}

impl Lun {
    /// LUN `number` of the target identified by `target_id` (the transport's port name, e.g.
    /// the FC WWPN: any value stable across restarts), exporting `backing` (an
    /// `Arc<Image>` or an `Arc<OverlaySet>`).
    pub fn new(target_id: u64, number: u16, backing: impl Into<Backing>) -> Lun {
        let naa = naa_designator(target_id, number);
        let mut serial = [0u8; 32];
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for (i, b) in naa.iter().enumerate() {
            serial[2 * i] = HEX[usize::from(b >> 4)];
            serial[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        Lun {
            number,
            backing: backing.into(),
            naa,
            serial,
        }
    }

    pub fn number(&self) -> u16 {
        self.number
    }

    /// The image, or the base image of an overlay LUN.
    pub fn image(&self) -> &Arc<Image> {
        self.backing.image()
    }

    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The volume a request from `client` runs on: the image, or that client's overlay view
    /// (its writes create its overlay). With no client, an overlay LUN is its base,
    /// read-only.
    pub fn volume(&self, client: Option<&ClientKey>) -> ClientVolume<'_> {
        match client {
            Some(c) => self.backing.volume(c),
            None => self.backing.shared_volume(),
        }
    }

    /// The NAA 6 designator reported in VPD page 83h.
    pub fn naa(&self) -> &[u8; 16] {
        &self.naa
    }

    /// The unit serial number reported in VPD page 80h: 32 ASCII hex digits.
    pub fn serial(&self) -> &[u8; 32] {
        &self.serial
    }

    /// Capacity in logical blocks ([`BLOCK_SIZE`] bytes each).
    pub fn capacity_blocks(&self) -> u64 {
        self.backing.len_bytes() / u64::from(BLOCK_SIZE)
    }

    /// Whether WRITE gets DATA PROTECT (an overlay LUN takes writes, into the overlays).
    pub fn read_only(&self) -> bool {
        self.backing.read_only()
    }

    /// MODE SENSE page 08h WCE: acknowledged writes may still be volatile.
    pub fn write_cache_enabled(&self) -> bool {
        self.backing.write_cache_enabled()
    }

    /// The byte range of `blocks` blocks at `lba`, checked against the capacity.
    pub(crate) fn range(&self, lba: u64, blocks: u64) -> Result<super::cdb::ByteRange, ScsiError> {
        block_range(lba, blocks, self.capacity_blocks())
    }

    /// Data-in phase of a [`Command::Read`](super::Command::Read): copy `buf.len()` bytes at
    /// `offset_bytes` of `client`'s volume ([`Lun::volume`]) straight into `buf` (the
    /// transport's frame payload). A store failure becomes MEDIUM ERROR 03/11/00.
    pub fn read_data(
        &self,
        client: Option<&ClientKey>,
        offset_bytes: u64,
        buf: &mut [u8],
    ) -> Result<(), Sense> {
        self.volume(client)
            .read_at(offset_bytes, buf)
            .map_err(|e| ScsiError::from_read(&e).sense())
    }

    /// Data-out phase of a [`Command::Write`](super::Command::Write): write `data` (the
    /// transport's frame payload) at `offset_bytes` of `client`'s volume (on an overlay LUN,
    /// its overlay, created by its first write). A store failure becomes MEDIUM ERROR
    /// 03/0C/00; a read-only image DATA PROTECT 07/27/00.
    pub fn write_data(
        &self,
        client: Option<&ClientKey>,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<(), Sense> {
        self.volume(client)
            .write_at(offset_bytes, data)
            .map_err(|e| ScsiError::from_write(&e).sense())
    }

    /// End of a [`Command::Write`](super::Command::Write)'s data phase: with `fua` (forced unit
    /// access) on a write-back volume, make the write stable before status GOOD goes back
    /// (`client`'s overlay; with no client on an overlay LUN, every overlay). Without `fua`, or
    /// on a write-through image, nothing to do.
    pub fn commit_write(&self, client: Option<&ClientKey>, fua: bool) -> Result<(), Sense> {
        let volume = self.volume(client);
        if fua && volume.write_cache_enabled() {
            volume
                .flush()
                .map_err(|e| ScsiError::from_write(&e).sense())?;
        }
        Ok(())
    }
}

/// Why a LUN cannot join a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LunError {
    #[error("LUN {0} is too large; use a LUN number from 0 to {max}", max = MAX_LUNS - 1)]
    NumberTooLarge(u16),
    #[error("LUN {0} is configured twice; give each image its own LUN number")]
    Duplicate(u16),
    #[error("the image of LUN {0} is smaller than one 512-byte block; give it a size")]
    EmptyImage(u16),
}

/// The LUNs of one target, keyed by LUN number.
#[derive(Debug)]
pub struct LunTable {
    target_id: u64,
    luns: [Option<Lun>; MAX_LUNS],
    /// Bit n set when LUN n is configured.
    present: u64,
}

impl LunTable {
    /// An empty table for the target identified by `target_id` (see [`Lun::new`]).
    pub fn new(target_id: u64) -> LunTable {
        LunTable {
            target_id,
            luns: std::array::from_fn(|_| None),
            present: 0,
        }
    }

    pub fn target_id(&self) -> u64 {
        self.target_id
    }

    /// Export `backing` (an `Arc<Image>` or an `Arc<OverlaySet>`) as LUN `number`.
    pub fn insert(&mut self, number: u16, backing: impl Into<Backing>) -> Result<&Lun, LunError> {
        let backing = backing.into();
        let slot = self
            .luns
            .get_mut(usize::from(number))
            .ok_or(LunError::NumberTooLarge(number))?;
        if slot.is_some() {
            return Err(LunError::Duplicate(number));
        }
        if backing.len_bytes() < u64::from(BLOCK_SIZE) {
            return Err(LunError::EmptyImage(number));
        }
        self.present |= 1 << number;
        Ok(slot.insert(Lun::new(self.target_id, number, backing)))
    }

    /// LUN `number`, if configured.
    pub fn get(&self, number: u16) -> Option<&Lun> {
        self.luns.get(usize::from(number))?.as_ref()
    }

    /// The LUN a SAM 8-byte LUN addresses, if configured.
    pub fn lookup(&self, sam: &[u8; 8]) -> Option<&Lun> {
        self.get(decode_sam_lun(sam)?)
    }

    /// The configured LUNs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &Lun> {
        self.luns.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.present.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// Bit n set when LUN n is configured.
    pub fn present_mask(&self) -> u64 {
        self.present
    }
}
