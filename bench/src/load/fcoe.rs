//! The FCoE side of the load generator: a VN2VN initiator per simulated client, then FCP
//! commands in preallocated frames.
//!
//! Login, for every client (each its own ENode MAC, WWPN and VN2VN port ID), as a Linux
//! `fcoe_ctlr` host in VN2VN mode gets in (FC-BB-6; what `l2san_fcoe::fip::vn2vn` and
//! `l2san_fcoe::fc` expect):
//! 1. a FIP Claim Notification for its port ID (multicast, from the ENode MAC): the target
//!    answers with a unicast Claim Response and so knows the client (that response also tells
//!    the first client the target's ENode MAC, port ID and WWPN);
//! 2. FLOGI inside FIP to the target's ENode MAC (MAC descriptor: our VN MAC
//!    `0E:FD:00:<port id>`); LS_ACC comes back inside FIP;
//! 3. PLOGI over FCoE, VN MAC to VN MAC. The client's WWPN `10:00:<ENode MAC>` is lower than
//!    any NAA 2 or 5 name, so the target also sends a PLOGI of its own (Linux: the higher WWPN
//!    logs in); it is answered LS_ACC whenever it comes;
//! 4. PRLI for FCP (initiator function, no XFER_RDY for reads);
//! 5. READ CAPACITY(16), again while the target reports its power-on unit attention.
//!
//! Each step goes to every client at once and is repeated for the clients that got no answer.
//! While the load runs, every client beacons every 8 s so that the target does not age it
//! out (20 s); at the end each logs out.
//!
//! I/O: an FCP_CMND with READ(10)/WRITE(10) (READ(16)/WRITE(16) past 2^32 sectors, or always
//! with `cdb16`), OX_ID = the engine's tag. Reads come back as FCP_DATA frames (at most the
//! receive size we logged in with) and an FCP_RSP; a write gets an XFER_RDY, then its data goes
//! in frames of whole sectors that the target's receive size allows, prebuilt in the slot's
//! area, and the FCP_RSP follows. A request that times out is sent again as a new exchange;
//! the stale one is not aborted (no ABTS): a target keeps a write exchange waiting for data
//! until its own timeout. CRCs are computed for every frame sent and checked on received
//! frames only in verify runs.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use l2san_common::ether::{emit_header, EtherType, MacAddr, HEADER_LEN as ETH_LEN};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_fcoe::fc::mfs_for_mtu;
use l2san_fcoe::scsi::lun::encode_sam_lun;
use l2san_fcoe::wire::els::{
    fcp_sppf, spp_flags, spp_resp, ElsCommand, ElsPacket, LoginRepr, LogoRepr, LsRjtRepr, PrliRepr,
};
use l2san_fcoe::wire::fc::{FCtl, FcHeaderRepr, FcPacket, FcType, RCtl, RX_ID_UNKNOWN};
use l2san_fcoe::wire::fcoe::{
    crc32, Eof, FcoePacket, FcoeRepr, Sof, HEADER_LEN as FCOE_HDR, MAX_LEN, TRAILER_LEN,
};
use l2san_fcoe::wire::fcp::{
    rsp_flags, FcpCmndPacket, FcpRspPacket, TaskAttribute, XferRdyPacket, FCP_CMND_LEN,
};
use l2san_fcoe::wire::fip::{
    fpma, ElsKind, Fc4Features, FipEls, FipPacket, FipRepr, Vn2VnRepr, Vn2VnSubcode, VnPortId,
    ALL_VN2VN_MACS, VN2VN_FC_MAP,
};
use l2san_fcoe::wire::{FcId, Wwn};

use super::{client_mac, Event, Io, Protocol, Reply, Send, Session};

const FC_HDR: usize = 24;
/// Where the FC header starts in a whole frame.
const FC_AT: usize = ETH_LEN + FCOE_HDR;
/// Where the FC payload starts in a whole frame.
const PAYLOAD_AT: usize = FC_AT + FC_HDR;
/// A whole FCoE frame with `len` bytes of FC payload (a multiple of 4).
const fn frame_len(len: usize) -> usize {
    PAYLOAD_AT + len + TRAILER_LEN
}
/// The FCP_CMND frame at the start of a slot's area, and where the data frames begin.
const CMND_LEN: usize = frame_len(FCP_CMND_LEN);
const DATA_AREA: usize = CMND_LEN.next_multiple_of(32);
/// SAM status GOOD and CHECK CONDITION.
const GOOD: u8 = 0;
const CHECK_CONDITION: u8 = 2;
/// VN2VN beacon period (FC-BB-6 `FIP_VN_BEACON_INT`); targets age a silent port out after
/// 2.5 of them.
const BEACON_EVERY: Duration = Duration::from_secs(8);
/// OX_IDs of login exchanges have bit 15 set; the engine's tags keep it clear.
const LOGIN_OX: u16 = 0x8000;

/// What the command line chose for FCoE.
#[derive(Debug, Clone)]
pub struct FcoeOptions {
    /// The LUN to load.
    pub lun: u16,
    /// The target port to use when several answer (default: the first FCP target).
    pub target_wwpn: Option<Wwn>,
    /// Client i claims port ID `id_base + 1 + i` (the target's own ID is skipped).
    pub id_base: u32,
    /// The MTU of our interface: our receive size and frame sizes follow it.
    pub mtu: u32,
    /// Always READ(16)/WRITE(16).
    pub cdb16: bool,
    /// Check the CRC of every frame received (verify runs).
    pub check_crc: bool,
    pub mac_base: MacAddr,
    pub clients: u32,
    /// Per login step: how long to wait for answers before sending again, and how often.
    pub step_timeout: Duration,
    pub step_tries: u32,
}

/// One simulated initiator.
#[derive(Debug, Clone, Copy)]
struct Client {
    enode: MacAddr,
    vn_mac: MacAddr,
    id: FcId,
    wwpn: Wwn,
    wwnn: Wwn,
}

/// The remote port, as its claim (response) described it.
#[derive(Debug, Clone, Copy)]
struct Remote {
    enode: MacAddr,
    vn_mac: MacAddr,
    id: FcId,
    wwpn: Wwn,
}

/// A logged-in FCoE target and its clients, as the engine drives them.
pub struct Fcoe {
    target: Remote,
    lun: [u8; 8],
    clients: Vec<Client>,
    /// Client index by the low 16 bits of a port ID (`u32::MAX`: none).
    by_id: Vec<u32>,
    /// Write data bytes per FCP_DATA frame we send (whole sectors).
    chunk: usize,
    /// Distance between data frames in a slot's area.
    stride: usize,
    cdb16: bool,
    check_crc: bool,
    beacons: Vec<Vec<u8>>,
    last_beacon: Cell<Duration>,
}

/// WWPN `10:00:<mac>` (NAA 1): lower than any NAA 2 or 5 name.
fn wwpn_of(mac: MacAddr) -> Wwn {
    let mut b = [0u8; 8];
    b[0] = 0x10;
    b[2..].copy_from_slice(&mac.0);
    Wwn::from_bytes(b)
}

/// WWNN `20:00:<mac>`.
fn wwnn_of(mac: MacAddr) -> Wwn {
    Wwn(wwpn_of(mac).0 ^ (0x30u64 << 56))
}

/// Our FC receive size at `mtu` (Linux: 1452 at 1500, 2112 from 2158 up).
fn our_mfs(mtu: u32) -> usize {
    mfs_for_mtu(mtu)
}

fn max_fcoe_size(mtu: u32) -> u16 {
    mtu.min(MAX_LEN as u32) as u16
}

/// Write a one-frame sequence (SOFi3, EOFt) into `buf` (resized): Ethernet header, FCoE
/// header, FC header, `len` bytes of payload from `fill`, fill bytes, trailer with CRC.
fn fc_frame(
    buf: &mut Vec<u8>,
    dst: MacAddr,
    src: MacAddr,
    hdr: FcHeaderRepr,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let fill_bytes = FCtl::fill_for(len);
    let fc_len = FC_HDR + len + fill_bytes;
    buf.clear();
    buf.resize(ETH_LEN + FCOE_HDR + fc_len + TRAILER_LEN, 0);
    emit_header(buf, dst, src, EtherType::Fcoe);
    let mut hdr = hdr;
    hdr.f_ctl = hdr.f_ctl.with_fill_bytes(fill_bytes);
    hdr.emit(&mut FcPacket::new_unchecked(
        &mut buf[FC_AT..FC_AT + FC_HDR],
    ));
    fill(&mut buf[PAYLOAD_AT..PAYLOAD_AT + len]);
    let repr = FcoeRepr {
        sof: Sof::I3,
        eof: Eof::T,
        fc_frame_len: fc_len,
    };
    repr.emit(&mut FcoePacket::new_unchecked(&mut buf[ETH_LEN..]));
}

/// The header of a one-frame request sequence that opens an exchange we originate.
fn request_header(
    r_ctl: RCtl,
    fc_type: FcType,
    d_id: FcId,
    s_id: FcId,
    ox_id: u16,
) -> FcHeaderRepr {
    FcHeaderRepr {
        r_ctl,
        d_id,
        cs_ctl: 0,
        s_id,
        fc_type,
        f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
        seq_id: 0,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id,
        rx_id: RX_ID_UNKNOWN,
        parameter: 0,
    }
}

/// A VN2VN frame of `client` (claims from the ENode MAC, beacons from the VN MAC).
fn vn2vn_frame(client: &Client, subcode: Vn2VnSubcode, mtu: u32) -> Vec<u8> {
    let claim = subcode == Vn2VnSubcode::ClaimNotification;
    let repr = FipRepr::Vn2Vn(Vn2VnRepr {
        subcode,
        flags: 0,
        enode_mac: client.enode,
        wwnn: client.wwnn,
        vn_port: VnPortId {
            mac: client.vn_mac,
            fc_id: client.id,
            wwpn: client.wwpn,
        },
        fc4_features: claim.then(|| Fc4Features::fcp(Fc4Features::FCP_INITIATOR)),
        max_fcoe_size: claim.then(|| max_fcoe_size(mtu)),
    });
    let src = if claim { client.enode } else { client.vn_mac };
    fip_frame(ALL_VN2VN_MACS, src, &repr)
}

fn fip_frame(dst: MacAddr, src: MacAddr, repr: &FipRepr<'_>) -> Vec<u8> {
    let len = (ETH_LEN + repr.buffer_len()).max(60);
    let mut f = vec![0u8; len];
    emit_header(&mut f, dst, src, EtherType::Fip);
    repr.emit(&mut FipPacket::new_unchecked(&mut f[ETH_LEN..]));
    f
}

/// A received FCoE frame.
struct Received<'a> {
    dst: &'a [u8],
    fc: FcPacket<&'a [u8]>,
    /// The FC payload without its fill bytes.
    data: &'a [u8],
}

/// A received FCoE frame, its CRC checked when asked.
fn fcoe_payload(frame: &[u8], check_crc: bool) -> Option<Received<'_>> {
    if frame.len() < frame_len(0) || frame[12..14] != EtherType::FCOE.to_be_bytes() {
        return None;
    }
    let p = FcoePacket::new_unchecked(&frame[ETH_LEN..]);
    if check_crc && FcoeRepr::parse(&p).is_err() {
        return None;
    }
    let fc_frame = &frame[FC_AT..frame.len() - TRAILER_LEN];
    let fc = FcPacket::new_checked(fc_frame).ok()?;
    let payload = &fc_frame[FC_HDR..];
    let data = &payload[..payload.len().saturating_sub(fc.f_ctl().fill_bytes())];
    Some(Received {
        dst: &frame[..6],
        fc,
        data,
    })
}

/// A VN2VN FIP frame: (destination, its meaning).
fn vn2vn_of(frame: &[u8]) -> Option<([u8; 6], Vn2VnRepr)> {
    if frame.len() < ETH_LEN || frame[12..14] != EtherType::FIP.to_be_bytes() {
        return None;
    }
    let p = FipPacket::new_checked(&frame[ETH_LEN..]).ok()?;
    match FipRepr::parse(&p) {
        Ok(FipRepr::Vn2Vn(v)) => {
            let mut dst = [0u8; 6];
            dst.copy_from_slice(&frame[..6]);
            Some((dst, v))
        }
        _ => None,
    }
}

/// Build the (lun, CDB) bytes of a READ/WRITE(10) or (16).
fn rw_cdb(write: bool, lba: u64, blocks: u32, cdb16: bool) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    if !cdb16 && lba <= u32::MAX as u64 && blocks <= u16::MAX as u32 {
        cdb[0] = if write { 0x2a } else { 0x28 };
        cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        cdb[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
    } else {
        cdb[0] = if write { 0x8a } else { 0x88 };
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    }
    cdb
}

impl Fcoe {
    fn client_by_id(&self, id: FcId) -> Option<u32> {
        if id.get() > 0xffff {
            return None;
        }
        let c = self.by_id[id.get() as usize];
        (c != u32::MAX).then_some(c)
    }

    /// Data frames needed for `bytes` of write data.
    fn data_frames(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.chunk)
    }

    /// Send every client's LOGO (no answer awaited): the target ends their sessions.
    pub fn logout(&self, tx: &mut dyn FrameTx) {
        let mut f = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let hdr = request_header(
                RCtl::ElsRequest,
                FcType::Els,
                self.target.id,
                c.id,
                LOGIN_OX | 0x7000 | i as u16,
            );
            let logo = LogoRepr {
                n_port_id: c.id,
                wwpn: c.wwpn,
            };
            fc_frame(
                &mut f,
                self.target.vn_mac,
                c.vn_mac,
                hdr,
                logo.buffer_len(),
                |b| logo.emit(&mut ElsPacket::new_unchecked(b)),
            );
            let _ = tx.send_frames(&[&f]);
        }
    }
}

impl Protocol for Fcoe {
    fn area_len(&self, write_sectors: u8) -> usize {
        DATA_AREA + self.data_frames(write_sectors as usize * 512) * self.stride
    }

    fn prepare(&self, area: &mut [u8], client: u32) {
        area.fill(0);
        let c = self.clients[client as usize];
        let t = &self.target;
        // The command frame.
        emit_header(area, t.vn_mac, c.vn_mac, EtherType::Fcoe);
        let mut hdr = request_header(RCtl::FcpCmnd, FcType::Fcp, t.id, c.id, 0);
        hdr.emit(&mut FcPacket::new_unchecked(
            &mut area[FC_AT..FC_AT + FC_HDR],
        ));
        {
            let mut p = FcoePacket::new_unchecked(&mut area[ETH_LEN..CMND_LEN]);
            p.set_version(0);
            p.set_sof(Sof::I3);
            p.set_eof(Eof::T);
        }
        {
            let mut cmnd =
                FcpCmndPacket::new_unchecked(&mut area[PAYLOAD_AT..PAYLOAD_AT + FCP_CMND_LEN]);
            cmnd.set_lun(self.lun);
            cmnd.set_task_attribute(TaskAttribute::Simple, 0);
        }
        // The data frames: everything but the exchange IDs, sequence flags and trailer.
        let frames = (area.len() - DATA_AREA) / self.stride;
        hdr.r_ctl = RCtl::FcpData;
        hdr.seq_id = 1;
        for k in 0..frames {
            let at = DATA_AREA + k * self.stride;
            emit_header(&mut area[at..], t.vn_mac, c.vn_mac, EtherType::Fcoe);
            area[at + ETH_LEN] = 0; // FCoE version 0; reserved bytes stay zero
            hdr.seq_cnt = k as u16;
            hdr.parameter = (k * self.chunk) as u32;
            hdr.f_ctl = FCtl::REL_OFF;
            hdr.emit(&mut FcPacket::new_unchecked(
                &mut area[at + FC_AT..at + FC_AT + FC_HDR],
            ));
        }
    }

    fn write_data(&self, area: &mut [u8], sectors: u8, fill: &mut dyn FnMut(u64, &mut [u8])) {
        let total = sectors as usize * 512;
        for k in 0..self.data_frames(total) {
            let at = DATA_AREA + k * self.stride + PAYLOAD_AT;
            let len = self.chunk.min(total - k * self.chunk);
            fill((k * self.chunk / 512) as u64, &mut area[at..at + len]);
        }
    }

    fn build(&self, area: &mut [u8], io: &Io, send: &mut Send<'_>) {
        let bytes = io.sectors as u32 * 512;
        {
            let mut fc = FcPacket::new_unchecked(&mut area[FC_AT..FC_AT + FC_HDR]);
            fc.set_ox_id(io.tag as u16);
        }
        {
            let mut cmnd =
                FcpCmndPacket::new_unchecked(&mut area[PAYLOAD_AT..PAYLOAD_AT + FCP_CMND_LEN]);
            cmnd.set_data_flags(!io.write, io.write);
            cmnd.set_cdb(&rw_cdb(io.write, io.lba, io.sectors as u32, self.cdb16));
            cmnd.set_fcp_dl(bytes);
        }
        let sum = crc32(&area[FC_AT..PAYLOAD_AT + FCP_CMND_LEN]);
        FcoePacket::new_unchecked(&mut area[ETH_LEN..CMND_LEN]).set_crc(sum);
        send(0, CMND_LEN);
    }

    fn write_ready(
        &self,
        area: &mut [u8],
        io: &Io,
        offset: u32,
        len: u32,
        responder_id: u16,
        send: &mut Send<'_>,
    ) {
        let total = io.sectors as usize * 512;
        let (offset, len) = (offset as usize, len as usize);
        // Our frames are cut at multiples of the chunk: an XFER_RDY elsewhere (no target we
        // know sends one) goes unanswered, and the request times out.
        if offset % self.chunk != 0 || offset + len > total || len == 0 {
            return;
        }
        let first = offset / self.chunk;
        let last = (offset + len).div_ceil(self.chunk) - 1;
        for k in first..=last {
            let at = DATA_AREA + k * self.stride;
            let data = self.chunk.min(offset + len - k * self.chunk);
            let end = k == last;
            let frame = &mut area[at..at + frame_len(data)];
            {
                let mut fc = FcPacket::new_unchecked(&mut frame[FC_AT..FC_AT + FC_HDR]);
                fc.set_ox_id(io.tag as u16);
                fc.set_rx_id(responder_id);
                fc.set_seq_cnt((k - first) as u16);
                let f_ctl = if end {
                    FCtl::REL_OFF | FCtl::END_SEQ | FCtl::SEQ_INIT
                } else {
                    FCtl::REL_OFF
                };
                fc.set_f_ctl(f_ctl);
            }
            let sum = crc32(&frame[FC_AT..PAYLOAD_AT + data]);
            let mut p = FcoePacket::new_unchecked(&mut frame[ETH_LEN..]);
            p.set_sof(if k == first { Sof::I3 } else { Sof::N3 });
            p.set_crc(sum);
            p.set_eof(if end { Eof::T } else { Eof::N });
            send(at, frame_len(data));
        }
    }

    fn parse<'a>(&self, frame: &'a [u8]) -> Option<Reply<'a>> {
        let Received { dst, fc, data } = fcoe_payload(frame, self.check_crc)?;
        if dst[..3] != VN2VN_FC_MAP || fc.s_id() != self.target.id || fc.fc_type() != FcType::Fcp {
            return None;
        }
        let client = self.client_by_id(fc.d_id())?;
        let tag = fc.ox_id() as u32;
        let event = match fc.r_ctl() {
            RCtl::FcpData => Event::Data {
                offset: fc.parameter(),
                data,
            },
            RCtl::XferRdy => {
                let x = XferRdyPacket::new_checked(data).ok()?;
                Event::WriteReady {
                    offset: x.rel_offset(),
                    len: x.burst_len(),
                    responder_id: fc.rx_id(),
                }
            }
            RCtl::FcpRsp => {
                let r = FcpRspPacket::new_checked(data).ok()?;
                let resid = rsp_flags::RESID_UNDER | rsp_flags::RESID_OVER;
                let info_bad = r.flags() & rsp_flags::RSP_LEN_VALID != 0
                    && r.rsp_info().get(3).is_some_and(|&code| code != 0);
                Event::Done {
                    ok: r.scsi_status() == GOOD && r.flags() & resid == 0 && !info_bad,
                    data: &[],
                }
            }
            _ => return None,
        };
        Some(Reply { client, tag, event })
    }

    fn tag_bits(&self) -> u32 {
        15
    }

    fn keepalive(&self, since_start: Duration, tx: &mut dyn FrameTx) {
        if since_start.saturating_sub(self.last_beacon.get()) < BEACON_EVERY {
            return;
        }
        self.last_beacon.set(since_start);
        for chunk in self.beacons.chunks(64) {
            let refs: Vec<&[u8]> = chunk.iter().map(|b| &b[..]).collect();
            let _ = tx.send_frames(&refs);
        }
    }
}

/// What one login step made of a frame.
enum Heard {
    /// Client `i` is through this step.
    Done(usize),
    /// Client `i` must do this step again now (a unit attention, an LS_RJT to retry).
    Again(usize),
    Nothing,
}

/// The login state shared by the steps.
struct Login<'a> {
    rx: &'a mut dyn FrameRx,
    tx: &'a mut dyn FrameTx,
    opts: &'a FcoeOptions,
    clients: Vec<Client>,
    target: Remote,
    /// Frames to send once the current receive batch is done (answers to the target's
    /// PLOGIs).
    answers: Vec<Vec<u8>>,
    /// Per client: the peer's receive size from the PLOGI LS_ACC.
    peer_mfs: Vec<usize>,
    /// Per client: capacity in blocks and block length, from READ CAPACITY(16).
    capacity: Vec<Option<(u64, u32)>>,
    /// Why a client failed its last try of a step, for the error message.
    why: Vec<String>,
}

impl Login<'_> {
    fn client_of_mac(&self, mac: &[u8]) -> Option<usize> {
        self.clients
            .iter()
            .position(|c| c.vn_mac.0 == mac[..6] || c.enode.0 == mac[..6])
    }

    /// Answer a PLOGI the target originated to one of our VN MACs with LS_ACC.
    fn answer_plogi(&mut self, frame: &[u8]) -> bool {
        let Some(Received { dst, fc, .. }) = fcoe_payload(frame, true) else {
            return false;
        };
        if fc.r_ctl() != RCtl::ElsRequest
            || fc.fc_type() != FcType::Els
            || fc.s_id() != self.target.id
        {
            return false;
        }
        let Some(i) = self.client_of_mac(dst) else {
            return false;
        };
        let Ok(els) = ElsPacket::new_checked(fc.data()) else {
            return false;
        };
        if els.command() != ElsCommand::Plogi {
            return false;
        }
        let c = self.clients[i];
        let hdr = FcHeaderRepr {
            r_ctl: RCtl::ElsReply,
            d_id: self.target.id,
            cs_ctl: 0,
            s_id: c.id,
            fc_type: FcType::Els,
            f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
            seq_id: fc.seq_id(),
            df_ctl: 0,
            seq_cnt: 0,
            ox_id: fc.ox_id(),
            rx_id: RX_ID_UNKNOWN,
            parameter: 0,
        };
        let acc = LoginRepr::n_port(
            ElsCommand::LsAcc,
            c.wwpn,
            c.wwnn,
            our_mfs(self.opts.mtu) as u16,
        );
        let mut f = Vec::new();
        fc_frame(
            &mut f,
            self.target.vn_mac,
            c.vn_mac,
            hdr,
            acc.buffer_len(),
            |b| acc.emit(&mut ElsPacket::new_unchecked(b)),
        );
        self.answers.push(f);
        true
    }

    /// Run one step for every client: send `request(client, try)`, hand what comes back to
    /// `heard` (after the target's PLOGIs are answered), send again to those not through
    /// after the step timeout, up to the step's tries. Fails naming the clients left.
    fn step(
        &mut self,
        name: &str,
        request: &dyn Fn(&Self, usize, u16) -> Vec<u8>,
        heard: &mut dyn FnMut(&mut Self, &[u8], u16) -> Heard,
    ) -> Result<()> {
        let n = self.clients.len();
        let mut done = vec![false; n];
        let mut left = n;
        let mut again: Vec<usize> = (0..n).collect();
        for attempt in 0..self.opts.step_tries {
            let ox = LOGIN_OX | (attempt as u16) << 8;
            let deadline = Instant::now() + self.opts.step_timeout;
            loop {
                for i in std::mem::take(&mut again) {
                    let f = request(self, i, ox);
                    self.tx.send_frames(&[&f])?;
                }
                let now = Instant::now();
                if left == 0 || now >= deadline {
                    break;
                }
                let mut frames = Vec::new();
                self.rx.recv_batch(
                    (deadline - now).min(Duration::from_millis(20)),
                    256,
                    &mut |f| frames.push(f.to_vec()),
                )?;
                for f in frames {
                    if self.answer_plogi(&f) {
                        continue;
                    }
                    match heard(self, &f, ox) {
                        Heard::Done(i) if !done[i] => {
                            done[i] = true;
                            left -= 1;
                        }
                        Heard::Again(i) if !done[i] && !again.contains(&i) => again.push(i),
                        _ => {}
                    }
                }
                for a in std::mem::take(&mut self.answers) {
                    self.tx.send_frames(&[&a])?;
                }
            }
            if left == 0 {
                return Ok(());
            }
            again = (0..n).filter(|&i| !done[i]).collect();
        }
        let missing: Vec<String> = (0..n)
            .filter(|&i| !done[i])
            .take(8)
            .map(|i| {
                let c = &self.clients[i];
                let why = &self.why[i];
                format!("client {i} ({}, port ID {}){}", c.enode, c.id, why)
            })
            .collect();
        bail!(
            "FCoE {name}: no answer for {} of {n} clients after {} tries: {}",
            left,
            self.opts.step_tries,
            missing.join(", ")
        )
    }

    /// The FC frame of an ELS or FCP reply from the target to client `i`'s exchange `ox`.
    fn reply_to<'f>(&self, frame: &'f [u8], ox: u16) -> Option<(usize, FcPacket<&'f [u8]>)> {
        let Received { dst, fc, .. } = fcoe_payload(frame, true)?;
        let i = self.client_of_mac(dst)?;
        (fc.ox_id() == ox && fc.s_id() == self.target.id && fc.d_id() == self.clients[i].id)
            .then_some((i, fc))
    }
}

/// Find the FCoE target on the segment (a claim from the first client), log every client in
/// and read the LUN's capacity. Also returns nothing in flight.
pub fn login(
    rx: &mut dyn FrameRx,
    tx: &mut dyn FrameTx,
    opts: &FcoeOptions,
) -> Result<(Fcoe, Session)> {
    if opts.clients == 0 || opts.clients as u64 + opts.id_base as u64 >= 0xfffe {
        bail!(
            "{} clients from port ID {:#06x} do not fit below 0xffff; lower --fcoe-id-base",
            opts.clients,
            opts.id_base
        );
    }
    let mfs = our_mfs(opts.mtu);
    if mfs < 512 + 4 {
        bail!(
            "MTU {} is too small for FCoE data frames of a whole sector",
            opts.mtu
        );
    }
    let make_clients = |skip: Option<FcId>| -> Vec<Client> {
        let mut id = opts.id_base;
        (0..opts.clients)
            .map(|i| {
                id += 1;
                if Some(FcId::new(id)) == skip {
                    id += 1;
                }
                let enode = client_mac(opts.mac_base, i);
                let id = FcId::new(id);
                Client {
                    enode,
                    vn_mac: fpma(VN2VN_FC_MAP, id),
                    id,
                    wwpn: wwpn_of(enode),
                    wwnn: wwnn_of(enode),
                }
            })
            .collect()
    };
    let mut clients = make_clients(None);

    // Find the target: claim the first client's ID and listen for claim responses (and for a
    // claim from a port that holds that ID itself).
    let first = clients[0];
    let claim = vn2vn_frame(&first, Vn2VnSubcode::ClaimNotification, opts.mtu);
    let mut target = None;
    // An l2san just started is still probing its own ID for about a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while target.is_none() && Instant::now() < deadline {
        tx.send_frames(&[&claim])?;
        target = super::await_frame(rx, Duration::from_millis(400), |f| {
            let (dst, v) = vn2vn_of(f)?;
            let answer = v.subcode == Vn2VnSubcode::ClaimResponse && dst == first.enode.0;
            let defends = v.subcode == Vn2VnSubcode::ClaimNotification
                && v.vn_port.fc_id == first.id
                && v.vn_port.wwpn != first.wwpn;
            let fcp_target = v.fc4_features.is_some_and(|f| {
                f.features_of(Fc4Features::TYPE_FCP) & Fc4Features::FCP_TARGET != 0
            });
            let wanted = opts.target_wwpn.is_none_or(|w| w == v.vn_port.wwpn);
            ((answer || defends) && fcp_target && wanted).then_some(Remote {
                enode: v.enode_mac,
                vn_mac: v.vn_port.mac,
                id: v.vn_port.fc_id,
                wwpn: v.vn_port.wwpn,
            })
        })?;
    }
    let Some(target) = target else {
        bail!(
            "no FCoE VN2VN target answered a claim in 5 s{}: is one serving on this segment?",
            opts.target_wwpn
                .map_or(String::new(), |w| format!(" with WWPN {w}"))
        );
    };
    if clients.iter().any(|c| c.id == target.id) {
        clients = make_clients(Some(target.id));
    }

    let n = clients.len();
    let mut l = Login {
        rx,
        tx,
        opts,
        clients,
        target,
        answers: Vec::new(),
        peer_mfs: vec![mfs; n],
        capacity: vec![None; n],
        why: vec![String::new(); n],
    };

    // 1. Claims: the target answers each with a claim response to the ENode MAC.
    l.step(
        "claim",
        &|l, i, _| vn2vn_frame(&l.clients[i], Vn2VnSubcode::ClaimNotification, l.opts.mtu),
        &mut |l, f, _| {
            let Some((dst, v)) = vn2vn_of(f) else {
                return Heard::Nothing;
            };
            if v.subcode != Vn2VnSubcode::ClaimResponse || v.vn_port.wwpn != l.target.wwpn {
                return Heard::Nothing;
            }
            l.client_of_mac(&dst).map_or(Heard::Nothing, Heard::Done)
        },
    )?;

    // 2. FLOGI inside FIP, to the target's ENode MAC.
    l.step(
        "FLOGI",
        &|l, i, ox| {
            let c = l.clients[i];
            let hdr = request_header(RCtl::ElsRequest, FcType::Els, l.target.id, c.id, ox);
            let flogi = LoginRepr::n_port(ElsCommand::Flogi, c.wwpn, c.wwnn, mfs as u16);
            let mut fc = vec![0u8; FC_HDR + flogi.buffer_len()];
            hdr.emit(&mut FcPacket::new_unchecked(&mut fc[..FC_HDR]));
            flogi.emit(&mut ElsPacket::new_unchecked(&mut fc[FC_HDR..]));
            let repr = FipRepr::ElsRequest(FipEls {
                kind: ElsKind::Flogi,
                fc_frame: &fc,
                mac: Some(c.vn_mac),
            });
            fip_frame(l.target.enode, c.enode, &repr)
        },
        &mut |l, f, ox| {
            if f.len() < ETH_LEN || f[12..14] != EtherType::FIP.to_be_bytes() {
                return Heard::Nothing;
            }
            let Some(i) = l.client_of_mac(&f[..6]) else {
                return Heard::Nothing;
            };
            let Ok(p) = FipPacket::new_checked(&f[ETH_LEN..]) else {
                return Heard::Nothing;
            };
            let Ok(FipRepr::ElsReply(els)) = FipRepr::parse(&p) else {
                return Heard::Nothing;
            };
            let Ok(fc) = FcPacket::new_checked(els.fc_frame) else {
                return Heard::Nothing;
            };
            if fc.ox_id() != ox {
                return Heard::Nothing;
            }
            els_verdict(l, i, fc.data())
        },
    )?;

    // 3. PLOGI over FCoE (the target's own PLOGI is answered as it comes).
    l.step(
        "PLOGI",
        &|l, i, ox| {
            let c = l.clients[i];
            let hdr = request_header(RCtl::ElsRequest, FcType::Els, l.target.id, c.id, ox);
            let plogi = LoginRepr::n_port(ElsCommand::Plogi, c.wwpn, c.wwnn, mfs as u16);
            let mut f = Vec::new();
            fc_frame(
                &mut f,
                l.target.vn_mac,
                c.vn_mac,
                hdr,
                plogi.buffer_len(),
                |b| plogi.emit(&mut ElsPacket::new_unchecked(b)),
            );
            f
        },
        &mut |l, f, ox| {
            let Some((i, fc)) = l.reply_to(f, ox) else {
                return Heard::Nothing;
            };
            if let Ok(els) = ElsPacket::new_checked(fc.data()) {
                if let Ok(acc) = LoginRepr::parse(&els) {
                    if els.command() == ElsCommand::LsAcc {
                        l.peer_mfs[i] = acc.max_payload(mfs as u16) as usize;
                    }
                }
            }
            els_verdict(l, i, fc.data())
        },
    )?;

    // 4. PRLI for FCP.
    l.step(
        "PRLI",
        &|l, i, ox| {
            let c = l.clients[i];
            let hdr = request_header(RCtl::ElsRequest, FcType::Els, l.target.id, c.id, ox);
            let prli = PrliRepr {
                command: ElsCommand::Prli,
                fc4_type: Fc4Features::TYPE_FCP,
                type_ext: 0,
                flags: spp_flags::EST_IMG_PAIR,
                originator_pa: 0,
                responder_pa: 0,
                service_params: fcp_sppf::INIT_FCN | fcp_sppf::RD_XRDY_DIS,
            };
            let mut f = Vec::new();
            fc_frame(
                &mut f,
                l.target.vn_mac,
                c.vn_mac,
                hdr,
                prli.buffer_len(),
                |b| prli.emit(&mut ElsPacket::new_unchecked(b)),
            );
            f
        },
        &mut |l, f, ox| {
            let Some((i, fc)) = l.reply_to(f, ox) else {
                return Heard::Nothing;
            };
            let Ok(els) = ElsPacket::new_checked(fc.data()) else {
                return Heard::Nothing;
            };
            match (els.command(), PrliRepr::parse(&els)) {
                (ElsCommand::LsAcc, Ok(p)) if p.response_code() == spp_resp::ACK => Heard::Done(i),
                (ElsCommand::LsAcc, Ok(p)) => {
                    l.why[i] = format!(": PRLI response code {}", p.response_code());
                    Heard::Nothing
                }
                _ => els_verdict(l, i, fc.data()),
            }
        },
    )?;

    // 5. READ CAPACITY(16), through the power-on unit attention.
    let lun = encode_sam_lun(opts.lun);
    l.step(
        "READ CAPACITY",
        &|l, i, ox| {
            let c = l.clients[i];
            let hdr = request_header(RCtl::FcpCmnd, FcType::Fcp, l.target.id, c.id, ox);
            let mut f = Vec::new();
            fc_frame(&mut f, l.target.vn_mac, c.vn_mac, hdr, FCP_CMND_LEN, |b| {
                let mut p = FcpCmndPacket::new_unchecked(b);
                p.set_lun(lun);
                p.set_task_attribute(TaskAttribute::Simple, 0);
                p.set_data_flags(true, false);
                let mut cdb = [0u8; 16];
                cdb[0] = 0x9e;
                cdb[1] = 0x10;
                cdb[13] = 32;
                p.set_cdb(&cdb);
                p.set_fcp_dl(32);
            });
            f
        },
        &mut |l, f, ox| {
            let Some((i, fc)) = l.reply_to(f, ox) else {
                return Heard::Nothing;
            };
            let d = fc.data();
            match fc.r_ctl() {
                RCtl::FcpData if fc.parameter() == 0 && d.len() >= 12 => {
                    let last = u64::from_be_bytes(d[..8].try_into().unwrap_or_default());
                    let block = u32::from_be_bytes(d[8..12].try_into().unwrap_or_default());
                    l.capacity[i] = Some((last.saturating_add(1), block));
                    Heard::Nothing
                }
                RCtl::FcpRsp => {
                    let Ok(r) = FcpRspPacket::new_checked(d) else {
                        return Heard::Nothing;
                    };
                    match r.scsi_status() {
                        GOOD if l.capacity[i].is_some() => Heard::Done(i),
                        CHECK_CONDITION => {
                            let s = r.sense();
                            l.why[i] = match s.get(2..14) {
                                Some(s) => format!(
                                    ": CHECK CONDITION {:02x}/{:02x}/{:02x}",
                                    s[0] & 0xf,
                                    s[10],
                                    s[11]
                                ),
                                None => ": CHECK CONDITION".into(),
                            };
                            // A unit attention is expected once; anything else repeats and
                            // ends in the step's error.
                            Heard::Again(i)
                        }
                        other => {
                            l.why[i] = format!(": SCSI status {other:#04x}");
                            Heard::Nothing
                        }
                    }
                }
                _ => Heard::Nothing,
            }
        },
    )?;

    let (blocks, block_len) = l.capacity[0].unwrap_or((0, 512));
    if block_len != 512 {
        bail!(
            "LUN {} has {block_len}-byte blocks; l2san-load drives 512-byte sectors only",
            opts.lun
        );
    }
    let peer = l.peer_mfs.iter().copied().min().unwrap_or(mfs);
    let chunk = peer.min(mfs) / 512 * 512;
    if chunk == 0 {
        bail!("the target receives frames of {peer} bytes, less than a sector");
    }
    let mut by_id = vec![u32::MAX; 0x1_0000];
    for (i, c) in l.clients.iter().enumerate() {
        by_id[c.id.get() as usize] = i as u32;
    }
    let beacons = l
        .clients
        .iter()
        .map(|c| vn2vn_frame(c, Vn2VnSubcode::Beacon, opts.mtu))
        .collect();
    let t = l.target;
    let summary = format!(
        "FCoE VN2VN target WWPN {} port ID {} (ENode {}, VN MAC {}), LUN {}: {} MiB; \
         {} client(s) logged in as port IDs {}..{}; data frames of {} bytes out, at most {} in",
        t.wwpn,
        t.id,
        t.enode,
        t.vn_mac,
        opts.lun,
        blocks / 2048,
        n,
        l.clients[0].id,
        l.clients[n - 1].id,
        chunk,
        peer.min(mfs),
    );
    let fcoe = Fcoe {
        target: t,
        lun,
        clients: l.clients,
        by_id,
        chunk,
        stride: frame_len(chunk).next_multiple_of(64),
        cdb16: opts.cdb16,
        check_crc: opts.check_crc,
        beacons,
        last_beacon: Cell::new(Duration::ZERO),
    };
    Ok((
        fcoe,
        Session {
            capacity: blocks,
            max_sectors: u8::MAX,
            summary,
            queue_limit: None,
        },
    ))
}

/// LS_ACC: done. LS_RJT: note why and let the step send again.
fn els_verdict(l: &mut Login<'_>, i: usize, payload: &[u8]) -> Heard {
    let Ok(els) = ElsPacket::new_checked(payload) else {
        return Heard::Nothing;
    };
    match els.command() {
        ElsCommand::LsAcc => Heard::Done(i),
        ElsCommand::LsRjt => {
            l.why[i] = match LsRjtRepr::parse(&els) {
                Ok(r) => format!(": LS_RJT {:?}/{:?}", r.reason, r.explanation),
                Err(_) => ": LS_RJT".into(),
            };
            Heard::Nothing
        }
        _ => Heard::Nothing,
    }
}

#[cfg(test)]
mod tests;
