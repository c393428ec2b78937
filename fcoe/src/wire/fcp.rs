//! FCP information units (FCP-4; Linux `include/scsi/fc/fc_fcp.h`; iPXE
//! `src/include/ipxe/fcp.h`). TYPE 0x08; the R_CTL says which IU the payload is.
//!
//! ```text
//! FCP_CMND (R_CTL 0x06), 32 bytes when the additional CDB length is 0 (always, for iPXE and
//! Linux)
//!   0 FCP_LUN(8)
//!   8 CRN | task attribute (bits 2-0; priority bits 6-3) | TMF flags | add CDB len(7-2) RD(1) WR(0)
//!  12 FCP_CDB(16 + 4 * add CDB len)
//!  28 FCP_DL(4): expected data length
//!
//! FCP_XFER_RDY (R_CTL 0x05), exactly 12 bytes (iPXE rejects any other length)
//!   0 FCP_DATA_RO(4) relative offset | 4 FCP_BURST_LEN(4) | 8 reserved(4)
//!
//! FCP_RSP (R_CTL 0x07), at least 24 bytes
//!   0 reserved(8)
//!   8 status qualifier / retry delay timer(2) | flags | SCSI status
//!  12 FCP_RESID(4) | 16 FCP_SNS_LEN(4) | 20 FCP_RSP_LEN(4)
//!  24 FCP_RSP_INFO (FCP_RSP_LEN bytes: rsvd(3) response code, [rsvd(4)])
//!     FCP_SNS_INFO (FCP_SNS_LEN bytes)
//!   flags: RSP_LEN_VALID 0x01, SNS_LEN_VALID 0x02, RESID_OVER 0x04, RESID_UNDER 0x08,
//!          CONF_REQ 0x10
//! ```
//! FCP_DATA (R_CTL 0x01) is raw data at the relative offset in PARAMETER; it has no view.

use super::{be16, be32, need_len, put16, put32, Error, Result};

mod field {
    use std::ops::Range;
    pub const LUN: Range<usize> = 0..8;
    pub const CRN: usize = 8;
    pub const TASK_ATTR: usize = 9;
    pub const TMF: usize = 10;
    pub const FLAGS: usize = 11;
    pub const CDB: usize = 12;
    pub const CMND_LEN: usize = 32;

    pub const XFER_RO: Range<usize> = 0..4;
    pub const XFER_BURST: Range<usize> = 4..8;
    pub const XFER_RSVD: Range<usize> = 8..12;
    pub const XFER_LEN: usize = 12;

    pub const RSP_RSVD: Range<usize> = 0..8;
    pub const RSP_QUALIFIER: Range<usize> = 8..10;
    pub const RSP_FLAGS: usize = 10;
    pub const RSP_STATUS: usize = 11;
    pub const RSP_RESID: Range<usize> = 12..16;
    pub const RSP_SNS_LEN: Range<usize> = 16..20;
    pub const RSP_RSP_LEN: Range<usize> = 20..24;
    pub const RSP_INFO: usize = 24;
    pub const RSP_LEN: usize = 24;
    /// The response code inside FCP_RSP_INFO.
    pub const RSP_CODE: usize = 3;
}

/// Length of an FCP_CMND without additional CDB.
pub const FCP_CMND_LEN: usize = field::CMND_LEN;
/// Length of FCP_XFER_RDY.
pub const XFER_RDY_LEN: usize = field::XFER_LEN;
/// Fixed part of FCP_RSP.
pub const FCP_RSP_MIN_LEN: usize = field::RSP_LEN;

/// Task attribute (FCP-4 table 23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskAttribute {
    Simple,
    HeadOfQueue,
    Ordered,
    Aca,
    Unknown(u8),
}

impl From<u8> for TaskAttribute {
    fn from(v: u8) -> Self {
        match v {
            0 => TaskAttribute::Simple,
            1 => TaskAttribute::HeadOfQueue,
            2 => TaskAttribute::Ordered,
            4 => TaskAttribute::Aca,
            other => TaskAttribute::Unknown(other),
        }
    }
}

impl From<TaskAttribute> for u8 {
    fn from(v: TaskAttribute) -> u8 {
        match v {
            TaskAttribute::Simple => 0,
            TaskAttribute::HeadOfQueue => 1,
            TaskAttribute::Ordered => 2,
            TaskAttribute::Aca => 4,
            TaskAttribute::Unknown(other) => other,
        }
    }
}

/// Task management flags of an FCP_CMND (Linux `FCP_TMF_*`).
pub mod tmf {
    pub const ABORT_TASK_SET: u8 = 0x02;
    pub const CLEAR_TASK_SET: u8 = 0x04;
    pub const LUN_RESET: u8 = 0x10;
    pub const TARGET_RESET: u8 = 0x20;
    pub const CLEAR_ACA: u8 = 0x40;
}

/// A view of an FCP_CMND payload.
#[derive(Debug, Clone)]
pub struct FcpCmndPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcpCmndPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        FcpCmndPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The buffer must hold the fixed part and the additional CDB it announces.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need_len(b, FCP_CMND_LEN)?;
        need_len(b, self.total_len_unchecked())
    }
    fn total_len_unchecked(&self) -> usize {
        FCP_CMND_LEN + self.additional_cdb_len()
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn lun(&self) -> [u8; 8] {
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&self.b()[field::LUN]);
        lun
    }
    pub fn crn(&self) -> u8 {
        self.b()[field::CRN]
    }
    pub fn task_attribute(&self) -> TaskAttribute {
        TaskAttribute::from(self.b()[field::TASK_ATTR] & 0x07)
    }
    /// Command priority, bits 6-3 of the task attribute byte.
    pub fn priority(&self) -> u8 {
        (self.b()[field::TASK_ATTR] >> 3) & 0x0f
    }
    /// [`tmf`] flags; non-zero makes this a task management request with no CDB meaning.
    pub fn tmf_flags(&self) -> u8 {
        self.b()[field::TMF]
    }
    /// Additional CDB length in bytes (the field counts 4-byte words). Safe on any buffer that
    /// holds the flags byte; 0 when it does not.
    pub fn additional_cdb_len(&self) -> usize {
        self.b()
            .get(field::FLAGS)
            .map_or(0, |f| (f >> 2) as usize * 4)
    }
    pub fn rddata(&self) -> bool {
        self.b()[field::FLAGS] & 0x02 != 0
    }
    pub fn wrdata(&self) -> bool {
        self.b()[field::FLAGS] & 0x01 != 0
    }
    /// The CDB, 16 bytes plus any additional CDB.
    pub fn cdb(&self) -> &[u8] {
        &self.b()[field::CDB..field::CDB + 16 + self.additional_cdb_len()]
    }
    /// FCP_DL, the number of data bytes the initiator expects to move.
    pub fn fcp_dl(&self) -> u32 {
        let at = field::CDB + 16 + self.additional_cdb_len();
        be32(&self.b()[at..at + 4])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcpCmndPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_lun(&mut self, lun: [u8; 8]) {
        self.bm()[field::LUN].copy_from_slice(&lun);
    }
    pub fn set_crn(&mut self, v: u8) {
        self.bm()[field::CRN] = v;
    }
    pub fn set_task_attribute(&mut self, attr: TaskAttribute, priority: u8) {
        self.bm()[field::TASK_ATTR] = ((priority & 0x0f) << 3) | (u8::from(attr) & 0x07);
    }
    pub fn set_tmf_flags(&mut self, v: u8) {
        self.bm()[field::TMF] = v;
    }
    /// Set RDDATA/WRDATA with no additional CDB.
    pub fn set_data_flags(&mut self, rddata: bool, wrdata: bool) {
        self.bm()[field::FLAGS] = (rddata as u8) << 1 | wrdata as u8;
    }
    /// Set the 16-byte CDB (with no additional CDB, call [`set_data_flags`] first).
    ///
    /// [`set_data_flags`]: Self::set_data_flags
    pub fn set_cdb(&mut self, cdb: &[u8; 16]) {
        self.bm()[field::CDB..field::CDB + 16].copy_from_slice(cdb);
    }
    pub fn set_fcp_dl(&mut self, v: u32) {
        let at = field::CDB + 16 + self.additional_cdb_len();
        put32(&mut self.bm()[at..at + 4], v);
    }
}

/// An FCP_CMND with a 16-byte CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcpCmndRepr {
    pub lun: [u8; 8],
    pub crn: u8,
    pub task_attribute: TaskAttribute,
    pub priority: u8,
    pub tmf_flags: u8,
    pub rddata: bool,
    pub wrdata: bool,
    pub cdb: [u8; 16],
    pub fcp_dl: u32,
}

impl FcpCmndRepr {
    /// Parse. Additional CDB bytes are refused as unsupported: neither initiator sends them
    /// (Linux and iPXE `max_cmd_len` is 16), and the SCSI layer handles 16-byte CDBs only.
    pub fn parse<T: AsRef<[u8]>>(packet: &FcpCmndPacket<T>) -> Result<FcpCmndRepr> {
        packet.check_len()?;
        if packet.additional_cdb_len() != 0 {
            return Err(Error::Unsupported("FCP_CMND with additional CDB"));
        }
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(packet.cdb());
        Ok(FcpCmndRepr {
            lun: packet.lun(),
            crn: packet.crn(),
            task_attribute: packet.task_attribute(),
            priority: packet.priority(),
            tmf_flags: packet.tmf_flags(),
            rddata: packet.rddata(),
            wrdata: packet.wrdata(),
            cdb,
            fcp_dl: packet.fcp_dl(),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        FCP_CMND_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FcpCmndPacket<T>) {
        packet.set_lun(self.lun);
        packet.set_crn(self.crn);
        packet.set_task_attribute(self.task_attribute, self.priority);
        packet.set_tmf_flags(self.tmf_flags);
        packet.set_data_flags(self.rddata, self.wrdata);
        packet.set_cdb(&self.cdb);
        packet.set_fcp_dl(self.fcp_dl);
    }
}

/// A view of an FCP_XFER_RDY payload.
#[derive(Debug, Clone)]
pub struct XferRdyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> XferRdyPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        XferRdyPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<()> {
        need_len(self.buffer.as_ref(), XFER_RDY_LEN)
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn rel_offset(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::XFER_RO])
    }
    pub fn burst_len(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::XFER_BURST])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> XferRdyPacket<T> {
    pub fn set_rel_offset(&mut self, v: u32) {
        put32(&mut self.buffer.as_mut()[field::XFER_RO], v);
    }
    pub fn set_burst_len(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        put32(&mut b[field::XFER_BURST], v);
        b[field::XFER_RSVD].fill(0);
    }
}

/// FCP_XFER_RDY: "send me `burst_len` bytes starting at `rel_offset`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XferRdyRepr {
    pub rel_offset: u32,
    pub burst_len: u32,
}

impl XferRdyRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &XferRdyPacket<T>) -> Result<XferRdyRepr> {
        packet.check_len()?;
        Ok(XferRdyRepr {
            rel_offset: packet.rel_offset(),
            burst_len: packet.burst_len(),
        })
    }
    /// Exactly 12: iPXE (`fcpcmd_recv_xfer_rdy`) rejects any other length.
    pub const fn buffer_len(&self) -> usize {
        XFER_RDY_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut XferRdyPacket<T>) {
        packet.set_rel_offset(self.rel_offset);
        packet.set_burst_len(self.burst_len);
    }
}

/// FCP_RSP flags (Linux `FCP_*` in `fc_fcp.h`).
pub mod rsp_flags {
    pub const RSP_LEN_VALID: u8 = 0x01;
    pub const SNS_LEN_VALID: u8 = 0x02;
    pub const RESID_OVER: u8 = 0x04;
    pub const RESID_UNDER: u8 = 0x08;
    pub const CONF_REQ: u8 = 0x10;
}

/// FCP_RSP_INFO response codes (FCP-4 table 28; Linux `enum fcp_resp_rsp_codes`).
pub mod rsp_code {
    /// No failure / task management function complete.
    pub const COMPLETE: u8 = 0;
    pub const DATA_LEN_INVALID: u8 = 1;
    pub const CMND_FIELDS_INVALID: u8 = 2;
    pub const DATA_RO_MISMATCH: u8 = 3;
    pub const TMF_NOT_SUPPORTED: u8 = 4;
    pub const TMF_FAILED: u8 = 5;
    pub const TMF_INCORRECT_LUN: u8 = 9;
}

/// A view of an FCP_RSP payload.
#[derive(Debug, Clone)]
pub struct FcpRspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcpRspPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        FcpRspPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The fixed part must be there, and the response and sense info the valid flags
    /// announce must fit (iPXE `fcpcmd_recv_rsp` drops responses that fail either).
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need_len(b, FCP_RSP_MIN_LEN)?;
        let end = FCP_RSP_MIN_LEN as u64 + self.rsp_len() as u64 + self.sns_len() as u64;
        if (b.len() as u64) < end {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn status_qualifier(&self) -> u16 {
        be16(&self.b()[field::RSP_QUALIFIER])
    }
    pub fn flags(&self) -> u8 {
        self.b()[field::RSP_FLAGS]
    }
    pub fn scsi_status(&self) -> u8 {
        self.b()[field::RSP_STATUS]
    }
    pub fn resid(&self) -> u32 {
        be32(&self.b()[field::RSP_RESID])
    }
    /// FCP_SNS_LEN if SNS_LEN_VALID, else 0.
    pub fn sns_len(&self) -> u32 {
        if self.flags() & rsp_flags::SNS_LEN_VALID != 0 {
            be32(&self.b()[field::RSP_SNS_LEN])
        } else {
            0
        }
    }
    /// FCP_RSP_LEN if RSP_LEN_VALID, else 0.
    pub fn rsp_len(&self) -> u32 {
        if self.flags() & rsp_flags::RSP_LEN_VALID != 0 {
            be32(&self.b()[field::RSP_RSP_LEN])
        } else {
            0
        }
    }
    pub fn rsp_info(&self) -> &[u8] {
        &self.b()[field::RSP_INFO..field::RSP_INFO + self.rsp_len() as usize]
    }
    pub fn sense(&self) -> &[u8] {
        let start = field::RSP_INFO + self.rsp_len() as usize;
        &self.b()[start..start + self.sns_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcpRspPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_status_qualifier(&mut self, v: u16) {
        let b = self.bm();
        b[field::RSP_RSVD].fill(0);
        put16(&mut b[field::RSP_QUALIFIER], v);
    }
    pub fn set_flags(&mut self, v: u8) {
        self.bm()[field::RSP_FLAGS] = v;
    }
    pub fn set_scsi_status(&mut self, v: u8) {
        self.bm()[field::RSP_STATUS] = v;
    }
    pub fn set_resid(&mut self, v: u32) {
        put32(&mut self.bm()[field::RSP_RESID], v);
    }
    pub fn set_sns_len(&mut self, v: u32) {
        put32(&mut self.bm()[field::RSP_SNS_LEN], v);
    }
    pub fn set_rsp_len(&mut self, v: u32) {
        put32(&mut self.bm()[field::RSP_RSP_LEN], v);
    }
    /// Everything after the fixed part: response info then sense.
    pub fn info_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::RSP_INFO..]
    }
}

/// FCP_RSP_INFO: a response code in a 4- or 8-byte field (libfc/LIO send 8, FCP-4 allows 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RspInfo {
    /// [`rsp_code`] value.
    pub code: u8,
    /// 4 or 8.
    pub len: u8,
}

/// An FCP_RSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcpRspRepr<'a> {
    pub status_qualifier: u16,
    /// RESID_OVER, RESID_UNDER, CONF_REQ. RSP_LEN_VALID and SNS_LEN_VALID are derived from
    /// `rsp_info` and `sense` on emit and cleared here on parse.
    pub flags: u8,
    pub scsi_status: u8,
    pub resid: u32,
    pub rsp_info: Option<RspInfo>,
    /// Sense data (fixed 0x70 or descriptor 0x72 format), empty for none.
    pub sense: &'a [u8],
}

impl<'a> FcpRspRepr<'a> {
    /// A response with the given status and no residual, sense or response info.
    pub fn status(scsi_status: u8) -> FcpRspRepr<'static> {
        FcpRspRepr {
            status_qualifier: 0,
            flags: 0,
            scsi_status,
            resid: 0,
            rsp_info: None,
            sense: &[],
        }
    }

    /// The reply to a task management request: GOOD status, RSP_LEN_VALID with 8 bytes of
    /// response info carrying `code` (Linux `fc_lun_reset` waits for exactly this).
    pub fn task_management(code: u8) -> FcpRspRepr<'static> {
        FcpRspRepr {
            rsp_info: Some(RspInfo { code, len: 8 }),
            ..Self::status(0)
        }
    }

    pub fn parse(packet: &FcpRspPacket<&'a [u8]>) -> Result<FcpRspRepr<'a>> {
        packet.check_len()?;
        let rsp_info = if packet.flags() & rsp_flags::RSP_LEN_VALID != 0 {
            let info = packet.rsp_info();
            if info.len() != 4 && info.len() != 8 {
                return Err(Error::Malformed("FCP_RSP_LEN is neither 4 nor 8"));
            }
            Some(RspInfo {
                code: info[field::RSP_CODE],
                len: info.len() as u8,
            })
        } else {
            None
        };
        let b: &'a [u8] = packet.buffer;
        let start = field::RSP_INFO + packet.rsp_len() as usize;
        let sense = &b[start..start + packet.sns_len() as usize];
        Ok(FcpRspRepr {
            status_qualifier: packet.status_qualifier(),
            flags: packet.flags() & !(rsp_flags::RSP_LEN_VALID | rsp_flags::SNS_LEN_VALID),
            scsi_status: packet.scsi_status(),
            resid: packet.resid(),
            rsp_info,
            sense,
        })
    }

    /// 24 + response info + sense. Not rounded: when this is not a multiple of four, the
    /// frame carries [`FCtl::fill_for`](super::fc::FCtl::fill_for) fill bytes after it.
    pub fn buffer_len(&self) -> usize {
        FCP_RSP_MIN_LEN + self.rsp_info.map_or(0, |i| i.len as usize) + self.sense.len()
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FcpRspPacket<T>) {
        let mut flags = self.flags & !(rsp_flags::RSP_LEN_VALID | rsp_flags::SNS_LEN_VALID);
        let rsp_len = self.rsp_info.map_or(0, |i| i.len as usize);
        if self.rsp_info.is_some() {
            flags |= rsp_flags::RSP_LEN_VALID;
        }
        if !self.sense.is_empty() {
            flags |= rsp_flags::SNS_LEN_VALID;
        }
        packet.set_status_qualifier(self.status_qualifier);
        packet.set_flags(flags);
        packet.set_scsi_status(self.scsi_status);
        packet.set_resid(self.resid);
        packet.set_sns_len(self.sense.len() as u32);
        packet.set_rsp_len(rsp_len as u32);
        let info = packet.info_mut();
        if let Some(i) = self.rsp_info {
            info[..rsp_len].fill(0);
            info[field::RSP_CODE] = i.code;
        }
        info[rsp_len..rsp_len + self.sense.len()].copy_from_slice(self.sense);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{self, *};
    use super::*;
    use proptest::prelude::*;

    fn cmnd(name: &str, n: usize) -> (Vec<u8>, FcpCmndRepr) {
        let b = testdata::fc_payload(name, n);
        let repr = FcpCmndRepr::parse(&FcpCmndPacket::new_checked(&b[..]).unwrap()).unwrap();
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut FcpCmndPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, b, "{name} frame {n} re-emitted");
        for len in 0..b.len() {
            let r = FcpCmndPacket::new_checked(&b[..len]).and_then(|p| FcpCmndRepr::parse(&p));
            assert!(r.is_err(), "prefix {len}");
        }
        (b, repr)
    }

    #[test]
    fn ipxe_commands() {
        // TEST UNIT READY (frame 14): LUN 0, SIMPLE, no data.
        let (_, tur) = cmnd(IPXE_BOOT, 14);
        assert_eq!(tur.lun, [0; 8]);
        assert_eq!(
            (tur.crn, tur.task_attribute, tur.tmf_flags),
            (0, TaskAttribute::Simple, 0)
        );
        assert_eq!((tur.rddata, tur.wrdata, tur.fcp_dl), (false, false, 0));
        assert_eq!(tur.cdb, [0; 16]);
        // READ CAPACITY(10) (frame 16): RDDATA, 8 bytes.
        let (_, rc) = cmnd(IPXE_BOOT, 16);
        assert_eq!(
            (rc.rddata, rc.wrdata, rc.fcp_dl, rc.cdb[0]),
            (true, false, 8, 0x25)
        );
        // READ(10) LBA 1, 64 blocks (frame 29).
        let (_, rd) = cmnd(IPXE_BOOT, 29);
        assert_eq!((rd.cdb[0], rd.fcp_dl), (0x28, 64 * 512));
        assert_eq!(&rd.cdb[2..9], &[0, 0, 0, 1, 0, 0, 64]);
        // WRITE(10) LBA 0x3ffc, 3 blocks (frame 66): WRDATA.
        let (_, wr) = cmnd(IPXE_BOOT, 66);
        assert_eq!(
            (wr.cdb[0], wr.rddata, wr.wrdata, wr.fcp_dl),
            (0x2a, false, true, 1536)
        );
    }

    #[test]
    fn linux_commands() {
        let (_, inq) = cmnd(LINUX_LIO, 27);
        assert_eq!((inq.cdb[0], inq.rddata), (0x12, true));
        let (b, rsoc) = cmnd(LINUX_LIO, 107); // REPORT SUPPORTED OPCODES
        assert_eq!(rsoc.cdb[0], 0xa3);
        assert_eq!(FcpCmndPacket::new_checked(&b[..]).unwrap().cdb().len(), 16);
        let (_, wr) = cmnd(LINUX_LIO_LATE, 147); // WRITE(10) of 2051 blocks
        assert_eq!((wr.cdb[0], wr.wrdata, wr.fcp_dl), (0x2a, true, 2051 * 512));
    }

    #[test]
    fn additional_cdb_is_length_checked_and_unsupported() {
        let mut b = testdata::fc_payload(IPXE_BOOT, 14);
        b[11] = 1 << 2; // one extra CDB word, not present
        assert_eq!(
            FcpCmndPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
        b.extend_from_slice(&[0; 4]);
        let p = FcpCmndPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.cdb().len(), 20);
        assert!(matches!(FcpCmndRepr::parse(&p), Err(Error::Unsupported(_))));
    }

    #[test]
    fn xfer_rdy_from_captures() {
        for (name, n, len) in [(IPXE_BOOT, 67, 1536), (LINUX_LIO_LATE, 148, 2051 * 512)] {
            let b = testdata::fc_payload(name, n);
            assert_eq!(b.len(), XFER_RDY_LEN);
            let r = XferRdyRepr::parse(&XferRdyPacket::new_checked(&b[..]).unwrap()).unwrap();
            assert_eq!(
                r,
                XferRdyRepr {
                    rel_offset: 0,
                    burst_len: len
                }
            );
            let mut buf = [0xa5u8; XFER_RDY_LEN];
            r.emit(&mut XferRdyPacket::new_unchecked(&mut buf[..]));
            assert_eq!(&buf[..], &b[..]);
            for cut in 0..b.len() {
                assert!(XferRdyPacket::new_checked(&b[..cut]).is_err());
            }
        }
    }

    fn rsp_round_trip(b: &[u8]) -> (u8, u32, Option<RspInfo>, usize) {
        let p = FcpRspPacket::new_checked(b).unwrap();
        let r = FcpRspRepr::parse(&p).unwrap();
        assert_eq!(r.buffer_len(), b.len());
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut FcpRspPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, b);
        for cut in 0..b.len() {
            assert!(
                FcpRspPacket::new_checked(&b[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        (r.scsi_status, r.resid, r.rsp_info, r.sense.len())
    }

    #[test]
    fn fcp_rsp_good_and_check_condition() {
        // The iPXE responder's 24-byte GOOD response (frame 15).
        let good = testdata::fc_payload(IPXE_BOOT, 15);
        assert_eq!(rsp_round_trip(&good), (0, 0, None, 0));
        let mut buf = [0xa5u8; 24];
        FcpRspRepr::status(0).emit(&mut FcpRspPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &good[..]);
        // LIO's CHECK CONDITION to REPORT SUPPORTED OPCODES (frame 108): SNS_LEN_VALID,
        // FCP_SNS_LEN 96 although fixed sense is 18 bytes (ILLEGAL REQUEST, 20/00).
        let cc = testdata::fc_payload(LINUX_LIO, 108);
        assert_eq!(rsp_round_trip(&cc), (0x02, 0, None, 96));
        let p = FcpRspPacket::new_checked(&cc[..]).unwrap();
        assert_eq!(p.flags(), rsp_flags::SNS_LEN_VALID);
        assert_eq!(&p.sense()[..3], &[0x70, 0x00, 0x05]);
        assert_eq!(p.sense()[12], 0x20);
    }

    #[test]
    fn fcp_rsp_task_management_and_lengths() {
        let r = FcpRspRepr::task_management(rsp_code::COMPLETE);
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut FcpRspPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf.len(), 32);
        assert_eq!(buf[10], rsp_flags::RSP_LEN_VALID);
        assert_eq!(&buf[20..32], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            rsp_round_trip(&buf),
            (0, 0, Some(RspInfo { code: 0, len: 8 }), 0)
        );
        // A declared sense length that runs past the frame is refused, not sliced.
        let mut bad = buf.clone();
        bad[10] |= rsp_flags::SNS_LEN_VALID;
        bad[19] = 1;
        assert_eq!(
            FcpRspPacket::new_checked(&bad[..]).unwrap_err(),
            Error::Truncated
        );
        // A huge length must not overflow.
        bad[16..20].copy_from_slice(&[0xff; 4]);
        bad[20..24].copy_from_slice(&[0xff; 4]);
        assert!(FcpRspPacket::new_checked(&bad[..]).is_err());
        // RSP_LEN other than 4/8.
        let mut odd = buf.clone();
        odd[23] = 0;
        let p = FcpRspPacket::new_checked(&odd[..]).unwrap();
        assert!(FcpRspRepr::parse(&p).is_err());
    }

    #[test]
    fn task_attribute_codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(TaskAttribute::from(v)), v);
        }
    }

    proptest! {
        #[test]
        fn fcp_rsp_round_trip(q in any::<u16>(), flags in any::<u8>(), status in any::<u8>(),
                              resid in any::<u32>(), info in prop::option::of((any::<u8>(),
                              prop::sample::select(vec![4u8, 8]))),
                              sense in prop::collection::vec(any::<u8>(), 0..100)) {
            let repr = FcpRspRepr {
                status_qualifier: q,
                flags: flags & !(rsp_flags::RSP_LEN_VALID | rsp_flags::SNS_LEN_VALID),
                scsi_status: status,
                resid,
                rsp_info: info.map(|(code, len)| RspInfo { code, len }),
                sense: &sense,
            };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut FcpRspPacket::new_unchecked(&mut buf[..]));
            let p = FcpRspPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(FcpRspRepr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn fcp_cmnd_round_trip(lun in any::<[u8; 8]>(), crn in any::<u8>(), attr in 0..8u8,
                               prio in 0..16u8, tmf in any::<u8>(), rd in any::<bool>(),
                               wr in any::<bool>(), cdb in any::<[u8; 16]>(),
                               dl in any::<u32>()) {
            let repr = FcpCmndRepr {
                lun, crn, task_attribute: TaskAttribute::from(attr), priority: prio,
                tmf_flags: tmf, rddata: rd, wrdata: wr, cdb, fcp_dl: dl,
            };
            let mut buf = [0xa5u8; FCP_CMND_LEN];
            repr.emit(&mut FcpCmndPacket::new_unchecked(&mut buf[..]));
            let p = FcpCmndPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(FcpCmndRepr::parse(&p).unwrap(), repr);
        }
    }
}
