//! FCP exchanges as the initiator runs them (FCP-4; FC-FS-4 for sequences):
//!
//! ```text
//! FCP_CMND (OX_ID ours, RX_ID FFFF) ->
//!   read:  <- FCP_DATA at relative offsets ... <- FCP_RSP
//!   write: <- XFER_RDY (RX_ID, offset, burst)  FCP_DATA ... -> (one sequence)  <- FCP_RSP
//! ```
//!
//! Replies are matched by OX_ID and by source: from the target's port ID to ours. Data in
//! may come in several frames (at most our receive size each); data out goes in frames of at
//! most the chunk the caller picks (the target's receive size, or whole sectors of it), the
//! first SOFi3, the last EOFt with END_SEQ and SEQ_INIT handing the initiative back.
//!
//! For a load generator's preallocated frames, [`Initiator::emit_command_template`],
//! [`set_command`], [`Initiator::emit_data_template`] and [`finish_data_frame`]
//! write a command or data frame in place, and [`reply_of`] reads a reply without allocating.

use l2san_common::ether::{emit_header, EtherType, HEADER_LEN as ETH_LEN};

use super::frame::{fc_frame, frame_len, receive, Received, FC_AT, PAYLOAD_AT};
use super::login::Initiator;
use super::scsi::{Sense, CHECK_CONDITION, GOOD};
use crate::wire::fc::{FCtl, FcPacket, FcType, RCtl};
use crate::wire::fcoe::{crc32, Eof, FcoePacket, Sof};
use crate::wire::fcp::{
    rsp_flags, FcpCmndPacket, FcpCmndRepr, FcpRspPacket, TaskAttribute, XferRdyPacket,
    FCP_CMND_LEN, FCP_RSP_MIN_LEN,
};

/// The whole FCP_CMND frame (16-byte CDB).
pub const CMND_FRAME_LEN: usize = frame_len(FCP_CMND_LEN);

/// Which way a command's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    None,
    /// To us (RDDATA).
    Read,
    /// To the target (WRDATA).
    Write,
}

/// An FCP command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub lun: [u8; 8],
    pub cdb: [u8; 16],
    pub direction: DataDirection,
    /// FCP_DL: the bytes of data the command moves.
    pub fcp_dl: u32,
}

impl Command {
    pub fn new(lun: [u8; 8], cdb: [u8; 16], direction: DataDirection, fcp_dl: u32) -> Command {
        Command {
            lun,
            cdb,
            direction,
            fcp_dl,
        }
    }

    /// The FCP_CMND payload (simple task, no task management).
    pub fn repr(&self) -> FcpCmndRepr {
        FcpCmndRepr {
            lun: self.lun,
            crn: 0,
            task_attribute: TaskAttribute::Simple,
            priority: 0,
            tmf_flags: 0,
            rddata: self.direction == DataDirection::Read,
            wrdata: self.direction == DataDirection::Write,
            cdb: self.cdb,
            fcp_dl: self.fcp_dl,
        }
    }
}

/// An FCP_RSP, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    pub flags: u8,
    pub status: u8,
    /// FCP_RESID (meaningful with `RESID_UNDER` or `RESID_OVER`).
    pub resid: u32,
    /// The FCP_RSP_INFO response code, when RSP_LEN_VALID.
    pub rsp_code: Option<u8>,
    /// The sense data (empty without SNS_LEN_VALID).
    pub sense: &'a [u8],
}

impl<'a> Response<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Response<'a>> {
        let r = FcpRspPacket::new_checked(data).ok()?;
        let flags = r.flags();
        let rsp_code = if flags & rsp_flags::RSP_LEN_VALID != 0 {
            r.rsp_info().get(3).copied()
        } else {
            None
        };
        // After check_len, the sense data the lengths announce is there.
        let sense_at = FCP_RSP_MIN_LEN + r.rsp_len() as usize;
        Some(Response {
            flags,
            status: r.scsi_status(),
            resid: r.resid(),
            rsp_code,
            sense: &data[sense_at..sense_at + r.sns_len() as usize],
        })
    }

    /// GOOD, no residual either way, no FCP failure code: the command did all it was asked.
    pub fn ok(&self) -> bool {
        self.status == GOOD
            && self.flags & (rsp_flags::RESID_UNDER | rsp_flags::RESID_OVER) == 0
            && self.rsp_code.is_none_or(|c| c == 0)
    }

    /// The sense key and codes of a CHECK CONDITION.
    pub fn sense(&self) -> Option<Sense> {
        (self.status == CHECK_CONDITION)
            .then(|| Sense::parse(self.sense))
            .flatten()
    }
}

/// What the target sent on one of our FCP exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// FCP_DATA at relative offset `offset`.
    Data {
        offset: u32,
        data: &'a [u8],
        /// END_SEQ: the last frame of the data sequence.
        last: bool,
    },
    /// XFER_RDY: send `len` bytes from `offset`, on the target's exchange `rx_id`.
    XferRdy {
        rx_id: u16,
        offset: u32,
        len: u32,
    },
    Rsp(Response<'a>),
}

/// An FCP reply frame: the exchange it belongs to (OX_ID), the port it went to (D_ID) and
/// what it says. `None` for anything but FCP_DATA, XFER_RDY and FCP_RSP.
pub fn reply_of<'a>(rx: &Received<'a>) -> Option<Reply<'a>> {
    let fc = &rx.fc;
    if fc.fc_type() != FcType::Fcp {
        return None;
    }
    Some(match fc.r_ctl() {
        RCtl::FcpData => Reply::Data {
            offset: fc.parameter(),
            data: rx.data,
            last: fc.f_ctl().contains(FCtl::END_SEQ),
        },
        RCtl::XferRdy => {
            let x = XferRdyPacket::new_checked(rx.data).ok()?;
            Reply::XferRdy {
                rx_id: fc.rx_id(),
                offset: x.rel_offset(),
                len: x.burst_len(),
            }
        }
        RCtl::FcpRsp => Reply::Rsp(Response::parse(rx.data)?),
        _ => return None,
    })
}

/// How one command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    pub flags: u8,
    pub resid: u32,
    pub rsp_code: Option<u8>,
    pub sense: Vec<u8>,
    /// The data in, placed by relative offset.
    pub data: Vec<u8>,
}

impl Outcome {
    pub fn good(&self) -> bool {
        self.status == GOOD
    }

    pub fn sense(&self) -> Option<Sense> {
        (self.status == CHECK_CONDITION)
            .then(|| Sense::parse(&self.sense))
            .flatten()
    }

    /// CHECK CONDITION, UNIT ATTENTION (power on, reset, parameters or LUN inventory
    /// changed): the command was not run and may simply be sent again.
    pub fn is_unit_attention(&self) -> bool {
        self.sense().is_some_and(|s| s.is_unit_attention())
    }
}

/// Where an exchange is after a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeStep {
    Pending,
    /// XFER_RDY: send `len` bytes of data from `offset` on the target's `rx_id`.
    SendData {
        rx_id: u16,
        offset: u32,
        len: u32,
    },
    Done(Outcome),
}

/// One command in flight: gathers data in (multi-frame, by relative offset, never past
/// FCP_DL) and ends at its FCP_RSP.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub ox_id: u16,
    pub fcp_dl: u32,
    /// The target's exchange ID, once it sent one.
    pub rx_id: Option<u16>,
    data: Vec<u8>,
}

impl Exchange {
    pub fn new(ox_id: u16, fcp_dl: u32) -> Exchange {
        Exchange {
            ox_id,
            fcp_dl,
            rx_id: None,
            data: Vec::new(),
        }
    }

    /// A reply already matched to this exchange (its RX_ID `rx_id`).
    pub fn on_reply(&mut self, rx_id: u16, reply: &Reply<'_>) -> ExchangeStep {
        self.rx_id.get_or_insert(rx_id);
        match *reply {
            Reply::Data { offset, data, .. } => {
                let at = offset as usize;
                let end = (at + data.len()).min(self.fcp_dl as usize);
                if at < end {
                    if self.data.len() < end {
                        self.data.resize(end, 0);
                    }
                    self.data[at..end].copy_from_slice(&data[..end - at]);
                }
                ExchangeStep::Pending
            }
            Reply::XferRdy { rx_id, offset, len } => ExchangeStep::SendData { rx_id, offset, len },
            Reply::Rsp(r) => ExchangeStep::Done(Outcome {
                status: r.status,
                flags: r.flags,
                resid: r.resid,
                rsp_code: r.rsp_code,
                sense: r.sense.to_vec(),
                data: std::mem::take(&mut self.data),
            }),
        }
    }
}

impl Initiator {
    /// The FCP_CMND frame of `cmd` on exchange `ox`.
    pub fn command(&self, ox: u16, cmd: &Command) -> Vec<u8> {
        let repr = cmd.repr();
        let mut f = Vec::new();
        fc_frame(
            &mut f,
            self.remote.mac,
            self.local.mac,
            self.header(RCtl::FcpCmnd, FcType::Fcp, ox),
            Sof::I3,
            Eof::T,
            repr.buffer_len(),
            |b| repr.emit(&mut FcpCmndPacket::new_unchecked(b)),
        );
        f
    }

    /// An FCP reply to us from the target: FCoE frame (CRC checked when `check_crc`) to our
    /// MAC, from the target's port ID to ours. Returns OX_ID, RX_ID and the reply.
    pub fn fcp_reply<'a>(&self, frame: &'a [u8], check_crc: bool) -> Option<(u16, u16, Reply<'a>)> {
        let rx = receive(frame, check_crc)?;
        if rx.dst != self.local.mac
            || rx.fc.s_id() != self.remote.id
            || rx.fc.d_id() != self.local.id
        {
            return None;
        }
        Some((rx.fc.ox_id(), rx.fc.rx_id(), reply_of(&rx)?))
    }

    /// The FCP_DATA frames of `data` (the burst an XFER_RDY asked for, starting at relative
    /// offset `offset`) on exchange `ox` / `rx_id`, `chunk` bytes a frame at most: one
    /// sequence, the last frame ending it and handing the initiative back.
    pub fn data_out(
        &self,
        ox: u16,
        rx_id: u16,
        offset: u32,
        data: &[u8],
        chunk: usize,
    ) -> Vec<Vec<u8>> {
        let n = data.len().div_ceil(chunk.max(1)).max(1);
        (0..n)
            .map(|k| {
                let at = k * chunk;
                let part = &data[at.min(data.len())..(at + chunk).min(data.len())];
                let mut hdr = self.header(RCtl::FcpData, FcType::Fcp, ox);
                let last = k + 1 == n;
                hdr.rx_id = rx_id;
                hdr.seq_id = 1;
                hdr.seq_cnt = k as u16;
                hdr.parameter = offset + at as u32;
                hdr.f_ctl = data_f_ctl(last);
                let mut f = Vec::new();
                fc_frame(
                    &mut f,
                    self.remote.mac,
                    self.local.mac,
                    hdr,
                    if k == 0 { Sof::I3 } else { Sof::N3 },
                    if last { Eof::T } else { Eof::N },
                    part.len(),
                    |b| b.copy_from_slice(part),
                );
                f
            })
            .collect()
    }

    /// Write an FCP_CMND frame for `lun` into `area[..CMND_FRAME_LEN]`, all but what
    /// [`set_command`] fills in per command.
    pub fn emit_command_template(&self, area: &mut [u8], lun: [u8; 8]) {
        let area = &mut area[..CMND_FRAME_LEN];
        emit_header(area, self.remote.mac, self.local.mac, EtherType::Fcoe);
        self.header(RCtl::FcpCmnd, FcType::Fcp, 0)
            .emit(&mut FcPacket::new_unchecked(&mut area[FC_AT..PAYLOAD_AT]));
        {
            let mut p = FcoePacket::new_unchecked(&mut area[ETH_LEN..]);
            p.set_version(0);
            p.set_sof(Sof::I3);
            p.set_eof(Eof::T);
        }
        Command::new(lun, [0; 16], DataDirection::None, 0)
            .repr()
            .emit(&mut FcpCmndPacket::new_unchecked(
                &mut area[PAYLOAD_AT..PAYLOAD_AT + FCP_CMND_LEN],
            ));
    }

    /// Write the fixed part of an FCP_DATA frame into `frame`: Ethernet and FCoE headers and
    /// an FC header at relative offset `offset`; [`finish_data_frame`] does the rest.
    pub fn emit_data_template(&self, frame: &mut [u8], offset: u32) {
        emit_header(frame, self.remote.mac, self.local.mac, EtherType::Fcoe);
        // FCoE version 0; reserved bytes stay zero.
        frame[ETH_LEN] = 0;
        let mut hdr = self.header(RCtl::FcpData, FcType::Fcp, 0);
        hdr.seq_id = 1;
        hdr.parameter = offset;
        hdr.f_ctl = FCtl::REL_OFF;
        hdr.emit(&mut FcPacket::new_unchecked(&mut frame[FC_AT..PAYLOAD_AT]));
    }
}

/// Fill a command template in: OX_ID, CDB, data direction, FCP_DL, CRC. The frame is
/// `area[..CMND_FRAME_LEN]`.
pub fn set_command(
    area: &mut [u8],
    ox: u16,
    cdb: &[u8; 16],
    direction: DataDirection,
    fcp_dl: u32,
) {
    FcPacket::new_unchecked(&mut area[FC_AT..PAYLOAD_AT]).set_ox_id(ox);
    {
        let mut cmnd =
            FcpCmndPacket::new_unchecked(&mut area[PAYLOAD_AT..PAYLOAD_AT + FCP_CMND_LEN]);
        cmnd.set_data_flags(
            direction == DataDirection::Read,
            direction == DataDirection::Write,
        );
        cmnd.set_cdb(cdb);
        cmnd.set_fcp_dl(fcp_dl);
    }
    let sum = crc32(&area[FC_AT..PAYLOAD_AT + FCP_CMND_LEN]);
    FcoePacket::new_unchecked(&mut area[ETH_LEN..CMND_FRAME_LEN]).set_crc(sum);
}

/// F_CTL of our data frames: relative offset; the last one ends the sequence and hands the
/// initiative back.
fn data_f_ctl(last: bool) -> FCtl {
    if last {
        FCtl::REL_OFF | FCtl::END_SEQ | FCtl::SEQ_INIT
    } else {
        FCtl::REL_OFF
    }
}

/// Finish a data frame of `len` payload bytes written over a template: exchange IDs, the
/// frame's place in the sequence (`seq_cnt`, `first`, `last`), delimiters and CRC. Returns
/// the frame's length.
pub fn finish_data_frame(
    frame: &mut [u8],
    ox: u16,
    rx_id: u16,
    seq_cnt: u16,
    first: bool,
    last: bool,
    len: usize,
) -> usize {
    let frame = &mut frame[..frame_len(len)];
    {
        let mut fc = FcPacket::new_unchecked(&mut frame[FC_AT..PAYLOAD_AT]);
        fc.set_ox_id(ox);
        fc.set_rx_id(rx_id);
        fc.set_seq_cnt(seq_cnt);
        fc.set_f_ctl(data_f_ctl(last));
    }
    let sum = crc32(&frame[FC_AT..PAYLOAD_AT + len]);
    let mut p = FcoePacket::new_unchecked(&mut frame[ETH_LEN..]);
    p.set_sof(if first { Sof::I3 } else { Sof::N3 });
    p.set_crc(sum);
    p.set_eof(if last { Eof::T } else { Eof::N });
    frame.len()
}
