//! Hostile input, AoE part: hand-made frames on a veth pair against the running target.
//!
//! Each test creates a namespace with a veth pair `a`–`b`, serves a patterned image as e7.3 on
//! `a` and talks to it through a raw socket on `b` ([`RawSocket`]). It sends the bad frames and
//! checks what AoE r11 (§2 header rules, §2.4 errors, §3 commands), ATA8-ACS (status and error
//! registers), the behaviour of the real initiators (Linux `aoe`, iPXE) and l2san's documented policy (`aoe/src/target.rs`, `aoe/src/ata/mod.rs`)
//! prescribe: the ATA Status/Error registers, AoE Error codes, or silence. Every reply is
//! checked for a correct header (Ver 1, R set, the request's tag, our own e7.3, unicast to us)
//! and for zero bytes past its meaningful length (no bytes of earlier frames). The image is
//! compared byte for byte after every refused write and at the end, and the target must still
//! run at the end and exit 0 on SIGTERM.
//!
//! Silence is checked without long waits: after the frames that must go unanswered, a CHECK
//! POWER MODE "ping" goes out; the target handles frames in order, so once the ping's reply is
//! in (plus a grace period) any reply to the earlier frames would have arrived.
//!
//! `L2SAN_E2E_TARGET=vblade` runs the same cases against vblade, for comparison only: vblade
//! follows a different error policy and fails many of them.

#![forbid(unsafe_code)]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use l2san_rig::fixture::aoe::{
    self, ata_arg, Reply, Req, ATA_HDR, BROADCAST_MAC, ETHERTYPE_AOE, FLAG_E, FLAG_R, HDR,
};
use l2san_rig::fixture::{
    self, data, hex, patterned_image, recv_first, retry_for, stop_clean, VethOpts, VethPair,
    REPLY_TIMEOUT,
};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, AoeExport, Netns, Run, Target, TargetKind};

/// The export under test: a non-zero shelf and slot, so that broadcast addressing and the
/// reply's own Major/Minor are told apart.
const SHELF: u16 = 7;
const SLOT: u8 = 3;
/// 4 MiB image.
const SECTORS: u64 = 8192;
const SECTOR: usize = 512;

/// Commands.
const CMD_ATA: u8 = 0;
const CMD_CONFIG: u8 = 1;
const CMD_MASK: u8 = 2;
const CMD_RESERVE: u8 = 3;

/// AoE error codes.
const AOE_ERR_UNRECOGNIZED: u8 = 1;
const AOE_ERR_BAD_ARG: u8 = 2;
const AOE_ERR_VERSION: u8 = 5;

/// ATA opcodes, status and error bits.
const ATA_READ: u8 = 0x20;
const ATA_READ_EXT: u8 = 0x24;
const ATA_WRITE: u8 = 0x30;
const ATA_WRITE_EXT: u8 = 0x34;
const ATA_IDENTIFY: u8 = 0xec;
const ATA_CHECK_POWER: u8 = 0xe5;
const ATA_FLUSH: u8 = 0xe7;
const DRDY: u8 = 0x40;
const ERR: u8 = 0x01;
const ABRT: u8 = 0x04;
const IDNF: u8 = 0x10;

/// AFlags an initiator would set for `cmd`: E for the 48-bit opcodes, W for writes.
fn aflags_for(cmd: u8) -> u8 {
    match cmd {
        ATA_READ_EXT => 0x40,
        ATA_WRITE_EXT => 0x41,
        ATA_WRITE => 0x01,
        _ => 0,
    }
}

/// Test options.
#[derive(Debug, Clone, Copy)]
struct Opts {
    mtu: u32,
    read_only: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            mtu: 1500,
            read_only: false,
        }
    }
}

/// A running target on `a`, a raw socket on `b`, and the image as it must be.
/// Fields drop in order: the target and the socket before the namespace.
struct Fx {
    target: Option<Target>,
    sock: RawSocket,
    ns: Netns,
    kind: TargetKind,
    image: PathBuf,
    expected: Vec<u8>,
    /// Our MAC (`b`) and the target's (`a`).
    us: [u8; 6],
    them: [u8; 6],
    mtu: u32,
    next_tag: u32,
}

impl Fx {
    fn start(run: &Run, opts: Opts) -> Result<Fx> {
        let image = run.path("disk.img");
        let expected = patterned_image(&image, SECTORS, SECTOR)?;

        let ns = Netns::new()?;
        let veth = VethPair::create(
            &ns,
            VethOpts {
                mtu: Some(opts.mtu),
                no_ipv6: true,
            },
        )?;
        let (them, us) = (veth.them, veth.us);
        // Open before the target starts, so that its startup advert is queued for us.
        let sock = veth.socket(&ns, ETHERTYPE_AOE)?;
        let tap = veth.tap(opts.mtu);
        let mut export = AoeExport::new(SHELF, SLOT, &image);
        if opts.read_only {
            export = export.read_only();
        }
        let log = run.path("target.log");
        let kind = run.target_kind();
        let target = match kind {
            TargetKind::L2san => Target::l2san(&ns, &tap, &rig::l2san_bin()?, &[export], &log)?,
            TargetKind::Vblade => Target::vblade(&ns, &tap, &export, &log)?,
        };
        Ok(Fx {
            target: Some(target),
            sock,
            ns,
            kind,
            image,
            expected,
            us,
            them,
            mtu: opts.mtu,
            next_tag: 0x1b5a_0000,
        })
    }

    fn tag(&mut self) -> u32 {
        self.next_tag += 1;
        self.next_tag
    }

    /// A well-formed unicast request to e7.3, padded to 60 bytes.
    fn req(&mut self, command: u8, arg: Vec<u8>) -> Req {
        let tag = self.tag();
        Req::new(self.them, self.us, SHELF, SLOT, command, tag, arg)
    }

    /// An ATA request with the AFlags an initiator would set for `cmd`.
    fn ata(&mut self, cmd: u8, count: u8, lba: u64, data: &[u8]) -> Req {
        self.req(CMD_ATA, ata_arg(aflags_for(cmd), count, cmd, lba, data))
    }

    fn config(&mut self, ccmd: u8, string: &[u8], len_field: u16) -> Req {
        let mut a = vec![0, 0, 0, 0, 0, ccmd];
        a.extend_from_slice(&len_field.to_be_bytes());
        a.extend_from_slice(string);
        self.req(CMD_CONFIG, a)
    }

    /// Sends `req` and returns the reply with its tag, after checking the header every reply
    /// must have (§2.4: Ver 1, R, the tag, our own Major/Minor, unicast to the requester
    /// from the target, MBZ flag bits clear, Error 0 unless E, at least 60 bytes).
    fn exchange(&mut self, req: &Req, what: &str) -> Result<Reply> {
        self.exchange_within(req, what, REPLY_TIMEOUT)
    }

    fn exchange_within(&mut self, req: &Req, what: &str, timeout: Duration) -> Result<Reply> {
        let r = aoe::exchange(&self.sock, req, timeout, what)?;
        self.check_header(req, &r, what)?;
        Ok(r)
    }

    fn check_header(&self, req: &Req, r: &Reply, what: &str) -> Result<()> {
        aoe::check_header(req, r, (self.us, self.them), (SHELF, SLOT), what)?;
        let ctx = || format!("{what}: reply {}", hex(&r.f));
        ensure!(r.flags() & 0x03 == 0, "{}: MBZ flag bits set", ctx());
        if r.flags() & FLAG_E == 0 {
            ensure!(r.error() == 0, "{}: Error field set without E", ctx());
        }
        Ok(())
    }

    /// An ATA reply that succeeded with `data_len` bytes of data (and zeros after them).
    fn ata_ok(&mut self, req: &Req, data_len: usize, what: &str) -> Result<Reply> {
        let r = self.exchange(req, what)?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "{what}: AoE error {} instead of an ATA reply: {}",
            r.error(),
            hex(&r.f)
        );
        ensure!(
            r.ata_status() == DRDY && r.ata_err() == 0,
            "{what}: ATA status {:#04x} error {:#04x}, expected success (0x40, 0): {}",
            r.ata_status(),
            r.ata_err(),
            hex(&r.f)
        );
        ensure!(
            r.f.len() >= ATA_HDR + data_len,
            "{what}: reply carries {} bytes of data, expected {data_len}",
            r.f.len().saturating_sub(ATA_HDR)
        );
        ensure!(r.f[34..36] == [0, 0], "{what}: ATA reserved bytes not zero");
        r.zero_from(ATA_HDR + data_len, what)?;
        Ok(r)
    }

    /// An ATA reply with ERR and `error` in the Error register, no data, zeros after the
    /// argument.
    fn ata_fails(&mut self, req: &Req, error: u8, what: &str) -> Result<Reply> {
        let r = self.exchange(req, what)?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "{what}: AoE error {} instead of ATA status ERR (Linux drops AoE errors): {}",
            r.error(),
            hex(&r.f)
        );
        ensure!(
            r.ata_status() == DRDY | ERR && r.ata_err() == error,
            "{what}: ATA status {:#04x} error {:#04x}, expected {:#04x} / {error:#04x}: {}",
            r.ata_status(),
            r.ata_err(),
            DRDY | ERR,
            hex(&r.f)
        );
        ensure!(r.f[34..36] == [0, 0], "{what}: ATA reserved bytes not zero");
        r.zero_from(ATA_HDR, what)?;
        Ok(r)
    }

    /// An AoE error reply with `code`; bytes past `meaningful` are zero.
    fn aoe_error(&mut self, req: &Req, code: u8, meaningful: usize, what: &str) -> Result<Reply> {
        let r = self.exchange(req, what)?;
        ensure!(
            r.flags() & FLAG_E != 0 && r.error() == code,
            "{what}: expected AoE Error {code} (E flag), got flags {:#x} error {}: {}",
            r.flags(),
            r.error(),
            hex(&r.f)
        );
        r.zero_from(meaningful, what)?;
        Ok(r)
    }

    /// A CHECK POWER MODE that must succeed with Count 0xFF.
    fn ping(&mut self, what: &str) -> Result<()> {
        let req = self.ata(ATA_CHECK_POWER, 0, 0, &[]);
        let r = self.ata_ok(&req, 0, what)?;
        ensure!(
            r.ata_count() == 0xff,
            "{what}: CHECK POWER MODE count {:#04x}",
            r.ata_count()
        );
        Ok(())
    }

    /// Sends every frame in `reqs`, which must all go unanswered, then a ping; fails if any
    /// frame carrying one of their tags comes back.
    fn silent(&mut self, reqs: &[Req], what: &str) -> Result<()> {
        let ping = self.ata(ATA_CHECK_POWER, 0, 0, &[]);
        aoe::silent(&self.sock, reqs, &ping, what)
    }

    /// Records that `data` was written at `lba`.
    fn expect_write(&mut self, lba: u64, data: &[u8]) {
        let at = lba as usize * SECTOR;
        self.expected[at..at + data.len()].copy_from_slice(data);
    }

    /// The image file is byte for byte what it must be.
    fn check_image(&self, what: &str) -> Result<()> {
        fixture::check_image(&self.image, &self.expected, SECTOR, what)
    }

    /// Sector `lba` as the image must hold it.
    fn sector(&self, lba: u64) -> &[u8] {
        let at = lba as usize * SECTOR;
        &self.expected[at..at + SECTOR]
    }

    /// Reads `count` sectors at `lba` through the target and compares them with the image.
    fn read_check(
        &mut self,
        cmd: u8,
        lba_field: u64,
        lba: u64,
        count: u8,
        what: &str,
    ) -> Result<()> {
        let req = self.ata(cmd, count, lba_field, &[]);
        let len = usize::from(count) * SECTOR;
        let r = self.ata_ok(&req, len, what)?;
        let at = lba as usize * SECTOR;
        ensure!(
            r.ata_data(len) == &self.expected[at..at + len],
            "{what}: data read is not sectors {lba}..{} of the image",
            lba + u64::from(count)
        );
        Ok(())
    }

    /// Still answering, the image, the target still running, no panic in its log, exit 0 on
    /// SIGTERM.
    fn finish(mut self) -> Result<()> {
        self.ping("CHECK POWER MODE at the end")?;
        self.check_image("at the end")?;
        stop_clean(self.target.take().context("no target")?)?;
        self.check_image("after SIGTERM")
    }
}

/// Runs one case: a fresh namespace, target and image, `body`, then [`Fx::finish`].
fn case(name: &str, opts: Opts, body: impl FnOnce(&mut Fx) -> Result<()>) {
    rig::e2e(&format!("aoe_bad_{name}"), |run| {
        let mut fx = Fx::start(run, opts)?;
        body(&mut fx)?;
        fx.finish()
    });
}

// ---- ATA argument and payload checks (§1.9) -------------------------------------------------

/// §1.9 "write payload short" → ATA ABRT; qaoed's over-read (§4.2) would write heap bytes.
#[test]
fn short_write_payload_aborted() {
    case("short_write", Opts::default(), |fx| {
        let cases: [(u8, u8, usize, usize); 6] = [
            // (opcode, count, payload bytes, pad_to)
            (ATA_WRITE_EXT, 2, 1023, 60),
            (ATA_WRITE_EXT, 2, 512, 60),
            (ATA_WRITE_EXT, 1, 511, 60),
            // No payload at all, unpadded 36-byte frame.
            (ATA_WRITE_EXT, 1, 0, 0),
            // No payload, but 24 bytes of Ethernet padding that must not count as data.
            (ATA_WRITE_EXT, 1, 0, 60),
            (ATA_WRITE, 1, 100, 60),
        ];
        for (op, count, len, pad) in cases {
            let what = format!("WRITE {op:#04x} count {count} with {len} bytes of data");
            let mut req = fx.ata(op, count, 10, &data(1, len));
            req.pad_to = pad;
            fx.ata_fails(&req, ABRT, &what)?;
            fx.check_image(&what)?;
        }
        fx.read_check(
            ATA_READ_EXT,
            10,
            10,
            2,
            "sectors 10-11 after the short writes",
        )
    });
}

/// §1.9 "sector count 0" → ATA ABRT, never a silent success.
#[test]
fn zero_sector_count_aborted() {
    case("zero_count", Opts::default(), |fx| {
        for op in [ATA_READ_EXT, ATA_READ] {
            let req = fx.ata(op, 0, 5, &[]);
            fx.ata_fails(&req, ABRT, &format!("READ {op:#04x} count 0"))?;
        }
        for op in [ATA_WRITE_EXT, ATA_WRITE] {
            let what = format!("WRITE {op:#04x} count 0 with 1024 bytes");
            let req = fx.ata(op, 0, 5, &data(2, 1024));
            fx.ata_fails(&req, ABRT, &what)?;
            fx.check_image(&what)?;
        }
        Ok(())
    });
}

/// §1.9 "count > max per frame" → ATA ABRT (not AoE BadArg as in vblade).
#[test]
fn sector_count_above_max_aborted() {
    case("count_above_max", Opts::default(), |fx| {
        let req = fx.config(0, &[], 0);
        let r = fx.exchange(&req, "Query Config")?;
        ensure!(
            r.cfg_sector_count() == 2,
            "Sector Count {} at MTU 1500, expected (1500 - 36) / 512 = 2",
            r.cfg_sector_count()
        );
        for count in [3u8, 17, 128, 255] {
            let req = fx.ata(ATA_READ_EXT, count, 0, &[]);
            fx.ata_fails(&req, ABRT, &format!("READ EXT count {count} at MTU 1500"))?;
        }
        // Three sectors announced, the two that fit the frame sent.
        let what = "WRITE EXT count 3 with 1024 bytes at MTU 1500";
        let req = fx.ata(ATA_WRITE_EXT, 3, 40, &data(3, 1024));
        fx.ata_fails(&req, ABRT, what)?;
        fx.check_image(what)?;
        fx.read_check(ATA_READ_EXT, 40, 40, 2, "READ EXT count 2 (the maximum)")
    });
}

/// torus' bug (§4.2): Sector Count must be ⌊(MTU − 36) / 512⌋, not MTU / 512. At MTU 1030
/// that is 1, and a 2-sector read (whose reply would not fit the MTU) is aborted.
#[test]
fn sector_count_follows_mtu_1030() {
    let opts = Opts {
        mtu: 1030,
        ..Opts::default()
    };
    case("mtu_1030", opts, |fx| {
        let req = fx.config(0, &[], 0);
        let r = fx.exchange(&req, "Query Config")?;
        ensure!(
            r.cfg_sector_count() == 1,
            "Sector Count {} at MTU 1030, expected (1030 - 36) / 512 = 1",
            r.cfg_sector_count()
        );
        let req = fx.ata(ATA_READ_EXT, 2, 0, &[]);
        fx.ata_fails(&req, ABRT, "READ EXT count 2 at MTU 1030")?;
        fx.read_check(ATA_READ_EXT, 77, 77, 1, "READ EXT count 1 at MTU 1030")
    });
}

/// At MTU 9000 the frame holds 17 sectors; 18 is aborted, 17 works.
#[test]
fn sector_count_follows_mtu_9000() {
    let opts = Opts {
        mtu: 9000,
        ..Opts::default()
    };
    case("mtu_9000", opts, |fx| {
        let req = fx.config(0, &[], 0);
        let r = fx.exchange(&req, "Query Config")?;
        ensure!(
            r.cfg_sector_count() == 17,
            "Sector Count {} at MTU 9000, expected 17",
            r.cfg_sector_count()
        );
        let req = fx.ata(ATA_READ_EXT, 18, 0, &[]);
        fx.ata_fails(&req, ABRT, "READ EXT count 18 at MTU 9000")?;
        let what = "WRITE EXT count 18 with 17 sectors of data at MTU 9000";
        let req = fx.ata(ATA_WRITE_EXT, 18, 0, &data(4, 17 * SECTOR));
        fx.ata_fails(&req, ABRT, what)?;
        fx.check_image(what)?;
        fx.read_check(ATA_READ_EXT, 100, 100, 17, "READ EXT count 17 at MTU 9000")?;
        let payload = data(5, 17 * SECTOR);
        let req = fx.ata(ATA_WRITE_EXT, 17, 200, &payload);
        fx.ata_ok(&req, 0, "WRITE EXT count 17 at MTU 9000")?;
        fx.expect_write(200, &payload);
        fx.check_image("after a 17-sector write")
    });
}

/// §1.9 "LBA out of range" → ATA IDNF, for reads; LBAs above 2 TiB (ggaoed's shift bug, §4.2)
/// and 48-bit LBA + count overflow included.
#[test]
fn read_past_end_idnf() {
    case("read_past_end", Opts::default(), |fx| {
        let cases: [(u8, u64, u8); 8] = [
            (ATA_READ_EXT, SECTORS, 1),
            (ATA_READ_EXT, SECTORS - 1, 2),
            (ATA_READ_EXT, 1 << 32, 1),
            (ATA_READ_EXT, (1 << 32) | 5, 1),
            (ATA_READ_EXT, (1 << 40) | 5, 2),
            (ATA_READ_EXT, 0xffff_ffff_ffff, 1),
            (ATA_READ_EXT, 0xffff_ffff_ffff, 2),
            (ATA_READ, 0xe000_0000 | SECTORS, 1),
        ];
        for (op, lba, count) in cases {
            let req = fx.ata(op, count, lba, &[]);
            fx.ata_fails(
                &req,
                IDNF,
                &format!("READ {op:#04x} LBA {lba:#x} count {count}"),
            )?;
        }
        // The last two sectors are fine.
        fx.read_check(
            ATA_READ_EXT,
            SECTORS - 2,
            SECTORS - 2,
            2,
            "READ EXT of the last 2 sectors",
        )?;
        fx.read_check(
            ATA_READ,
            0xe000_0000 | (SECTORS - 1),
            SECTORS - 1,
            1,
            "READ of the last sector",
        )
    });
}

/// The same for writes: IDNF, nothing written, no partial write of a straddling request, and
/// the file does not grow (qaoed and mdlayher have no range check, §4.2).
#[test]
fn write_past_end_idnf_image_unchanged() {
    case("write_past_end", Opts::default(), |fx| {
        let cases: [(u8, u64, u8); 8] = [
            (ATA_WRITE_EXT, SECTORS, 1),
            (ATA_WRITE_EXT, SECTORS - 1, 2),
            (ATA_WRITE_EXT, 1 << 32, 1),
            // A target that drops the high LBA bytes would write sector 5.
            (ATA_WRITE_EXT, (1 << 32) | 5, 1),
            (ATA_WRITE_EXT, (1 << 40) | 5, 2),
            (ATA_WRITE_EXT, 0xffff_ffff_ffff, 1),
            (ATA_WRITE_EXT, 0xffff_ffff_ffff, 2),
            (ATA_WRITE, 0xe000_0000 | SECTORS, 1),
        ];
        for (op, lba, count) in cases {
            let what = format!("WRITE {op:#04x} LBA {lba:#x} count {count}");
            let req = fx.ata(op, count, lba, &data(6, usize::from(count) * SECTOR));
            fx.ata_fails(&req, IDNF, &what)?;
            fx.check_image(&what)?;
        }
        fx.read_check(ATA_READ_EXT, 5, 5, 2, "sectors 5-6")?;
        fx.read_check(ATA_READ_EXT, SECTORS - 1, SECTORS - 1, 1, "the last sector")
    });
}

/// Opcodes other than the eight implemented → ATA ABRT, never an AoE error, never data.
#[test]
fn unknown_ata_opcodes_aborted() {
    case("unknown_opcode", Opts::default(), |fx| {
        for op in [
            0x00u8, 0x08, 0x10, 0x25, 0x29, 0x35, 0x40, 0x42, 0x91, 0x98, 0xa0, 0xa1, 0xb0, 0xc4,
            0xc8, 0xca, 0xe0, 0xe1, 0xef, 0xf5, 0xf8, 0xff,
        ] {
            // With a sector's worth of data and W set: no opcode here may write it.
            let mut req = fx.ata(op, 1, 3, &data(7, SECTOR));
            req.arg[0] = 0x41;
            fx.ata_fails(&req, ABRT, &format!("ATA opcode {op:#04x}"))?;
            fx.check_image(&format!("ATA opcode {op:#04x}"))?;
        }
        Ok(())
    });
}

/// l2san's documented choice: IDENTIFY ignores its Count register (ACS-3: N/A), so a count
/// other than 1 is answered, as Linux' 0xA0 device bits and WinAoE's E flag are.
#[test]
fn identify_variants_answered() {
    case("identify_variants", Opts::default(), |fx| {
        for (aflags, count, lba) in [
            (0u8, 1u8, 0xa0_00_00_00u64),
            (0, 0, 0),
            (0x40, 2, 0),
            (0x50, 255, 0),
        ] {
            let req = fx.req(CMD_ATA, ata_arg(aflags, count, ATA_IDENTIFY, lba, &[]));
            let what = format!("IDENTIFY aflags {aflags:#04x} count {count}");
            let r = fx.ata_ok(&req, 512, &what)?;
            let d = r.ata_data(512);
            let word = |w: usize| u16::from_le_bytes([d[2 * w], d[2 * w + 1]]);
            ensure!(word(83) & (1 << 10) != 0, "{what}: word 83 lacks LBA48");
            let cap = (0..4).fold(0u64, |acc, i| acc | u64::from(word(100 + i)) << (16 * i));
            ensure!(cap == SECTORS, "{what}: capacity {cap}, expected {SECTORS}");
        }
        Ok(())
    });
}

// ---- Addressing and broadcast (§1.6, §0.10) --------------------------------------------------

/// Broadcast-addressed writes are refused silently (vblade and ggaoed execute them on every
/// export, §4.2); the image is unchanged.
#[test]
fn broadcast_writes_ignored() {
    case("broadcast_write", Opts::default(), |fx| {
        let mut reqs = Vec::new();
        for (major, minor) in [(0xffff, SLOT), (SHELF, 0xff), (0xffff, 0xff)] {
            for op in [ATA_WRITE_EXT, ATA_WRITE] {
                let lba = if op == ATA_WRITE { 0xe000_0014 } else { 20 };
                let req = fx.ata(op, 1, lba, &data(8, SECTOR)).broadcast(major, minor);
                let mut unicast = req.clone();
                unicast.dst = fx.them;
                unicast.tag = fx.tag();
                reqs.push(req);
                reqs.push(unicast);
            }
        }
        fx.silent(&reqs, "broadcast-addressed WRITE")?;
        fx.check_image("after broadcast-addressed writes")?;
        // FLUSH by broadcast is refused too (it is not an inquiry).
        let flush = fx.ata(ATA_FLUSH, 0, 0, &[]).broadcast(0xffff, 0xff);
        fx.silent(&[flush], "broadcast-addressed FLUSH CACHE")?;
        fx.read_check(ATA_READ_EXT, 20, 20, 1, "sector 20")
    });
}

/// Broadcast-addressed reads get no reply; broadcast IDENTIFY and Query Config are answered
/// with our own Major/Minor (WinAoE and iPXE discovery).
#[test]
fn broadcast_reads_ignored() {
    case("broadcast_read", Opts::default(), |fx| {
        let mut reqs = Vec::new();
        for (major, minor) in [(0xffff, SLOT), (SHELF, 0xff), (0xffff, 0xff)] {
            let r = fx.ata(ATA_READ_EXT, 1, 0, &[]).broadcast(major, minor);
            reqs.push(r);
            let r = fx
                .ata(ATA_READ, 2, 0xe000_0000, &[])
                .broadcast(major, minor);
            reqs.push(r);
        }
        fx.silent(&reqs, "broadcast-addressed READ")?;
        let req = fx.ata(ATA_IDENTIFY, 1, 0, &[]).broadcast(0xffff, 0xff);
        fx.ata_ok(&req, 512, "broadcast IDENTIFY")?;
        let req = fx.ata(ATA_CHECK_POWER, 0, 0, &[]).broadcast(0xffff, 0xff);
        fx.ata_ok(&req, 0, "broadcast CHECK POWER MODE")?;
        let req = fx.config(0, &[], 0).broadcast(0xffff, 0xff);
        let r = fx.exchange(&req, "broadcast Query Config")?;
        r.zero_from(32 + r.cfg_string().len(), "broadcast Query Config")?;
        Ok(())
    });
}

/// Frames for another shelf or slot, and frames from a group source address, are not ours.
#[test]
fn foreign_address_and_multicast_source_ignored() {
    case("foreign_address", Opts::default(), |fx| {
        let mut reqs = Vec::new();
        for (major, minor) in [(SHELF + 1, SLOT), (SHELF, SLOT + 1), (0, 0), (0xfffe, 0xfe)] {
            let mut r = fx.ata(ATA_READ_EXT, 1, 0, &[]);
            r.major = major;
            r.minor = minor;
            reqs.push(r);
            let mut r = fx.ata(ATA_WRITE_EXT, 1, 30, &data(9, SECTOR));
            r.major = major;
            r.minor = minor;
            reqs.push(r);
            let mut r = fx.config(0, &[], 0);
            r.major = major;
            r.minor = minor;
            reqs.push(r);
        }
        // A group source address: answering it would reach every host on the segment.
        let mut r = fx.ata(ATA_IDENTIFY, 1, 0, &[]);
        r.src = [0x01, 0x00, 0x5e, 0, 0, 1];
        reqs.push(r);
        let mut r = fx.config(0, &[], 0);
        r.src = BROADCAST_MAC;
        reqs.push(r);
        fx.silent(&reqs, "frames not addressed to e7.3")?;
        fx.check_image("after writes to other addresses")
    });
}

// ---- Header checks (§1.9, §4.4) -------------------------------------------------------------

/// Reserved commands 4..=239 → AoE Error 1 (ggaoed indexes past its table for 4, §4.2);
/// broadcast-addressed ones are dropped (l2san policy).
#[test]
fn reserved_commands_error_1() {
    case("reserved_commands", Opts::default(), |fx| {
        for cmd in 4u8..=239 {
            let req = fx.req(cmd, vec![0xaa; 12]);
            fx.aoe_error(&req, AOE_ERR_UNRECOGNIZED, HDR, &format!("command {cmd}"))?;
        }
        let reqs: Vec<Req> = [4u8, 5, 100, 239]
            .into_iter()
            .map(|cmd| fx.req(cmd, vec![]).broadcast(0xffff, 0xff))
            .collect();
        fx.silent(&reqs, "broadcast reserved commands")
    });
}

/// Vendor commands 0xF0..=0xFF → silence (§1.9), unicast or broadcast.
#[test]
fn vendor_commands_silent() {
    case("vendor_commands", Opts::default(), |fx| {
        let mut reqs = Vec::new();
        for cmd in 0xf0u8..=0xff {
            reqs.push(fx.req(cmd, vec![0x55; 16]));
            reqs.push(fx.req(cmd, vec![]).broadcast(0xffff, 0xff));
        }
        fx.silent(&reqs, "vendor commands")
    });
}

/// Ver ≠ 1: unicast → AoE Error 5 (the reply itself is Ver 1); broadcast → silence (§1.9).
#[test]
fn version_not_1() {
    case("bad_version", Opts::default(), |fx| {
        for ver in [0u8, 2, 3, 15] {
            let mut req = fx.ata(ATA_READ_EXT, 1, 0, &[]);
            req.ver = ver;
            fx.aoe_error(
                &req,
                AOE_ERR_VERSION,
                HDR,
                &format!("READ EXT with Ver {ver}"),
            )?;
            let mut req = fx.config(0, &[], 0);
            req.ver = ver;
            fx.aoe_error(
                &req,
                AOE_ERR_VERSION,
                HDR,
                &format!("Query Config with Ver {ver}"),
            )?;
            // A write with a bad version must not be executed either.
            let mut req = fx.ata(ATA_WRITE_EXT, 1, 50, &data(10, SECTOR));
            req.ver = ver;
            let what = format!("WRITE EXT with Ver {ver}");
            fx.aoe_error(&req, AOE_ERR_VERSION, HDR, &what)?;
            fx.check_image(&what)?;
        }
        let mut reqs = Vec::new();
        for ver in [0u8, 2, 15] {
            let mut r = fx.config(0, &[], 0).broadcast(0xffff, 0xff);
            r.ver = ver;
            reqs.push(r);
            let mut r = fx.ata(ATA_IDENTIFY, 1, 0, &[]).broadcast(0xffff, SLOT);
            r.ver = ver;
            reqs.push(r);
            // Ver ≠ 1 with R set: a response, never answered.
            let mut r = fx.ata(ATA_READ_EXT, 1, 0, &[]);
            r.ver = ver;
            r.flags = FLAG_R;
            reqs.push(r);
        }
        fx.silent(&reqs, "broadcast or response frames with Ver != 1")
    });
}

/// R set: a response, never answered and never executed (§1.9).
#[test]
fn response_flag_silent() {
    case("response_flag", Opts::default(), |fx| {
        let mut reqs = Vec::new();
        for flags in [FLAG_R, FLAG_R | FLAG_E] {
            let mut r = fx.ata(ATA_READ_EXT, 1, 0, &[]);
            r.flags = flags;
            reqs.push(r);
            let mut r = fx.ata(ATA_WRITE_EXT, 1, 60, &data(11, SECTOR));
            r.flags = flags;
            reqs.push(r);
            let mut r = fx.config(4, b"owned", 5);
            r.flags = flags;
            reqs.push(r);
            // A mask edit adding a foreign MAC would make the device invisible to us.
            let mut r = fx.req(CMD_MASK, vec![0, 1, 0, 1, 0, 1, 2, 0, 0, 0, 0, 0x99]);
            r.flags = flags;
            reqs.push(r);
            let mut r = fx.req(CMD_RESERVE, vec![2, 1, 2, 0, 0, 0, 0, 0x98]);
            r.flags = flags;
            reqs.push(r);
            let mut r = fx.req(9, vec![]);
            r.flags = flags;
            reqs.push(r);
        }
        fx.silent(&reqs, "frames with the R flag")?;
        fx.check_image("after a WRITE with R set")?;
        let req = fx.config(0, &[], 0);
        let r = fx.exchange(&req, "Query Config after R-flagged set")?;
        ensure!(
            r.cfg_string().is_empty(),
            "config string {:?} set by a frame with R",
            String::from_utf8_lossy(r.cfg_string())
        );
        // Neither masked nor reserved by the R-flagged edits: reads still work.
        fx.read_check(
            ATA_READ_EXT,
            60,
            60,
            1,
            "READ after R-flagged mask/reserve edits",
        )
    });
}

/// Frames too short for the header or the command's fixed argument are dropped, and the
/// target keeps serving.
#[test]
fn truncated_frames_dropped() {
    case("truncated", Opts::default(), |fx| {
        let mut reqs = Vec::new();
        // Header cut short, and each command's argument cut by one byte.
        for (cmd, arg_len) in [
            (CMD_ATA, 11usize),
            (CMD_CONFIG, 7),
            (CMD_MASK, 3),
            (CMD_RESERVE, 1),
        ] {
            let arg = match cmd {
                CMD_ATA => ata_arg(0x40, 1, ATA_READ_EXT, 0, &[]),
                _ => vec![0; arg_len],
            };
            let r = fx.req(cmd, arg[..arg_len].to_vec()).unpadded();
            reqs.push(r);
        }
        for len in [14usize, 15, 20, 23] {
            let r = fx.ata(ATA_IDENTIFY, 1, 0, &[]).unpadded();
            // A frame cut at `len` bytes cannot carry the tag; send it and move on.
            fx.sock.send(&r.frame()[..len])?;
        }
        fx.silent(&reqs, "truncated frames")
    });
}

// ---- Mask, reserve and config lists longer than the frame (§4.2 vblade rows) -----------------

/// Mac Mask List edit whose DirCount runs past the frame → AoE Error 2, list unchanged
/// (vblade reads stale buffer bytes as directives).
#[test]
fn mask_dircount_past_frame_bad_arg() {
    case("mask_dircount", Opts::default(), |fx| {
        let foreign = [0x02, 0, 0, 0, 0, 0x99];
        let directive = |dcmd: u8, mac: [u8; 6]| {
            let mut d = vec![0, dcmd];
            d.extend_from_slice(&mac);
            d
        };
        // (Dir Count, directives actually sent, pad_to)
        for (count, sent, pad) in [(2u8, 1usize, 0usize), (5, 1, 60), (255, 4, 60), (255, 0, 0)] {
            let mut arg = vec![0, 1, 0, count];
            for _ in 0..sent {
                arg.extend(directive(1, foreign));
            }
            let mut req = fx.req(CMD_MASK, arg);
            req.pad_to = pad;
            let what = format!("mask edit, Dir Count {count} with {sent} directives");
            let r = fx.aoe_error(&req, AOE_ERR_BAD_ARG, HDR + 4, &what)?;
            ensure!(
                r.arg()[3] == 0,
                "{what}: error reply Dir Count {}",
                r.arg()[3]
            );
        }
        let req = fx.req(CMD_MASK, vec![0, 0, 0, 0]);
        let r = fx.exchange(&req, "mask read")?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "mask read: AoE error {}",
            r.error()
        );
        ensure!(
            r.arg()[2] == 0 && r.arg()[3] == 0,
            "mask list changed by the bad edits: {}",
            hex(&r.f)
        );
        r.zero_from(HDR + 4, "mask read")?;
        // The device is still visible to us (a foreign MAC in the list would hide it).
        fx.read_check(ATA_READ_EXT, 0, 0, 2, "READ after bad mask edits")
    });
}

/// Reserve/Release with NMacs past the frame → AoE Error 2, reservation unchanged.
#[test]
fn reserve_nmacs_past_frame_bad_arg() {
    case("reserve_nmacs", Opts::default(), |fx| {
        for (rcmd, n, sent, pad) in [(1u8, 3u8, 1usize, 0usize), (2, 6, 5, 60), (2, 255, 2, 60)] {
            let mut arg = vec![rcmd, n];
            for i in 0..sent {
                arg.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x90 + i as u8]);
            }
            let mut req = fx.req(CMD_RESERVE, arg);
            req.pad_to = pad;
            let what = format!("reserve RCmd {rcmd}, NMacs {n} with {sent} MACs");
            fx.aoe_error(&req, AOE_ERR_BAD_ARG, HDR + 2, &what)?;
        }
        let req = fx.req(CMD_RESERVE, vec![0, 0]);
        let r = fx.exchange(&req, "reserve read")?;
        ensure!(
            r.flags() & FLAG_E == 0 && r.arg()[1] == 0,
            "reserve list changed by the bad requests: {}",
            hex(&r.f)
        );
        r.zero_from(HDR + 2, "reserve read")?;
        fx.read_check(ATA_READ_EXT, 0, 0, 1, "READ after bad reserve requests")
    });
}

/// Config String Length past the frame, or above 1024 → AoE Error 2 with the current config;
/// the string is unchanged (vblade checks against the whole frame).
#[test]
fn config_length_past_frame_bad_arg() {
    case("config_length", Opts::default(), |fx| {
        let req = fx.config(4, b"l2san-test", 10);
        let r = fx.exchange(&req, "config force-set")?;
        ensure!(
            r.flags() & FLAG_E == 0 && r.cfg_string() == b"l2san-test",
            "force-set failed: {}",
            hex(&r.f)
        );
        let long = vec![b'x'; 1025];
        let cases: [(u8, &[u8], u16, usize); 6] = [
            (4, b"evil", 1000, 0),
            (4, b"evil", 1000, 60),
            (3, b"evil", 5, 0),
            (4, b"", 0xffff, 60),
            (4, &long, 1025, 0),
            (0, b"", 2000, 60),
        ];
        for (ccmd, s, len, pad) in cases {
            let mut req = fx.config(ccmd, s, len);
            req.pad_to = pad;
            let what = format!("config CCmd {ccmd}, length {len} with {} bytes", s.len());
            let r = fx.aoe_error(&req, AOE_ERR_BAD_ARG, 32 + 10, &what)?;
            ensure!(
                r.cfg_string() == b"l2san-test",
                "{what}: error reply carries config {:?}, expected the current one",
                String::from_utf8_lossy(r.cfg_string())
            );
        }
        let req = fx.config(0, &[], 0);
        let r = fx.exchange(&req, "config read")?;
        ensure!(
            r.cfg_string() == b"l2san-test",
            "config string changed to {:?}",
            String::from_utf8_lossy(r.cfg_string())
        );
        r.zero_from(32 + 10, "config read")
    });
}

// ---- Tolerance (§0.9, §2.4 item 8) ----------------------------------------------------------

/// iPXE and Linux on a tap send 32–36-byte frames: accepted.
#[test]
fn short_frames_accepted() {
    case("short_frames", Opts::default(), |fx| {
        let req = fx.config(0, &[], 0).unpadded();
        let r = fx.exchange(&req, "32-byte Query Config")?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "32-byte Query Config: AoE error {}",
            r.error()
        );
        let req = fx.ata(ATA_IDENTIFY, 1, 0, &[]).unpadded();
        fx.ata_ok(&req, 512, "36-byte IDENTIFY")?;
        let req = fx.ata(ATA_CHECK_POWER, 0, 0, &[]).unpadded();
        fx.ata_ok(&req, 0, "36-byte CHECK POWER MODE")?;
        // iPXE's 28-bit READ: 0xE0 device bits in lba3, 2 sectors.
        let req = fx.ata(ATA_READ, 2, 0xe000_0021, &[]).unpadded();
        let r = fx.ata_ok(&req, 1024, "36-byte READ")?;
        ensure!(
            r.ata_data(512) == fx.sector(0x21),
            "36-byte READ: wrong data"
        );
        let req = fx.ata(ATA_READ_EXT, 1, 0x22, &[]).unpadded();
        let r = fx.ata_ok(&req, 512, "36-byte READ EXT")?;
        ensure!(
            r.ata_data(512) == fx.sector(0x22),
            "36-byte READ EXT: wrong data"
        );
        let req = fx.req(CMD_MASK, vec![0, 0, 0, 0]).unpadded();
        fx.exchange(&req, "28-byte mask read")?;
        let req = fx.req(CMD_RESERVE, vec![0, 0]).unpadded();
        fx.exchange(&req, "26-byte reserve read")?;
        Ok(())
    });
}

/// Trailing bytes (padding, MTU probes, junk) are ignored: a write writes exactly Count
/// sectors, reads and inquiries work.
#[test]
fn trailing_bytes_accepted() {
    case("trailing_bytes", Opts::default(), |fx| {
        let junk = vec![0xee; 900];
        let mut req = fx.ata(ATA_READ_EXT, 2, 0x30, &[]);
        req.trailer = junk.clone();
        let r = fx.ata_ok(&req, 1024, "READ EXT with 900 trailing bytes")?;
        ensure!(
            r.ata_data(512) == fx.sector(0x30),
            "padded READ: wrong data"
        );
        let payload = data(12, SECTOR);
        let mut req = fx.ata(ATA_WRITE_EXT, 1, 0x31, &payload);
        req.trailer = junk.clone();
        fx.ata_ok(&req, 0, "WRITE EXT count 1 with 900 trailing bytes")?;
        fx.expect_write(0x31, &payload);
        fx.check_image("after a write with trailing bytes (only 1 sector may change)")?;
        let payload = data(13, SECTOR);
        let mut req = fx.ata(ATA_WRITE, 1, 0xe000_0033, &payload);
        req.trailer = vec![0x11; 3];
        fx.ata_ok(&req, 0, "28-bit WRITE with 3 trailing bytes")?;
        fx.expect_write(0x33, &payload);
        fx.check_image("after a 28-bit write with trailing bytes")?;
        // aoe-sancheck: IDENTIFY padded to the MTU.
        let mut req = fx.ata(ATA_IDENTIFY, 1, 0, &[]);
        req.pad_to = 14 + fx.mtu as usize;
        fx.ata_ok(&req, 512, "IDENTIFY padded to the MTU")?;
        let mut req = fx.config(0, &[], 0);
        req.trailer = junk.clone();
        let r = fx.exchange(&req, "Query Config with trailing bytes")?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "padded Query Config: AoE error {}",
            r.error()
        );
        let mut req = fx.req(CMD_MASK, vec![0, 0, 0, 0]);
        req.trailer = junk.clone();
        let r = fx.exchange(&req, "mask read with trailing bytes")?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "padded mask read: AoE error {}",
            r.error()
        );
        let mut req = fx.req(CMD_RESERVE, vec![0, 0]);
        req.trailer = junk;
        let r = fx.exchange(&req, "reserve read with trailing bytes")?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "padded reserve read: AoE error {}",
            r.error()
        );
        Ok(())
    });
}

/// A read-only export refuses every write with ATA ABRT; reads still work.
#[test]
fn read_only_export_refuses_writes() {
    let opts = Opts {
        read_only: true,
        ..Opts::default()
    };
    case("read_only", opts, |fx| {
        for (op, lba, count) in [
            (ATA_WRITE_EXT, 0u64, 1u8),
            (ATA_WRITE_EXT, 100, 2),
            (ATA_WRITE, 0xe000_0000 | 7, 1),
            (ATA_WRITE_EXT, SECTORS - 1, 1),
        ] {
            let what = format!("WRITE {op:#04x} LBA {lba:#x} to a read-only export");
            let req = fx.ata(op, count, lba, &data(14, usize::from(count) * SECTOR));
            fx.ata_fails(&req, ABRT, &what)?;
            fx.check_image(&what)?;
        }
        fx.read_check(ATA_READ_EXT, 100, 100, 2, "READ EXT on a read-only export")?;
        let req = fx.ata(ATA_IDENTIFY, 1, 0, &[]);
        fx.ata_ok(&req, 512, "IDENTIFY on a read-only export")?;
        Ok(())
    });
}

/// 28-bit commands carry device bits (0xE0 from iPXE and Linux, 0xA0) in lba3: masked with
/// 0x0FFFFFFF, so lba3's low nibble is still LBA bits 24..28 and lba4/lba5 are ignored.
#[test]
fn lba28_device_bits_masked() {
    case("lba28_masked", Opts::default(), |fx| {
        fx.read_check(ATA_READ, 0xe000_0007, 7, 1, "READ LBA 7 with lba3 0xE0")?;
        fx.read_check(ATA_READ, 0xa000_0007, 7, 2, "READ LBA 7 with lba3 0xA0")?;
        fx.read_check(
            ATA_READ,
            0xf0_0000_0009,
            9,
            1,
            "READ LBA 9 with lba3 0x00 and lba4 0xF0",
        )?;
        fx.read_check(
            ATA_READ,
            0xffff_f000_000a,
            10,
            1,
            "READ LBA 10 with lba3 0xF0, lba4/5 0xFF",
        )?;
        // lba3 0xE1: LBA bit 24 set, far past the end.
        let req = fx.ata(ATA_READ, 1, 0xe100_0007, &[]);
        fx.ata_fails(&req, IDNF, "READ with lba3 0xE1 (LBA 0x1000007)")?;
        let payload = data(15, SECTOR);
        let req = fx.ata(ATA_WRITE, 1, 0xe000_000b, &payload);
        fx.ata_ok(&req, 0, "WRITE LBA 11 with lba3 0xE0")?;
        fx.expect_write(11, &payload);
        fx.check_image("after a 28-bit write with device bits")?;
        let req = fx.ata(ATA_WRITE, 1, 0xe100_000b, &payload);
        fx.ata_fails(&req, IDNF, "WRITE with lba3 0xE1")?;
        fx.check_image("after a 28-bit write past the end")
    });
}

// ---- No stale bytes in replies --------------------------------------------------------------

/// Short replies that follow big ones carry zeros, not the big one's bytes: every reply kind,
/// each right after a 17-sector READ of non-zero data (and requests padded with junk).
/// The startup advert is checked too.
#[test]
fn replies_carry_no_stale_bytes() {
    let opts = Opts {
        mtu: 9000,
        ..Opts::default()
    };
    case("no_stale_bytes", opts, |fx| {
        // The startup advert (tag 0) went to broadcast when the target started.
        if fx.kind == TargetKind::L2san {
            let advert = recv_first(&fx.sock, REPLY_TIMEOUT, |f| {
                (f.len() >= 32 && f[19] == CMD_CONFIG && f[20..24] == [0; 4]).then_some(Reply { f })
            })?
            .with_context(|| format!("no startup advert within {REPLY_TIMEOUT:?}"))?;
            ensure!(
                advert.f[0..6] == BROADCAST_MAC,
                "advert not to broadcast: {}",
                hex(&advert.f)
            );
            ensure!(
                advert.f[14] == 0x18,
                "advert byte 14 is not 0x18: {}",
                hex(&advert.f)
            );
            ensure!(
                advert.cfg_sector_count() == 17,
                "advert Sector Count at MTU 9000: {}",
                hex(&advert.f)
            );
            advert.zero_from(32 + advert.cfg_string().len(), "startup advert")?;
        }
        let junk = vec![0xa5u8; 40];
        let mut n = 0;
        let mut big_read = |fx: &mut Fx| -> Result<()> {
            n += 1;
            let lba = 1000 + n * 17;
            fx.read_check(ATA_READ_EXT, lba, lba, 17, "17-sector READ")
        };
        big_read(fx)?;
        let mut req = fx.ata(ATA_CHECK_POWER, 0, 0, &[]);
        req.trailer = junk.clone();
        fx.ata_ok(&req, 0, "CHECK POWER MODE after a big read")?;
        big_read(fx)?;
        let mut req = fx.ata(0x00, 1, 0, &[]);
        req.trailer = junk.clone();
        fx.ata_fails(&req, ABRT, "NOP (ABRT) after a big read")?;
        big_read(fx)?;
        let mut req = fx.ata(ATA_READ_EXT, 1, SECTORS, &[]);
        req.trailer = junk.clone();
        fx.ata_fails(&req, IDNF, "IDNF READ after a big read")?;
        big_read(fx)?;
        let mut req = fx.ata(ATA_WRITE_EXT, 2, 0, &data(16, 100));
        req.trailer = junk.clone();
        fx.ata_fails(&req, ABRT, "short WRITE after a big read")?;
        big_read(fx)?;
        let mut req = fx.ata(ATA_FLUSH, 0, 0, &[]);
        req.trailer = junk.clone();
        fx.ata_ok(&req, 0, "FLUSH CACHE after a big read")?;
        big_read(fx)?;
        let mut req = fx.req(5, vec![]);
        req.trailer = junk.clone();
        fx.aoe_error(
            &req,
            AOE_ERR_UNRECOGNIZED,
            HDR,
            "command 5 after a big read",
        )?;
        big_read(fx)?;
        let mut req = fx.ata(ATA_READ_EXT, 1, 0, &[]);
        req.ver = 2;
        req.trailer = junk.clone();
        fx.aoe_error(&req, AOE_ERR_VERSION, HDR, "Ver 2 after a big read")?;
        big_read(fx)?;
        let mut req = fx.config(0, &[], 0);
        req.trailer = junk.clone();
        let r = fx.exchange(&req, "Query Config after a big read")?;
        r.zero_from(32 + r.cfg_string().len(), "Query Config after a big read")?;
        big_read(fx)?;
        let mut req = fx.config(4, b"x", 900);
        req.trailer = junk.clone();
        fx.aoe_error(
            &req,
            AOE_ERR_BAD_ARG,
            32,
            "bad config length after a big read",
        )?;
        big_read(fx)?;
        let mut req = fx.req(CMD_MASK, vec![0, 0, 0, 0]);
        req.trailer = junk.clone();
        let r = fx.exchange(&req, "mask read after a big read")?;
        r.zero_from(HDR + 4, "mask read after a big read")?;
        big_read(fx)?;
        let mut req = fx.req(CMD_MASK, vec![0, 1, 0, 9]);
        req.trailer = junk.clone();
        fx.aoe_error(
            &req,
            AOE_ERR_BAD_ARG,
            HDR + 4,
            "bad mask edit after a big read",
        )?;
        big_read(fx)?;
        let mut req = fx.req(CMD_RESERVE, vec![0, 0]);
        req.trailer = junk.clone();
        let r = fx.exchange(&req, "reserve read after a big read")?;
        r.zero_from(HDR + 2, "reserve read after a big read")?;
        big_read(fx)?;
        let req = fx.req(CMD_RESERVE, vec![2, 40]);
        fx.aoe_error(
            &req,
            AOE_ERR_BAD_ARG,
            HDR + 2,
            "bad reserve after a big read",
        )?;
        Ok(())
    });
}

// ---- Robustness (§4.4) ----------------------------------------------------------------------

/// vblade exits on any socket error (§4.2). The target survives its link going down and up,
/// and an MTU change: it re-advertises with the new Sector Count (§2.4 item 4) and serves
/// frames of the new size.
#[test]
fn link_flap_and_mtu_change_survived() {
    case("link_flap", Opts::default(), |fx| {
        fx.ping("CHECK POWER MODE before the flap")?;
        fx.ns.run("ip", ["link", "set", "dev", "a", "down"])?;
        // Longer than l2san's 1 s link check, so that it notices.
        std::thread::sleep(Duration::from_millis(1200));
        fx.ns.run("ip", ["link", "set", "dev", "a", "up"])?;
        // Frames sent before the target has its socket back are lost: ping until it answers.
        retry_for(Duration::from_secs(10), || {
            let req = fx.ata(ATA_CHECK_POWER, 0, 0, &[]);
            let what = "CHECK POWER MODE after the flap";
            fx.exchange_within(&req, what, Duration::from_millis(200))
        })
        .context("not serving 10 s after the link came back")?;
        fx.ping("CHECK POWER MODE after the flap")?;
        fx.sock.drain();
        for dev in ["a", "b"] {
            fx.ns
                .run("ip", ["link", "set", "dev", dev, "mtu", "9000"])?;
        }
        fx.mtu = 9000;
        if fx.kind == TargetKind::L2san {
            let advert = recv_first(&fx.sock, Duration::from_secs(5), |f| {
                let is_advert =
                    f.len() >= 32 && f[19] == CMD_CONFIG && f[14] & FLAG_R != 0 && f[28] == 17;
                is_advert.then_some(Reply { f })
            })?
            .context("no config advert within 5 s of the MTU change to 9000")?;
            advert.zero_from(32, "advert after the MTU change")?;
        }
        fx.read_check(
            ATA_READ_EXT,
            300,
            300,
            17,
            "17-sector READ after the MTU change",
        )
    });
}

/// A frame whose Ethernet destination is another station's unicast MAC is not for us, even
/// when the interface sees it (veth, bridge port, promiscuous mode).
#[test]
fn foreign_unicast_destination_ignored() {
    case("foreign_dst", Opts::default(), |fx| {
        let other = [0x02, 0, 0, 0, 0, 0x77];
        let mut read = fx.ata(ATA_READ_EXT, 1, 0, &[]);
        read.dst = other;
        let mut write = fx.ata(ATA_WRITE_EXT, 1, 70, &data(17, SECTOR));
        write.dst = other;
        let mut config = fx.config(0, &[], 0);
        config.dst = other;
        fx.silent(&[read, write, config], "frames to another station's MAC")?;
        fx.check_image("after a write to another station's MAC")
    });
}

/// §1.9 "I/O error from backend" → ATA ERR with UNC, never an AoE error (torus sends
/// DevUnavailable, §4.2), and the target survives: the image file is truncated under it.
#[test]
fn image_truncated_under_target() {
    case("image_truncated", Opts::default(), |fx| {
        fx.read_check(ATA_READ_EXT, 6000, 6000, 2, "READ before the truncation")?;
        let half = SECTORS / 2;
        fs::OpenOptions::new()
            .write(true)
            .open(&fx.image)?
            .set_len(half * SECTOR as u64)?;
        fx.expected.truncate(half as usize * SECTOR);
        let req = fx.ata(ATA_READ_EXT, 2, 6000, &[]);
        fx.ata_fails(&req, 0x40, "READ past the new end of the file")?;
        let what = "WRITE past the new end of the file";
        let req = fx.ata(ATA_WRITE_EXT, 1, 6000, &data(18, SECTOR));
        let r = fx.exchange(&req, what)?;
        ensure!(
            r.flags() & FLAG_E == 0 && r.ata_status() & ERR != 0,
            "{what}: expected ATA status ERR: {}",
            hex(&r.f)
        );
        fx.check_image(what)?;
        Ok(())
    });
}
