//! Sense data (SPC-4 §4.5) and the errors of the SCSI layer.
//!
//! Every failure is a [`ScsiError`]; [`ScsiError::sense`] maps it to the sense key and
//! additional sense code the initiator sees (the way rust-vmm's virtio-blk maps `Error` to a
//! status). The table (sense keys and additional sense codes as SPC-4 assigns them):
//!
//! | Condition | [`ScsiError`] | Key/ASC/ASCQ |
//! |---|---|---|
//! | unsupported operation code | `InvalidOpcode` | ILLEGAL REQUEST 05/20/00 |
//! | LBA + length past the end, or overflowing | `LbaOutOfRange` | 05/21/00 |
//! | invalid field in the CDB (with a field pointer) | `InvalidFieldInCdb` | 05/24/00 |
//! | LUN not configured | `LunNotSupported` | 05/25/00 |
//! | write to a read-only image | `WriteProtected` | DATA PROTECT 07/27/00 |
//! | store error on read | `ReadError` | MEDIUM ERROR 03/11/00 |
//! | store error on write or flush | `WriteError` | MEDIUM ERROR 03/0C/00 |
//! | new I_T nexus | `UnitAttention(PowerOnReset)` | UNIT ATTENTION 06/29/00 |
//! | LUN RESET / TARGET RESET by another nexus | `UnitAttention(BusDeviceReset)` | 06/29/03 |
//! | image size changed | `UnitAttention(CapacityChanged)` | 06/2A/09 |
//! | LUN inventory changed | `UnitAttention(ReportedLunsChanged)` | 06/3F/0E |
//!
//! Sense data goes back in fixed format (response code 70h, 18 bytes, additional length 10),
//! which both Linux and iPXE parse (`scsi_normalize_sense`; iPXE `scsi_parse_sense`);
//! descriptor format (72h) only when REQUEST SENSE asks for it with DESC.

use std::fmt;

use l2san_common::StoreError;

/// Sense keys (SPC-4 table 51).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    RecoveredError = 0x1,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    AbortedCommand = 0xb,
}

/// One sense condition: key, additional sense code and qualifier, and optionally the CDB byte
/// at fault (reported in the sense-key specific field pointer, SPC-4 §4.5.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
    /// The CDB byte holding the invalid field (SKSV = 1, C/D = 1).
    pub cdb_field: Option<u8>,
}

impl Sense {
    /// Length of fixed-format sense data as emitted here.
    pub const FIXED_LEN: usize = 18;
    /// Longest descriptor-format sense data emitted here (header and one field-pointer
    /// descriptor).
    pub const DESCRIPTOR_MAX_LEN: usize = 16;
    /// "No additional sense information": what REQUEST SENSE returns when nothing is pending.
    pub const NO_SENSE: Sense = Sense::new(SenseKey::NoSense, 0, 0);

    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            cdb_field: None,
        }
    }

    /// The three sense-key specific bytes: SKSV, C/D = CDB, no bit pointer, field pointer.
    fn sense_key_specific(&self) -> Option<[u8; 3]> {
        self.cdb_field.map(|byte| [0x80 | 0x40, 0, byte])
    }

    /// The fixed-format sense data (response code 70h, current error, additional length 10).
    pub fn fixed(&self) -> [u8; Sense::FIXED_LEN] {
        let mut b = [0u8; Sense::FIXED_LEN];
        b[0] = 0x70;
        b[2] = self.key as u8;
        b[7] = (Sense::FIXED_LEN - 8) as u8;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(sks) = self.sense_key_specific() {
            b[15..18].copy_from_slice(&sks);
        }
        b
    }

    /// Write the fixed-format sense data into `buf`, truncated to its length; returns the
    /// number of bytes written (18 when `buf` is big enough).
    pub fn to_fixed(&self, buf: &mut [u8]) -> usize {
        let b = self.fixed();
        let n = b.len().min(buf.len());
        buf[..n].copy_from_slice(&b[..n]);
        n
    }

    /// Write descriptor-format sense data (response code 72h; a sense-key specific descriptor
    /// when there is a field pointer) into `buf`, truncated; returns the bytes written.
    pub fn to_descriptor(&self, buf: &mut [u8]) -> usize {
        let mut b = [0u8; Sense::DESCRIPTOR_MAX_LEN];
        b[0] = 0x72;
        b[1] = self.key as u8;
        b[2] = self.asc;
        b[3] = self.ascq;
        let mut len = 8;
        if let Some(sks) = self.sense_key_specific() {
            // Sense key specific descriptor: type 02h, additional length 6.
            b[8] = 0x02;
            b[9] = 0x06;
            b[12..15].copy_from_slice(&sks);
            len = 16;
        }
        b[7] = (len - 8) as u8;
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&b[..n]);
        n
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02X}/{:02X}/{:02X}",
            self.key as u8, self.asc, self.ascq
        )
    }
}

/// The unit attention conditions this target establishes, in the order they are reported when
/// several are pending for one I_T_L nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitAttention {
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29/00): once per new I_T nexus.
    PowerOnReset,
    /// BUS DEVICE RESET FUNCTION OCCURRED (29/03): another nexus reset the LUN or target.
    BusDeviceReset,
    /// CAPACITY DATA HAS CHANGED (2A/09).
    CapacityChanged,
    /// REPORTED LUNS DATA HAS CHANGED (3F/0E).
    ReportedLunsChanged,
}

impl UnitAttention {
    /// All conditions, in reporting order.
    pub const ALL: [UnitAttention; 4] = [
        UnitAttention::PowerOnReset,
        UnitAttention::BusDeviceReset,
        UnitAttention::CapacityChanged,
        UnitAttention::ReportedLunsChanged,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub fn sense(self) -> Sense {
        let (asc, ascq) = match self {
            UnitAttention::PowerOnReset => (0x29, 0x00),
            UnitAttention::BusDeviceReset => (0x29, 0x03),
            UnitAttention::CapacityChanged => (0x2a, 0x09),
            UnitAttention::ReportedLunsChanged => (0x3f, 0x0e),
        };
        Sense::new(SenseKey::UnitAttention, asc, ascq)
    }
}

/// Why a command ended in CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScsiError {
    #[error("invalid operation code {0:#04x}")]
    InvalidOpcode(u8),
    #[error("logical block address out of range")]
    LbaOutOfRange,
    #[error("invalid field in CDB byte {0}")]
    InvalidFieldInCdb(u8),
    #[error("logical unit not supported")]
    LunNotSupported,
    #[error("write to a read-only logical unit")]
    WriteProtected,
    #[error("unrecovered read error on the image")]
    ReadError,
    #[error("write error on the image")]
    WriteError,
    #[error("unit attention {0:?}")]
    UnitAttention(UnitAttention),
}

impl ScsiError {
    /// The sense data the initiator sees for this error.
    pub fn sense(&self) -> Sense {
        use SenseKey::*;
        match *self {
            ScsiError::InvalidOpcode(_) => Sense::new(IllegalRequest, 0x20, 0x00),
            ScsiError::LbaOutOfRange => Sense::new(IllegalRequest, 0x21, 0x00),
            ScsiError::InvalidFieldInCdb(byte) => Sense {
                cdb_field: Some(byte),
                ..Sense::new(IllegalRequest, 0x24, 0x00)
            },
            ScsiError::LunNotSupported => Sense::new(IllegalRequest, 0x25, 0x00),
            ScsiError::WriteProtected => Sense::new(DataProtect, 0x27, 0x00),
            ScsiError::ReadError => Sense::new(MediumError, 0x11, 0x00),
            ScsiError::WriteError => Sense::new(MediumError, 0x0c, 0x00),
            ScsiError::UnitAttention(ua) => ua.sense(),
        }
    }

    /// The error for a failed image read. An out-of-range access means the transport asked
    /// for bytes outside the command's range; everything else is a medium error.
    pub fn from_read(e: &StoreError) -> ScsiError {
        match e {
            StoreError::OutOfRange { .. } => ScsiError::LbaOutOfRange,
            StoreError::ReadOnly => ScsiError::WriteProtected,
            StoreError::Shrunk | StoreError::Io(_) => {
                tracing::warn!("image read failed: {e}");
                ScsiError::ReadError
            }
        }
    }

    /// The error for a failed image write or flush.
    pub fn from_write(e: &StoreError) -> ScsiError {
        match e {
            StoreError::OutOfRange { .. } => ScsiError::LbaOutOfRange,
            StoreError::ReadOnly => ScsiError::WriteProtected,
            StoreError::Shrunk | StoreError::Io(_) => {
                tracing::warn!("image write or flush failed: {e}");
                ScsiError::WriteError
            }
        }
    }
}

impl From<ScsiError> for Sense {
    fn from(e: ScsiError) -> Sense {
        e.sense()
    }
}
