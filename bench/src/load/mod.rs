//! `l2san-load`: a storage initiator over a raw socket that drives a target as hard as asked
//! and measures what it gets: IOPS, MB/s, latency percentiles, retransmits and the target's
//! CPU time per I/O.
//!
//! The engine is protocol-agnostic: a [`Protocol`] builds requests in preallocated frames and
//! turns received frames into [`Reply`] events; [`aoe`] (one request frame, one reply frame
//! carrying the data) and [`fcoe`] (FCP: a command, data frames in either direction after a
//! transfer-ready for writes, then a status frame) plug in the same way.
//!
//! Requests live in slots, `clients × queue depth` of them, each with its own frame area
//! allocated once (the command frame and, for FCoE writes, the data frames). A reply is
//! matched to its slot by client and tag: the tag carries the slot's queue index within its
//! client in the low bits and a per-send generation above, so that a reply to a retransmitted
//! request's earlier copy is recognised as late and ignored. AoE tags have 31 bits for this,
//! FCoE OX_IDs 15 (the initiator's exchange IDs are per login, so per client). Nothing is
//! allocated per request: frames are rebuilt in place, sent in `sendmmsg` batches and received
//! from a TPACKET_V2 ring in batches.

pub mod aoe;
pub mod cpu;
pub mod fcoe;
pub mod hist;
pub mod loopback;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use l2san_common::io::{FrameRx, FrameTx};
use l2san_common::MacAddr;

use hist::Histogram;

/// One request as the engine asks for it.
#[derive(Debug, Clone, Copy)]
pub struct Io {
    pub tag: u32,
    pub lba: u64,
    pub sectors: u8,
    pub write: bool,
}

/// What a received frame means for one request.
#[derive(Debug)]
pub enum Event<'a> {
    /// The request is over; `ok` if the target reported success. `data` is read data that
    /// came in the same frame (AoE), empty otherwise.
    Done { ok: bool, data: &'a [u8] },
    /// Read data at byte `offset` of the request (FCP_DATA).
    Data { offset: u32, data: &'a [u8] },
    /// The target is ready for `len` bytes of write data from byte `offset`, in its exchange
    /// `responder_id` (FCP_XFER_RDY).
    WriteReady {
        offset: u32,
        len: u32,
        responder_id: u16,
    },
}

/// A received frame as a protocol recognised it.
#[derive(Debug)]
pub struct Reply<'a> {
    /// Which simulated client it is for.
    pub client: u32,
    pub tag: u32,
    pub event: Event<'a>,
}

/// What discovery or login learnt about the target.
#[derive(Debug, Clone)]
pub struct Session {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Most sectors the target takes in one request.
    pub max_sectors: u8,
    /// One line for the log: who answered and what it offers.
    pub summary: String,
    /// Requests the target says it can queue per initiator (AoE Buffer Count), if it says.
    pub queue_limit: Option<u32>,
}

/// Where a protocol asks the engine to send frames of a slot's area: `(start, len)`.
pub type Send<'a> = dyn FnMut(usize, usize) + 'a;

/// A storage protocol as the engine drives it.
pub trait Protocol {
    /// Bytes of frame area a request slot needs for writes of up to `write_sectors` (0 for
    /// a read-only run).
    fn area_len(&self, write_sectors: u8) -> usize;
    /// Write the parts of a slot's frames that never change for `client`.
    fn prepare(&self, area: &mut [u8], client: u32);
    /// Hand the write data of a request of `sectors` to `fill`, piece by piece in order:
    /// `fill(first_sector, bytes)`, each piece whole sectors.
    fn write_data(&self, area: &mut [u8], sectors: u8, fill: &mut dyn FnMut(u64, &mut [u8]));
    /// Fill in the request for `io` and name the frames to send now.
    fn build(&self, area: &mut [u8], io: &Io, send: &mut Send<'_>);
    /// The target is ready for write data ([`Event::WriteReady`]): name the frames to send.
    fn write_ready(
        &self,
        _area: &mut [u8],
        _io: &Io,
        _offset: u32,
        _len: u32,
        _responder_id: u16,
        _send: &mut Send<'_>,
    ) {
    }
    /// What `frame` means for one of our requests, or `None` if it is none of ours.
    fn parse<'a>(&self, frame: &'a [u8]) -> Option<Reply<'a>>;
    /// How many tag bits the engine may use (AoE: 31; FCoE's OX_ID: 15).
    fn tag_bits(&self) -> u32 {
        31
    }
    /// Called every few milliseconds with the time since the start: send what keeps the
    /// sessions alive (FCoE: VN2VN beacons).
    fn keepalive(&self, _since_start: Duration, _tx: &mut dyn FrameTx) {}
}

/// Wait up to `timeout` for a frame `pick` accepts; returns what it made of it. Frames it
/// does not accept are dropped.
pub fn await_frame<T>(
    rx: &mut dyn FrameRx,
    timeout: Duration,
    mut pick: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    let mut found = None;
    while found.is_none() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        rx.recv_batch(
            (deadline - now).min(Duration::from_millis(50)),
            64,
            &mut |f| {
                if found.is_none() {
                    found = pick(f);
                }
            },
        )?;
    }
    Ok(found)
}

/// Client `i`'s MAC: `base` with its last two bytes replaced by `i + 1`.
pub fn client_mac(base: MacAddr, i: u32) -> MacAddr {
    let mut m = base;
    m.0[4..6].copy_from_slice(&((i + 1) as u16).to_be_bytes());
    m
}

/// Which of `clients` clients has `mac` (see [`client_mac`]).
pub fn client_of(base: MacAddr, clients: u32, mac: &[u8]) -> Option<u32> {
    if mac.len() < 6 || mac[..4] != base.0[..4] {
        return None;
    }
    let i = u16::from_be_bytes([mac[4], mac[5]]) as u32;
    (1..=clients).contains(&i).then(|| i - 1)
}

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    /// Write a seeded pattern, read it back and compare, sector by sector.
    Verify,
}

/// Where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Uniformly random, aligned to the request size.
    Random,
    /// Each client walks the region from its start, wrapping at the end.
    Sequential,
}

/// Everything a run needs besides the protocol and the socket.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub op: Op,
    pub pattern: Pattern,
    pub sectors: u8,
    /// Outstanding requests per client.
    pub qd: u32,
    pub clients: u32,
    /// Stop issuing after this long (measured part only), if set.
    pub duration: Option<Duration>,
    /// Stop issuing after this many requests (measured part only), if set.
    pub requests: Option<u64>,
    /// Run this long first without measuring.
    pub warmup: Duration,
    /// Retransmit a request after this long without a reply.
    pub timeout: Duration,
    /// Give up on a request (an error) after this many sends.
    pub max_tries: u32,
    pub seed: u64,
    /// Client `i` uses this MAC with its last two bytes replaced by `i + 1`.
    pub mac_base: MacAddr,
    /// Use only the first this many sectors of the target.
    pub region: Option<u64>,
    pub target_pid: Option<u32>,
}

impl LoadConfig {
    pub fn client_mac(&self, i: u32) -> MacAddr {
        client_mac(self.mac_base, i)
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub elapsed: Duration,
    pub completed: u64,
    pub bytes: u64,
    pub latency: Histogram,
    pub retransmits: u64,
    /// Requests the target failed, or that got no reply after every try.
    pub errors: u64,
    /// Requests still outstanding when the run ended.
    pub lost: u64,
    /// Sectors read back that did not hold what was written (verify only).
    pub mismatches: u64,
    pub first_mismatch: Option<u64>,
    /// Replies to a request already completed or retransmitted (a late copy).
    pub late: u64,
    /// Frames that were no reply of ours.
    pub stray: u64,
    /// Frames the kernel did not take on send (retransmitted later).
    pub tx_dropped: u64,
    pub target_cpu_us: Option<u64>,
    pub own_cpu_us: u64,
}

impl Report {
    pub fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn iops(&self) -> f64 {
        self.completed as f64 / self.secs()
    }
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs() / 1e6
    }
    pub fn target_cpu_us_per_io(&self) -> Option<f64> {
        self.target_cpu_us
            .map(|c| c as f64 / self.completed.max(1) as f64)
    }
    pub fn own_cpu_us_per_io(&self) -> f64 {
        self.own_cpu_us as f64 / self.completed.max(1) as f64
    }
}

/// 64 bits of a seeded sector pattern (splitmix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` (whole sectors) with the pattern of the sectors from `lba` under `seed`.
pub fn fill_pattern(buf: &mut [u8], lba: u64, seed: u64) {
    for (s, sector) in buf.chunks_exact_mut(512).enumerate() {
        let base = seed ^ ((lba + s as u64) << 6);
        for (j, w) in sector.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&mix(base | j as u64).to_le_bytes());
        }
    }
}

/// How many sectors of `buf` differ from the pattern `fill_pattern` would write.
pub fn check_pattern(buf: &[u8], lba: u64, seed: u64) -> u64 {
    let mut bad = 0;
    for (s, sector) in buf.chunks_exact(512).enumerate() {
        let base = seed ^ ((lba + s as u64) << 6);
        let ok = sector
            .chunks_exact(8)
            .enumerate()
            .all(|(j, w)| w == mix(base | j as u64).to_le_bytes());
        bad += u64::from(!ok);
    }
    bad
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    busy: bool,
    /// Verify: the write at `lba` is done; read it back next.
    readback: bool,
    write: bool,
    generation: u16,
    tag: u32,
    lba: u64,
    /// When the request was first sent and last sent (ns since the start).
    first: u64,
    last: u64,
    tries: u32,
    /// Read data bytes received so far (every [`Event::Data`] and [`Event::Done`] of this send).
    received: u32,
}

/// Mutable run state, apart from the protocol and the socket halves.
struct Engine<'a> {
    cfg: &'a LoadConfig,
    slots: Vec<Slot>,
    /// Each slot's frame area, `area` bytes apiece.
    frames: Vec<u8>,
    area: usize,
    /// Verify: each slot's read-back data, `sectors × 512` bytes apiece (empty otherwise).
    readback: Vec<u8>,
    /// Bits of the tag that hold the slot's queue index within its client.
    index_bits: u32,
    /// Generations cycle through 1..=generation_mask (never 0, so no tag is 0).
    generation_mask: u16,
    ready: Vec<u32>,
    /// Frames to send: (offset in `frames`, length).
    to_send: Vec<(u32, u32)>,
    cursors: Vec<u64>,
    region: u64,
    rng: u64,
    busy: u64,
    issued: u64,
    last_completion: u64,
    r: Report,
}

impl Engine<'_> {
    fn next_lba(&mut self, client: u32) -> u64 {
        let n = self.cfg.sectors as u64;
        match self.cfg.pattern {
            Pattern::Random => {
                // xorshift64*
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
                (r % (self.region / n)) * n
            }
            Pattern::Sequential => {
                let c = &mut self.cursors[client as usize];
                let lba = *c;
                *c = if lba + 2 * n > self.region {
                    0
                } else {
                    lba + n
                };
                lba
            }
        }
    }

    /// Slot `s`'s client and its queue index within that client (slots are client-major:
    /// `s = q × clients + client`, so that the first batch interleaves clients).
    fn split(&self, s: u32) -> (u32, u32) {
        (s % self.cfg.clients, s / self.cfg.clients)
    }

    fn area_mut(&mut self, s: u32) -> &mut [u8] {
        let off = s as usize * self.area;
        &mut self.frames[off..off + self.area]
    }

    fn io(&self, s: u32) -> Io {
        let slot = &self.slots[s as usize];
        Io {
            tag: slot.tag,
            lba: slot.lba,
            sectors: self.cfg.sectors,
            write: slot.write,
        }
    }

    /// Queue frames `(start, len)` of slot `s`'s area.
    fn queue(to_send: &mut Vec<(u32, u32)>, base: usize, start: usize, len: usize) {
        to_send.push(((base + start) as u32, len as u32));
    }

    /// Give slot `s` a fresh tag and queue its request.
    fn send<P: Protocol>(&mut self, proto: &P, s: u32, now: u64) {
        let (_, q) = self.split(s);
        let mask = self.generation_mask;
        let slot = &mut self.slots[s as usize];
        slot.generation = if slot.generation >= mask {
            1
        } else {
            slot.generation + 1
        };
        slot.tag = (slot.generation as u32) << self.index_bits | q;
        slot.last = now;
        slot.tries += 1;
        slot.received = 0;
        let io = self.io(s);
        let base = s as usize * self.area;
        let Engine {
            frames, to_send, ..
        } = self;
        let area = &mut frames[base..base + self.area];
        proto.build(area, &io, &mut |start, len| {
            Self::queue(to_send, base, start, len)
        });
    }

    fn issue<P: Protocol>(&mut self, proto: &P, s: u32, now: u64) {
        let (client, _) = self.split(s);
        let readback = self.slots[s as usize].readback;
        let (lba, write) = match self.cfg.op {
            Op::Read => (self.next_lba(client), false),
            Op::Write => (self.next_lba(client), true),
            Op::Verify if readback => (self.slots[s as usize].lba, false),
            Op::Verify => {
                let lba = self.next_lba(client);
                let (seed, sectors) = (self.cfg.seed, self.cfg.sectors);
                proto.write_data(self.area_mut(s), sectors, &mut |first, data| {
                    fill_pattern(data, lba + first, seed)
                });
                (lba, true)
            }
        };
        let slot = &mut self.slots[s as usize];
        slot.lba = lba;
        slot.write = write;
        slot.busy = true;
        slot.first = now;
        slot.tries = 0;
        self.busy += 1;
        self.issued += 1;
        self.send(proto, s, now);
    }

    fn complete(&mut self, s: u32, ok: bool, now: u64) {
        let cfg = self.cfg;
        let bytes = cfg.sectors as usize * 512;
        let slot = &mut self.slots[s as usize];
        slot.busy = false;
        self.busy -= 1;
        self.last_completion = now;
        self.r.latency.record(now.saturating_sub(slot.first));
        // A read is good only with all its data.
        let ok = ok && (slot.write || slot.received as usize >= bytes);
        if !ok {
            self.r.errors += 1;
            slot.readback = false;
        } else {
            self.r.completed += 1;
            self.r.bytes += bytes as u64;
            if cfg.op == Op::Verify {
                if slot.write {
                    slot.readback = true;
                } else {
                    slot.readback = false;
                    let off = s as usize * bytes;
                    let bad = check_pattern(&self.readback[off..off + bytes], slot.lba, cfg.seed);
                    if bad > 0 {
                        self.r.mismatches += bad;
                        self.r.first_mismatch.get_or_insert(slot.lba);
                    }
                }
            }
        }
        self.ready.push(s);
    }

    /// Read data at byte `offset` of slot `s`'s request.
    fn data(&mut self, s: u32, offset: u32, data: &[u8]) {
        let bytes = self.cfg.sectors as usize * 512;
        let slot = &mut self.slots[s as usize];
        let take = data.len().min(bytes.saturating_sub(offset as usize));
        slot.received = slot.received.saturating_add(take as u32);
        if !self.readback.is_empty() && take > 0 {
            let at = s as usize * bytes + offset as usize;
            self.readback[at..at + take].copy_from_slice(&data[..take]);
        }
    }

    fn on_frame<P: Protocol>(&mut self, proto: &P, frame: &[u8], now: u64) {
        let Some(reply) = proto.parse(frame) else {
            self.r.stray += 1;
            return;
        };
        let q = reply.tag & ((1 << self.index_bits) - 1);
        let s = q as u64 * self.cfg.clients as u64 + reply.client as u64;
        let live = reply.client < self.cfg.clients
            && q < self.cfg.qd
            && self
                .slots
                .get(s as usize)
                .is_some_and(|slot| slot.busy && slot.tag == reply.tag);
        if !live {
            self.r.late += 1;
            return;
        }
        let s = s as u32;
        match reply.event {
            Event::Done { ok, data } => {
                if !data.is_empty() {
                    self.data(s, 0, data);
                }
                let slot = &self.slots[s as usize];
                let short =
                    !slot.write && (slot.received as usize) < self.cfg.sectors as usize * 512;
                if ok && short && slot.tries < self.cfg.max_tries {
                    // Good status, but data frames were lost on the way (a full receive
                    // ring): ask again, as an FCP initiator does on an underrun.
                    self.r.retransmits += 1;
                    self.send(proto, s, now);
                } else {
                    self.complete(s, ok, now)
                }
            }
            Event::Data { offset, data } => self.data(s, offset, data),
            Event::WriteReady {
                offset,
                len,
                responder_id,
            } => {
                let io = self.io(s);
                let base = s as usize * self.area;
                let Engine {
                    frames, to_send, ..
                } = self;
                let area = &mut frames[base..base + self.area];
                proto.write_ready(area, &io, offset, len, responder_id, &mut |start, len| {
                    Self::queue(to_send, base, start, len)
                });
            }
        }
    }

    /// Retransmit every request older than the timeout; fail those out of tries.
    fn scan<P: Protocol>(&mut self, proto: &P, now: u64) {
        let timeout = self.cfg.timeout.as_nanos() as u64;
        for s in 0..self.slots.len() as u32 {
            let slot = self.slots[s as usize];
            if !slot.busy || now.saturating_sub(slot.last) < timeout {
                continue;
            }
            if slot.tries >= self.cfg.max_tries {
                self.complete(s, false, now);
            } else {
                self.r.retransmits += 1;
                self.send(proto, s, now);
            }
        }
    }

    fn flush(&mut self, tx: &mut dyn FrameTx) {
        let mut refs: [&[u8]; 64] = [&[]; 64];
        for chunk in self.to_send.chunks(refs.len()) {
            for (r, &(off, len)) in refs.iter_mut().zip(chunk) {
                *r = &self.frames[off as usize..(off + len) as usize];
            }
            match tx.send_frames(&refs[..chunk.len()]) {
                Ok(n) => self.r.tx_dropped += (chunk.len() - n) as u64,
                Err(_) => self.r.tx_dropped += chunk.len() as u64,
            }
        }
        self.to_send.clear();
    }

    fn reset_measurement(&mut self) {
        let r = &mut self.r;
        r.latency.reset();
        r.completed = 0;
        r.bytes = 0;
        r.retransmits = 0;
        r.errors = 0;
        r.mismatches = 0;
        r.first_mismatch = None;
        r.late = 0;
        r.stray = 0;
        r.tx_dropped = 0;
        self.issued = 0;
    }
}

/// Bits needed to number `n` things (0 for one).
fn bits_for(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Drive the target described by `session` through `proto` until the duration or request
/// count is reached, then drain what is outstanding and report.
pub fn run<P: Protocol>(
    proto: &P,
    session: &Session,
    cfg: &LoadConfig,
    rx: &mut dyn FrameRx,
    tx: &mut dyn FrameTx,
) -> Result<Report> {
    if cfg.sectors == 0 || cfg.sectors > session.max_sectors {
        bail!(
            "--sectors {} is out of range: the target takes 1 to {} per request (at its MTU)",
            cfg.sectors,
            session.max_sectors
        );
    }
    let nslots = cfg.clients as u64 * cfg.qd as u64;
    if nslots == 0 || nslots > 0x1_0000 || cfg.clients > 0xfffe {
        bail!("clients x queue depth must be 1 to 65536 (got {nslots})");
    }
    let index_bits = bits_for(cfg.qd);
    if index_bits + 1 > proto.tag_bits() {
        bail!(
            "this protocol's tags cannot tell {} outstanding requests per client apart (at most {})",
            cfg.qd,
            1u32 << (proto.tag_bits() - 1)
        );
    }
    let generation_bits = (proto.tag_bits() - index_bits).min(15);
    let region = cfg.region.unwrap_or(session.capacity).min(session.capacity);
    if region < cfg.sectors as u64 * 2 {
        bail!("the target's region ({region} sectors) is too small for the requests");
    }
    if cfg.duration.is_none() && cfg.requests.is_none() {
        bail!("give a duration or a request count, or the run would not end");
    }

    let write_sectors = if cfg.op == Op::Read { 0 } else { cfg.sectors };
    let area = proto.area_len(write_sectors).next_multiple_of(64);
    let bytes = cfg.sectors as usize * 512;
    let mut e = Engine {
        cfg,
        slots: vec![Slot::default(); nslots as usize],
        frames: vec![0u8; area * nslots as usize],
        area,
        readback: if cfg.op == Op::Verify {
            vec![0u8; bytes * nslots as usize]
        } else {
            Vec::new()
        },
        index_bits,
        generation_mask: ((1u32 << generation_bits) - 1) as u16,
        ready: Vec::with_capacity(nslots as usize),
        to_send: Vec::with_capacity(4 * nslots as usize),
        cursors: vec![0; cfg.clients as usize],
        region,
        rng: mix(cfg.seed) | 1,
        busy: 0,
        issued: 0,
        last_completion: 0,
        r: Report {
            elapsed: Duration::ZERO,
            completed: 0,
            bytes: 0,
            latency: Histogram::new(),
            retransmits: 0,
            errors: 0,
            lost: 0,
            mismatches: 0,
            first_mismatch: None,
            late: 0,
            stray: 0,
            tx_dropped: 0,
            target_cpu_us: None,
            own_cpu_us: 0,
        },
    };
    for s in 0..nslots as u32 {
        let (client, _) = e.split(s);
        let (op, sectors, seed) = (cfg.op, cfg.sectors, cfg.seed);
        let area = e.area_mut(s);
        proto.prepare(area, client);
        if op == Op::Write {
            // Plain writes carry a fixed pattern per slot, written once.
            proto.write_data(area, sectors, &mut |first, data| {
                fill_pattern(data, s as u64 * 256 + first, seed)
            });
        }
    }
    e.ready.extend((0..nslots as u32).rev());

    let t0 = Instant::now();
    let ns = || t0.elapsed().as_nanos() as u64;
    let warmup = cfg.warmup.as_nanos() as u64;
    let mut measuring = warmup == 0;
    let mut measure_start = 0u64;
    let mut cpu0 = (
        cfg.target_pid.map(|p| cpu::cpu_us(Some(p))).transpose()?,
        cpu::cpu_us(None)?,
    );
    let scan_every = (cfg.timeout.as_nanos() as u64 / 4).clamp(1_000_000, 50_000_000);
    let poll = Duration::from_nanos(scan_every);
    let mut next_scan = scan_every;
    let mut issuing = true;
    let mut stop_at = 0u64;
    // After the stop, wait for stragglers at most as long as their retries could take.
    let drain = (cfg.timeout.as_nanos() as u64).saturating_mul(cfg.max_tries as u64 + 1);

    loop {
        let now = ns();
        if !measuring && now >= warmup {
            e.reset_measurement();
            measure_start = now;
            cpu0 = (
                cfg.target_pid.map(|p| cpu::cpu_us(Some(p))).transpose()?,
                cpu::cpu_us(None)?,
            );
            measuring = true;
        }
        if issuing && measuring {
            let timed_out = cfg
                .duration
                .is_some_and(|d| now - measure_start >= d.as_nanos() as u64);
            let counted = cfg.requests.is_some_and(|n| e.issued >= n);
            if timed_out || counted {
                issuing = false;
                stop_at = now;
            }
        }
        if issuing {
            while let Some(s) = e.ready.pop() {
                if measuring && cfg.requests.is_some_and(|n| e.issued >= n) {
                    e.ready.push(s);
                    break;
                }
                e.issue(proto, s, now);
            }
        }
        if now >= next_scan {
            e.scan(proto, now);
            proto.keepalive(Duration::from_nanos(now), tx);
            next_scan = now + scan_every;
        }
        if !e.to_send.is_empty() {
            e.flush(tx);
        }
        if !issuing && (e.busy == 0 || now - stop_at > drain) {
            break;
        }
        let mut stamp = None;
        let handled = rx.recv_batch(poll, 256, &mut |f| {
            let now = *stamp.get_or_insert_with(ns);
            e.on_frame(proto, f, now);
        });
        if let Err(err) = handled {
            bail!("receive failed: {err}");
        }
        if !e.to_send.is_empty() {
            // Write data the target asked for goes at once, not after the next issue round.
            e.flush(tx);
        }
    }

    let end = ns().min(stop_at.max(e.last_completion));
    let target_cpu = match (cfg.target_pid, cpu0.0) {
        (Some(pid), Some(c0)) => Some(cpu::cpu_us(Some(pid))?.saturating_sub(c0)),
        _ => None,
    };
    let own = cpu::cpu_us(None)?.saturating_sub(cpu0.1);
    let mut r = e.r;
    r.lost = e.busy;
    r.elapsed = Duration::from_nanos(end.saturating_sub(measure_start));
    r.target_cpu_us = target_cpu;
    r.own_cpu_us = own;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_checks_itself_and_catches_wrong_sectors() {
        let mut buf = vec![0u8; 3 * 512];
        fill_pattern(&mut buf, 100, 7);
        assert_eq!(check_pattern(&buf, 100, 7), 0);
        assert_eq!(check_pattern(&buf, 101, 7), 3);
        assert_eq!(check_pattern(&buf, 100, 8), 3);
        buf[600] ^= 1;
        assert_eq!(check_pattern(&buf, 100, 7), 1);
        // A pattern written in pieces is the pattern written whole.
        let mut pieces = vec![0u8; 3 * 512];
        fill_pattern(&mut pieces[..512], 100, 7);
        fill_pattern(&mut pieces[512..], 101, 7);
        fill_pattern(&mut buf, 100, 7);
        assert_eq!(pieces, buf);
    }

    #[test]
    fn client_macs_map_back() {
        let base = MacAddr([2, 0, 0, 0, 0, 0]);
        for i in [0, 1, 255, 299] {
            assert_eq!(client_of(base, 300, &client_mac(base, i).0), Some(i));
        }
        assert_eq!(client_of(base, 300, &[2, 0, 0, 0, 0, 0]), None);
        assert_eq!(client_of(base, 300, &[2, 0, 0, 0, 1, 45]), None);
        assert_eq!(client_of(base, 300, &[2, 0, 0]), None);
    }

    #[test]
    fn tag_bits() {
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(16), 4);
        assert_eq!(bits_for(17), 5);
        assert_eq!(bits_for(65536), 16);
    }
}
