//! Fibre Channel frame header (FC-FS-3 clause 9; Linux `struct fc_frame_header` in
//! `include/uapi/scsi/fc/fc_fs.h`; iPXE `struct fc_frame_header` in `src/include/ipxe/fc.h`).
//!
//! ```text
//!  byte  0       1       2       3
//!      +-------+-----------------------+
//!   0  | R_CTL | D_ID                  |
//!   4  | CS_CTL| S_ID                  |
//!   8  | TYPE  | F_CTL                 |
//!  12  | SEQ_ID| DF_CTL| SEQ_CNT       |
//!  16  | OX_ID         | RX_ID         |
//!  20  | PARAMETER (relative offset)   |
//!      +-------------------------------+
//!  24  payload, 0..=2112 bytes, a multiple of 4 (F_CTL bits 1-0 count the fill bytes at its end)
//! ```

use super::{be16, be24, be32, need_len, put16, put24, put32, FcId, Result};
use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// Length of the FC frame header.
pub const HEADER_LEN: usize = 24;
/// RX_ID meaning "not assigned yet" (iPXE `FC_RX_ID_UNKNOWN`).
pub const RX_ID_UNKNOWN: u16 = 0xffff;

mod field {
    use std::ops::Range;
    pub const R_CTL: usize = 0;
    pub const D_ID: Range<usize> = 1..4;
    pub const CS_CTL: usize = 4;
    pub const S_ID: Range<usize> = 5..8;
    pub const TYPE: usize = 8;
    pub const F_CTL: Range<usize> = 9..12;
    pub const SEQ_ID: usize = 12;
    pub const DF_CTL: usize = 13;
    pub const SEQ_CNT: Range<usize> = 14..16;
    pub const OX_ID: Range<usize> = 16..18;
    pub const RX_ID: Range<usize> = 18..20;
    pub const PARAMETER: Range<usize> = 20..24;
    pub const PAYLOAD: usize = 24;
}

/// R_CTL: routing and information category (Linux `enum fc_rctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RCtl {
    /// 0x01 solicited data: FCP_DATA.
    FcpData,
    /// 0x02 unsolicited control: CT (name server) request.
    CtRequest,
    /// 0x03 solicited control: CT reply.
    CtReply,
    /// 0x05 data descriptor: FCP_XFER_RDY.
    XferRdy,
    /// 0x06 unsolicited command: FCP_CMND.
    FcpCmnd,
    /// 0x07 command status: FCP_RSP.
    FcpRsp,
    /// 0x22 ELS request.
    ElsRequest,
    /// 0x23 ELS reply.
    ElsReply,
    /// 0x80 BA_NOP.
    BaNop,
    /// 0x81 BA_ABTS.
    Abts,
    /// 0x82 BA_RMC.
    BaRmc,
    /// 0x84 BA_ACC.
    BaAcc,
    /// 0x85 BA_RJT.
    BaRjt,
    Unknown(u8),
}

impl From<u8> for RCtl {
    fn from(v: u8) -> RCtl {
        match v {
            0x01 => RCtl::FcpData,
            0x02 => RCtl::CtRequest,
            0x03 => RCtl::CtReply,
            0x05 => RCtl::XferRdy,
            0x06 => RCtl::FcpCmnd,
            0x07 => RCtl::FcpRsp,
            0x22 => RCtl::ElsRequest,
            0x23 => RCtl::ElsReply,
            0x80 => RCtl::BaNop,
            0x81 => RCtl::Abts,
            0x82 => RCtl::BaRmc,
            0x84 => RCtl::BaAcc,
            0x85 => RCtl::BaRjt,
            other => RCtl::Unknown(other),
        }
    }
}

impl From<RCtl> for u8 {
    fn from(v: RCtl) -> u8 {
        match v {
            RCtl::FcpData => 0x01,
            RCtl::CtRequest => 0x02,
            RCtl::CtReply => 0x03,
            RCtl::XferRdy => 0x05,
            RCtl::FcpCmnd => 0x06,
            RCtl::FcpRsp => 0x07,
            RCtl::ElsRequest => 0x22,
            RCtl::ElsReply => 0x23,
            RCtl::BaNop => 0x80,
            RCtl::Abts => 0x81,
            RCtl::BaRmc => 0x82,
            RCtl::BaAcc => 0x84,
            RCtl::BaRjt => 0x85,
            RCtl::Unknown(other) => other,
        }
    }
}

/// TYPE: the FC-4 protocol of the payload (Linux `enum fc_fh_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FcType {
    /// 0x00 basic link service (ABTS, BA_ACC, BA_RJT).
    Bls,
    /// 0x01 extended link service.
    Els,
    /// 0x08 SCSI FCP.
    Fcp,
    /// 0x20 Fibre Channel services (CT).
    Ct,
    Unknown(u8),
}

impl From<u8> for FcType {
    fn from(v: u8) -> FcType {
        match v {
            0x00 => FcType::Bls,
            0x01 => FcType::Els,
            0x08 => FcType::Fcp,
            0x20 => FcType::Ct,
            other => FcType::Unknown(other),
        }
    }
}

impl From<FcType> for u8 {
    fn from(v: FcType) -> u8 {
        match v {
            FcType::Bls => 0x00,
            FcType::Els => 0x01,
            FcType::Fcp => 0x08,
            FcType::Ct => 0x20,
            FcType::Unknown(other) => other,
        }
    }
}

/// F_CTL, the 24-bit frame control field (FC-FS-3 table 39; Linux `FC_FC_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FCtl(u32);

impl FCtl {
    /// Exchange context: set when the sender is the exchange responder.
    pub const EX_CTX: FCtl = FCtl(0x80_0000);
    /// Sequence context: set when the sender is the sequence recipient.
    pub const SEQ_CTX: FCtl = FCtl(0x40_0000);
    /// First sequence of the exchange.
    pub const FIRST_SEQ: FCtl = FCtl(0x20_0000);
    /// Last sequence of the exchange.
    pub const LAST_SEQ: FCtl = FCtl(0x10_0000);
    /// Last frame of the sequence.
    pub const END_SEQ: FCtl = FCtl(0x08_0000);
    /// End of connection (class 1; unused by FCoE).
    pub const END_CONN: FCtl = FCtl(0x04_0000);
    /// Transfer sequence initiative to the other side.
    pub const SEQ_INIT: FCtl = FCtl(0x01_0000);
    /// Retransmitted sequence.
    pub const RETX_SEQ: FCtl = FCtl(0x00_0200);
    /// PARAMETER holds the relative offset.
    pub const REL_OFF: FCtl = FCtl(0x00_0008);
    /// Mask of the fill-byte count (bits 1-0).
    pub const FILL_MASK: u32 = 0x3;

    /// Build from the low 24 bits of `v`.
    pub const fn from_bits(v: u32) -> FCtl {
        FCtl(v & 0x00ff_ffff)
    }
    pub const fn bits(self) -> u32 {
        self.0
    }
    pub const fn contains(self, other: FCtl) -> bool {
        self.0 & other.0 == other.0
    }
    /// Number of fill bytes (0-3) at the end of the payload.
    pub const fn fill_bytes(self) -> usize {
        (self.0 & Self::FILL_MASK) as usize
    }
    /// The same flags with the fill-byte count replaced by `fill` (0-3).
    pub const fn with_fill_bytes(self, fill: usize) -> FCtl {
        FCtl((self.0 & !Self::FILL_MASK) | (fill as u32 & Self::FILL_MASK))
    }
    /// The fill bytes needed to bring a payload of `len` bytes to a multiple of four.
    pub const fn fill_for(len: usize) -> usize {
        (4 - len % 4) % 4
    }
}

impl BitOr for FCtl {
    type Output = FCtl;
    fn bitor(self, rhs: FCtl) -> FCtl {
        FCtl(self.0 | rhs.0)
    }
}

impl BitOrAssign for FCtl {
    fn bitor_assign(&mut self, rhs: FCtl) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for FCtl {
    type Output = FCtl;
    fn bitand(self, rhs: FCtl) -> FCtl {
        FCtl(self.0 & rhs.0)
    }
}

impl fmt::Debug for FCtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FCtl({:#08x}", self.0)?;
        for (flag, name) in [
            (FCtl::EX_CTX, "EX_CTX"),
            (FCtl::SEQ_CTX, "SEQ_CTX"),
            (FCtl::FIRST_SEQ, "FIRST_SEQ"),
            (FCtl::LAST_SEQ, "LAST_SEQ"),
            (FCtl::END_SEQ, "END_SEQ"),
            (FCtl::SEQ_INIT, "SEQ_INIT"),
            (FCtl::REL_OFF, "REL_OFF"),
        ] {
            if self.contains(flag) {
                write!(f, " {name}")?;
            }
        }
        if self.fill_bytes() != 0 {
            write!(f, " fill={}", self.fill_bytes())?;
        }
        write!(f, ")")
    }
}

/// A view of an FC frame (header and payload) over a byte buffer.
#[derive(Debug, Clone)]
pub struct FcPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        FcPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        need_len(self.buffer.as_ref(), HEADER_LEN)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn r_ctl(&self) -> RCtl {
        RCtl::from(self.b()[field::R_CTL])
    }
    pub fn d_id(&self) -> FcId {
        FcId::new(be24(&self.b()[field::D_ID]))
    }
    pub fn cs_ctl(&self) -> u8 {
        self.b()[field::CS_CTL]
    }
    pub fn s_id(&self) -> FcId {
        FcId::new(be24(&self.b()[field::S_ID]))
    }
    pub fn fc_type(&self) -> FcType {
        FcType::from(self.b()[field::TYPE])
    }
    pub fn f_ctl(&self) -> FCtl {
        FCtl::from_bits(be24(&self.b()[field::F_CTL]))
    }
    pub fn seq_id(&self) -> u8 {
        self.b()[field::SEQ_ID]
    }
    pub fn df_ctl(&self) -> u8 {
        self.b()[field::DF_CTL]
    }
    pub fn seq_cnt(&self) -> u16 {
        be16(&self.b()[field::SEQ_CNT])
    }
    pub fn ox_id(&self) -> u16 {
        be16(&self.b()[field::OX_ID])
    }
    pub fn rx_id(&self) -> u16 {
        be16(&self.b()[field::RX_ID])
    }
    /// PARAMETER; the relative offset when F_CTL has REL_OFF.
    pub fn parameter(&self) -> u32 {
        be32(&self.b()[field::PARAMETER])
    }
    /// Everything after the header, fill bytes included.
    pub fn payload(&self) -> &[u8] {
        &self.b()[field::PAYLOAD..]
    }
    /// The payload without the fill bytes that F_CTL counts (whole payload if it claims more
    /// fill bytes than there are).
    pub fn data(&self) -> &[u8] {
        let p = self.payload();
        let keep = p.len().saturating_sub(self.f_ctl().fill_bytes());
        &p[..keep]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_r_ctl(&mut self, v: RCtl) {
        self.bm()[field::R_CTL] = v.into();
    }
    pub fn set_d_id(&mut self, v: FcId) {
        put24(&mut self.bm()[field::D_ID], v.get());
    }
    pub fn set_cs_ctl(&mut self, v: u8) {
        self.bm()[field::CS_CTL] = v;
    }
    pub fn set_s_id(&mut self, v: FcId) {
        put24(&mut self.bm()[field::S_ID], v.get());
    }
    pub fn set_fc_type(&mut self, v: FcType) {
        self.bm()[field::TYPE] = v.into();
    }
    pub fn set_f_ctl(&mut self, v: FCtl) {
        put24(&mut self.bm()[field::F_CTL], v.bits());
    }
    pub fn set_seq_id(&mut self, v: u8) {
        self.bm()[field::SEQ_ID] = v;
    }
    pub fn set_df_ctl(&mut self, v: u8) {
        self.bm()[field::DF_CTL] = v;
    }
    pub fn set_seq_cnt(&mut self, v: u16) {
        put16(&mut self.bm()[field::SEQ_CNT], v);
    }
    pub fn set_ox_id(&mut self, v: u16) {
        put16(&mut self.bm()[field::OX_ID], v);
    }
    pub fn set_rx_id(&mut self, v: u16) {
        put16(&mut self.bm()[field::RX_ID], v);
    }
    pub fn set_parameter(&mut self, v: u32) {
        put32(&mut self.bm()[field::PARAMETER], v);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::PAYLOAD..]
    }
}

/// The meaning of an FC frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcHeaderRepr {
    pub r_ctl: RCtl,
    pub d_id: FcId,
    pub cs_ctl: u8,
    pub s_id: FcId,
    pub fc_type: FcType,
    pub f_ctl: FCtl,
    pub seq_id: u8,
    pub df_ctl: u8,
    pub seq_cnt: u16,
    pub ox_id: u16,
    pub rx_id: u16,
    pub parameter: u32,
}

impl FcHeaderRepr {
    /// Parse the header. Codes are not judged here; the handler decides what to accept.
    pub fn parse<T: AsRef<[u8]>>(packet: &FcPacket<T>) -> Result<FcHeaderRepr> {
        packet.check_len()?;
        Ok(FcHeaderRepr {
            r_ctl: packet.r_ctl(),
            d_id: packet.d_id(),
            cs_ctl: packet.cs_ctl(),
            s_id: packet.s_id(),
            fc_type: packet.fc_type(),
            f_ctl: packet.f_ctl(),
            seq_id: packet.seq_id(),
            df_ctl: packet.df_ctl(),
            seq_cnt: packet.seq_cnt(),
            ox_id: packet.ox_id(),
            rx_id: packet.rx_id(),
            parameter: packet.parameter(),
        })
    }

    /// The header of a one-frame request sequence that opens an exchange we originate:
    /// FIRST_SEQ, END_SEQ, SEQ_INIT; EX_CTX clear; RX_ID unassigned.
    pub fn request(
        r_ctl: RCtl,
        fc_type: FcType,
        d_id: FcId,
        s_id: FcId,
        seq_id: u8,
        ox_id: u16,
    ) -> FcHeaderRepr {
        FcHeaderRepr {
            r_ctl,
            d_id,
            cs_ctl: 0,
            s_id,
            fc_type,
            f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
            seq_id,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: RX_ID_UNKNOWN,
            parameter: 0,
        }
    }

    /// The header of a single-frame reply sequence that ends the exchange, sent by the
    /// exchange responder: EX_CTX | LAST_SEQ | END_SEQ | SEQ_INIT (libfc `fc_seq_send_last`;
    /// LIO and Linux ELS replies carry F_CTL 0x990000). Never FIRST_SEQ: iPXE opens a new
    /// exchange for any frame with FIRST_SEQ and SEQ_CNT 0.
    pub fn last_reply(
        r_ctl: RCtl,
        fc_type: FcType,
        d_id: FcId,
        s_id: FcId,
        seq_id: u8,
        ox_id: u16,
        rx_id: u16,
    ) -> FcHeaderRepr {
        FcHeaderRepr {
            f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
            rx_id,
            ..FcHeaderRepr::request(r_ctl, fc_type, d_id, s_id, seq_id, ox_id)
        }
    }

    /// Length of the header alone; add the payload length plus
    /// [`FCtl::fill_for`] to size a frame.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FcPacket<T>) {
        packet.set_r_ctl(self.r_ctl);
        packet.set_d_id(self.d_id);
        packet.set_cs_ctl(self.cs_ctl);
        packet.set_s_id(self.s_id);
        packet.set_fc_type(self.fc_type);
        packet.set_f_ctl(self.f_ctl);
        packet.set_seq_id(self.seq_id);
        packet.set_df_ctl(self.df_ctl);
        packet.set_seq_cnt(self.seq_cnt);
        packet.set_ox_id(self.ox_id);
        packet.set_rx_id(self.rx_id);
        packet.set_parameter(self.parameter);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{self, *};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deconstruct_ipxe_flogi() {
        // ipxe-fcoe-p2p-boot.pcap frame 8: non-FIP FLOGI from S_ID 0 to FF.FF.FE.
        let f = testdata::fc_frame(IPXE_BOOT, 8);
        let p = FcPacket::new_checked(&f[..]).unwrap();
        assert_eq!(p.r_ctl(), RCtl::ElsRequest);
        assert_eq!(p.d_id(), FcId::FLOGI);
        assert_eq!(p.s_id(), FcId::UNIDENTIFIED);
        assert_eq!(p.fc_type(), FcType::Els);
        assert_eq!(p.f_ctl(), FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT);
        assert_eq!(p.seq_id(), 1);
        assert_eq!(p.seq_cnt(), 0);
        assert_eq!(p.ox_id(), 2);
        assert_eq!(p.rx_id(), RX_ID_UNKNOWN);
        assert_eq!(p.parameter(), 0);
        assert_eq!(p.payload().len(), 116);
    }

    #[test]
    fn deconstruct_ipxe_write_data_with_rel_off() {
        // Frames 68/69: WRITE(10) data, 1452 + 84 bytes, second frame at offset 1452 ends the
        // sequence and passes the initiative back; no EX_CTX (iPXE is the originator).
        let first = testdata::fc_frame(IPXE_BOOT, 68);
        let p = FcPacket::new_checked(&first[..]).unwrap();
        assert_eq!(p.r_ctl(), RCtl::FcpData);
        assert_eq!(p.f_ctl(), FCtl::REL_OFF);
        assert_eq!((p.seq_cnt(), p.parameter(), p.data().len()), (0, 0, 1452));
        let last = testdata::fc_frame(IPXE_BOOT, 69);
        let p = FcPacket::new_checked(&last[..]).unwrap();
        assert_eq!(p.f_ctl(), FCtl::END_SEQ | FCtl::SEQ_INIT | FCtl::REL_OFF);
        assert_eq!((p.seq_cnt(), p.parameter(), p.data().len()), (1, 1452, 84));
        assert_eq!(p.seq_id(), 0x16);
        assert_eq!((p.ox_id(), p.rx_id()), (0x16, 0x0108));
    }

    #[test]
    fn fill_bytes_from_lio() {
        // linux-fcoe-vn2vn-vs-lio.pcap frame 52: LIO's DATA-IN for VPD page 0x80 carries 19
        // bytes plus one fill byte (F_CTL 0x880009); frame 61 (page 0x83) has two.
        let f = testdata::fc_frame(LINUX_LIO, 52);
        let p = FcPacket::new_checked(&f[..]).unwrap();
        assert_eq!(p.f_ctl().fill_bytes(), 1);
        assert!(p
            .f_ctl()
            .contains(FCtl::EX_CTX | FCtl::END_SEQ | FCtl::REL_OFF));
        assert_eq!((p.payload().len(), p.data().len()), (20, 19));
        let f = testdata::fc_frame(LINUX_LIO, 61);
        let p = FcPacket::new_checked(&f[..]).unwrap();
        assert_eq!(p.f_ctl().fill_bytes(), 2);
        assert_eq!(p.data().len() + 2, p.payload().len());
        assert_eq!(FCtl::fill_for(19), 1);
        assert_eq!(FCtl::fill_for(20), 0);
        assert_eq!(FCtl::fill_for(146), 2);
    }

    #[test]
    fn construct_parse_emit() {
        let f = testdata::fc_frame(LINUX_LIO, 17); // PLOGI 00.10.0a -> 00.34.56
        let repr = FcHeaderRepr::parse(&FcPacket::new_checked(&f[..]).unwrap()).unwrap();
        assert_eq!(repr.d_id, FcId::new(0x3456));
        assert_eq!(repr.s_id, FcId::new(0x100a));
        assert_eq!(repr.d_id.to_string(), "00.34.56");
        let mut buf = [0xa5u8; HEADER_LEN];
        repr.emit(&mut FcPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &f[..HEADER_LEN]);
    }

    #[test]
    fn truncated_prefixes_rejected() {
        let f = testdata::fc_frame(IPXE_BOOT, 8);
        for len in 0..HEADER_LEN {
            assert!(FcPacket::new_checked(&f[..len]).is_err());
            assert!(FcHeaderRepr::parse(&FcPacket::new_unchecked(&f[..len])).is_err());
        }
    }

    #[test]
    fn code_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(RCtl::from(v)), v);
            assert_eq!(u8::from(FcType::from(v)), v);
        }
    }

    prop_compose! {
        fn header()(r in any::<u8>(), d in 0..0x100_0000u32, cs in any::<u8>(),
                    s in 0..0x100_0000u32, t in any::<u8>(), f in 0..0x100_0000u32,
                    sid in any::<u8>(), df in any::<u8>(), cnt in any::<u16>(),
                    ox in any::<u16>(), rx in any::<u16>(), par in any::<u32>())
                    -> FcHeaderRepr {
            FcHeaderRepr {
                r_ctl: RCtl::from(r), d_id: FcId::new(d), cs_ctl: cs, s_id: FcId::new(s),
                fc_type: FcType::from(t), f_ctl: FCtl::from_bits(f), seq_id: sid, df_ctl: df,
                seq_cnt: cnt, ox_id: ox, rx_id: rx, parameter: par,
            }
        }
    }

    proptest! {
        #[test]
        fn header_round_trip(repr in header()) {
            let mut buf = [0xa5u8; HEADER_LEN];
            repr.emit(&mut FcPacket::new_unchecked(&mut buf[..]));
            let back = FcHeaderRepr::parse(&FcPacket::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }
    }
}
