//! The ATA command layer: turns one ATA command into data plus status/error registers.
//!
//! It knows nothing of AoE framing: the protocol layer hands it the command registers, the
//! bytes that came with the command and a buffer for the bytes that go back. Supported
//! (ATA/ATAPI-7 vol. 1 §6; ACS-3 §7):
//!
//! | Opcode | Command | Result |
//! |---|---|---|
//! | 0xEC | IDENTIFY DEVICE | 512-byte block ([`identify`]); the Count register is ignored, as ACS-3 defines it N/A for this command |
//! | 0x20 / 0x24 | READ SECTORS (EXT) | count × 512 bytes |
//! | 0x30 / 0x34 | WRITE SECTORS (EXT) | written, durable as the export's mode says |
//! | 0xE7 / 0xEA | FLUSH CACHE (EXT) | [`Volume::flush`] (`fdatasync`) |
//! | 0xE5 | CHECK POWER MODE | Count 0xFF: active or idle |
//!
//! Every failure is an [`AtaError`], reported in the Status and Error registers
//! ([`AtaError::registers`]), never as an AoE error (AoE r11 §2.4): the Linux aoe driver drops
//! AoE error responses (`aoenet_rcv`, drivers/block/aoe/aoenet.c) and retransmits until its
//! `aoe_deadsecs` (180 s) run out, while a reply whose ATA status has ERR set fails the request
//! at once (`ktiocomplete`, drivers/block/aoe/aoecmd.c). The policy, with the bits ATA8-ACS
//! defines (Status: ERR 0x01, DRDY 0x40; Error: ABRT 0x04, IDNF 0x10, UNC 0x40):
//!
//! | Condition | Status | Error |
//! |---|---|---|
//! | other opcode | ERR\|DRDY | ABRT |
//! | Count 0 (means 256/65536 sectors, which never fit a frame) | ERR\|DRDY | ABRT |
//! | Count above the advertised sectors per frame | ERR\|DRDY | ABRT |
//! | write payload shorter than Count × 512 | ERR\|DRDY | ABRT |
//! | write to a read-only image (image untouched) | ERR\|DRDY | ABRT |
//! | LBA + Count past the end, or overflowing | ERR\|DRDY | IDNF |
//! | store I/O error | ERR\|DRDY | UNC |
//!
//! 28-bit commands take their LBA from lba0..lba3 masked with 0x0FFFFFFF (initiators put
//! device-register bits 0xE0/0xA0 in lba3); 48-bit commands take all six bytes. The mode comes
//! from the opcode, never from the AoE E flag (WinAoE sets E on everything).
//!
//! The device runs on whatever [`Volume`] the protocol layer hands it for the request: an
//! image, or the requesting client's copy-on-write overlay of a base image
//! (`Backing::volume(&ClientKey::mac(src))`).

pub mod identify;

use l2san_common::store::{StoreError, Volume};

pub use identify::{IdentifyInfo, Identity, IDENTIFY_LEN};

/// Bytes per logical sector.
pub const SECTOR_SIZE: usize = 512;

/// Status register bits.
pub mod status {
    /// Busy.
    pub const BSY: u8 = 0x80;
    /// Device ready.
    pub const DRDY: u8 = 0x40;
    /// Device fault.
    pub const DF: u8 = 0x20;
    /// Data request.
    pub const DRQ: u8 = 0x08;
    /// An error occurred; see the Error register.
    pub const ERR: u8 = 0x01;
}

/// Error register bits.
pub mod error {
    /// Command aborted.
    pub const ABRT: u8 = 0x04;
    /// ID (address) not found.
    pub const IDNF: u8 = 0x10;
    /// Uncorrectable data error.
    pub const UNC: u8 = 0x40;
}

/// The command opcodes this layer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    IdentifyDevice,
    ReadSectors,
    ReadSectorsExt,
    WriteSectors,
    WriteSectorsExt,
    FlushCache,
    FlushCacheExt,
    CheckPowerMode,
    Unknown(u8),
}

impl From<u8> for Opcode {
    fn from(v: u8) -> Opcode {
        match v {
            0xec => Opcode::IdentifyDevice,
            0x20 => Opcode::ReadSectors,
            0x24 => Opcode::ReadSectorsExt,
            0x30 => Opcode::WriteSectors,
            0x34 => Opcode::WriteSectorsExt,
            0xe7 => Opcode::FlushCache,
            0xea => Opcode::FlushCacheExt,
            0xe5 => Opcode::CheckPowerMode,
            _ => Opcode::Unknown(v),
        }
    }
}

impl From<Opcode> for u8 {
    fn from(o: Opcode) -> u8 {
        match o {
            Opcode::IdentifyDevice => 0xec,
            Opcode::ReadSectors => 0x20,
            Opcode::ReadSectorsExt => 0x24,
            Opcode::WriteSectors => 0x30,
            Opcode::WriteSectorsExt => 0x34,
            Opcode::FlushCache => 0xe7,
            Opcode::FlushCacheExt => 0xea,
            Opcode::CheckPowerMode => 0xe5,
            Opcode::Unknown(v) => v,
        }
    }
}

impl Opcode {
    /// Commands that move no data and change nothing: safe to answer when addressed by
    /// broadcast or when the device is reserved by another host.
    pub fn is_inquiry(self) -> bool {
        matches!(self, Opcode::IdentifyDevice | Opcode::CheckPowerMode)
    }
}

/// Why a command was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    UnsupportedOpcode(u8),
    ZeroCount,
    CountTooLarge { count: u8, max: u8 },
    ShortPayload { need: usize, got: usize },
    ReadOnly,
}

/// A failed ATA command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AtaError {
    #[error("command aborted: {0:?}")]
    Aborted(AbortReason),
    #[error("LBA range outside the device")]
    IdNotFound,
    #[error("I/O error on the image")]
    Uncorrectable,
}

impl AtaError {
    /// The (Status, Error) registers reporting this failure.
    pub fn registers(&self) -> (u8, u8) {
        let err = match self {
            AtaError::Aborted(_) => error::ABRT,
            AtaError::IdNotFound => error::IDNF,
            AtaError::Uncorrectable => error::UNC,
        };
        (status::DRDY | status::ERR, err)
    }
}

impl From<StoreError> for AtaError {
    fn from(e: StoreError) -> AtaError {
        match e {
            StoreError::OutOfRange { .. } => AtaError::IdNotFound,
            StoreError::ReadOnly => AtaError::Aborted(AbortReason::ReadOnly),
            // Io, Shrunk (the file shrank under us), and whatever the store adds later.
            _ => AtaError::Uncorrectable,
        }
    }
}

/// The one checked LBA helper: `count` sectors at `lba` must lie inside `capacity` sectors.
/// Returns the byte offset of `lba`. All arithmetic is checked 64-bit.
pub fn lba_range(lba: u64, count: u64, capacity: u64) -> Result<u64, AtaError> {
    match lba.checked_add(count) {
        Some(end) if end <= capacity => lba
            .checked_mul(SECTOR_SIZE as u64)
            .ok_or(AtaError::IdNotFound),
        _ => Err(AtaError::IdNotFound),
    }
}

/// The command registers as the initiator sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaCommand {
    pub opcode: Opcode,
    pub features: u8,
    pub sector_count: u8,
    /// The 48 LBA bits as sent (lba0..lba5); 28-bit commands mask them.
    pub lba: u64,
}

/// A validated command, ready to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtaOp {
    Identify,
    Read { lba: u64, count: u8 },
    Write { lba: u64, count: u8 },
    Flush,
    CheckPowerMode,
}

impl AtaOp {
    /// Bytes that go back to the initiator with the status.
    pub fn data_in_len(&self) -> usize {
        match self {
            AtaOp::Identify => IDENTIFY_LEN,
            AtaOp::Read { count, .. } => usize::from(*count) * SECTOR_SIZE,
            _ => 0,
        }
    }
}

const LBA28_MASK: u64 = 0x0fff_ffff;
const LBA48_MASK: u64 = 0xffff_ffff_ffff;

impl AtaCommand {
    /// Validate in the order arguments (count), payload length, LBA range.
    ///
    /// `capacity` is in sectors; `max_sectors` is the Sector Count the target advertises for
    /// the current MTU; `payload_len` is what the frame carries after the argument.
    pub fn decode(
        &self,
        capacity: u64,
        max_sectors: u8,
        payload_len: usize,
    ) -> Result<AtaOp, AtaError> {
        let (lba, write) = match self.opcode {
            Opcode::IdentifyDevice => return Ok(AtaOp::Identify),
            Opcode::CheckPowerMode => return Ok(AtaOp::CheckPowerMode),
            Opcode::FlushCache | Opcode::FlushCacheExt => return Ok(AtaOp::Flush),
            Opcode::ReadSectors => (self.lba & LBA28_MASK, false),
            Opcode::WriteSectors => (self.lba & LBA28_MASK, true),
            Opcode::ReadSectorsExt => (self.lba & LBA48_MASK, false),
            Opcode::WriteSectorsExt => (self.lba & LBA48_MASK, true),
            Opcode::Unknown(op) => {
                return Err(AtaError::Aborted(AbortReason::UnsupportedOpcode(op)))
            }
        };
        let count = self.sector_count;
        if count == 0 {
            return Err(AtaError::Aborted(AbortReason::ZeroCount));
        }
        if count > max_sectors {
            return Err(AtaError::Aborted(AbortReason::CountTooLarge {
                count,
                max: max_sectors,
            }));
        }
        let need = usize::from(count) * SECTOR_SIZE;
        if write && payload_len < need {
            return Err(AtaError::Aborted(AbortReason::ShortPayload {
                need,
                got: payload_len,
            }));
        }
        lba_range(lba, u64::from(count), capacity)?;
        Ok(if write {
            AtaOp::Write { lba, count }
        } else {
            AtaOp::Read { lba, count }
        })
    }
}

/// What a successful command leaves in the registers and the data buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The Count register: 0 (nothing remaining), or 0xFF for CHECK POWER MODE (active).
    pub sector_count: u8,
    /// Bytes written into the data-in buffer.
    pub data_len: usize,
}

/// One emulated ATA device over a volume (an image, or one client's overlay view).
#[derive(Debug, Clone, Copy)]
pub struct AtaDevice<'a> {
    pub image: &'a dyn Volume,
    pub identity: &'a Identity,
}

impl AtaDevice<'_> {
    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.image.sectors()
    }

    /// Run a decoded command. `data_out` is what came from the initiator (a write's
    /// payload, possibly with padding after it); `data_in` receives
    /// [`AtaOp::data_in_len`] bytes (a shorter buffer aborts the command).
    pub fn execute(
        &self,
        op: &AtaOp,
        data_out: &[u8],
        data_in: &mut [u8],
    ) -> Result<Completion, AtaError> {
        let done = |data_len| Completion {
            sector_count: 0,
            data_len,
        };
        let capacity = self.capacity();
        match *op {
            AtaOp::Identify => {
                let got = data_in.len();
                let block = data_in.get_mut(..IDENTIFY_LEN).ok_or(AtaError::Aborted(
                    AbortReason::ShortPayload {
                        need: IDENTIFY_LEN,
                        got,
                    },
                ))?;
                let wce = self.image.write_cache_enabled();
                identify::build(block, self.identity, capacity, wce);
                Ok(done(IDENTIFY_LEN))
            }
            AtaOp::Read { lba, count } => {
                let offset = lba_range(lba, u64::from(count), capacity)?;
                let len = usize::from(count) * SECTOR_SIZE;
                let got = data_in.len();
                let buf =
                    data_in
                        .get_mut(..len)
                        .ok_or(AtaError::Aborted(AbortReason::ShortPayload {
                            need: len,
                            got,
                        }))?;
                self.image.read_at(offset, buf)?;
                Ok(done(len))
            }
            AtaOp::Write { lba, count } => {
                if self.image.read_only() {
                    return Err(AtaError::Aborted(AbortReason::ReadOnly));
                }
                let offset = lba_range(lba, u64::from(count), capacity)?;
                let len = usize::from(count) * SECTOR_SIZE;
                let data =
                    data_out
                        .get(..len)
                        .ok_or(AtaError::Aborted(AbortReason::ShortPayload {
                            need: len,
                            got: data_out.len(),
                        }))?;
                self.image.write_at(offset, data)?;
                Ok(done(0))
            }
            AtaOp::Flush => {
                self.image.flush()?;
                Ok(done(0))
            }
            AtaOp::CheckPowerMode => Ok(Completion {
                sector_count: 0xff,
                data_len: 0,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
