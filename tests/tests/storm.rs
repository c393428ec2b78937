//! Frame storms: while a Linux guest runs the verified write workload of
//! [`l2san_rig::workload`] over AoE (`frame_storm_under_guest_workload`) or over FCoE VN2VN
//! (`frame_storm_under_fcoe_guest_workload`), the test floods l2san with random and malformed
//! frames of all three of its EtherTypes (AoE 0x88A2, FCoE 0x8906, FIP 0x8914), rate-limited to
//! [`RATE`] frames per second for at most [`STORM`]. The workload must end with no I/O error and
//! a verified read-back, the image must hold exactly what the guest wrote, l2san must keep
//! running and exit 0 on SIGTERM, and its anonymous memory must stay bounded (sampled from
//! `/proc/<pid>/status` before, during and after the storm).
//!
//! # Topology
//!
//! A frame sent out of the tap from the host side goes to the guest, not to l2san (whose socket
//! ignores outgoing frames), so l2san does not serve on the tap here. Inside the namespace a
//! bridge `br0` joins the tap `tap0` (the guest) and `vb`, peer of `va`, where l2san serves.
//!
//! AoE: a third port `sb` (peer of `sa`, where the storm's raw socket sends) joins the bridge.
//! The tap port has flooding off (unknown unicast, multicast and broadcast): the storm's
//! broadcast, multicast and unknown-unicast frames reach l2san but never the guest, whose aoe
//! driver would otherwise take forged responses for a second path to e0.0. The guest's own
//! traffic is unaffected: its broadcast Query Config floods out of the other ports, and l2san
//! answers it unicast.
//!
//! FCoE: the guest must hear l2san's FIP multicast (claims, beacons), so the tap port floods
//! multicast; the storm therefore sends on `vb` itself, whose frames go straight to `va` and
//! never through the bridge. Unknown unicast and broadcast still do not flood to the tap, so
//! l2san's answers to the storm (to the storm's random MACs) do not reach the guest either. A
//! tcpdump on the tap records the guest's own FCoE and FIP frames.
//!
//! # What the storm may and may not do
//!
//! The storm must not be able to break the guest legitimately, or the test would prove nothing
//! about l2san; so it never uses the guest's MACs (ENode or VN2VN) or l2san's as a source, and:
//! - AoE writes addressed to e0.0 by unicast Major/Minor (0.0) have LBA bit 16 forced on, so they
//!   land at 32 MiB or beyond, outside the workload region (the image is 64 MiB: half of them are
//!   in range and really written, the rest are out of range);
//! - broadcast-addressed writes (Major 0xffff or Minor 0xff) aim *into* the workload region with
//!   "STORM" data: l2san's documented policy is to drop them, and the read-back and the image
//!   check would catch one that was executed;
//! - Mac Mask List edits never add a MAC (Add directives become Delete): AoE lets anyone edit an
//!   empty mask list, and a list holding only storm MACs would lock the guest out, as the
//!   protocol intends. Reserve set and force set always carry an empty list (release): a
//!   non-empty reserve list would refuse the guest's writes, again as intended. Reads of both
//!   lists, unknown sub-commands, config strings and everything else go out as generated;
//! - FC frames (plain, or inside a FIP ELS descriptor) never carry the guest's or l2san's port
//!   id as S_ID: l2san keys a VN2VN login by the S_ID, so a forged LOGO, PLOGI, PRLO or ABTS from
//!   the guest's id would end its login or abort its I/O, as FC-LS intends;
//! - FIP VN_Port ID and MAC descriptors never name the guest's or l2san's port id or MACs, nor
//!   the guest's WWPN: a claim or probe reply for l2san's id would make it give up its address
//!   (FC-BB-6 VN2VN), and a claim for the guest's id with another WWPN would end the guest's
//!   login as a replaced neighbour; logins (FLOGI, PLOGI) never carry the guest's WWPN, which
//!   would end its session as stale;
//! - FCP commands carry no task management flags (a LUN or target reset is shared by every
//!   initiator and raises a unit attention for the guest), commands that change what every
//!   initiator sees without an LBA to steer (FORMAT, MODE SELECT, RESERVE, START STOP UNIT,
//!   UNMAP, PERSISTENT RESERVE OUT, ...) become TEST UNIT READY, and every write's LBA is steered
//!   to [`FCOE_FLOOR_MIB`] and beyond, outside the workload region.
//!
//! Everything above holds for random-byte frames too: sanitisers rewrite any generated frame that
//! would otherwise be such a write, edit or forgery (`storm_frames_never_forge_the_guest_or_l2san`
//! checks 200 000 frames of each mix against the rules with a checker of its own).
//!
//! # The FCoE storm's mix
//!
//! A fifth AoE as above; a quarter FCoE frames as in the AoE storm (random bytes, random FC
//! headers, FCP_CMND, ELS), three quarters of them with a correct CRC so that they reach the FC
//! layer; a quarter FIP (random operations and descriptors); and the rest from [`FAKES`] fake
//! VN2VN initiators, each of which claims a port id, logs in (FIP FLOGI, PLOGI, PRLI) and then
//! sends reads, writes (a command and its data, which l2san executes), inquiries, random CDBs,
//! ABTS, RRQ, ADISC, ECHO, PRLO, beacons and LOGOs without ever reading an answer, plus
//! well-formed VN2VN claims, probes and beacons from random ports (a crowd of neighbours that
//! fills l2san's table). The guest's login must survive: the capture must show one FLOGI and
//! one PLOGI from it and no LOGO to it, and nothing wrong in l2san's frames to it.
//!
//! l2san only: under `L2SAN_E2E_TARGET=vblade` they say so and do not run.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Body, Request};
use l2san_common::MacAddr;
use l2san_fcoe::initiator::{Command, DataDirection, ElsRequest, Initiator, Port, Vn2VnPort};
use l2san_fcoe::wire::fip::{Fc4Features, Vn2VnSubcode};
use l2san_fcoe::wire::{FcId, Wwn};
use l2san_rig::bootdisk;
use l2san_rig::fcoe_guest::{self, crc32, port_id_from_mac, vn_mac, wwpn_from_mac, Side};
use l2san_rig::fixture::mac_of;
use l2san_rig::linux::Kernel;
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run};
use l2san_rig::workload::{self, L2sanProcess, WorkloadGuest, WorkloadOpts};

/// Frames per second.
const RATE: u64 = 20_000;
/// Longest storm; it also stops when the guest has written everything.
const STORM: Duration = Duration::from_secs(20);
/// Image: the workload region at 1..9 MiB; storm writes land at 32 MiB and beyond.
const IMAGE_MIB: usize = 64;
/// Anonymous memory l2san may grow by over the storm.
const MAX_ANON_GROWTH_KIB: u64 = 32 << 10;

const ETH_AOE: u16 = 0x88a2;
const ETH_FCOE: u16 = 0x8906;
const ETH_FIP: u16 = 0x8914;
const BROADCAST: [u8; 6] = [0xff; 6];
const FIP_MCAST: [[u8; 6]; 4] = [
    [0x01, 0x10, 0x18, 0x01, 0x00, 0x01],
    [0x01, 0x10, 0x18, 0x01, 0x00, 0x02],
    [0x01, 0x10, 0x18, 0x01, 0x00, 0x04],
    [0x01, 0x10, 0x18, 0x01, 0x00, 0x05],
];

/// xorshift64*: reproducible from the seed the test prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.byte();
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
    /// A length: mostly short, sometimes up to `max`.
    fn len(&mut self, max: usize) -> usize {
        if self.below(4) == 0 {
            self.below(max as u64 + 1) as usize
        } else {
            self.below(64) as usize
        }
    }
}

/// Frame counts by kind.
#[derive(Debug, Default, Clone)]
struct Counts {
    aoe: u64,
    fcoe: u64,
    fip: u64,
    bcast_writes: u64,
    valid_writes: u64,
    sanitised: u64,
    send_errors: u64,
    /// FCoE frames sent with a correct CRC (the rest carry garbage and are dropped early).
    fcoe_good_crc: u64,
    /// Frames of the fake initiators (FCoE storm).
    fake_frames: u64,
    /// Their FCP WRITE commands (each followed by its data frame).
    fake_writes: u64,
    /// Their logins (FIP FLOGI, PLOGI, PRLI).
    fake_logins: u64,
    /// Well-formed VN2VN frames (claims, beacons, probes) from fake or random ports.
    vn2vn_frames: u64,
}

/// Who is on the segment besides the storm: addresses the storm must never forge.
#[derive(Debug, Clone, Copy)]
struct Peers {
    l2san: [u8; 6],
    guest: [u8; 6],
    /// l2san's VN2VN port id (its default WWPN's low 16 bits: its MAC's).
    l2san_port: u32,
    /// The guest's VN2VN port id and WWPN (FCoE storm; harmless otherwise).
    guest_port: u32,
    guest_wwpn: u64,
}

impl Peers {
    fn new(l2san: [u8; 6], guest: [u8; 6]) -> Peers {
        Peers {
            l2san,
            guest,
            l2san_port: port_id_from_mac(&l2san),
            guest_port: port_id_from_mac(&guest),
            guest_wwpn: wwpn_from_mac(&guest),
        }
    }

    /// Whether `mac` is one of the guest's or l2san's (ENode or VN2VN).
    fn is_theirs(&self, mac: &[u8]) -> bool {
        mac == self.guest
            || mac == self.l2san
            || mac == vn_mac(self.guest_port)
            || mac == vn_mac(self.l2san_port)
    }

    /// Whether `id` (3 bytes) is the guest's or l2san's port id.
    fn is_their_id(&self, id: &[u8]) -> bool {
        let id = u32::from_be_bytes([0, id[0], id[1], id[2]]);
        id == self.guest_port || id == self.l2san_port
    }
}

struct Generator {
    rng: Rng,
    l2san: [u8; 6],
    peers: Peers,
    region_lba: (u64, u64),
    counts: Counts,
    /// The FCoE storm's additions; `None` for the AoE storm's mix.
    fcoe: Option<FcoeMix>,
    /// Frames already built and due next (a write's data after its command).
    pending: VecDeque<Vec<u8>>,
}

impl Generator {
    fn new(seed: u64, peers: Peers, region_lba: (u64, u64), fcoe: Option<FcoeMix>) -> Generator {
        Generator {
            rng: Rng(seed),
            l2san: peers.l2san,
            peers,
            region_lba,
            counts: Counts::default(),
            fcoe,
            pending: VecDeque::new(),
        }
    }

    /// A random unicast, locally administered MAC that is none of the guest's or l2san's.
    fn src(&mut self) -> [u8; 6] {
        loop {
            let mut m = [0u8; 6];
            self.rng.fill(&mut m);
            m[0] = (m[0] & 0xfc) | 0x02;
            if !self.peers.is_theirs(&m) {
                return m;
            }
        }
    }

    fn dst(&mut self) -> [u8; 6] {
        match self.rng.below(20) {
            0..=11 => self.l2san,
            12..=15 => BROADCAST,
            16..=17 => self.src(),
            _ => self.rng.pick(&FIP_MCAST),
        }
    }

    fn eth(&mut self, dst: [u8; 6], ethertype: u16) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&dst);
        let src = self.src();
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn frame(&mut self) -> Vec<u8> {
        if let Some(f) = self.pending.pop_front() {
            return f;
        }
        if self.fcoe.is_some() {
            // FCoE storm: 20 % AoE, 25 % FCoE and 25 % FIP as below, 30 % the fake initiators
            // and well-formed VN2VN neighbours.
            return match self.rng.below(20) {
                0..=3 => {
                    self.counts.aoe += 1;
                    self.aoe()
                }
                4..=8 => {
                    self.counts.fcoe += 1;
                    self.fcoe()
                }
                9..=13 => {
                    self.counts.fip += 1;
                    self.fip()
                }
                _ => self.fake(),
            };
        }
        match self.rng.below(10) {
            0..=5 => {
                self.counts.aoe += 1;
                self.aoe()
            }
            6..=7 => {
                self.counts.fcoe += 1;
                self.fcoe()
            }
            _ => {
                self.counts.fip += 1;
                self.fip()
            }
        }
    }

    /// AoE header: version 1 (mostly), flags, major, minor, command, tag.
    fn aoe_header(&mut self, f: &mut Vec<u8>, command: u8) {
        let ver = if self.rng.below(16) == 0 {
            self.rng.byte() >> 4
        } else {
            1
        };
        // R (0x08) rarely: a response to the target.
        let flags = if self.rng.below(16) == 0 {
            self.rng.byte() & 0x0f
        } else {
            self.rng.byte() & 0x07
        };
        f.push(ver << 4 | flags);
        f.push(if self.rng.below(8) == 0 {
            self.rng.byte()
        } else {
            0
        });
        let major: u16 = {
            let v = [0, 0, 0, 0xffff, 1, self.rng.next() as u16];
            self.rng.pick(&v)
        };
        let minor: u8 = {
            let v = [0, 0, 0, 0xff, 1, self.rng.byte()];
            self.rng.pick(&v)
        };
        f.extend_from_slice(&major.to_be_bytes());
        f.push(minor);
        f.push(command);
        f.extend_from_slice(&(self.rng.next() as u32).to_be_bytes());
    }

    fn aoe(&mut self) -> Vec<u8> {
        let dst = self.dst();
        let mut f = self.eth(dst, ETH_AOE);
        match self.rng.below(16) {
            // Random bytes.
            0..=2 => {
                let n = self.rng.len(1500 - 14);
                f.extend(self.rng.bytes(n));
            }
            // Well-formed LBA48 READ or WRITE of 1-2 sectors to e0.0 from 32 MiB to the end of
            // the image (the last ones cross it and must be refused).
            3..=4 => {
                let tag = self.rng.next() as u32;
                let write = self.rng.below(2) == 0;
                let sector_count = 1 + self.rng.below(2) as u8;
                let lba = (32u64 << 20) / 512 + self.rng.below((32 << 20) / 512);
                let (request, data) = if write {
                    self.counts.valid_writes += 1;
                    let data = self.rng.bytes(usize::from(sector_count) * 512);
                    let write = AtaRequest::Write {
                        lba,
                        sector_count,
                        lba48: true,
                    };
                    (write, data)
                } else {
                    let read = AtaRequest::Read {
                        lba,
                        sector_count,
                        lba48: true,
                    };
                    (read, Vec::new())
                };
                f = aoe_request(&f, (0, 0), tag, request, &data);
            }
            // ATA with random arguments.
            5..=7 => {
                self.aoe_header(&mut f, 0);
                let aflags = self.rng.byte() & 0x5b;
                let scnt = {
                    let v = [0, 1, 2, 3, 255, self.rng.byte()];
                    self.rng.pick(&v)
                };
                let cmd = {
                    let v = [
                        0x20,
                        0x24,
                        0x30,
                        0x34,
                        0xec,
                        0xe5,
                        0xe7,
                        0xea,
                        0x25,
                        0x35,
                        0xc8,
                        0xca,
                        self.rng.byte(),
                    ];
                    self.rng.pick(&v)
                };
                f.extend_from_slice(&[aflags, self.rng.byte(), scnt, cmd]);
                let lba = self.rng.bytes(6);
                f.extend_from_slice(&lba);
                f.extend_from_slice(&[0, 0]);
                let n = {
                    let v = [0, 512, 1024, self.rng.len(1024)];
                    self.rng.pick(&v)
                };
                f.extend(self.rng.bytes(n));
            }
            // Truncated header.
            8 => {
                let c = self.rng.below(4) as u8;
                self.aoe_header(&mut f, c);
                f.extend(self.rng.bytes(16));
                let cut = 15 + self.rng.below(20) as usize;
                f.truncate(cut);
            }
            // Broadcast-addressed write into the workload region: must be dropped.
            9 => {
                self.counts.bcast_writes += 1;
                return self.broadcast_write(dst);
            }
            // Config.
            10 => {
                self.aoe_header(&mut f, 1);
                let len = self.rng.len(1024);
                f.extend_from_slice(&self.rng.bytes(4)); // buffer count, firmware
                f.push(self.rng.byte()); // sector count
                f.push({
                    let v = [0x10, 0x11, 0x12, 0x13, 0x14, self.rng.byte()];
                    self.rng.pick(&v)
                });
                let claimed = if self.rng.below(4) == 0 {
                    self.rng.below(2048) as u16
                } else {
                    len as u16
                };
                f.extend_from_slice(&claimed.to_be_bytes());
                f.extend(self.rng.bytes(len));
            }
            // Mac Mask List.
            11 => {
                self.aoe_header(&mut f, 2);
                let dcnt = self.rng.below(20) as u8;
                let mcmd = {
                    let v = [0, 1, 1, self.rng.byte()];
                    self.rng.pick(&v)
                };
                f.extend_from_slice(&[0, mcmd, self.rng.byte(), dcnt]);
                let real = if self.rng.below(4) == 0 {
                    self.rng.below(20)
                } else {
                    u64::from(dcnt)
                };
                for _ in 0..real {
                    let dcmd = {
                        let v = [0, 1, 2, self.rng.byte()];
                        self.rng.pick(&v)
                    };
                    f.extend_from_slice(&[0, dcmd]);
                    let m = self.src();
                    f.extend_from_slice(&m);
                }
            }
            // Reserve/Release.
            12 => {
                self.aoe_header(&mut f, 3);
                let rcmd = {
                    let v = [0, 1, 2, self.rng.byte()];
                    self.rng.pick(&v)
                };
                let nmacs = self.rng.below(10) as u8;
                f.extend_from_slice(&[rcmd, nmacs]);
                for _ in 0..self.rng.below(10) {
                    let m = self.src();
                    f.extend_from_slice(&m);
                }
            }
            // A response claiming to be e0.0 (another target on the segment).
            13 => {
                f[..6].copy_from_slice(&self.l2san);
                f.extend_from_slice(&[0x18, 0, 0, 0, 0, 1]);
                f.extend_from_slice(&(self.rng.next() as u32).to_be_bytes());
                f.extend_from_slice(&[0, 16, 0x40, 0, 2, 0x10, 0, 0]);
            }
            // Unknown commands and versions.
            _ => {
                let c = {
                    let v = [4, 5, 0xf0, 0xff, self.rng.byte()];
                    self.rng.pick(&v)
                };
                self.aoe_header(&mut f, c);
                let n = self.rng.len(512);
                f.extend(self.rng.bytes(n));
            }
        }
        self.sanitise_aoe(&mut f);
        f
    }

    fn broadcast_write(&mut self, dst: [u8; 6]) -> Vec<u8> {
        let dst = if dst == self.l2san { dst } else { BROADCAST };
        let eth = self.eth(dst, ETH_AOE);
        let address: (u16, u8) = self.rng.pick(&[(0xffff, 0xff), (0xffff, 0), (0, 0xff)]);
        let tag = self.rng.next() as u32;
        let (lo, hi) = self.region_lba;
        let lba = lo + self.rng.below(hi - lo - 2);
        let lba48 = self.rng.below(2) == 0;
        let write = AtaRequest::Write {
            lba,
            sector_count: 2,
            lba48,
        };
        let mut data = b"STORM broadcast write ".repeat(50);
        data.truncate(1024);
        aoe_request(&eth, address, tag, write, &data)
    }

    /// Keeps a generated AoE frame from doing what would lock out or overwrite the guest by
    /// AoE's own rules (see the module documentation).
    fn sanitise_aoe(&mut self, f: &mut [u8]) {
        if f.len() < 24 {
            return;
        }
        let major = u16::from_be_bytes([f[16], f[17]]);
        let minor = f[18];
        let before = f.to_vec();
        match f[19] {
            // A write addressed to e0.0 by unicast Major/Minor: LBA >= 65536 (32 MiB).
            0 if major == 0 && minor == 0 && f.len() > 30 => f[30] |= 1,
            // Mask edits: no Add directives.
            2 => {
                let mut at = 28;
                while at + 8 <= f.len() {
                    if f[at + 1] == 1 {
                        f[at + 1] = 2;
                    }
                    at += 8;
                }
            }
            // Reserve set and force set: only ever an empty list.
            3 if f.len() > 25 && (f[24] == 1 || f[24] == 2) => f[25] = 0,
            _ => {}
        }
        if *f != before[..] {
            self.counts.sanitised += 1;
        }
    }

    fn fcoe(&mut self) -> Vec<u8> {
        let id = self.peers.l2san_port.to_be_bytes();
        let low = [id[1], id[2], id[3]];
        let dst = match self.rng.below(4) {
            0 => vn_mac(self.peers.l2san_port),
            _ => self.dst(),
        };
        let mut f = self.eth(dst, ETH_FCOE);
        if self.rng.below(5) == 0 {
            let n = self.rng.len(1500 - 14);
            f.extend(self.rng.bytes(n));
            if f.len() > 28 {
                self.sanitise_fc(&mut f[28..]);
            }
            return f;
        }
        // FCoE header: version 0, 12 reserved bytes, SOF.
        f.extend_from_slice(&[0; 13]);
        f.push({
            let v = [0x2e, 0x36, 0x2d, 0x35, self.rng.byte()];
            self.rng.pick(&v)
        });
        // FC header.
        let r_ctl = {
            let v = [0x06, 0x01, 0x22, 0x23, 0x81, 0x84, self.rng.byte()];
            self.rng.pick(&v)
        };
        f.push(r_ctl);
        let d_id = if self.rng.below(2) == 0 {
            low
        } else {
            [self.rng.byte(), self.rng.byte(), self.rng.byte()]
        };
        f.extend_from_slice(&d_id);
        f.push(0);
        f.extend_from_slice(&self.rng.bytes(3)); // S_ID
        f.push({
            let v = [0x08, 0x01, 0x00, self.rng.byte()];
            self.rng.pick(&v)
        });
        f.extend_from_slice(&[self.rng.byte(), self.rng.byte(), self.rng.byte() & 0x03]);
        f.extend_from_slice(&self.rng.bytes(12)); // SEQ_ID .. PARAM
        match self.rng.below(4) {
            // FCP_CMND with a random CDB.
            0 => {
                f.extend_from_slice(&[0; 8]); // LUN 0
                f.extend_from_slice(&[0, 0, 0, self.rng.pick(&[1, 2, 3, 0])]);
                let op = {
                    let v = [
                        0x28,
                        0x2a,
                        0x88,
                        0x8a,
                        0x12,
                        0x25,
                        0x9e,
                        0xa0,
                        0x00,
                        0x35,
                        0x1a,
                        0xa3,
                        self.rng.byte(),
                    ];
                    self.rng.pick(&v)
                };
                f.push(op);
                f.extend_from_slice(&self.rng.bytes(15));
                f.extend_from_slice(&(self.rng.below(1 << 20) as u32).to_be_bytes());
                let n = self.rng.len(1024);
                f.extend(self.rng.bytes(n));
            }
            // ELS: PLOGI, FLOGI, LOGO, PRLI, ADISC, RRQ, random; with plausible service
            // parameters half the time.
            1 => {
                let cmd = {
                    let v = [0x03, 0x04, 0x05, 0x20, 0x52, 0x12, self.rng.byte()];
                    self.rng.pick(&v)
                };
                f.extend_from_slice(&[cmd, 0, 0, 0]);
                if self.rng.below(2) == 0 {
                    let mut sp = vec![0u8; 112];
                    sp[..4].copy_from_slice(&[0x20, 0x20, 0, 10]);
                    sp[4..8].copy_from_slice(&[0x88, 0, 0x08, 0x00]);
                    self.rng.fill(&mut sp[16..32]); // WWPN, WWNN
                    sp[64] = 0x80; // class 3 valid
                    sp[68..70].copy_from_slice(&[0x08, 0x00]);
                    f.extend_from_slice(&sp);
                } else {
                    let n = self.rng.len(300);
                    f.extend(self.rng.bytes(n));
                }
            }
            _ => {
                let n = self.rng.len(1024);
                f.extend(self.rng.bytes(n));
            }
        }
        self.sanitise_fc(&mut f[28..]);
        // CRC and EOF. The AoE storm sends garbage CRCs (dropped at the CRC check); the FCoE
        // storm mostly right ones, over an FC frame of whole words, so that its frames reach
        // the FC layer.
        if self.fcoe.is_some() && self.rng.below(4) != 0 {
            while !(f.len() - 28).is_multiple_of(4) {
                f.push(0);
            }
            let crc = crc32(&f[28..]);
            f.extend_from_slice(&crc.to_le_bytes());
            self.counts.fcoe_good_crc += 1;
        } else {
            f.extend_from_slice(&self.rng.bytes(4));
        }
        f.push({
            let v = [0x41, 0x42, 0x49, self.rng.byte()];
            self.rng.pick(&v)
        });
        f.extend_from_slice(&[0, 0, 0]);
        if self.rng.below(8) == 0 {
            let cut = 14 + self.rng.below(f.len() as u64 - 14) as usize;
            f.truncate(cut);
        }
        f
    }

    fn fip(&mut self) -> Vec<u8> {
        let dst = self.dst();
        let mut f = self.eth(dst, ETH_FIP);
        if self.rng.below(5) == 0 {
            let n = self.rng.len(1500 - 14);
            f.extend(self.rng.bytes(n));
            self.sanitise_fip(&mut f);
            return f;
        }
        let (op, sub): (u16, u8) = {
            let v = [
                (1, 1),
                (1, 2),
                (2, 1),
                (2, 2),
                (3, 1),
                (3, 2),
                (4, 1),
                (4, 2),
                (4, 3),
                (5, 1),
                (5, 2),
                (5, 3),
                (5, 4),
                (5, 5),
                (0xfff8, 1),
                (self.rng.next() as u16, self.rng.byte()),
            ];
            self.rng.pick(&v)
        };
        f.push(if self.rng.below(16) == 0 {
            self.rng.byte()
        } else {
            0x10
        });
        f.push(0);
        f.extend_from_slice(&op.to_be_bytes());
        f.push(0);
        f.push(sub);
        let len_at = f.len();
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&(self.rng.next() as u16).to_be_bytes());
        let start = f.len();
        for _ in 0..self.rng.below(6) {
            let t = {
                let v = [1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 15, self.rng.byte()];
                self.rng.pick(&v)
            };
            match t {
                2 => {
                    f.extend_from_slice(&[2, 2]);
                    let m = self.src();
                    f.extend_from_slice(&m);
                }
                4 => {
                    f.extend_from_slice(&[4, 3, 0, 0]);
                    f.extend_from_slice(&self.rng.bytes(8));
                }
                11 => {
                    f.extend_from_slice(&[11, 5]);
                    let m = self.src();
                    f.extend_from_slice(&m);
                    f.push(0);
                    f.extend_from_slice(&self.rng.bytes(3));
                    f.extend_from_slice(&self.rng.bytes(8));
                }
                6 => {
                    f.extend_from_slice(&[6, 1]);
                    f.extend_from_slice(&(self.rng.below(4096) as u16).to_be_bytes());
                }
                _ => {
                    // Any length, including 0 (a parser that steps by it must not loop).
                    let words = {
                        let v = [0, 1, 2, 3, 30, self.rng.byte()];
                        self.rng.pick(&v)
                    };
                    f.extend_from_slice(&[t, words]);
                    let n = (usize::from(words) * 4).saturating_sub(2);
                    let n = if self.rng.below(4) == 0 { n / 2 } else { n };
                    f.extend(self.rng.bytes(n));
                }
            }
        }
        let words = ((f.len() - start) / 4) as u16;
        let claimed = match self.rng.below(6) {
            0 => self.rng.next() as u16,
            1 => words + 1,
            _ => words,
        };
        f[len_at..len_at + 2].copy_from_slice(&claimed.to_be_bytes());
        self.sanitise_fip(&mut f);
        if self.rng.below(10) == 0 {
            let cut = 14 + self.rng.below(f.len() as u64 - 14) as usize;
            f.truncate(cut);
        }
        f
    }
}

/// The FCoE storm's additions to the mix.
#[derive(Debug, Clone)]
struct FcoeMix {
    /// The fake initiators.
    fakes: Vec<Fake>,
    /// FCP writes go to this block and beyond (the workload region is below).
    floor_lba: u64,
    /// Blocks of the FCoE image.
    blocks: u64,
}

impl FcoeMix {
    /// `n` fake initiators on ports and MACs of their own (none of `peers`'), half with a
    /// WWPN above l2san's (they send the PLOGI) and half below (l2san sends it, to nobody).
    fn new(rng: &mut Rng, peers: &Peers, n: usize, floor_lba: u64, blocks: u64) -> FcoeMix {
        let mut fakes: Vec<Fake> = Vec::new();
        while fakes.len() < n {
            let mut enode = [0u8; 6];
            rng.fill(&mut enode);
            enode[0] = 0x06;
            let port = 0x0001_0000 | (rng.next() as u32 & 0xffff);
            let id = port.to_be_bytes();
            if peers.is_theirs(&enode)
                || peers.is_their_id(&id[1..])
                || fakes.iter().any(|f| f.port == port || f.enode == enode)
            {
                continue;
            }
            let high: u64 = if fakes.len().is_multiple_of(2) {
                0x2100
            } else {
                0x1f00
            };
            let wwpn = high << 48 | u64::from(port);
            fakes.push(Fake {
                enode,
                port,
                wwpn,
                step: 0,
                next_ox: 0x1000,
                recent: Vec::new(),
            });
        }
        FcoeMix {
            fakes,
            floor_lba,
            blocks,
        }
    }
}

/// A fake VN2VN initiator: it claims a port id, logs in to l2san (FIP FLOGI, PLOGI, PRLI) and
/// then sends commands, never reading an answer (l2san's replies to its VN MAC go nowhere).
#[derive(Debug, Clone)]
struct Fake {
    enode: [u8; 6],
    /// Its port id, 01.xx.yy: never the guest's nor l2san's.
    port: u32,
    wwpn: u64,
    /// 0 claim, 1 FIP FLOGI, 2 PLOGI, 3 PRLI, then commands.
    step: u32,
    next_ox: u16,
    /// OX_IDs of its latest commands, for ABTS, RRQ and stray data.
    recent: Vec<u16>,
}

impl Fake {
    /// Its VN_Port (claims and beacons).
    fn vn(&self) -> Vn2VnPort {
        vn_port(self.enode, self.port, self.wwpn)
    }

    /// Its login to l2san (FIP FLOGI, PLOGI, PRLI, LOGO), receive size 2048.
    fn initiator(&self, peers: &Peers) -> Initiator {
        let l2san = Port::vn2vn(
            MacAddr(peers.l2san),
            FcId::new(peers.l2san_port),
            Wwn(0),
            Wwn(0),
        );
        Initiator::vn2vn(self.vn().port, l2san, 2048)
    }

    fn ox(&mut self) -> u16 {
        self.next_ox = self.next_ox.wrapping_add(1).max(0x1000);
        if self.recent.len() >= 8 {
            self.recent.remove(0);
        }
        self.recent.push(self.next_ox);
        self.next_ox
    }
}

/// A well-formed AoE ATA request to `major.minor` between the MACs of the Ethernet header
/// `eth` the generator drew.
fn aoe_request(
    eth: &[u8],
    (major, minor): (u16, u8),
    tag: u32,
    request: AtaRequest,
    data: &[u8],
) -> Vec<u8> {
    Request {
        dst: MacAddr::from_bytes(&eth[..6]),
        src: MacAddr::from_bytes(&eth[6..12]),
        major,
        minor,
        tag,
        body: Body::Ata(request),
    }
    .to_frame(data)
}

/// SCSI opcodes that write, by the offset and length of their LBA field.
fn write_lba_field(op: u8) -> Option<(usize, usize)> {
    match op {
        // WRITE(10), WRITE AND VERIFY(10), WRITE SAME(10), WRITE(12), WRITE AND VERIFY(12)
        0x2a | 0x2e | 0x41 | 0xaa | 0xae => Some((2, 4)),
        // WRITE(16), WRITE AND VERIFY(16), COMPARE AND WRITE, WRITE SAME(16)
        0x8a | 0x8e | 0x89 | 0x93 => Some((2, 8)),
        _ => None,
    }
}

/// SCSI opcodes that change what other initiators see without an LBA to steer: FORMAT UNIT,
/// REASSIGN BLOCKS, MODE SELECT(6/10), RESERVE/RELEASE(6/10), START STOP UNIT, WRITE BUFFER,
/// UNMAP, SANITIZE, PERSISTENT RESERVE OUT, variable-length CDBs (WRITE(32) ...).
fn is_shared_state_op(op: u8) -> bool {
    matches!(
        op,
        0x04 | 0x07
            | 0x15
            | 0x16
            | 0x17
            | 0x1b
            | 0x3b
            | 0x42
            | 0x48
            | 0x55
            | 0x56
            | 0x57
            | 0x5f
            | 0x7f
    )
}

fn be_bytes(v: &[u8]) -> u64 {
    v.iter().fold(0, |a, &b| a << 8 | u64::from(b))
}

/// An FC header (24 bytes).
#[allow(clippy::too_many_arguments)]
fn fc_header(
    r_ctl: u8,
    d_id: u32,
    s_id: u32,
    fc_type: u8,
    f_ctl: u32,
    seq_cnt: u16,
    ox_id: u16,
    parameter: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.push(r_ctl);
    h.extend_from_slice(&d_id.to_be_bytes()[1..]);
    h.push(0);
    h.extend_from_slice(&s_id.to_be_bytes()[1..]);
    h.push(fc_type);
    h.extend_from_slice(&f_ctl.to_be_bytes()[1..]);
    h.push(ox_id as u8 | 1); // SEQ_ID
    h.push(0);
    h.extend_from_slice(&seq_cnt.to_be_bytes());
    h.extend_from_slice(&ox_id.to_be_bytes());
    h.extend_from_slice(&0xffffu16.to_be_bytes());
    h.extend_from_slice(&parameter.to_be_bytes());
    h
}

/// F_CTL of a sequence an originator opens and hands the initiative over with.
const F_CTL_FIRST: u32 = 0x29_0000;
/// F_CTL of an originator's last data frame: END_SEQ, SEQ_INIT, relative offset present.
const F_CTL_DATA: u32 = 0x09_0008;

/// An FCoE frame around `fc` (padded to whole words), with a correct CRC, SOFi3 and EOFt.
fn fcoe_frame(dst: [u8; 6], src: [u8; 6], mut fc: Vec<u8>) -> Vec<u8> {
    while !fc.len().is_multiple_of(4) {
        fc.push(0);
    }
    let mut f = Vec::with_capacity(14 + 14 + fc.len() + 8);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_FCOE.to_be_bytes());
    f.extend_from_slice(&[0; 13]);
    f.push(0x2e); // SOFi3
    f.extend_from_slice(&fc);
    f.extend_from_slice(&crc32(&fc).to_le_bytes());
    f.extend_from_slice(&[0x42, 0, 0, 0]); // EOFt
    f
}

/// A well-formed VN_Port of port `port`: WWNN from the WWPN, claims carry FC-4 type FCP (no
/// features) and a max FCoE size of 1518.
fn vn_port(enode: [u8; 6], port: u32, wwpn: u64) -> Vn2VnPort {
    let mut fc4 = Fc4Features::empty();
    fc4.set_type(Fc4Features::TYPE_FCP);
    Vn2VnPort {
        port: Port::vn2vn(
            MacAddr(enode),
            FcId::new(port),
            Wwn(wwpn),
            Wwn(wwpn ^ 0x3000 << 48),
        ),
        fc4,
        max_fcoe_size: 1518,
    }
}

impl Generator {
    /// Keeps an FC frame (header first; any bytes) from forging the guest or l2san in ways
    /// the protocol would honour (see the module documentation): S_ID never theirs, FCP
    /// commands carry no task management and write only from `floor_lba` on, and logins
    /// never name the guest's WWPN.
    fn sanitise_fc(&mut self, fc: &mut [u8]) {
        let before = fc.to_vec();
        if fc.len() >= 8 && self.peers.is_their_id(&fc[5..8]) {
            fc[5] ^= 0x40;
        }
        if fc.len() >= 24 {
            let (r_ctl, fc_type) = (fc[0], fc[8]);
            let payload = &mut fc[24..];
            match (r_ctl, fc_type) {
                (0x06, 0x08) if payload.len() > 10 => {
                    payload[10] = 0;
                    if payload.len() > 12 {
                        let end = payload.len().min(28);
                        self.sanitise_cdb(&mut payload[12..end]);
                    }
                }
                (0x22, 0x01)
                    if payload.len() >= 28
                        && matches!(payload[0], 0x03 | 0x04)
                        && be_bytes(&payload[20..28]) == self.peers.guest_wwpn =>
                {
                    payload[27] ^= 1;
                }
                _ => {}
            }
        }
        if *fc != before[..] {
            self.counts.sanitised += 1;
        }
    }

    /// A write's LBA from `floor_lba` on; a command that changes shared state becomes TEST
    /// UNIT READY. Without the FCoE mix (AoE storm), the floor is the image's half.
    fn sanitise_cdb(&mut self, cdb: &mut [u8]) {
        let (floor, blocks) = self
            .fcoe
            .as_ref()
            .map_or((1 << 15, 1 << 16), |m| (m.floor_lba, m.blocks));
        let op = cdb[0];
        if is_shared_state_op(op) {
            cdb[0] = 0x00;
            return;
        }
        let steer = |lba: u64| {
            if lba >= floor {
                lba
            } else {
                floor + lba % (blocks - floor)
            }
        };
        if op == 0x0a && cdb.len() >= 4 {
            // WRITE(6): 21-bit LBA.
            let lba = steer(be_bytes(&[cdb[1] & 0x1f, cdb[2], cdb[3]])) & 0x1f_ffff;
            cdb[1] = (cdb[1] & 0xe0) | (lba >> 16) as u8;
            cdb[2] = (lba >> 8) as u8;
            cdb[3] = lba as u8;
        } else if let Some((at, len)) = write_lba_field(op) {
            if cdb.len() >= at + len {
                let lba = steer(be_bytes(&cdb[at..at + len]));
                cdb[at..at + len].copy_from_slice(&lba.to_be_bytes()[8 - len..]);
            }
        }
    }

    /// Walks a FIP frame's descriptors: no MAC or VN_Port ID descriptor names the guest or
    /// l2san, no VN_Port ID carries the guest's WWPN, and encapsulated ELS get
    /// [`Generator::sanitise_fc`].
    fn sanitise_fip(&mut self, f: &mut [u8]) {
        let before = f.to_vec();
        let mut at = 24;
        while at + 2 <= f.len() {
            let (dtype, words) = (f[at], usize::from(f[at + 1]));
            if words == 0 {
                break;
            }
            let end = (at + words * 4).min(f.len());
            let d = &mut f[at..end];
            if dtype == 2 || dtype == 11 {
                while d.len() >= 8 && self.peers.is_theirs(&d[2..8]) {
                    d[7] ^= 0x5a;
                }
            }
            if dtype == 11 && d.len() >= 12 {
                if self.peers.is_their_id(&d[9..12]) {
                    d[9] ^= 0x40;
                }
                if d.len() >= 20 && be_bytes(&d[12..20]) == self.peers.guest_wwpn {
                    d[19] ^= 1;
                }
            }
            if (7..=10).contains(&dtype) && d.len() > 4 {
                let mut fc = d[4..].to_vec();
                self.sanitise_fc(&mut fc);
                d[4..].copy_from_slice(&fc);
            }
            at += words * 4;
        }
        if *f != before[..] {
            self.counts.sanitised += 1;
        }
    }

    /// The next frame of one of the fake initiators, or now and then a well-formed VN2VN frame
    /// from a random port (a crowd of neighbours that come and go).
    fn fake(&mut self) -> Vec<u8> {
        self.counts.fake_frames += 1;
        if self.rng.below(8) == 0 {
            self.counts.vn2vn_frames += 1;
            let enode = self.src();
            let mut port: u32 = 0;
            while port == 0 || self.peers.is_their_id(&port.to_be_bytes()[1..]) {
                port = self.rng.next() as u32 & 0xff_ffff;
            }
            let wwpn = self.rng.next();
            let sub = self.rng.pick(&[
                Vn2VnSubcode::ProbeRequest,
                Vn2VnSubcode::ClaimNotification,
                Vn2VnSubcode::ClaimNotification,
                Vn2VnSubcode::Beacon,
            ]);
            let mut f = vn_port(enode, port, wwpn).frame(sub);
            self.sanitise_fip(&mut f);
            return f;
        }
        let Some(n) = self.fcoe.as_ref().map(|m| m.fakes.len()) else {
            return self.fip();
        };
        let i = self.rng.below(n as u64) as usize;
        let mut fake = self
            .fcoe
            .as_ref()
            .map(|m| m.fakes[i].clone())
            .expect("fcoe mix");
        let mut frames = self.fake_step(&mut fake);
        if let Some(m) = self.fcoe.as_mut() {
            m.fakes[i] = fake;
        }
        for f in &mut frames {
            match u16::from_be_bytes([f[12], f[13]]) {
                ETH_FCOE => {
                    // Sanitise the FC frame, then redo the CRC over it.
                    let end = f.len() - 8;
                    let mut fc = f[28..end].to_vec();
                    self.sanitise_fc(&mut fc);
                    f[28..end].copy_from_slice(&fc);
                    f[end..end + 4].copy_from_slice(&crc32(&fc).to_le_bytes());
                }
                _ => self.sanitise_fip(f),
            }
        }
        let first = frames.remove(0);
        self.pending.extend(frames);
        first
    }

    fn fake_step(&mut self, fake: &mut Fake) -> Vec<Vec<u8>> {
        let l2san_port = self.peers.l2san_port;
        let (floor, blocks) = self
            .fcoe
            .as_ref()
            .map_or((0, 1), |m| (m.floor_lba, m.blocks));
        let me = vn_mac(fake.port);
        let them = vn_mac(l2san_port);
        let step = fake.step;
        fake.step += 1;
        let login = fake.initiator(&self.peers);
        let els = |fake: &mut Fake, payload: &[u8]| {
            let ox = fake.ox();
            let mut fc = fc_header(0x22, l2san_port, fake.port, 0x01, F_CTL_FIRST, 0, ox, 0);
            fc.extend_from_slice(payload);
            vec![fcoe_frame(them, me, fc)]
        };
        match step {
            0 => {
                self.counts.vn2vn_frames += 1;
                vec![fake.vn().claim()]
            }
            // FIP FLOGI, PLOGI, PRLI (FCP, initiator, no XFER_RDY for reads).
            1..=3 => {
                self.counts.fake_logins += 1;
                let kind =
                    [ElsRequest::Flogi, ElsRequest::Plogi, ElsRequest::Prli][step as usize - 1];
                vec![login.request(kind, fake.ox())]
            }
            _ => {
                let lun = [0u8; 8];
                let cmnd = |fake: &mut Fake, cdb: [u8; 16], flags: u8, dl: u32, lun: [u8; 8]| {
                    let ox = fake.ox();
                    let mut fc =
                        fc_header(0x06, l2san_port, fake.port, 0x08, F_CTL_FIRST, 0, ox, 0);
                    fc.extend_from_slice(&lun);
                    fc.extend_from_slice(&[0, 0, 0, flags]);
                    fc.extend_from_slice(&cdb);
                    fc.extend_from_slice(&dl.to_be_bytes());
                    (ox, fcoe_frame(them, me, fc))
                };
                let span = blocks.saturating_sub(16).max(1);
                match self.rng.below(32) {
                    // WRITE(10) of 1-2 blocks from the floor on, and its data.
                    0..=5 => {
                        self.counts.fake_writes += 1;
                        let n = 1 + self.rng.below(2);
                        let lba = floor + self.rng.below((blocks - floor).saturating_sub(2).max(1));
                        let mut cdb = [0u8; 16];
                        cdb[0] = 0x2a;
                        cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                        cdb[7..9].copy_from_slice(&(n as u16).to_be_bytes());
                        let len = n as u32 * 512;
                        let ox = fake.ox();
                        let write = Command::new(lun, cdb, DataDirection::Write, len);
                        let mut data = b"STORM fake initiator write ".repeat(40);
                        data.truncate(len as usize);
                        // The data at once, unsolicited (no XFER_RDY awaited: RX_ID FFFF).
                        let mut frames = vec![login.command(ox, &write)];
                        frames.extend(login.data_out(ox, 0xffff, 0, &data, 2048));
                        frames
                    }
                    // Commands that read or ask.
                    6..=18 => {
                        let mut cdb = [0u8; 16];
                        let lba = self.rng.below(span);
                        let n = 1 + self.rng.below(16);
                        let dl = match self.rng.below(8) {
                            0..=3 => {
                                cdb[0] = 0x28;
                                cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                                cdb[7..9].copy_from_slice(&(n as u16).to_be_bytes());
                                n as u32 * 512
                            }
                            4 => {
                                cdb[0] = 0x88;
                                cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                                cdb[10..14].copy_from_slice(&(n as u32).to_be_bytes());
                                n as u32 * 512
                            }
                            5 => {
                                cdb[0] = 0x12;
                                if self.rng.below(2) == 0 {
                                    cdb[1] = 1;
                                    cdb[2] = self.rng.pick(&[0x00, 0x80, 0x83, 0xb0, 0xb1, 0x42]);
                                }
                                cdb[4] = 0xff;
                                255
                            }
                            6 => {
                                cdb[0] = 0xa0;
                                cdb[9] = 0xff;
                                255
                            }
                            _ => {
                                cdb[0] = self.rng.pick(&[0x00, 0x03, 0x1a, 0x5a, 0x25, 0x9e, 0x35]);
                                cdb[1] = if cdb[0] == 0x9e { 0x10 } else { 0 };
                                cdb[4] = 0x60;
                                cdb[13] = 0x20;
                                0x60
                            }
                        };
                        // A wrong FCP_DL now and then.
                        let dl = match self.rng.below(8) {
                            0 => dl / 2,
                            1 => dl + 512,
                            _ => dl,
                        };
                        let read = Command::new(lun, cdb, DataDirection::Read, dl);
                        vec![login.command(fake.ox(), &read)]
                    }
                    // Random CDBs to LUNs 0-3 or any (sanitised).
                    19..=21 => {
                        let mut cdb = [0u8; 16];
                        self.rng.fill(&mut cdb);
                        let mut l = [0u8; 8];
                        if self.rng.below(2) == 0 {
                            l[1] = self.rng.below(4) as u8;
                        } else {
                            self.rng.fill(&mut l);
                        }
                        let flags = self.rng.byte() & 0x03;
                        let dl = self.rng.below(1 << 16) as u32;
                        vec![cmnd(fake, cdb, flags, dl, l).1]
                    }
                    // ABTS of one of its own exchanges.
                    22..=23 => {
                        let ox = self.rng.pick(&fake.recent);
                        let fc = fc_header(0x81, l2san_port, fake.port, 0x00, 0x09_0000, 0, ox, 0);
                        vec![fcoe_frame(them, me, fc)]
                    }
                    // Stray data for one of its exchanges, at any offset.
                    24 => {
                        let ox = self.rng.pick(&fake.recent);
                        let off = self.rng.below(4096) as u32;
                        let mut fc =
                            fc_header(0x01, l2san_port, fake.port, 0x08, F_CTL_DATA, 1, ox, off);
                        fc.extend_from_slice(&[0x5a; 512]);
                        vec![fcoe_frame(them, me, fc)]
                    }
                    // RRQ, ADISC, RTV, ECHO, PRLO.
                    25..=27 => {
                        let ox = self.rng.pick(&fake.recent);
                        let mut p = match self.rng.below(5) {
                            0 => vec![0x12, 0, 0, 0, 0],
                            1 => vec![0x52, 0, 0, 0],
                            2 => vec![0x0e, 0, 0, 0],
                            3 => vec![0x10, 0, 0, 0],
                            _ => vec![0x21, 0x10, 0, 20, 0x08, 0, 0, 0],
                        };
                        match p[0] {
                            0x12 => {
                                p.extend_from_slice(&fake.port.to_be_bytes()[1..]);
                                p.extend_from_slice(&ox.to_be_bytes());
                                p.extend_from_slice(&0xffffu16.to_be_bytes());
                            }
                            0x52 => {
                                p.extend_from_slice(&fake.port.to_be_bytes());
                                p.extend_from_slice(&fake.wwpn.to_be_bytes());
                                p.extend_from_slice(&(fake.wwpn ^ 0x3000 << 48).to_be_bytes());
                                p.extend_from_slice(&fake.port.to_be_bytes());
                            }
                            0x10 => {
                                let n = self.rng.len(512);
                                p.extend(self.rng.bytes(n));
                            }
                            0x21 => p.extend_from_slice(&[0; 12]),
                            _ => {}
                        }
                        els(fake, &p)
                    }
                    // A beacon.
                    28 => {
                        self.counts.vn2vn_frames += 1;
                        vec![fake.vn().beacon()]
                    }
                    // LOGO: log in again from the FIP FLOGI on.
                    29 => {
                        fake.step = 1;
                        vec![login.request(ElsRequest::Logo, fake.ox())]
                    }
                    // Claim again.
                    _ => {
                        self.counts.vn2vn_frames += 1;
                        vec![fake.vn().claim()]
                    }
                }
            }
        }
    }
}

/// What [`flood`] did.
struct Flood {
    sent: u64,
    bytes: u64,
    time: Duration,
    /// Writes the guest saw acknowledged meanwhile.
    writes_during: u64,
    /// l2san's CPU time meanwhile, in clock ticks.
    cpu_ticks: u64,
}

/// A seed for the generator from the clock (printed, so a run can be replayed).
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

/// The workload region in 512-byte blocks: `[first, end)`.
fn region_lba(opts: &WorkloadOpts) -> (u64, u64) {
    (
        opts.region_offset() as u64 / 512,
        (opts.region_offset() + opts.region_len()) as u64 / 512,
    )
}

/// Sends `gen`'s frames out of `sock`, [`RATE`] a second in batches every 10 ms, for
/// [`STORM`] or until the guest has written everything; checks every 250 ms that l2san runs
/// and samples its memory.
fn flood(
    gen: &mut Generator,
    sock: &RawSocket,
    l2san: &mut L2sanProcess,
    guest: &WorkloadGuest,
    mem: &mut Memory,
) -> Result<Flood> {
    let blocks = guest.opts().blocks;
    let cpu_before = l2san.cpu_ticks().unwrap_or(0);
    let writes_before = guest.progress().writes_acked(blocks);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut bytes: u64 = 0;
    let mut last_check = Instant::now();
    let batch = RATE / 100;
    while start.elapsed() < STORM {
        // Every 10 ms a batch of RATE/100 frames.
        let due = start + Duration::from_millis(10 * (sent / batch));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for _ in 0..batch {
            let f = gen.frame();
            bytes += f.len() as u64;
            if sock.send(&f).is_err() {
                gen.counts.send_errors += 1;
            }
            sent += 1;
        }
        if last_check.elapsed() >= Duration::from_millis(250) {
            last_check = Instant::now();
            mem.sample(l2san);
            l2san.check_running().context("l2san died in the storm")?;
            let p = guest.progress();
            if p.written.is_some() || p.ended() {
                break;
            }
        }
    }
    let time = start.elapsed();
    mem.sample(l2san);
    Ok(Flood {
        sent,
        bytes,
        time,
        writes_during: guest.progress().writes_acked(blocks) - writes_before,
        cpu_ticks: l2san.cpu_ticks().unwrap_or(0).saturating_sub(cpu_before),
    })
}

/// Memory samples of l2san, in KiB.
#[derive(Debug, Default)]
struct Memory {
    anon_before: u64,
    anon_peak: u64,
    rss_before: u64,
    rss_peak: u64,
    samples: usize,
}

impl Memory {
    /// The sizes before the storm, and the first sample.
    fn start(l2san: &L2sanProcess) -> Memory {
        let mut mem = Memory {
            anon_before: l2san.status_kib("RssAnon").unwrap_or(0),
            rss_before: l2san.status_kib("VmRSS").unwrap_or(0),
            ..Memory::default()
        };
        mem.sample(l2san);
        mem
    }

    fn sample(&mut self, l2san: &L2sanProcess) {
        if let (Some(anon), Some(rss)) = (l2san.status_kib("RssAnon"), l2san.status_kib("VmRSS")) {
            self.anon_peak = self.anon_peak.max(anon);
            self.rss_peak = self.rss_peak.max(rss);
            self.samples += 1;
        }
    }

    /// `RssAnon ... KiB before, peak ... (+...), VmRSS ... -> peak ..., VmHWM <hwm> KiB (n
    /// samples)` for the report.
    fn summary(&self, hwm: u64) -> String {
        format!(
            "RssAnon {} KiB before, peak {} KiB (+{} KiB), VmRSS {} -> peak {} KiB, VmHWM {} KiB \
             ({} samples)",
            self.anon_before,
            self.anon_peak,
            self.anon_peak.saturating_sub(self.anon_before),
            self.rss_before,
            self.rss_peak,
            hwm,
            self.samples
        )
    }

    /// Fails if the anonymous memory grew by [`MAX_ANON_GROWTH_KIB`] or more.
    fn check_growth(&self) -> Result<()> {
        ensure!(
            self.anon_peak.saturating_sub(self.anon_before) < MAX_ANON_GROWTH_KIB,
            "l2san's anonymous memory grew by {} KiB in the storm (limit {MAX_ANON_GROWTH_KIB} KiB)",
            self.anon_peak - self.anon_before
        );
        Ok(())
    }
}

/// `<n> lines, <m> warnings/errors` and the first 8 of those, for the report.
fn log_summary(log: &str) -> String {
    let warns = workload::warn_lines(log);
    format!(
        "{} lines, {} warnings/errors{}",
        log.lines().count(),
        warns.len(),
        warns
            .iter()
            .take(8)
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    )
}

fn storm(run: &Run) -> Result<()> {
    let kernel = Kernel::debian()?;
    let image = run.path("disk.img");
    let original = bootdisk::build(IMAGE_MIB << 20);
    std::fs::write(&image, &original)?;
    let fcoe_image = run.path("fcoe.img");
    std::fs::write(&fcoe_image, vec![0u8; 16 << 20])?;
    let opts = WorkloadOpts {
        gens: 24,
        ack_every: 8,
        ..WorkloadOpts::default()
    };

    let ns = Netns::new()?;
    let tap = ns.tap("tap0", 1500)?;
    for cmd in [
        "ip link add br0 type bridge forward_delay 0 stp_state 0",
        "ip link add va type veth peer name vb",
        "ip link add sa type veth peer name sb",
        "ip link set tap0 master br0",
        "ip link set vb master br0",
        "ip link set sb master br0",
        "bridge link set dev tap0 flood off mcast_flood off bcast_flood off",
        "ip link set br0 up",
        "ip link set va txqueuelen 10000 up",
        "ip link set vb txqueuelen 10000 up",
        "ip link set sa txqueuelen 10000 up",
        "ip link set sb txqueuelen 10000 up",
    ] {
        ns.run("sh", ["-c", cmd])?;
    }
    let l2san_mac = mac_of(&ns, "va")?;
    let mut l2san = L2sanProcess::start(
        &ns,
        "va",
        &[
            "--aoe".into(),
            format!("0.0={}", image.display()),
            "--fcoe".into(),
            format!("0={}", fcoe_image.display()),
        ],
        &run.path("l2san.log"),
    )?;
    let sock = RawSocket::open_in_netns(ns.name(), "sa", ETH_AOE)?;
    let mut guest = WorkloadGuest::start(&ns, &tap, &kernel, &opts, run.dir())?;
    guest.wait_for("first writes", Duration::from_secs(90), |p| {
        p.writes_acked(opts.blocks) >= 16
    })?;

    let mut mem = Memory::start(&l2san);
    let seed = seed();
    // QEMU's default NIC MAC.
    let peers = Peers::new(l2san_mac, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    let mut gen = Generator::new(seed, peers, region_lba(&opts), None);
    let Flood {
        sent,
        bytes,
        time: storm_time,
        writes_during,
        cpu_ticks: cpu_storm,
    } = flood(&mut gen, &sock, &mut l2san, &guest, &mut mem)?;
    let counts = gen.counts.clone();
    rig::report(format_args!(
        "{}: storm (seed {seed:#x}): {sent} frames ({:.1} MB) in {:.1} s = {:.0}/s: {} AoE ({} \
         well-formed writes past 32 MiB, {} broadcast writes into the region, {} sanitised), {} FCoE, {} FIP, {} send errors; the \
         guest wrote {writes_during} blocks meanwhile; l2san used {:.1} s CPU",
        run.name(),
        bytes as f64 / 1e6,
        storm_time.as_secs_f64(),
        sent as f64 / storm_time.as_secs_f64(),
        counts.aoe,
        counts.valid_writes,
        counts.bcast_writes,
        counts.sanitised,
        counts.fcoe,
        counts.fip,
        counts.send_errors,
        cpu_storm as f64 / 100.0
    ));

    let (p, elapsed) = guest.finish(Duration::from_secs(150))?;
    mem.sample(&l2san);
    workload::check_outcome(&p, &opts)?;
    l2san.check_running()?;
    let hwm = l2san.status_kib("VmHWM").unwrap_or(0);
    let log = l2san.log_text();
    l2san.stop()?;
    let after = std::fs::read(&image)?;
    // Storm writes may land from 32 MiB on; everything below must be as the guest left it.
    workload::check_final(&after, &original, &opts, 32 << 20)?;
    let storm_written = changed_sectors(&after, &original, 32 << 20);
    rig::report(format_args!(
        "{}: guest {} (run {:.1} s), read-back {}; l2san {}; {storm_written} sectors past 32 MiB \
         written by the storm; l2san log {}",
        run.name(),
        p.written.as_deref().unwrap_or("?"),
        elapsed.as_secs_f64(),
        p.verify.as_deref().unwrap_or("?"),
        mem.summary(hwm),
        log_summary(&log),
    ));
    mem.check_growth()?;
    // The storm reached the write path (so the region survived writes that were executed).
    ensure!(storm_written > 0, "no storm write landed past 32 MiB");
    ensure!(
        storm_time >= STORM || p.written.is_some(),
        "the storm stopped early"
    );
    Ok(())
}

#[test]
fn frame_storm_under_guest_workload() {
    rig::e2e_l2san(
        "frame_storm_under_guest_workload",
        "the storm is AoE, FCoE and FIP at an l2san serving both, and vblade has no FCoE",
        storm,
    );
}

/// l2san's MAC in the FCoE storm: its WWPN 20:00:02:4c:32:00:80:80, VN2VN port id 00.80.80.
const FCOE_L2SAN_MAC: [u8; 6] = [0x02, 0x4c, 0x32, 0x00, 0x80, 0x80];
/// The FCoE guest's MAC: WWPN 20:00:02:4c:32:00:f0:f0 (higher: it sends the PLOGI), port id
/// 00.f0.f0.
const FCOE_GUEST_MAC: [u8; 6] = [0x02, 0x4c, 0x32, 0x00, 0xf0, 0xf0];
/// The FCoE image; the workload region is 1..5 MiB, storm writes land from 8 MiB on.
const FCOE_IMAGE_MIB: usize = 16;
const FCOE_FLOOR_MIB: usize = 8;
/// Fake initiators logged in to l2san during the FCoE storm.
const FAKES: usize = 8;

fn fcoe_storm(run: &Run) -> Result<()> {
    let kernel = Kernel::debian()?;
    let fcoe_image = run.path("fcoe.img");
    let fcoe_original = bootdisk::build(FCOE_IMAGE_MIB << 20);
    std::fs::write(&fcoe_image, &fcoe_original)?;
    let aoe_image = run.path("aoe.img");
    let aoe_original = bootdisk::build(IMAGE_MIB << 20);
    std::fs::write(&aoe_image, &aoe_original)?;
    let opts = WorkloadOpts {
        blocks: 64,
        gens: 32,
        ack_every: 8,
        ..WorkloadOpts::default()
    };
    ensure!(opts.region_offset() + opts.region_len() <= FCOE_FLOOR_MIB << 20);

    let ns = Netns::new()?;
    let tap = ns.tap("tap0", 1500)?;
    let mac = fcoe_guest::fmt_mac(&FCOE_L2SAN_MAC);
    for cmd in [
        "ip link add name br0 type bridge forward_delay 0 stp_state 0",
        "ip link add name va type veth peer name vb",
        &format!("ip link set dev va address {mac}"),
        "ip link set dev tap0 master br0",
        "ip link set dev vb master br0",
        // l2san's FIP multicast must reach the guest; nothing else but what is for it.
        "bridge link set dev tap0 flood off bcast_flood off",
        "ip link set dev br0 up",
        "ip link set dev va txqueuelen 10000 up",
        "ip link set dev vb txqueuelen 10000 up",
    ] {
        ns.run("sh", ["-c", cmd])?;
    }
    let capture = fcoe_guest::Capture::start(
        &ns,
        &tap,
        &run.path("segment.pcap"),
        &run.path("tcpdump.log"),
    )?;
    let ctl = run.path("ctl.sock");
    let mut l2san = L2sanProcess::start(
        &ns,
        "va",
        &[
            "--aoe".into(),
            format!("0.0={}", aoe_image.display()),
            "--fcoe".into(),
            format!("0={}", fcoe_image.display()),
            "--ctl-socket".into(),
            ctl.display().to_string(),
        ],
        &run.path("l2san.log"),
    )?;
    // Sent on vb, a frame goes straight to va (l2san), never through the bridge to the guest.
    let sock = RawSocket::open_in_netns(ns.name(), "vb", ETH_FIP)?;
    let mut guest =
        WorkloadGuest::start_fcoe(&ns, &tap, &kernel, &opts, &FCOE_GUEST_MAC, run.dir())?;
    guest.wait_for("first writes", Duration::from_secs(90), |p| {
        p.writes_acked(opts.blocks) >= 16
    })?;
    let before = l2san.ctl_metrics(&ctl)?;

    let mut mem = Memory::start(&l2san);
    let seed = seed();
    let peers = Peers::new(FCOE_L2SAN_MAC, FCOE_GUEST_MAC);
    let floor_lba = (FCOE_FLOOR_MIB << 20) as u64 / 512;
    let blocks = (FCOE_IMAGE_MIB << 20) as u64 / 512;
    let mix = FcoeMix::new(&mut Rng(seed ^ 0x5eed), &peers, FAKES, floor_lba, blocks);
    let mut gen = Generator::new(seed, peers, region_lba(&opts), Some(mix));
    let flooded = flood(&mut gen, &sock, &mut l2san, &guest, &mut mem)?;
    let counts = gen.counts.clone();
    let during = l2san.ctl_metrics(&ctl)?;
    let delta = |name: &str| {
        during.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    rig::report(format_args!(
        "{}: storm (seed {seed:#x}): {} frames ({:.1} MB) in {:.1} s = {:.0}/s: {} AoE ({} \
         well-formed writes past 32 MiB, {} broadcast writes into the region), {} FCoE ({} with a \
         good CRC), {} FIP, {} from {FAKES} fake initiators ({} logins, {} FCP writes from {} MiB \
         on) and VN2VN neighbours ({} well-formed VN2VN frames), {} sanitised, {} send errors; \
         the guest wrote {} blocks meanwhile; l2san used {:.1} s CPU",
        run.name(),
        flooded.sent,
        flooded.bytes as f64 / 1e6,
        flooded.time.as_secs_f64(),
        flooded.sent as f64 / flooded.time.as_secs_f64(),
        counts.aoe,
        counts.valid_writes,
        counts.bcast_writes,
        counts.fcoe,
        counts.fcoe_good_crc,
        counts.fip,
        counts.fake_frames,
        counts.fake_logins,
        counts.fake_writes,
        FCOE_FLOOR_MIB,
        counts.vn2vn_frames,
        counts.sanitised,
        counts.send_errors,
        flooded.writes_during,
        flooded.cpu_ticks as f64 / 100.0
    ));
    rig::report(format_args!(
        "{}: l2san's FCoE counters over the storm: {:.0} logins, {:.0} ELS requests ({:.0} \
         rejected), {:.0} FCP commands ({:.0} errors), {:.0} ABTS, {:.0} bytes written, {:.0} \
         read; dropped: {:.0} bad CRC, {:.0} bad SOF/EOF, {:.0} truncated, {:.0} malformed, \
         {:.0} not for us, {:.0} without login, {:.0} unknown exchange, {:.0} FIP malformed; \
         {:.0} VN2VN neighbours and {:.0} sessions at the end",
        run.name(),
        delta("l2san_fcoe_logins_total"),
        delta("l2san_fcoe_els_requests_total"),
        delta("l2san_fcoe_els_rejects_total"),
        delta("l2san_fcoe_fcp_commands_total"),
        delta("l2san_fcoe_fcp_errors_total"),
        delta("l2san_fcoe_abts_total"),
        delta("l2san_fcoe_write_bytes_total"),
        delta("l2san_fcoe_read_bytes_total"),
        delta("l2san_fcoe_drop_bad_crc_total"),
        delta("l2san_fcoe_drop_bad_sof_eof_total"),
        delta("l2san_fcoe_drop_truncated_total"),
        delta("l2san_fcoe_drop_malformed_total"),
        delta("l2san_fcoe_drop_not_for_us_total"),
        delta("l2san_fcoe_drop_no_login_total"),
        delta("l2san_fcoe_drop_unknown_exchange_total"),
        delta("l2san_fcoe_drop_fip_malformed_total"),
        during.get("l2san_fcoe_vn2vn_peers").copied().unwrap_or(0.0),
        during.get("l2san_fcoe_sessions").copied().unwrap_or(0.0),
    ));

    let (p, elapsed) = guest.finish(Duration::from_secs(150))?;
    mem.sample(&l2san);
    let end = capture.stop(Duration::from_secs(1))?;
    let seg = fcoe_guest::Segment {
        guest_mac: FCOE_GUEST_MAC,
        target_mac: FCOE_L2SAN_MAC,
        mtu: 1500,
    };
    let stats = fcoe_guest::analyze(&end.path, &seg)?;
    if let Err(e) = workload::check_outcome(&p, &opts) {
        return Err(e.context(format!(
            "guest dmesg:\n  {}\nframes on the guest's tap: {}",
            p.dmesg.join("\n  "),
            stats.describe()
        )));
    }
    l2san.check_running()?;
    let hwm = l2san.status_kib("VmHWM").unwrap_or(0);
    let log = l2san.log_text();
    l2san.stop()?;
    let fcoe_after = std::fs::read(&fcoe_image)?;
    // Fake initiators write from FCOE_FLOOR_MIB on; everything below is the guest's.
    workload::check_final(&fcoe_after, &fcoe_original, &opts, FCOE_FLOOR_MIB << 20)?;
    let fcoe_storm_written = changed_sectors(&fcoe_after, &fcoe_original, FCOE_FLOOR_MIB << 20);
    let aoe_after = std::fs::read(&aoe_image)?;
    ensure!(
        aoe_after[..32 << 20] == aoe_original[..32 << 20],
        "the AoE image changed below 32 MiB (a broadcast or steered write was executed)"
    );
    let aoe_storm_written = changed_sectors(&aoe_after, &aoe_original, 32 << 20);
    let guest_flogi = stats.els_count(Side::Guest, 0x04);
    let guest_plogi = stats.els_count(Side::Guest, 0x03);
    let logo_to_guest = stats.els_count(Side::Target, 0x05);
    let aborts = stats.events.iter().filter(|e| e.contains("ABTS")).count();
    rig::report(format_args!(
        "{}: guest {} (run {:.1} s), read-back {}; on the guest's tap {} frames: the guest sent \
         {guest_flogi} FLOGI and {guest_plogi} PLOGI, l2san {logo_to_guest} LOGO, {aborts} ABTS \
         seen, {} problems in l2san's frames ({} dropped by tcpdump); l2san {}; storm sectors \
         written: {fcoe_storm_written} FCoE past {FCOE_FLOOR_MIB} MiB, {aoe_storm_written} AoE \
         past 32 MiB; l2san log {}",
        run.name(),
        p.written.as_deref().unwrap_or("?"),
        elapsed.as_secs_f64(),
        p.verify.as_deref().unwrap_or("?"),
        stats.frames,
        stats.target_problem_count,
        end.dropped.map_or("?".to_string(), |d| d.to_string()),
        mem.summary(hwm),
        log_summary(&log),
    ));
    mem.check_growth()?;
    ensure!(
        stats.target_problem_count == 0,
        "problems in l2san's frames to the guest: {:?}",
        stats.target_problems
    );
    // The storm never ended the guest's login: one FLOGI and one PLOGI, no LOGO to it.
    ensure!(
        guest_flogi == 1 && guest_plogi == 1 && logo_to_guest == 0,
        "the guest logged in again during the storm ({guest_flogi} FLOGI, {guest_plogi} PLOGI, \
         {logo_to_guest} LOGO from l2san):\n{}",
        stats.describe()
    );
    // The storm reached the FC write path (its logins and writes were served) ...
    ensure!(
        fcoe_storm_written > 0,
        "no fake initiator's write landed past {FCOE_FLOOR_MIB} MiB"
    );
    ensure!(
        flooded.time >= STORM || p.written.is_some(),
        "the storm stopped early"
    );
    Ok(())
}

/// 512-byte sectors from `from` on that differ between `a` and `b`.
fn changed_sectors(a: &[u8], b: &[u8], from: usize) -> usize {
    a[from..]
        .chunks(512)
        .zip(b[from..].chunks(512))
        .filter(|(x, y)| x != y)
        .count()
}

#[test]
fn frame_storm_under_fcoe_guest_workload() {
    rig::e2e_l2san(
        "frame_storm_under_fcoe_guest_workload",
        "vblade has no FCoE",
        fcoe_storm,
    );
}

/// What a generated frame must never do (the module documentation's list), checked
/// independently of the sanitisers; `None` when the frame is fine.
fn violation(peers: &Peers, region_lba: (u64, u64), floor_lba: u64, f: &[u8]) -> Option<String> {
    if f.len() < 14 {
        return None;
    }
    if peers.is_theirs(&f[6..12]) {
        return Some("source MAC of the guest or l2san".into());
    }
    let fc_checks = |fc: &[u8]| -> Option<String> {
        if fc.len() >= 8 && peers.is_their_id(&fc[5..8]) {
            return Some(format!("S_ID {:02x?}", &fc[5..8]));
        }
        if fc.len() < 24 {
            return None;
        }
        let p = &fc[24..];
        match (fc[0], fc[8]) {
            (0x06, 0x08) if p.len() > 12 => {
                if p[10] != 0 {
                    return Some(format!("task management {:#04x}", p[10]));
                }
                let cdb = &p[12..p.len().min(28)];
                if is_shared_state_op(cdb[0]) {
                    return Some(format!("opcode {:#04x}", cdb[0]));
                }
                let lba = match cdb[0] {
                    0x0a if cdb.len() >= 4 => Some(be_bytes(&[cdb[1] & 0x1f, cdb[2], cdb[3]])),
                    op => write_lba_field(op)
                        .filter(|&(at, len)| cdb.len() >= at + len)
                        .map(|(at, len)| be_bytes(&cdb[at..at + len])),
                };
                match lba {
                    Some(lba) if lba < floor_lba => Some(format!("write at LBA {lba}")),
                    _ => None,
                }
            }
            (0x22, 0x01) if p.len() >= 28 && matches!(p[0], 3 | 4) => {
                (be_bytes(&p[20..28]) == peers.guest_wwpn).then(|| "the guest's WWPN".into())
            }
            _ => None,
        }
    };
    match u16::from_be_bytes([f[12], f[13]]) {
        ETH_AOE if f.len() >= 24 => {
            let (major, minor) = (u16::from_be_bytes([f[16], f[17]]), f[18]);
            match f[19] {
                // An ATA write: unicast to e0.0 past 32 MiB, or broadcast (dropped by policy).
                0 if f.len() >= 36 && f[24] & 0x01 != 0 => {
                    let lba = be_bytes(&[f[33], f[32], f[31], f[30], f[29], f[28]]);
                    let lba = if f[24] & 0x40 != 0 {
                        lba
                    } else {
                        lba & 0x0fff_ffff
                    };
                    let unicast = major == 0 && minor == 0;
                    (unicast && lba < (32 << 20) / 512 && lba + 2 > region_lba.0)
                        .then(|| format!("AoE write at LBA {lba}"))
                }
                2 => f
                    .get(28..)
                    .unwrap_or_default()
                    .chunks_exact(8)
                    .any(|d| d[1] == 1)
                    .then(|| "AoE mask list Add".into()),
                3 if f.len() > 25 && (f[24] == 1 || f[24] == 2) && f[25] != 0 => {
                    Some("AoE reserve with MACs".into())
                }
                _ => None,
            }
        }
        // What l2san reads as the FC frame: between the SOF and the 8-byte trailer.
        ETH_FCOE if f.len() > 36 => fc_checks(&f[28..f.len() - 8]),
        ETH_FIP => {
            let mut at = 24;
            while at + 2 <= f.len() {
                let (dtype, words) = (f[at], usize::from(f[at + 1]));
                if words == 0 {
                    break;
                }
                let d = &f[at..(at + words * 4).min(f.len())];
                if (dtype == 2 || dtype == 11) && d.len() >= 8 && peers.is_theirs(&d[2..8]) {
                    return Some(format!("FIP descriptor {dtype} with their MAC"));
                }
                if dtype == 11 && d.len() >= 12 && peers.is_their_id(&d[9..12]) {
                    return Some("VN_Port ID descriptor with their port id".into());
                }
                if dtype == 11 && d.len() >= 20 && be_bytes(&d[12..20]) == peers.guest_wwpn {
                    return Some("VN_Port ID descriptor with the guest's WWPN".into());
                }
                if (7..=10).contains(&dtype) && d.len() > 4 {
                    if let Some(v) = fc_checks(&d[4..]) {
                        return Some(format!("FIP ELS: {v}"));
                    }
                }
                at += words * 4;
            }
            None
        }
        _ => None,
    }
}

/// The sanitisers keep every generated frame within the rules, in both mixes, and the FCoE
/// mix really logs its fakes in and writes (no QEMU: frames are only generated).
#[test]
fn storm_frames_never_forge_the_guest_or_l2san() {
    let peers = Peers::new(FCOE_L2SAN_MAC, FCOE_GUEST_MAC);
    let opts = WorkloadOpts {
        blocks: 64,
        ..WorkloadOpts::default()
    };
    let region = region_lba(&opts);
    let (floor, blocks) = (16384, 32768);
    for fcoe in [false, true] {
        let mix = fcoe.then(|| FcoeMix::new(&mut Rng(7), &peers, FAKES, floor, blocks));
        let mut gen = Generator::new(0x1234_5678_9abc_def1, peers, region, mix);
        // Without the FCoE mix the CDB floor is the half of a 64k-block image.
        let floor = if fcoe { floor } else { 1 << 15 };
        for n in 0..200_000 {
            let f = gen.frame();
            if let Some(v) = violation(&peers, region, floor, &f) {
                panic!("frame {n} (FCoE mix: {fcoe}): {v}: {f:02x?}");
            }
        }
        let c = &gen.counts;
        assert!(c.sanitised > 0, "{c:?}");
        if fcoe {
            assert!(
                c.fake_logins > 100 && c.fake_writes > 100 && c.fcoe_good_crc > 1000,
                "{c:?}"
            );
        }
    }
}
