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
//!
//! The frames and their meaning come from [`l2san_fcoe::initiator`], one initiator per client;
//! this file holds only the pacing: steps sent to every client at once, retries, the slots.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use l2san_common::ether::MacAddr;
use l2san_common::io::{FrameRx, FrameTx};
use l2san_fcoe::initiator::fcp::{finish_data_frame, reply_of, set_command, CMND_FRAME_LEN};
use l2san_fcoe::initiator::frame::{
    frame_len, max_fcoe_size, mfs_for_mtu, receive, vn2vn_of, PAYLOAD_AT,
};
use l2san_fcoe::initiator::scsi::{self, Capacity, Sense, CHECK_CONDITION, GOOD};
use l2san_fcoe::initiator::vn2vn::BEACON_EVERY;
use l2san_fcoe::initiator::{
    wwn_of, Command, DataDirection, ElsRequest, ElsVerdict, Initiator, Neighbour, Port, Reply,
    Vn2VnPort,
};
use l2san_fcoe::wire::fip::{Fc4Features, Vn2VnSubcode, VN2VN_FC_MAP};
use l2san_fcoe::wire::{FcId, Wwn};

use super::{client_mac, Event, Io, Protocol, Reply as EngineReply, Send, Session};

/// The FCP_CMND frame at the start of a slot's area, and where the data frames begin.
const DATA_AREA: usize = CMND_FRAME_LEN.next_multiple_of(32);
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

/// A logged-in FCoE target and its clients, as the engine drives them.
pub struct Fcoe {
    target: Port,
    lun: [u8; 8],
    /// One initiator per simulated client, each logged in to `target`.
    clients: Vec<Initiator>,
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

/// Client `enode`'s VN_Port with port ID `id`: WWPN `10:00:<ENode MAC>` (NAA 1, lower than
/// any NAA 2 or 5 name), WWNN `20:00:<ENode MAC>`, an FCP initiator.
fn vn_port(enode: MacAddr, id: FcId, mtu: u32) -> Vn2VnPort {
    Vn2VnPort {
        port: Port::vn2vn(enode, id, wwn_of(0x1000, enode), wwn_of(0x2000, enode)),
        fc4: Fc4Features::fcp(Fc4Features::FCP_INITIATOR),
        max_fcoe_size: max_fcoe_size(mtu),
    }
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
        for (i, c) in self.clients.iter().enumerate() {
            let f = c.request(ElsRequest::Logo, LOGIN_OX | 0x7000 | i as u16);
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
        let c = &self.clients[client as usize];
        c.emit_command_template(area, self.lun);
        // The data frames: everything but the exchange IDs, sequence flags and trailer.
        let frames = (area.len() - DATA_AREA) / self.stride;
        for k in 0..frames {
            let at = DATA_AREA + k * self.stride;
            c.emit_data_template(&mut area[at..], (k * self.chunk) as u32);
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
        let cdb = scsi::read_write(io.write, io.lba, io.sectors as u32, self.cdb16);
        let direction = if io.write {
            DataDirection::Write
        } else {
            DataDirection::Read
        };
        set_command(
            area,
            io.tag as u16,
            &cdb,
            direction,
            io.sectors as u32 * 512,
        );
        send(0, CMND_FRAME_LEN);
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
            let n = finish_data_frame(
                &mut area[at..],
                io.tag as u16,
                responder_id,
                (k - first) as u16,
                k == first,
                k == last,
                data,
            );
            send(at, n);
        }
    }

    fn parse<'a>(&self, frame: &'a [u8]) -> Option<EngineReply<'a>> {
        let rx = receive(frame, self.check_crc)?;
        if rx.dst.0[..3] != VN2VN_FC_MAP || rx.fc.s_id() != self.target.id {
            return None;
        }
        let client = self.client_by_id(rx.fc.d_id())?;
        let tag = rx.fc.ox_id() as u32;
        let event = match reply_of(&rx)? {
            Reply::Data { offset, data, .. } => Event::Data { offset, data },
            Reply::XferRdy { rx_id, offset, len } => Event::WriteReady {
                offset,
                len,
                responder_id: rx_id,
            },
            Reply::Rsp(r) => Event::Done {
                ok: r.ok(),
                data: &[],
            },
        };
        Some(EngineReply { client, tag, event })
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
    /// Each client's VN_Port (claims, beacons) and its login to the target.
    ports: Vec<Vn2VnPort>,
    clients: Vec<Initiator>,
    target: Port,
    /// Frames to send once the current receive batch is done (answers to the target's
    /// PLOGIs).
    answers: Vec<Vec<u8>>,
    /// Per client: capacity from READ CAPACITY(16).
    capacity: Vec<Option<Capacity>>,
    /// Why a client failed its last try of a step, for the error message.
    why: Vec<String>,
}

impl Login<'_> {
    fn client_of_mac(&self, mac: MacAddr) -> Option<usize> {
        self.clients
            .iter()
            .position(|c| c.local.mac == mac || c.local.enode == mac)
    }

    /// Answer a PLOGI the target originated to one of our VN MACs with LS_ACC.
    fn answer_plogi(&mut self, frame: &[u8]) -> bool {
        let Some(rx) = receive(frame, true) else {
            return false;
        };
        let Some(i) = self.client_of_mac(rx.dst) else {
            return false;
        };
        match self.clients[i].answer_plogi(frame) {
            Some(acc) => {
                self.answers.push(acc);
                true
            }
            None => false,
        }
    }

    /// An ELS reply to client `i`'s request `kind` on exchange `ox`: LS_ACC is done; LS_RJT
    /// (or a refused PRLI) notes why and lets the step send again.
    fn els_step(&mut self, kind: ElsRequest, frame: &[u8], ox: u16) -> Heard {
        let Some(i) = frame
            .get(..6)
            .and_then(|d| self.client_of_mac(MacAddr::from_bytes(d)))
        else {
            return Heard::Nothing;
        };
        match self.clients[i].on_els_reply(kind, ox, frame) {
            Some(ElsVerdict::Accepted) => Heard::Done(i),
            Some(v @ (ElsVerdict::Rejected(_) | ElsVerdict::PrliRefused(_))) => {
                self.why[i] = v.to_string();
                Heard::Nothing
            }
            _ => Heard::Nothing,
        }
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
                let c = &self.clients[i].local;
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
    let mfs = mfs_for_mtu(opts.mtu);
    if mfs < 512 + 4 {
        bail!(
            "MTU {} is too small for FCoE data frames of a whole sector",
            opts.mtu
        );
    }
    let make_ports = |skip: Option<FcId>| -> Vec<Vn2VnPort> {
        let mut id = opts.id_base;
        (0..opts.clients)
            .map(|i| {
                id += 1;
                if Some(FcId::new(id)) == skip {
                    id += 1;
                }
                vn_port(client_mac(opts.mac_base, i), FcId::new(id), opts.mtu)
            })
            .collect()
    };
    let mut ports = make_ports(None);

    // Find the target: claim the first client's ID and listen for claim responses (and for a
    // claim from a port that holds that ID itself).
    let first = ports[0];
    let claim = first.claim();
    let mut target = None;
    // An l2san just started is still probing its own ID for about a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while target.is_none() && Instant::now() < deadline {
        tx.send_frames(&[&claim])?;
        target = super::await_frame(rx, Duration::from_millis(400), |f| {
            let (dst, _, v) = vn2vn_of(f)?;
            let n = Neighbour::of(&v);
            let wanted = opts.target_wwpn.is_none_or(|w| w == v.vn_port.wwpn);
            (first.answers_claim(dst, &v) && n.is_fcp_target() && wanted).then(|| n.port())
        })?;
    }
    let Some(target) = target else {
        bail!(
            "no FCoE VN2VN target answered a claim in 5 s{}: is one serving on this segment?",
            opts.target_wwpn
                .map_or(String::new(), |w| format!(" with WWPN {w}"))
        );
    };
    if ports.iter().any(|p| p.port.id == target.id) {
        ports = make_ports(Some(target.id));
    }

    let n = ports.len();
    let clients = ports
        .iter()
        .map(|p| Initiator::vn2vn(p.port, target, mfs as u16))
        .collect();
    let mut l = Login {
        rx,
        tx,
        opts,
        ports,
        clients,
        target,
        answers: Vec::new(),
        capacity: vec![None; n],
        why: vec![String::new(); n],
    };

    // 1. Claims: the target answers each with a claim response to the ENode MAC.
    l.step("claim", &|l, i, _| l.ports[i].claim(), &mut |l, f, _| {
        let Some((dst, src, v)) = vn2vn_of(f) else {
            return Heard::Nothing;
        };
        if v.vn_port.wwpn != l.target.wwpn {
            return Heard::Nothing;
        }
        match l.client_of_mac(dst) {
            Some(i) if l.ports[i].heard(src, dst, &v) == Some(Vn2VnSubcode::ClaimResponse) => {
                Heard::Done(i)
            }
            _ => Heard::Nothing,
        }
    })?;

    // 2. FLOGI inside FIP, to the target's ENode MAC.
    l.step(
        "FLOGI",
        &|l, i, ox| l.clients[i].request(ElsRequest::Flogi, ox),
        &mut |l, f, ox| l.els_step(ElsRequest::Flogi, f, ox),
    )?;

    // 3. PLOGI over FCoE (the target's own PLOGI is answered as it comes).
    l.step(
        "PLOGI",
        &|l, i, ox| l.clients[i].request(ElsRequest::Plogi, ox),
        &mut |l, f, ox| l.els_step(ElsRequest::Plogi, f, ox),
    )?;

    // 4. PRLI for FCP.
    l.step(
        "PRLI",
        &|l, i, ox| l.clients[i].request(ElsRequest::Prli, ox),
        &mut |l, f, ox| l.els_step(ElsRequest::Prli, f, ox),
    )?;

    // 5. READ CAPACITY(16), through the power-on unit attention.
    let lun = scsi::lun(opts.lun);
    let read_capacity = Command::new(lun, scsi::read_capacity_16(), DataDirection::Read, 32);
    l.step(
        "READ CAPACITY",
        &|l, i, ox| l.clients[i].command(ox, &read_capacity),
        &mut |l, f, ox| {
            let Some(i) = f
                .get(..6)
                .and_then(|d| l.client_of_mac(MacAddr::from_bytes(d)))
            else {
                return Heard::Nothing;
            };
            let Some((got_ox, _, reply)) = l.clients[i].fcp_reply(f, true) else {
                return Heard::Nothing;
            };
            if got_ox != ox {
                return Heard::Nothing;
            }
            match reply {
                Reply::Data {
                    offset: 0, data, ..
                } if data.len() >= 12 => {
                    l.capacity[i] = Capacity::parse_16(data);
                    Heard::Nothing
                }
                Reply::Rsp(r) => match r.status {
                    GOOD if l.capacity[i].is_some() => Heard::Done(i),
                    CHECK_CONDITION => {
                        l.why[i] = match Sense::parse(r.sense) {
                            Some(s) => format!(": CHECK CONDITION {s}"),
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
                },
                _ => Heard::Nothing,
            }
        },
    )?;

    let Capacity { blocks, block_len } = l.capacity[0].unwrap_or(Capacity {
        blocks: 0,
        block_len: 512,
    });
    if block_len != 512 {
        bail!(
            "LUN {} has {block_len}-byte blocks; l2san-load drives 512-byte sectors only",
            opts.lun
        );
    }
    let peer = l
        .clients
        .iter()
        .map(|c| c.peer_mfs as usize)
        .min()
        .unwrap_or(mfs);
    let chunk = peer.min(mfs) / 512 * 512;
    if chunk == 0 {
        bail!("the target receives frames of {peer} bytes, less than a sector");
    }
    let mut by_id = vec![u32::MAX; 0x1_0000];
    for (i, c) in l.clients.iter().enumerate() {
        by_id[c.local.id.get() as usize] = i as u32;
    }
    let beacons = l.ports.iter().map(Vn2VnPort::beacon).collect();
    let t = l.target;
    let summary = format!(
        "FCoE VN2VN target WWPN {} port ID {} (ENode {}, VN MAC {}), LUN {}: {} MiB; \
         {} client(s) logged in as port IDs {}..{}; data frames of {} bytes out, at most {} in",
        t.wwpn,
        t.id,
        t.enode,
        t.mac,
        opts.lun,
        blocks / 2048,
        n,
        l.clients[0].local.id,
        l.clients[n - 1].local.id,
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

#[cfg(test)]
mod tests;
