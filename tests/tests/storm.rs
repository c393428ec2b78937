//! Frame storm: while a Linux guest runs the verified AoE write workload of
//! [`l2san_tests::workload`], the test floods l2san with random and malformed frames of all three
//! of its EtherTypes (AoE 0x88A2, FCoE 0x8906, FIP 0x8914), rate-limited to [`RATE`] frames per
//! second for at most [`STORM`]. The workload must end with no I/O error and a verified
//! read-back, the image must hold exactly what the guest wrote, l2san must keep running and exit
//! 0 on SIGTERM, and its anonymous memory must stay bounded (sampled from `/proc/<pid>/status`
//! before, during and after the storm).
//!
//! # Topology
//!
//! A frame sent out of the tap from the host side goes to the guest, not to l2san (whose socket
//! ignores outgoing frames), so l2san does not serve on the tap here. Inside the namespace a
//! bridge `br0` joins the tap `tap0` (the guest), `vb` (peer of `va`, where l2san serves) and
//! `sb` (peer of `sa`, where the storm's raw socket sends). The tap port has flooding off
//! (unknown unicast, multicast and broadcast): the storm's broadcast, multicast and
//! unknown-unicast frames reach l2san but never the guest, whose aoe driver would otherwise take
//! forged responses for a second path to e0.0. The guest's own traffic is unaffected: its
//! broadcast Query Config floods out of the other ports, and l2san answers it unicast.
//!
//! # What the storm may and may not do
//!
//! The storm must not be able to break the guest legitimately, or the test would prove nothing
//! about l2san; so it never uses the guest's MAC (or l2san's) as a source, and:
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
//!   lists, unknown sub-commands, config strings and everything else go out as generated.
//!
//! Everything above holds for random-byte frames too: a sanitiser rewrites any generated AoE
//! frame that would otherwise be such a write or edit.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use l2san_tests::bootdisk;
use l2san_tests::linux::Kernel;
use l2san_tests::rawsock::RawSocket;
use l2san_tests::rig::{self, Netns, Run, TargetKind};
use l2san_tests::workload::{self, L2sanProcess, WorkloadGuest, WorkloadOpts};

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

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {s:?}"))?;
    v.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s:?}"))
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
}

struct Generator {
    rng: Rng,
    l2san: [u8; 6],
    guest: [u8; 6],
    region_lba: (u64, u64),
    counts: Counts,
}

impl Generator {
    /// A random unicast, locally administered MAC that is neither the guest's nor l2san's.
    fn src(&mut self) -> [u8; 6] {
        loop {
            let mut m = [0u8; 6];
            self.rng.fill(&mut m);
            m[0] = (m[0] & 0xfc) | 0x02;
            if m != self.guest && m != self.l2san {
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
                f.extend_from_slice(&[0x10, 0, 0, 0, 0, 0]);
                f.extend_from_slice(&(self.rng.next() as u32).to_be_bytes());
                let write = self.rng.below(2) == 0;
                let scnt = 1 + self.rng.below(2) as u8;
                let lba = (32u64 << 20) / 512 + self.rng.below((32 << 20) / 512);
                f.extend_from_slice(&[
                    if write { 0x41 } else { 0x40 },
                    0,
                    scnt,
                    if write { 0x34 } else { 0x24 },
                ]);
                f.extend_from_slice(&lba.to_le_bytes()[..6]);
                f.extend_from_slice(&[0, 0]);
                if write {
                    self.counts.valid_writes += 1;
                    f.extend(self.rng.bytes(usize::from(scnt) * 512));
                }
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
        let mut f = self.eth(dst, ETH_AOE);
        f.push(0x10);
        f.push(0);
        let (major, minor): (u16, u8) = self.rng.pick(&[(0xffff, 0xff), (0xffff, 0), (0, 0xff)]);
        f.extend_from_slice(&major.to_be_bytes());
        f.push(minor);
        f.push(0);
        f.extend_from_slice(&(self.rng.next() as u32).to_be_bytes());
        let (lo, hi) = self.region_lba;
        let lba = lo + self.rng.below(hi - lo - 2);
        let ext = self.rng.below(2) == 0;
        f.extend_from_slice(&[
            if ext { 0x41 } else { 0x01 },
            0,
            2,
            if ext { 0x34 } else { 0x30 },
        ]);
        let mut l = lba.to_le_bytes();
        if !ext {
            l[3] = 0xe0 | (l[3] & 0x0f);
        }
        f.extend_from_slice(&l[..6]);
        f.extend_from_slice(&[0, 0]);
        let mut data = b"STORM broadcast write ".repeat(50);
        data.truncate(1024);
        f.extend_from_slice(&data);
        f
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
        let low = [self.l2san[3], self.l2san[4], self.l2san[5]];
        let dst = match self.rng.below(4) {
            0 => [0x0e, 0xfd, 0x00, low[0], low[1], low[2]],
            _ => self.dst(),
        };
        let mut f = self.eth(dst, ETH_FCOE);
        if self.rng.below(5) == 0 {
            let n = self.rng.len(1500 - 14);
            f.extend(self.rng.bytes(n));
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
        // CRC (unchecked garbage) and EOF.
        f.extend_from_slice(&self.rng.bytes(4));
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
        if self.rng.below(10) == 0 {
            let cut = 14 + self.rng.below(f.len() as u64 - 14) as usize;
            f.truncate(cut);
        }
        f
    }
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
    fn sample(&mut self, l2san: &L2sanProcess) {
        if let (Some(anon), Some(rss)) = (l2san.status_kib("RssAnon"), l2san.status_kib("VmRSS")) {
            self.anon_peak = self.anon_peak.max(anon);
            self.rss_peak = self.rss_peak.max(rss);
            self.samples += 1;
        }
    }
}

fn storm(run: &Run) -> Result<()> {
    if run.target_kind() != TargetKind::L2san {
        rig::report(format_args!(
            "SKIPPED {}: l2san only (target is {})",
            run.name(),
            run.target_kind()
        ));
        return Ok(());
    }
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
    let l2san_mac = parse_mac(&ns.run("cat", ["/sys/class/net/va/address"])?)?;
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

    let mut mem = Memory {
        anon_before: l2san.status_kib("RssAnon").unwrap_or(0),
        rss_before: l2san.status_kib("VmRSS").unwrap_or(0),
        ..Memory::default()
    };
    mem.sample(&l2san);
    let cpu_before = l2san.cpu_ticks().unwrap_or(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let region_lba = (
        opts.region_offset() as u64 / 512,
        (opts.region_offset() + opts.region_len()) as u64 / 512,
    );
    let mut gen = Generator {
        rng: Rng(seed),
        l2san: l2san_mac,
        // QEMU's default NIC MAC.
        guest: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
        region_lba,
        counts: Counts::default(),
    };
    let writes_before = guest.progress().writes_acked(opts.blocks);
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
            mem.sample(&l2san);
            l2san.check_running().context("l2san died in the storm")?;
            let p = guest.progress();
            if p.written.is_some() || p.ended() {
                break;
            }
        }
    }
    let storm_time = start.elapsed();
    mem.sample(&l2san);
    let cpu_storm = l2san.cpu_ticks().unwrap_or(0).saturating_sub(cpu_before);
    let writes_during = guest.progress().writes_acked(opts.blocks) - writes_before;
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
    let storm_written = after[32 << 20..]
        .chunks(512)
        .zip(original[32 << 20..].chunks(512))
        .filter(|(a, b)| a != b)
        .count();
    let warns = workload::warn_lines(&log);
    rig::report(format_args!(
        "{}: guest {} (run {:.1} s), read-back {}; l2san RssAnon {} KiB before, peak {} KiB \
         (+{} KiB), VmRSS {} -> peak {} KiB, VmHWM {} KiB ({} samples); {} sectors past 32 MiB \
         written by the storm; l2san log {} lines, {} warnings/errors{}",
        run.name(),
        p.written.as_deref().unwrap_or("?"),
        elapsed.as_secs_f64(),
        p.verify.as_deref().unwrap_or("?"),
        mem.anon_before,
        mem.anon_peak,
        mem.anon_peak.saturating_sub(mem.anon_before),
        mem.rss_before,
        mem.rss_peak,
        hwm,
        mem.samples,
        storm_written,
        log.lines().count(),
        warns.len(),
        warns
            .iter()
            .take(8)
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    ));
    ensure!(
        mem.anon_peak.saturating_sub(mem.anon_before) < MAX_ANON_GROWTH_KIB,
        "l2san's anonymous memory grew by {} KiB in the storm (limit {MAX_ANON_GROWTH_KIB} KiB)",
        mem.anon_peak - mem.anon_before
    );
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
    rig::e2e("frame_storm_under_guest_workload", storm);
}
