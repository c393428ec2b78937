//! The SCSI command layer: a block device over image LUNs (SPC-4, SBC-3).
//!
//! It turns a CDB into a data phase plus status/sense and never learns which transport carried
//! it (the command layer of DESIGN.md, "Layers"; SPDK `lib/scsi`): nothing here imports `fc` or `wire`. A transport
//! (FCP) drives it like this:
//!
//! ```text
//! FCP_CMND(lun, cdb, FCP_DL) from nexus n
//!   │  data_direction(cdb), expected_len(cdb)   → compare with RDDATA/WRDATA and FCP_DL (residuals)
//!   ▼
//! target.execute(&lun, &cdb, n, visible, client) -> Command
//!   Read  { offset_bytes, len_bytes }        → for each FCP_DATA frame: target.read_data(&lun, client, off, payload)
//!                                              then FCP_RSP GOOD (or CHECK CONDITION with the Err sense)
//!   Write { offset_bytes, len_bytes, fua }   → XFER_RDY; for each FCP_DATA frame: target.write_data(&lun, client, off, payload);
//!                                              then target.commit_write(&lun, client, fua); FCP_RSP
//!   DataIn(d)                                → d.as_slice() in FCP_DATA (≤ allocation length), FCP_RSP GOOD
//!   NoData                                   → FCP_RSP GOOD
//!   Error(sense)                             → FCP_RSP CHECK CONDITION, sense.to_fixed() as autosense
//! ```
//!
//! READ and WRITE data move straight between frame buffers and the image (`Image::read_at` into
//! the TX payload, `Image::write_at` from the RX payload): no intermediate buffer and no heap
//! allocation per command. Parameter data of the other commands is built in a fixed inline
//! buffer ([`DataIn`], [`DATA_IN_MAX`] bytes). For READ and WRITE, `len_bytes` is what the CDB
//! asks for; the transport clamps to FCP_DL and reports the residual.
//!
//! Commands (anything else: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE 05/20/00):
//!
//! | Opcode | Command | Result |
//! |---|---|---|
//! | 00h | TEST UNIT READY | GOOD |
//! | 03h | REQUEST SENSE | pending unit attention (cleared) or NO SENSE, as data; fixed or DESC format |
//! | 08h/28h/88h | READ(6/10/16) | [`Command::Read`] |
//! | 0Ah/2Ah/8Ah | WRITE(6/10/16) | [`Command::Write`]; DATA PROTECT on a read-only image |
//! | 12h | INQUIRY | standard data, VPD 00h 80h 83h B0h B1h ([`inquiry`]) |
//! | 1Ah/5Ah | MODE SENSE(6/10) | pages 08h, 0Ah, 3Fh ([`mode`]) |
//! | 1Bh | START STOP UNIT | GOOD (nothing to spin) |
//! | 1Eh | PREVENT ALLOW MEDIUM REMOVAL | GOOD (not removable) |
//! | 25h | READ CAPACITY(10) | last LBA (FFFFFFFFh above 2 TiB), 512 |
//! | 2Fh/8Fh | VERIFY(10/16) | BYTCHK 0: range check, GOOD |
//! | 35h/91h | SYNCHRONIZE CACHE(10/16) | `Image::flush` (fdatasync) |
//! | 9Eh/10h | READ CAPACITY(16) | 32 bytes |
//! | A0h | REPORT LUNS | configured LUNs; answered on any LUN, configured or not |
//!
//! Every request names what the transport knows of its initiator:
//! - `visible`, the LUNs the nexus may see (bit n: LUN n; FCoE allow-lists, `u64::MAX` for
//!   all): to that nexus a hidden LUN is exactly a LUN that is not configured;
//! - `client`, whose volume the request runs on: a LUN may be a base image with a
//!   copy-on-write overlay per client (`l2san_common::store::OverlaySet`), and FCP names the
//!   initiator's WWPN (`ClientKey::wwpn`). With no client, an overlay LUN reads as its base
//!   and refuses writes (DATA PROTECT is not reported up front: WRITE's data phase fails);
//!   a plain image LUN is the same volume for every client.
//!
//! A LUN that is not configured answers INQUIRY with peripheral qualifier 011b / type 1Fh,
//! REPORT LUNS normally, REQUEST SENSE with 05/25/00 as data (SPC-4 §6.29), and everything
//! else with CHECK CONDITION 05/25/00.
//!
//! Unit attention ([`nexus`]): each new I_T nexus sees 06/29/00 once per LUN, on its first
//! command other than INQUIRY, REPORT LUNS and REQUEST SENSE. The UA table is the only shared
//! mutable state: one uncontended `Mutex` around a scan of a small fixed table per command.
//!
//! Task management: this layer keeps no per-command state (a command is over when `execute`
//! returns, apart from the data phase the transport runs), so ABORT TASK SET and CLEAR TASK SET
//! are the transport's alone: it drops its exchanges. [`ScsiTarget::lun_reset`] and
//! [`ScsiTarget::target_reset`] raise 06/29/03 for the other nexuses (SAM-5 §7.8); there are no
//! reservations or mode parameters to reset.

pub mod block;
pub mod cdb;
pub mod inquiry;
pub mod lun;
pub mod mode;
pub mod nexus;
pub mod sense;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Mutex, MutexGuard};

pub use l2san_common::store::ClientKey;

pub use cdb::{
    block_range, data_direction, expected_len, ByteRange, DataDirection, BLOCK_SIZE,
    MAX_TRANSFER_BLOCKS,
};
pub use lun::{decode_sam_lun, encode_sam_lun, Lun, LunError, LunTable, MAX_LUNS};
pub use nexus::{NexusId, MAX_NEXUSES};
pub use sense::{ScsiError, Sense, SenseKey, UnitAttention};

use cdb::{be32, check_control, opcode};
use nexus::{lun_bit, NexusTable};

/// SCSI status codes (SAM-5 table 32) the transport puts in its response.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
}

/// Capacity of the inline parameter-data buffer: the largest response, REPORT LUNS with
/// every LUN configured (8 + 8 × [`MAX_LUNS`]); standard INQUIRY (96), the VPD pages (≤ 80)
/// and MODE SENSE (≤ 56) are smaller.
pub const DATA_IN_MAX: usize = 8 + 8 * MAX_LUNS;
const _: () = assert!(DATA_IN_MAX >= inquiry::STANDARD_LEN);
const _: () = assert!(DATA_IN_MAX <= u16::MAX as usize);

/// Parameter data for the data-in phase of a non-READ command, held inline (no heap). Already
/// truncated to the CDB's allocation length; the transport clamps further to FCP_DL.
#[derive(Clone)]
pub struct DataIn {
    buf: [u8; DATA_IN_MAX],
    len: u16,
}

impl DataIn {
    /// Build parameter data with `fill` (which gets a zeroed buffer and returns the full
    /// length of what it wrote), truncated to `alloc_len`.
    pub(crate) fn build(alloc_len: u64, fill: impl FnOnce(&mut [u8]) -> usize) -> DataIn {
        let mut d = DataIn {
            buf: [0; DATA_IN_MAX],
            len: 0,
        };
        let full = fill(&mut d.buf).min(DATA_IN_MAX);
        // full <= DATA_IN_MAX <= u16::MAX.
        d.len = full.min(usize::try_from(alloc_len).unwrap_or(usize::MAX)) as u16;
        d
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Equal when the bytes sent are equal (what lies past the length is not data).
impl PartialEq for DataIn {
    fn eq(&self, other: &DataIn) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for DataIn {}

impl fmt::Debug for DataIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DataIn").field(&self.as_slice()).finish()
    }
}

/// What a command needs from the transport next.
// DataIn is large on purpose: parameter data lives inline rather than on the heap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stream `len_bytes` from the image at `offset_bytes` to the initiator
    /// ([`ScsiTarget::read_data`] per frame), then status GOOD.
    Read { offset_bytes: u64, len_bytes: u32 },
    /// Receive `len_bytes` from the initiator into the image at `offset_bytes`
    /// ([`ScsiTarget::write_data`] per frame, then [`ScsiTarget::commit_write`] with `fua`),
    /// then status GOOD.
    Write {
        offset_bytes: u64,
        len_bytes: u32,
        fua: bool,
    },
    /// Send these bytes, then status GOOD.
    DataIn(DataIn),
    /// No data phase; status GOOD.
    NoData,
    /// No data phase; status CHECK CONDITION with this sense.
    Error(Sense),
}

impl Command {
    /// The SCSI status the command ends with if its data phase succeeds.
    pub fn status(&self) -> u8 {
        match self {
            Command::Error(_) => status::CHECK_CONDITION,
            _ => status::GOOD,
        }
    }
}

/// A SCSI target device: its LUNs and the unit attention state of the nexuses that reach it.
/// Shared by reference between workers (`Sync`).
#[derive(Debug)]
pub struct ScsiTarget {
    luns: LunTable,
    nexuses: Mutex<NexusTable>,
}

impl ScsiTarget {
    pub fn new(luns: LunTable) -> ScsiTarget {
        ScsiTarget {
            luns,
            nexuses: Mutex::new(NexusTable::new()),
        }
    }

    pub fn luns(&self) -> &LunTable {
        &self.luns
    }

    /// The LUN a SAM 8-byte LUN addresses, if configured.
    pub fn lun(&self, sam: &[u8; 8]) -> Option<&Lun> {
        self.luns.lookup(sam)
    }

    fn nexuses(&self) -> MutexGuard<'_, NexusTable> {
        // The table stays consistent whatever panicked while holding it.
        self.nexuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The LUN a SAM 8-byte LUN addresses, if configured and in `visible` (bit n: LUN n).
    pub fn visible_lun(&self, sam: &[u8; 8], visible: u64) -> Option<&Lun> {
        self.luns
            .lookup(sam)
            .filter(|l| lun_bit(l.number()).is_some_and(|b| visible & b != 0))
    }

    /// Execute `cdb` addressed to the SAM LUN `lun` from the I_T nexus `nexus`, which may
    /// see only the LUNs in `visible` (bit n: LUN n): every other LUN is absent to it, answered
    /// with 05/25/00 (INQUIRY: peripheral qualifier 011b) and left out of REPORT LUNS.
    /// `client` names the volume of an overlay LUN (SYNCHRONIZE CACHE flushes that client's
    /// overlay); the data phase that follows names the same client.
    ///
    /// Commands without a data phase (and SYNCHRONIZE CACHE, which flushes before returning)
    /// are complete on return; READ and WRITE return the data phase for the transport.
    pub fn execute(
        &self,
        lun: &[u8; 8],
        cdb: &[u8; 16],
        nexus: NexusId,
        visible: u64,
        client: Option<&ClientKey>,
    ) -> Command {
        match self.dispatch(lun, cdb, nexus, visible, client) {
            Ok(command) => command,
            Err(e) => {
                tracing::trace!(opcode = cdb[0], nexus = nexus.0, "CHECK CONDITION: {e}");
                Command::Error(e.sense())
            }
        }
    }

    fn dispatch(
        &self,
        sam: &[u8; 8],
        cdb: &[u8; 16],
        nexus: NexusId,
        visible: u64,
        client: Option<&ClientKey>,
    ) -> Result<Command, ScsiError> {
        let op = cdb[0];
        let lun = self.visible_lun(sam, visible);
        // Commands that never report a unit attention, and that answer for absent LUNs too.
        match op {
            opcode::INQUIRY => {
                check_control(cdb)?;
                self.nexuses().touch(nexus);
                return inquiry::inquiry(lun, cdb).map(Command::DataIn);
            }
            opcode::REPORT_LUNS => {
                check_control(cdb)?;
                return self.report_luns(cdb, nexus, visible).map(Command::DataIn);
            }
            opcode::REQUEST_SENSE => {
                check_control(cdb)?;
                return Ok(Command::DataIn(self.request_sense(lun, cdb, nexus)));
            }
            _ => {}
        }
        let Some(lun) = lun else {
            return Err(ScsiError::LunNotSupported);
        };
        if let Some(ua) = self.nexuses().take(nexus, lun.number()) {
            return Err(ScsiError::UnitAttention(ua));
        }
        check_control(cdb)?;
        match op {
            opcode::TEST_UNIT_READY
            | opcode::START_STOP_UNIT
            | opcode::PREVENT_ALLOW_MEDIUM_REMOVAL => Ok(Command::NoData),
            opcode::READ_6 | opcode::READ_10 | opcode::READ_16 => {
                block::read_write(lun, cdb, false)
            }
            opcode::WRITE_6 | opcode::WRITE_10 | opcode::WRITE_16 => {
                block::read_write(lun, cdb, true)
            }
            opcode::VERIFY_10 | opcode::VERIFY_16 => block::verify(lun, cdb),
            opcode::SYNCHRONIZE_CACHE_10 | opcode::SYNCHRONIZE_CACHE_16 => {
                block::synchronize_cache(lun, cdb, client)
            }
            opcode::READ_CAPACITY_10 => block::read_capacity_10(lun, cdb).map(Command::DataIn),
            opcode::SERVICE_ACTION_IN_16 => match cdb[1] & 0x1f {
                cdb::SA_READ_CAPACITY_16 => block::read_capacity_16(lun, cdb).map(Command::DataIn),
                _ => Err(ScsiError::InvalidFieldInCdb(1)),
            },
            opcode::MODE_SENSE_6 => mode::mode_sense(lun, cdb, false).map(Command::DataIn),
            opcode::MODE_SENSE_10 => mode::mode_sense(lun, cdb, true).map(Command::DataIn),
            _ => Err(ScsiError::InvalidOpcode(op)),
        }
    }

    /// REPORT LUNS (SPC-4 §6.33): SELECT REPORT 00h and 02h list the configured LUNs (there are
    /// no well-known LUs), 01h lists none; only the LUNs in `visible`. It clears REPORTED LUNS
    /// DATA HAS CHANGED for the nexus on every LUN.
    fn report_luns(
        &self,
        cdb: &[u8; 16],
        nexus: NexusId,
        visible: u64,
    ) -> Result<DataIn, ScsiError> {
        let select = cdb[2];
        if select > 0x02 {
            return Err(ScsiError::InvalidFieldInCdb(2));
        }
        self.nexuses()
            .clear(nexus, UnitAttention::ReportedLunsChanged, u64::MAX);
        let alloc_len = u64::from(be32(cdb, 6));
        Ok(DataIn::build(alloc_len, |b| {
            let mut at = 8;
            if select != 0x01 {
                let shown = self
                    .luns
                    .iter()
                    .filter(|l| lun_bit(l.number()).is_some_and(|b| visible & b != 0));
                for lun in shown {
                    b[at..at + 8].copy_from_slice(&encode_sam_lun(lun.number()));
                    at += 8;
                }
            }
            b[0..4].copy_from_slice(&((at - 8) as u32).to_be_bytes());
            at
        }))
    }

    /// REQUEST SENSE (SPC-4 §6.29): the next pending unit attention for this I_T_L nexus (and
    /// clear it), else NO SENSE; for an absent LUN, LOGICAL UNIT NOT SUPPORTED. Autosense
    /// leaves no other deferred sense to report. Always status GOOD.
    fn request_sense(&self, lun: Option<&Lun>, cdb: &[u8; 16], nexus: NexusId) -> DataIn {
        let desc = cdb[1] & 0x01 != 0;
        let sense = match lun {
            None => ScsiError::LunNotSupported.sense(),
            Some(lun) => match self.nexuses().take(nexus, lun.number()) {
                Some(ua) => ua.sense(),
                None => Sense::NO_SENSE,
            },
        };
        DataIn::build(u64::from(cdb[4]), |b| {
            if desc {
                sense.to_descriptor(b)
            } else {
                sense.to_fixed(b)
            }
        })
    }

    /// Data-in of a [`Command::Read`]: copy image bytes at `offset_bytes` of `client`'s
    /// volume into `buf` (a frame payload). Errors are the sense for CHECK CONDITION.
    pub fn read_data(
        &self,
        lun: &[u8; 8],
        client: Option<&ClientKey>,
        offset_bytes: u64,
        buf: &mut [u8],
    ) -> Result<(), Sense> {
        self.lun_or_sense(lun)?.read_data(client, offset_bytes, buf)
    }

    /// Data-out of a [`Command::Write`]: write `data` (a frame payload) at `offset_bytes` of
    /// `client`'s volume (on an overlay LUN, into its overlay).
    pub fn write_data(
        &self,
        lun: &[u8; 8],
        client: Option<&ClientKey>,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<(), Sense> {
        self.lun_or_sense(lun)?
            .write_data(client, offset_bytes, data)
    }

    /// End of a [`Command::Write`] data phase: honour FUA on `client`'s volume before status
    /// GOOD.
    pub fn commit_write(
        &self,
        lun: &[u8; 8],
        client: Option<&ClientKey>,
        fua: bool,
    ) -> Result<(), Sense> {
        self.lun_or_sense(lun)?.commit_write(client, fua)
    }

    fn lun_or_sense(&self, sam: &[u8; 8]) -> Result<&Lun, Sense> {
        self.luns
            .lookup(sam)
            .ok_or(ScsiError::LunNotSupported.sense())
    }

    /// The nexus logged out (FCP: LOGO, PRLO, implicit logout): forget it, so a new login
    /// sees the power-on unit attention again. True if it was known.
    pub fn nexus_logout(&self, nexus: NexusId) -> bool {
        self.nexuses().forget(nexus)
    }

    /// LOGICAL UNIT RESET from `issuer` (SAM-5 §7.8): the transport aborts the LUN's commands;
    /// here every other nexus gets 06/29/03 on that LUN. Returns false when the LUN is not
    /// configured (FCP answers "TMF incorrect LUN").
    pub fn lun_reset(&self, lun: &[u8; 8], issuer: NexusId) -> bool {
        let Some(bit) = self.luns.lookup(lun).and_then(|l| lun_bit(l.number())) else {
            return false;
        };
        self.nexuses()
            .raise(UnitAttention::BusDeviceReset, bit, Some(issuer));
        true
    }

    /// TARGET RESET from an `issuer` that may see only the LUNs in `visible`: as
    /// [`lun_reset`](Self::lun_reset) on each of those.
    pub fn target_reset(&self, issuer: NexusId, visible: u64) {
        self.nexuses().raise(
            UnitAttention::BusDeviceReset,
            self.luns.present_mask() & visible,
            Some(issuer),
        );
    }

    /// Raise CAPACITY DATA HAS CHANGED (06/2A/09) on LUN `lun` for every nexus (for a live
    /// resize of the image).
    pub fn raise_capacity_changed(&self, lun: u16) {
        if let Some(bit) = lun_bit(lun) {
            self.nexuses()
                .raise(UnitAttention::CapacityChanged, bit, None);
        }
    }

    /// Raise REPORTED LUNS DATA HAS CHANGED (06/3F/0E) on every configured LUN for every
    /// nexus (for a live change of the LUN set); REPORT LUNS clears it.
    pub fn raise_reported_luns_changed(&self) {
        self.nexuses().raise(
            UnitAttention::ReportedLunsChanged,
            self.luns.present_mask(),
            None,
        );
    }

    /// The unit attentions pending for `nexus` on LUN `lun`, in reporting order (diagnostics
    /// and tests; not for the data path).
    pub fn pending_unit_attentions(&self, nexus: NexusId, lun: u16) -> Vec<UnitAttention> {
        self.nexuses().pending(nexus, lun)
    }

    /// How many nexuses the unit attention table remembers.
    pub fn known_nexuses(&self) -> usize {
        self.nexuses().len()
    }

    /// A target serving `luns` in this one's place (a live reload), taking over the unit
    /// attention state of every nexus.
    pub fn with_luns(&self, luns: LunTable) -> ScsiTarget {
        let nexuses = std::mem::replace(&mut *self.nexuses(), NexusTable::new());
        ScsiTarget {
            luns,
            nexuses: Mutex::new(nexuses),
        }
    }
}
