//! Extended link services (FC-LS-3; Linux `include/uapi/scsi/fc/fc_els.h`; iPXE
//! `src/include/ipxe/fcels.h`). Every ELS payload opens with a command byte and three
//! reserved bytes; the rest depends on the command.
//!
//! ```text
//! FLOGI / PLOGI / FDISC and their LS_ACC, 116 bytes
//!   0 cmd | rsvd(3)
//!   4 FC-PH high | FC-PH low | BB credit(2)                common service parameters (16)
//!   8 features(2)            | BB_SC_N(4 bits) rcv size(12 bits)
//!  12 total concurrent seq(2) | rel. offset by category(2)   (FLOGI: R_A_TOV(4))
//!  16 E_D_TOV(4)
//!  20 WWPN(8)   28 WWNN(8)
//!  36 class 1(16)   52 class 2(16)   84 class 4(16)
//!  68 class 3: service options(2) initiator ctl(2) recipient ctl(2) rcv data field size(2)
//!              concurrent seq(2) EE credit(2) rsvd(1) open seq per exchange(1) rsvd(2)
//! 100 vendor version level(16)
//!
//! PRLI / PRLO and their LS_ACC (one FCP service parameter page), 20 bytes
//!   0 cmd | page length = 16 | payload length(2) = 20
//!   4 FC-4 type | type ext | flags (OPA 0x80, RPA 0x40, EST_IMG_PAIR 0x20, resp code 0x0f) | rsvd
//!   8 originator process associator(4)  12 responder process associator(4)
//!  16 service parameters(4): RETRY 0x100 CONF_COMPL 0x80 INIT_FCN 0x20 TARG_FCN 0x10
//!                            RD_XRDY_DIS 0x02 WR_XRDY_DIS 0x01
//!
//! LOGO (16): cmd | rsvd | N_Port ID(3) | WWPN(8)
//! ADISC and ACC (28): cmd | rsvd | hard address(3) | WWPN(8) | WWNN(8) | rsvd | N_Port ID(3)
//! RTV (4): cmd.          RTV ACC (16): cmd | R_A_TOV(4) | E_D_TOV(4) | TOV qualifier(4)
//! RRQ (12): cmd | rsvd | S_ID(3) | OX_ID(2) | RX_ID(2)
//! LS_RJT (8): cmd | rsvd | reason | explanation | vendor unique
//! ECHO / ECHO ACC: cmd | data echoed back
//! LS_ACC for LOGO, RRQ (4): cmd
//! ```

use super::{
    be16, be24, be32, be64, need_len, put16, put24, put32, put64, Error, FcId, Result, Wwn,
};

mod field {
    use std::ops::Range;
    pub const CMD: usize = 0;
    pub const CMD_WORD: Range<usize> = 0..4;

    // FLOGI / PLOGI.
    pub const FC_PH_HIGH: usize = 4;
    pub const FC_PH_LOW: usize = 5;
    pub const BB_CREDIT: Range<usize> = 6..8;
    pub const FEATURES: Range<usize> = 8..10;
    pub const BB_DATA: Range<usize> = 10..12;
    pub const TOT_SEQ: Range<usize> = 12..14;
    pub const REL_OFF_CAT: Range<usize> = 14..16;
    pub const E_D_TOV: Range<usize> = 16..20;
    pub const WWPN: Range<usize> = 20..28;
    pub const WWNN: Range<usize> = 28..36;
    pub const CLASS_PARAMS: Range<usize> = 36..100;
    pub const CLASS3: usize = 68;
    pub const VENDOR: Range<usize> = 100..116;
    pub const LOGIN_LEN: usize = 116;
    // Offsets inside one class parameter block.
    pub const CP_SERVICE: Range<usize> = 0..2;
    pub const CP_INIT: Range<usize> = 2..4;
    pub const CP_RECIP: Range<usize> = 4..6;
    pub const CP_RDFS: Range<usize> = 6..8;
    pub const CP_CON_SEQ: Range<usize> = 8..10;
    pub const CP_EE_CRED: Range<usize> = 10..12;
    pub const CP_OPEN_SEQ: usize = 13;

    // PRLI / PRLO.
    pub const PAGE_LEN: usize = 1;
    pub const PAYLOAD_LEN: Range<usize> = 2..4;
    pub const SPP_TYPE: usize = 4;
    pub const SPP_TYPE_EXT: usize = 5;
    pub const SPP_FLAGS: usize = 6;
    pub const SPP_RSVD: usize = 7;
    pub const SPP_ORIG_PA: Range<usize> = 8..12;
    pub const SPP_RESP_PA: Range<usize> = 12..16;
    pub const SPP_PARAMS: Range<usize> = 16..20;
    pub const PRLI_LEN: usize = 20;

    // LOGO, ADISC, RRQ: a reserved byte then a 24-bit address at 4..8.
    pub const ADDR_WORD: Range<usize> = 4..8;
    pub const ADDR: Range<usize> = 5..8;
    pub const LOGO_WWPN: Range<usize> = 8..16;
    pub const LOGO_LEN: usize = 16;
    pub const ADISC_WWPN: Range<usize> = 8..16;
    pub const ADISC_WWNN: Range<usize> = 16..24;
    pub const ADISC_NPORT_WORD: Range<usize> = 24..28;
    pub const ADISC_NPORT: Range<usize> = 25..28;
    pub const ADISC_LEN: usize = 28;
    pub const RRQ_OX_ID: Range<usize> = 8..10;
    pub const RRQ_RX_ID: Range<usize> = 10..12;
    pub const RRQ_LEN: usize = 12;

    // RTV ACC.
    pub const RTV_R_A_TOV: Range<usize> = 4..8;
    pub const RTV_E_D_TOV: Range<usize> = 8..12;
    pub const RTV_QUALIFIER: Range<usize> = 12..16;
    pub const RTV_ACC_LEN: usize = 16;

    // LS_RJT.
    pub const RJT_RSVD: usize = 4;
    pub const RJT_REASON: usize = 5;
    pub const RJT_EXPLANATION: usize = 6;
    pub const RJT_VENDOR: usize = 7;
    pub const RJT_LEN: usize = 8;
}

/// Length of an FLOGI/PLOGI/FDISC payload or its LS_ACC.
pub const LOGIN_LEN: usize = field::LOGIN_LEN;
/// Length of a single-page PRLI/PRLO payload or its LS_ACC.
pub const PRLI_LEN: usize = field::PRLI_LEN;

/// ELS command codes (Linux `enum fc_els_cmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElsCommand {
    LsRjt,
    LsAcc,
    Plogi,
    Flogi,
    Logo,
    Rtv,
    Rls,
    Echo,
    Rrq,
    Rec,
    Srr,
    Prli,
    Prlo,
    Fdisc,
    Adisc,
    Rscn,
    Scr,
    Unknown(u8),
}

impl From<u8> for ElsCommand {
    fn from(v: u8) -> ElsCommand {
        match v {
            0x01 => ElsCommand::LsRjt,
            0x02 => ElsCommand::LsAcc,
            0x03 => ElsCommand::Plogi,
            0x04 => ElsCommand::Flogi,
            0x05 => ElsCommand::Logo,
            0x0e => ElsCommand::Rtv,
            0x0f => ElsCommand::Rls,
            0x10 => ElsCommand::Echo,
            0x12 => ElsCommand::Rrq,
            0x13 => ElsCommand::Rec,
            0x14 => ElsCommand::Srr,
            0x20 => ElsCommand::Prli,
            0x21 => ElsCommand::Prlo,
            0x51 => ElsCommand::Fdisc,
            0x52 => ElsCommand::Adisc,
            0x61 => ElsCommand::Rscn,
            0x62 => ElsCommand::Scr,
            other => ElsCommand::Unknown(other),
        }
    }
}

impl From<ElsCommand> for u8 {
    fn from(v: ElsCommand) -> u8 {
        match v {
            ElsCommand::LsRjt => 0x01,
            ElsCommand::LsAcc => 0x02,
            ElsCommand::Plogi => 0x03,
            ElsCommand::Flogi => 0x04,
            ElsCommand::Logo => 0x05,
            ElsCommand::Rtv => 0x0e,
            ElsCommand::Rls => 0x0f,
            ElsCommand::Echo => 0x10,
            ElsCommand::Rrq => 0x12,
            ElsCommand::Rec => 0x13,
            ElsCommand::Srr => 0x14,
            ElsCommand::Prli => 0x20,
            ElsCommand::Prlo => 0x21,
            ElsCommand::Fdisc => 0x51,
            ElsCommand::Adisc => 0x52,
            ElsCommand::Rscn => 0x61,
            ElsCommand::Scr => 0x62,
            ElsCommand::Unknown(other) => other,
        }
    }
}

/// A view of an ELS payload (the FC payload of an R_CTL 0x22/0x23, TYPE 0x01 frame).
/// `check_len` only guarantees the command word; use the Repr types, which check their own
/// lengths, for everything after it.
#[derive(Debug, Clone)]
pub struct ElsPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ElsPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ElsPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<()> {
        need_len(self.buffer.as_ref(), field::CMD_WORD.end)
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn command(&self) -> ElsCommand {
        ElsCommand::from(self.buffer.as_ref()[field::CMD])
    }
    /// Everything after the command word (what ECHO echoes).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CMD_WORD.end..]
    }
    /// The whole ELS payload.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// The payload, or `Truncated` if it is shorter than `len`.
    fn need(&self, len: usize) -> Result<&[u8]> {
        let b = self.buffer.as_ref();
        need_len(b, len)?;
        Ok(b)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ElsPacket<T> {
    /// Set the command byte and clear the three reserved bytes after it.
    pub fn set_command(&mut self, cmd: ElsCommand) {
        let b = self.buffer.as_mut();
        b[field::CMD_WORD].copy_from_slice(&[cmd.into(), 0, 0, 0]);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::CMD_WORD.end..]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// An ELS whose payload is the command word alone: RTV request, LS_ACC to LOGO or RRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BareElsRepr {
    pub command: ElsCommand,
}

impl BareElsRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<BareElsRepr> {
        packet.check_len()?;
        Ok(BareElsRepr {
            command: packet.command(),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        4
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(self.command);
    }
}

/// Common service parameter feature bits (Linux `FC_SP_FT_*`).
pub mod features {
    /// Continuously increasing relative offset (PLOGI); NPIV supported (FLOGI).
    pub const CIRO: u16 = 0x8000;
    /// Valid vendor version level (PLOGI); NPIV accepted (FLOGI LS_ACC).
    pub const VAL: u16 = 0x2000;
    /// N_Port/F_Port: set only by a fabric F_Port in a FLOGI LS_ACC. iPXE picks fabric mode on
    /// it; Linux VN2VN rejects an LS_ACC with it ("Fabric bit set in FLOGI").
    pub const F_PORT: u16 = 0x1000;
    /// Alternate BB credit management.
    pub const ABB: u16 = 0x0800;
    /// E_D_TOV resolution: nanoseconds when set.
    pub const EDTR: u16 = 0x0400;
}

/// Class service parameter bits (Linux `FC_CPC_*`).
pub mod class {
    /// Class valid.
    pub const VALID: u16 = 0x8000;
    /// Sequential delivery requested.
    pub const SEQ: u16 = 0x0800;
}

/// Class 3 service parameters of a login (the only class FCoE uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Class3Params {
    /// Service options; [`class::VALID`] says class 3 is supported.
    pub service_options: u16,
    pub initiator_ctl: u16,
    pub recipient_ctl: u16,
    /// Receive data field size of class 3 frames.
    pub rcv_size: u16,
    pub concurrent_seq: u16,
    pub ee_credit: u16,
    pub open_seq_per_exchange: u8,
}

/// FLOGI, PLOGI, FDISC or their LS_ACC: the 116-byte login payload.
///
/// Classes 1, 2 and 4 and the vendor version are not represented: FCoE uses class 3 only,
/// and both initiators send them as zeros. They are emitted as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRepr {
    /// Flogi, Plogi, Fdisc or LsAcc.
    pub command: ElsCommand,
    pub fc_ph_high: u8,
    pub fc_ph_low: u8,
    pub bb_credit: u16,
    /// [`features`] bits.
    pub features: u16,
    /// BB_SC_N, the top four bits of the receive-size word.
    pub bb_sc_n: u8,
    /// Buffer-to-buffer receive data field size (12 bits).
    pub bb_rcv_size: u16,
    /// PLOGI: total concurrent sequences. FLOGI: high half of R_A_TOV.
    pub total_concurrent_seq: u16,
    /// PLOGI: relative offset by information category. FLOGI: low half of R_A_TOV.
    pub rel_off_by_category: u16,
    /// E_D_TOV in ms (ns with [`features::EDTR`]).
    pub e_d_tov: u32,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub class3: Class3Params,
}

/// A FLOGI or its LS_ACC.
pub type FlogiRepr = LoginRepr;
/// A PLOGI or its LS_ACC.
pub type PlogiRepr = LoginRepr;

impl LoginRepr {
    /// Smallest receive size Linux believes (`FC_SP_MIN_MAX_PAYLOAD`); smaller values are ignored.
    pub const MIN_MAX_PAYLOAD: u16 = 256;

    /// The service parameters l2san sends as an N_Port (FLOGI/PLOGI LS_ACC, or an originated
    /// PLOGI): FC-PH 0x20/0x20, BB credit 10, CIRO, F_PORT clear, E_D_TOV 2000 ms, class 3
    /// valid with sequential delivery, receive size `rcv_size` in both places (1452 at MTU 1500,
    /// 2112 with baby jumbos), 255 concurrent sequences, one open sequence per exchange. These
    /// are the values Linux and LIO put in their PLOGI (linux-fcoe-vn2vn-vs-lio.pcap frame 17).
    pub fn n_port(command: ElsCommand, wwpn: Wwn, wwnn: Wwn, rcv_size: u16) -> LoginRepr {
        LoginRepr {
            command,
            fc_ph_high: 0x20,
            fc_ph_low: 0x20,
            bb_credit: 10,
            features: features::CIRO,
            bb_sc_n: 0,
            bb_rcv_size: rcv_size & 0x0fff,
            total_concurrent_seq: 0xff,
            rel_off_by_category: 0x1f,
            e_d_tov: 2000,
            wwpn,
            wwnn,
            class3: Class3Params {
                service_options: class::VALID | class::SEQ,
                initiator_ctl: 0,
                recipient_ctl: 0,
                rcv_size,
                concurrent_seq: 0xff,
                ee_credit: 0,
                open_seq_per_exchange: 1,
            },
        }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<LoginRepr> {
        let b = packet.need(LOGIN_LEN)?;
        let c = &b[field::CLASS3..field::CLASS3 + 16];
        let bb_data = be16(&b[field::BB_DATA]);
        Ok(LoginRepr {
            command: packet.command(),
            fc_ph_high: b[field::FC_PH_HIGH],
            fc_ph_low: b[field::FC_PH_LOW],
            bb_credit: be16(&b[field::BB_CREDIT]),
            features: be16(&b[field::FEATURES]),
            bb_sc_n: (bb_data >> 12) as u8,
            bb_rcv_size: bb_data & 0x0fff,
            total_concurrent_seq: be16(&b[field::TOT_SEQ]),
            rel_off_by_category: be16(&b[field::REL_OFF_CAT]),
            e_d_tov: be32(&b[field::E_D_TOV]),
            wwpn: Wwn(be64(&b[field::WWPN])),
            wwnn: Wwn(be64(&b[field::WWNN])),
            class3: Class3Params {
                service_options: be16(&c[field::CP_SERVICE]),
                initiator_ctl: be16(&c[field::CP_INIT]),
                recipient_ctl: be16(&c[field::CP_RECIP]),
                rcv_size: be16(&c[field::CP_RDFS]),
                concurrent_seq: be16(&c[field::CP_CON_SEQ]),
                ee_credit: be16(&c[field::CP_EE_CRED]),
                open_seq_per_exchange: c[field::CP_OPEN_SEQ],
            },
        })
    }

    pub const fn buffer_len(&self) -> usize {
        LOGIN_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(self.command);
        let b = &mut packet.bytes_mut()[..LOGIN_LEN];
        b[field::FC_PH_HIGH] = self.fc_ph_high;
        b[field::FC_PH_LOW] = self.fc_ph_low;
        put16(&mut b[field::BB_CREDIT], self.bb_credit);
        put16(&mut b[field::FEATURES], self.features);
        put16(
            &mut b[field::BB_DATA],
            ((self.bb_sc_n as u16 & 0xf) << 12) | (self.bb_rcv_size & 0x0fff),
        );
        put16(&mut b[field::TOT_SEQ], self.total_concurrent_seq);
        put16(&mut b[field::REL_OFF_CAT], self.rel_off_by_category);
        put32(&mut b[field::E_D_TOV], self.e_d_tov);
        put64(&mut b[field::WWPN], self.wwpn.0);
        put64(&mut b[field::WWNN], self.wwnn.0);
        b[field::CLASS_PARAMS].fill(0);
        b[field::VENDOR].fill(0);
        let c = &mut b[field::CLASS3..field::CLASS3 + 16];
        put16(&mut c[field::CP_SERVICE], self.class3.service_options);
        put16(&mut c[field::CP_INIT], self.class3.initiator_ctl);
        put16(&mut c[field::CP_RECIP], self.class3.recipient_ctl);
        put16(&mut c[field::CP_RDFS], self.class3.rcv_size);
        put16(&mut c[field::CP_CON_SEQ], self.class3.concurrent_seq);
        put16(&mut c[field::CP_EE_CRED], self.class3.ee_credit);
        c[field::CP_OPEN_SEQ] = self.class3.open_seq_per_exchange;
    }

    /// True if the sender claims to be a fabric F_Port.
    pub fn is_f_port(&self) -> bool {
        self.features & features::F_PORT != 0
    }

    /// R_A_TOV as a FLOGI (LS_ACC) carries it in bytes 12..16.
    pub fn r_a_tov(&self) -> u32 {
        ((self.total_concurrent_seq as u32) << 16) | self.rel_off_by_category as u32
    }

    pub fn set_r_a_tov(&mut self, ms: u32) {
        self.total_concurrent_seq = (ms >> 16) as u16;
        self.rel_off_by_category = ms as u16;
    }

    /// The largest FC payload this peer accepts, given ours (`local_max`): the smaller of the
    /// common and class-3 receive sizes, ignoring values below 256, as Linux
    /// `fc_plogi_get_maxframe()` does.
    pub fn max_payload(&self, local_max: u16) -> u16 {
        let mut max = local_max;
        for size in [self.bb_rcv_size, self.class3.rcv_size] {
            if size >= Self::MIN_MAX_PAYLOAD && size < max {
                max = size;
            }
        }
        max
    }
}

/// PRLI service parameter page flags (Linux `FC_SPP_*`).
pub mod spp_flags {
    pub const OPA_VALID: u8 = 0x80;
    pub const RPA_VALID: u8 = 0x40;
    pub const EST_IMG_PAIR: u8 = 0x20;
    pub const RESP_MASK: u8 = 0x0f;
}

/// PRLI/PRLO LS_ACC response codes (low nibble of the page flags; Linux `FC_SPP_RESP_*`).
pub mod spp_resp {
    pub const ACK: u8 = 1;
    pub const RES: u8 = 2;
    pub const INIT: u8 = 3;
    pub const NO_PA: u8 = 4;
    pub const CONF: u8 = 5;
    pub const COND: u8 = 6;
    pub const MULT: u8 = 7;
    pub const INVL: u8 = 8;
}

/// FCP service parameters, the last word of the page (Linux `FCP_SPPF_*`).
pub mod fcp_sppf {
    pub const TASK_RETRY_ID: u32 = 0x200;
    pub const RETRY: u32 = 0x100;
    pub const CONF_COMPL: u32 = 0x80;
    pub const OVLY_ALLOW: u32 = 0x40;
    pub const INIT_FCN: u32 = 0x20;
    pub const TARG_FCN: u32 = 0x10;
    pub const RD_XRDY_DIS: u32 = 0x02;
    pub const WR_XRDY_DIS: u32 = 0x01;
}

/// PRLI, PRLO or their LS_ACC with one service parameter page (all that Linux and iPXE send;
/// further pages are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrliRepr {
    /// Prli, Prlo or LsAcc.
    pub command: ElsCommand,
    /// FC-4 type of the page (0x08 = FCP).
    pub fc4_type: u8,
    pub type_ext: u8,
    /// [`spp_flags`]; in an LS_ACC the low nibble is the [`spp_resp`] code.
    pub flags: u8,
    pub originator_pa: u32,
    pub responder_pa: u32,
    /// [`fcp_sppf`] bits.
    pub service_params: u32,
}

impl PrliRepr {
    /// The target's LS_ACC to an FCP PRLI: response "executed", image pair established,
    /// TARG_FCN and RD_XRDY_DIS, RETRY clear (no SRR/REC recovery). iPXE fails a target without
    /// TARG_FCN; Linux fails the rport unless the response code is 1.
    pub fn fcp_target_acc() -> PrliRepr {
        PrliRepr {
            command: ElsCommand::LsAcc,
            fc4_type: 0x08,
            type_ext: 0,
            flags: spp_flags::EST_IMG_PAIR | spp_resp::ACK,
            originator_pa: 0,
            responder_pa: 0,
            service_params: fcp_sppf::TARG_FCN | fcp_sppf::RD_XRDY_DIS,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<PrliRepr> {
        let b = packet.need(PRLI_LEN)?;
        if b[field::PAGE_LEN] != 16 {
            return Err(Error::Malformed("PRLI page length is not 16"));
        }
        let payload_len = be16(&b[field::PAYLOAD_LEN]) as usize;
        if payload_len < PRLI_LEN || (payload_len - 4) & 15 != 0 {
            return Err(Error::Malformed(
                "PRLI payload length is not 4 + 16 * pages",
            ));
        }
        if payload_len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(PrliRepr {
            command: packet.command(),
            fc4_type: b[field::SPP_TYPE],
            type_ext: b[field::SPP_TYPE_EXT],
            flags: b[field::SPP_FLAGS],
            originator_pa: be32(&b[field::SPP_ORIG_PA]),
            responder_pa: be32(&b[field::SPP_RESP_PA]),
            service_params: be32(&b[field::SPP_PARAMS]),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PRLI_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(self.command);
        let b = &mut packet.bytes_mut()[..PRLI_LEN];
        b[field::PAGE_LEN] = 16;
        put16(&mut b[field::PAYLOAD_LEN], PRLI_LEN as u16);
        b[field::SPP_TYPE] = self.fc4_type;
        b[field::SPP_TYPE_EXT] = self.type_ext;
        b[field::SPP_FLAGS] = self.flags;
        b[field::SPP_RSVD] = 0;
        put32(&mut b[field::SPP_ORIG_PA], self.originator_pa);
        put32(&mut b[field::SPP_RESP_PA], self.responder_pa);
        put32(&mut b[field::SPP_PARAMS], self.service_params);
    }

    /// Response code of an LS_ACC page.
    pub fn response_code(&self) -> u8 {
        self.flags & spp_flags::RESP_MASK
    }
}

/// LOGO: the port logging out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoRepr {
    pub n_port_id: FcId,
    pub wwpn: Wwn,
}

impl LogoRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<LogoRepr> {
        let b = packet.need(field::LOGO_LEN)?;
        Ok(LogoRepr {
            n_port_id: FcId::new(be24(&b[field::ADDR])),
            wwpn: Wwn(be64(&b[field::LOGO_WWPN])),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        field::LOGO_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(ElsCommand::Logo);
        let b = packet.bytes_mut();
        b[field::ADDR_WORD.start] = 0;
        put24(&mut b[field::ADDR], self.n_port_id.get());
        put64(&mut b[field::LOGO_WWPN], self.wwpn.0);
    }
}

/// ADISC or its LS_ACC (same layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdiscRepr {
    /// Adisc or LsAcc.
    pub command: ElsCommand,
    pub hard_address: FcId,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub n_port_id: FcId,
}

impl AdiscRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<AdiscRepr> {
        let b = packet.need(field::ADISC_LEN)?;
        Ok(AdiscRepr {
            command: packet.command(),
            hard_address: FcId::new(be24(&b[field::ADDR])),
            wwpn: Wwn(be64(&b[field::ADISC_WWPN])),
            wwnn: Wwn(be64(&b[field::ADISC_WWNN])),
            n_port_id: FcId::new(be24(&b[field::ADISC_NPORT])),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        field::ADISC_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(self.command);
        let b = packet.bytes_mut();
        b[field::ADDR_WORD.start] = 0;
        put24(&mut b[field::ADDR], self.hard_address.get());
        put64(&mut b[field::ADISC_WWPN], self.wwpn.0);
        put64(&mut b[field::ADISC_WWNN], self.wwnn.0);
        b[field::ADISC_NPORT_WORD.start] = 0;
        put24(&mut b[field::ADISC_NPORT], self.n_port_id.get());
    }
}

/// LS_ACC to RTV: 16 bytes (not 12: the TOV qualifier word is there too, as LIO and Linux
/// send it in linux-fcoe-vn2vn-vs-lio.pcap frames 25/26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtvAccRepr {
    pub r_a_tov: u32,
    pub e_d_tov: u32,
    /// TOV qualifier; bit 26 (0x0400_0000) would mean E_D_TOV in ns.
    pub qualifier: u32,
}

impl RtvAccRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<RtvAccRepr> {
        let b = packet.need(field::RTV_ACC_LEN)?;
        Ok(RtvAccRepr {
            r_a_tov: be32(&b[field::RTV_R_A_TOV]),
            e_d_tov: be32(&b[field::RTV_E_D_TOV]),
            qualifier: be32(&b[field::RTV_QUALIFIER]),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        field::RTV_ACC_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(ElsCommand::LsAcc);
        let b = packet.bytes_mut();
        put32(&mut b[field::RTV_R_A_TOV], self.r_a_tov);
        put32(&mut b[field::RTV_E_D_TOV], self.e_d_tov);
        put32(&mut b[field::RTV_QUALIFIER], self.qualifier);
    }
}

/// RRQ (also the layout of REC): the exchange to reinstate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrqRepr {
    /// Rrq or Rec.
    pub command: ElsCommand,
    /// S_ID of the exchange originator.
    pub originator: FcId,
    pub ox_id: u16,
    pub rx_id: u16,
}

impl RrqRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<RrqRepr> {
        let b = packet.need(field::RRQ_LEN)?;
        Ok(RrqRepr {
            command: packet.command(),
            originator: FcId::new(be24(&b[field::ADDR])),
            ox_id: be16(&b[field::RRQ_OX_ID]),
            rx_id: be16(&b[field::RRQ_RX_ID]),
        })
    }
    pub const fn buffer_len(&self) -> usize {
        field::RRQ_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(self.command);
        let b = packet.bytes_mut();
        b[field::ADDR_WORD.start] = 0;
        put24(&mut b[field::ADDR], self.originator.get());
        put16(&mut b[field::RRQ_OX_ID], self.ox_id);
        put16(&mut b[field::RRQ_RX_ID], self.rx_id);
    }
}

/// LS_RJT reason codes (Linux `enum fc_els_rjt_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LsRjtReason {
    InvalidCommand,
    LogicalError,
    LogicalBusy,
    ProtocolError,
    UnableToPerform,
    CommandNotSupported,
    CommandInProgress,
    VendorUnique,
    Unknown(u8),
}

impl From<u8> for LsRjtReason {
    fn from(v: u8) -> Self {
        match v {
            0x01 => LsRjtReason::InvalidCommand,
            0x03 => LsRjtReason::LogicalError,
            0x05 => LsRjtReason::LogicalBusy,
            0x07 => LsRjtReason::ProtocolError,
            0x09 => LsRjtReason::UnableToPerform,
            0x0b => LsRjtReason::CommandNotSupported,
            0x0e => LsRjtReason::CommandInProgress,
            0xff => LsRjtReason::VendorUnique,
            other => LsRjtReason::Unknown(other),
        }
    }
}

impl From<LsRjtReason> for u8 {
    fn from(v: LsRjtReason) -> u8 {
        match v {
            LsRjtReason::InvalidCommand => 0x01,
            LsRjtReason::LogicalError => 0x03,
            LsRjtReason::LogicalBusy => 0x05,
            LsRjtReason::ProtocolError => 0x07,
            LsRjtReason::UnableToPerform => 0x09,
            LsRjtReason::CommandNotSupported => 0x0b,
            LsRjtReason::CommandInProgress => 0x0e,
            LsRjtReason::VendorUnique => 0xff,
            LsRjtReason::Unknown(other) => other,
        }
    }
}

/// LS_RJT reason explanations (Linux `enum fc_els_rjt_explan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LsRjtExplanation {
    None,
    ServiceParamOption,
    InitiatorControl,
    InvalidSId,
    InvalidOxIdRxId,
    RequestInProgress,
    PlogiRequired,
    InsufficientResources,
    UnableToSupplyData,
    RequestNotSupported,
    InvalidPayloadLength,
    Unknown(u8),
}

impl From<u8> for LsRjtExplanation {
    fn from(v: u8) -> Self {
        match v {
            0x00 => LsRjtExplanation::None,
            0x01 => LsRjtExplanation::ServiceParamOption,
            0x03 => LsRjtExplanation::InitiatorControl,
            0x15 => LsRjtExplanation::InvalidSId,
            0x17 => LsRjtExplanation::InvalidOxIdRxId,
            0x19 => LsRjtExplanation::RequestInProgress,
            0x1e => LsRjtExplanation::PlogiRequired,
            0x29 => LsRjtExplanation::InsufficientResources,
            0x2a => LsRjtExplanation::UnableToSupplyData,
            0x2c => LsRjtExplanation::RequestNotSupported,
            0x2d => LsRjtExplanation::InvalidPayloadLength,
            other => LsRjtExplanation::Unknown(other),
        }
    }
}

impl From<LsRjtExplanation> for u8 {
    fn from(v: LsRjtExplanation) -> u8 {
        match v {
            LsRjtExplanation::None => 0x00,
            LsRjtExplanation::ServiceParamOption => 0x01,
            LsRjtExplanation::InitiatorControl => 0x03,
            LsRjtExplanation::InvalidSId => 0x15,
            LsRjtExplanation::InvalidOxIdRxId => 0x17,
            LsRjtExplanation::RequestInProgress => 0x19,
            LsRjtExplanation::PlogiRequired => 0x1e,
            LsRjtExplanation::InsufficientResources => 0x29,
            LsRjtExplanation::UnableToSupplyData => 0x2a,
            LsRjtExplanation::RequestNotSupported => 0x2c,
            LsRjtExplanation::InvalidPayloadLength => 0x2d,
            LsRjtExplanation::Unknown(other) => other,
        }
    }
}

/// LS_RJT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsRjtRepr {
    pub reason: LsRjtReason,
    pub explanation: LsRjtExplanation,
    pub vendor: u8,
}

impl LsRjtRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ElsPacket<T>) -> Result<LsRjtRepr> {
        let b = packet.need(field::RJT_LEN)?;
        if packet.command() != ElsCommand::LsRjt {
            return Err(Error::Malformed("not an LS_RJT"));
        }
        Ok(LsRjtRepr {
            reason: LsRjtReason::from(b[field::RJT_REASON]),
            explanation: LsRjtExplanation::from(b[field::RJT_EXPLANATION]),
            vendor: b[field::RJT_VENDOR],
        })
    }
    pub const fn buffer_len(&self) -> usize {
        field::RJT_LEN
    }
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ElsPacket<T>) {
        packet.set_command(ElsCommand::LsRjt);
        let b = packet.bytes_mut();
        b[field::RJT_RSVD] = 0;
        b[field::RJT_REASON] = self.reason.into();
        b[field::RJT_EXPLANATION] = self.explanation.into();
        b[field::RJT_VENDOR] = self.vendor;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{self, *};
    use super::*;
    use proptest::prelude::*;

    fn els(name: &str, n: usize) -> Vec<u8> {
        testdata::fc_payload(name, n)
    }

    /// Parse, emit into a 0xa5 buffer of exactly `buffer_len`, compare with the original
    /// bytes, and check that every shorter prefix fails.
    fn round_trip<R, P, E, L>(bytes: &[u8], parse: P, emit: E, len: L) -> R
    where
        R: PartialEq + std::fmt::Debug,
        P: Fn(&[u8]) -> Result<R>,
        E: Fn(&R, &mut ElsPacket<&mut [u8]>),
        L: Fn(&R) -> usize,
    {
        let repr = parse(bytes).unwrap();
        let n = len(&repr);
        assert_eq!(n, bytes.len(), "buffer_len");
        let mut buf = vec![0xa5u8; n];
        emit(&repr, &mut ElsPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
        for cut in 0..n {
            let r = parse(&bytes[..cut]);
            assert!(r.is_err(), "prefix {cut} parsed");
        }
        repr
    }

    macro_rules! rt {
        ($bytes:expr, $ty:ty) => {
            round_trip(
                $bytes,
                |b: &[u8]| <$ty>::parse(&ElsPacket::new_checked(b)?),
                |r: &$ty, p: &mut ElsPacket<&mut [u8]>| r.emit(p),
                |r: &$ty| r.buffer_len(),
            )
        };
    }

    fn login(bytes: &[u8]) -> LoginRepr {
        rt!(bytes, LoginRepr)
    }

    fn prli(bytes: &[u8]) -> PrliRepr {
        rt!(bytes, PrliRepr)
    }

    #[test]
    fn ipxe_flogi() {
        // Non-FIP FLOGI (ipxe-fcoe-p2p-boot.pcap frame 8): receive size 1452, no timeouts.
        let b = els(IPXE_BOOT, 8);
        let r = login(&b);
        assert_eq!(r.command, ElsCommand::Flogi);
        assert_eq!((r.fc_ph_high, r.fc_ph_low, r.bb_credit), (0x20, 0x20, 10));
        assert_eq!(r.features, features::CIRO);
        assert_eq!(r.bb_rcv_size, 1452);
        assert_eq!((r.r_a_tov(), r.e_d_tov), (0, 0));
        assert_eq!(r.wwpn.to_string(), "20:00:52:54:00:12:34:56");
        assert_eq!(r.wwnn.to_string(), "10:00:52:54:00:12:34:56");
        assert_eq!(r.class3.service_options, class::VALID | class::SEQ);
        assert_eq!(r.class3.rcv_size, 0);
        assert!(!r.is_f_port());
        assert_eq!(r.max_payload(2112), 1452);
        // The responder's LS_ACC (frame 9) names the target WWPN the URI asked for.
        let acc = login(&els(IPXE_BOOT, 9));
        assert_eq!(acc.command, ElsCommand::LsAcc);
        assert_eq!(acc.wwpn.to_string(), "20:00:00:25:b5:00:00:01");
        assert!(!acc.is_f_port());
    }

    #[test]
    fn ipxe_plogi() {
        let r = login(&els(IPXE_BOOT, 10));
        assert_eq!(r.command, ElsCommand::Plogi);
        assert_eq!(r.bb_rcv_size, 1452);
        assert_eq!(r.class3.rcv_size, 1452);
        assert_eq!(
            (r.total_concurrent_seq, r.rel_off_by_category),
            (0xff, 0x1f)
        );
        assert_eq!(r.e_d_tov, 2000);
        assert_eq!(r.class3.open_seq_per_exchange, 1);
    }

    #[test]
    fn linux_plogi_matches_n_port_defaults() {
        // LIO's PLOGI in linux-fcoe-vn2vn-vs-lio.pcap frame 17 and its ACC (frame 18).
        let r = login(&els(LINUX_LIO, 17));
        let wwpn = Wwn(0x2000_5254_004c_100a);
        let wwnn = Wwn(0x1000_5254_004c_100a);
        assert_eq!(r, LoginRepr::n_port(ElsCommand::Plogi, wwpn, wwnn, 2112));
        let acc = login(&els(LINUX_LIO, 18));
        assert_eq!(acc.command, ElsCommand::LsAcc);
        assert_eq!(acc.wwpn, Wwn(0x2000_5254_0012_3456));
        assert_eq!(acc.max_payload(1452), 1452);
    }

    #[test]
    fn prli_from_both_initiators() {
        let r = prli(&els(IPXE_BOOT, 12));
        assert_eq!(r.command, ElsCommand::Prli);
        assert_eq!((r.fc4_type, r.flags), (0x08, spp_flags::EST_IMG_PAIR));
        assert_eq!(r.service_params, fcp_sppf::INIT_FCN | fcp_sppf::RD_XRDY_DIS);
        let acc = prli(&els(IPXE_BOOT, 13));
        assert_eq!(acc, PrliRepr::fcp_target_acc());
        assert_eq!(acc.response_code(), spp_resp::ACK);

        let linux = prli(&els(LINUX_LIO, 19));
        assert_eq!(
            linux.service_params,
            fcp_sppf::INIT_FCN | fcp_sppf::RD_XRDY_DIS | fcp_sppf::RETRY | fcp_sppf::CONF_COMPL
        );
        let acc = prli(&els(LINUX_LIO, 22)); // LIO's ACC to Linux
        assert_eq!(acc.response_code(), spp_resp::ACK);
        assert!(acc.flags & spp_flags::EST_IMG_PAIR != 0);
    }

    #[test]
    fn prli_rejects_bad_lengths() {
        let mut b = els(IPXE_BOOT, 12);
        b[1] = 20;
        assert!(PrliRepr::parse(&ElsPacket::new_unchecked(&b[..])).is_err());
        let mut b = els(IPXE_BOOT, 12);
        b[3] = 36; // claims two pages, carries one
        assert_eq!(
            PrliRepr::parse(&ElsPacket::new_unchecked(&b[..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn rtv_and_its_acc() {
        let req = els(LINUX_LIO, 23);
        let r = rt!(&req, BareElsRepr);
        assert_eq!(r.command, ElsCommand::Rtv);
        let acc = rt!(&els(LINUX_LIO, 25), RtvAccRepr);
        assert_eq!(
            acc,
            RtvAccRepr {
                r_a_tov: 4000,
                e_d_tov: 2000,
                qualifier: 0
            }
        );
    }

    #[test]
    fn adisc_and_its_acc() {
        let b = els(LINUX_LIO_LATE, 348);
        let r = rt!(&b, AdiscRepr);
        assert_eq!(r.command, ElsCommand::Adisc);
        assert_eq!(r.n_port_id, FcId::new(0x100a));
        assert_eq!(r.hard_address, FcId::new(0));
        assert_eq!(r.wwpn, Wwn(0x2000_5254_004c_100a));
        let acc = rt!(&els(LINUX_LIO_LATE, 350), AdiscRepr);
        assert_eq!(
            (acc.command, acc.n_port_id),
            (ElsCommand::LsAcc, FcId::new(0x3456))
        );
    }

    #[test]
    fn ls_rjt_construct_parse_emit() {
        // "PLOGI required", what the target answers to a PRLI from a port it has no login for.
        let bytes = [0x01, 0, 0, 0, 0x00, 0x03, 0x1e, 0x00];
        let r = rt!(&bytes, LsRjtRepr);
        assert_eq!(r.reason, LsRjtReason::LogicalError);
        assert_eq!(r.explanation, LsRjtExplanation::PlogiRequired);
        let mut not_rjt = bytes;
        not_rjt[0] = 0x02;
        assert!(LsRjtRepr::parse(&ElsPacket::new_unchecked(&not_rjt[..])).is_err());
    }

    #[test]
    fn rrq_construct_parse_emit() {
        let bytes = [
            0x12, 0, 0, 0, 0x00, 0x00, 0x34, 0x56, 0x00, 0x05, 0x00, 0x07,
        ];
        let r = rt!(&bytes, RrqRepr);
        assert_eq!(
            r,
            RrqRepr {
                command: ElsCommand::Rrq,
                originator: FcId::new(0x3456),
                ox_id: 5,
                rx_id: 7
            }
        );
    }

    #[test]
    fn echo_payload() {
        let bytes = [0x10, 0, 0, 0, 1, 2, 3, 4];
        let p = ElsPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.command(), ElsCommand::Echo);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(ElsCommand::from(v)), v);
            assert_eq!(u8::from(LsRjtReason::from(v)), v);
            assert_eq!(u8::from(LsRjtExplanation::from(v)), v);
        }
    }

    prop_compose! {
        fn login_repr()(cmd in prop::sample::select(vec![0x02u8, 0x03, 0x04, 0x51]),
                        hi in any::<u8>(), lo in any::<u8>(), credit in any::<u16>(),
                        feat in any::<u16>(), sc in 0..16u8, rcv in 0..0x1000u16,
                        seq in any::<u16>(), cat in any::<u16>(), edtov in any::<u32>(),
                        wwpn in any::<u64>(), wwnn in any::<u64>(),
                        c3 in any::<(u16, u16, u16, u16, u16, u16, u8)>()) -> LoginRepr {
            LoginRepr {
                command: ElsCommand::from(cmd), fc_ph_high: hi, fc_ph_low: lo, bb_credit: credit,
                features: feat, bb_sc_n: sc, bb_rcv_size: rcv, total_concurrent_seq: seq,
                rel_off_by_category: cat, e_d_tov: edtov, wwpn: Wwn(wwpn), wwnn: Wwn(wwnn),
                class3: Class3Params {
                    service_options: c3.0, initiator_ctl: c3.1, recipient_ctl: c3.2,
                    rcv_size: c3.3, concurrent_seq: c3.4, ee_credit: c3.5,
                    open_seq_per_exchange: c3.6,
                },
            }
        }
    }

    proptest! {
        #[test]
        fn login_round_trip(repr in login_repr()) {
            let mut buf = [0xa5u8; LOGIN_LEN];
            repr.emit(&mut ElsPacket::new_unchecked(&mut buf[..]));
            let back = LoginRepr::parse(&ElsPacket::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }

        #[test]
        fn prli_round_trip(cmd in prop::sample::select(vec![0x02u8, 0x20, 0x21]),
                           t in any::<u8>(), ext in any::<u8>(), flags in any::<u8>(),
                           opa in any::<u32>(), rpa in any::<u32>(), sp in any::<u32>()) {
            let repr = PrliRepr {
                command: ElsCommand::from(cmd), fc4_type: t, type_ext: ext, flags,
                originator_pa: opa, responder_pa: rpa, service_params: sp,
            };
            let mut buf = [0xa5u8; PRLI_LEN];
            repr.emit(&mut ElsPacket::new_unchecked(&mut buf[..]));
            let back = PrliRepr::parse(&ElsPacket::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }
    }
}
