//! `--state-file` and `--user` end to end, on a veth pair in a namespace (the setup of
//! `aoe_bad_input.rs`): l2san serves e7.3 on `a`, the test talks AoE through a raw socket on `b`.
//!
//! - `state_file_keeps_mask_reserve_and_config_across_restart`: a config string, a Mac Mask
//!   List entry and a reservation set over the wire reach the state file, survive a SIGTERM and
//!   a restart with the same command line, read back unchanged, and the restored mask list
//!   still hides the export from other source MACs.
//! - `user_drops_privileges_and_keeps_serving`: with `--user nobody` every thread of l2san runs
//!   as uid 65534 with CAP_NET_ADMIN and CAP_NET_RAW only and no_new_privs, still reads and
//!   writes, reopens its socket after a link flap, and exits 0 on SIGTERM.
//!
//! l2san only: vblade has neither option, so under `L2SAN_E2E_TARGET=vblade` they say so and do
//! not run.

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_rig::fixture::{VethOpts, VethPair};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run, Tap, Target};

const ETHERTYPE_AOE: u16 = 0x88a2;
/// Why these tests do not run against vblade.
const L2SAN_ONLY: &str = "vblade has no --state-file and no --user";
const SHELF: u16 = 7;
const SLOT: u8 = 3;
/// 1 MiB image.
const SECTORS: u64 = 2048;
const SECTOR: usize = 512;

const FLAG_R: u8 = 0x08;
const FLAG_E: u8 = 0x04;
/// Ethernet header plus AoE header.
const HDR: usize = 24;
/// ... plus the ATA argument.
const ATA_HDR: usize = 36;

const CMD_ATA: u8 = 0;
const CMD_CONFIG: u8 = 1;
const CMD_MASK: u8 = 2;
const CMD_RESERVE: u8 = 3;

/// Query Config CCmds.
const CCMD_READ: u8 = 0;
const CCMD_SET: u8 = 3;
/// Mac Mask List MCmds and DCmds.
const MCMD_READ: u8 = 0;
const MCMD_EDIT: u8 = 1;
const DCMD_ADD: u8 = 1;
/// Reserve/Release RCmds.
const RCMD_READ: u8 = 0;
const RCMD_SET: u8 = 1;

const ATA_READ_EXT: u8 = 0x24;
const ATA_WRITE_EXT: u8 = 0x34;
const ATA_FLUSH: u8 = 0xe7;
const ATA_CHECK_POWER: u8 = 0xe5;
const DRDY: u8 = 0x40;

const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// After the ping's reply, how long to keep listening for replies to the silent frames.
const SILENCE_GRACE: Duration = Duration::from_millis(150);

/// The config string the first test sets.
const CONFIG: &[u8] = b"fenced-cluster-7";
/// A station that is not on the mask list.
const STRANGER: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x31];

/// CAP_NET_ADMIN (12) | CAP_NET_RAW (13).
const CAP_EFF_NET: &str = "0000000000003000";
const NOBODY_UID: &str = "65534";

fn pattern(s: u64, i: usize) -> u8 {
    ((s as usize * 7 + i) % 251 + 1) as u8
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 0x80)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 64 {
        s += &format!(" ... ({} bytes)", bytes.len());
    }
    s
}

fn mac_str(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One request frame.
#[derive(Debug, Clone)]
struct Req {
    dst: [u8; 6],
    src: [u8; 6],
    command: u8,
    tag: u32,
    arg: Vec<u8>,
}

impl Req {
    fn frame(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(HDR + self.arg.len() + 60);
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&self.src);
        f.extend_from_slice(&ETHERTYPE_AOE.to_be_bytes());
        f.push(0x10);
        f.push(0);
        f.extend_from_slice(&SHELF.to_be_bytes());
        f.push(SLOT);
        f.push(self.command);
        f.extend_from_slice(&self.tag.to_be_bytes());
        f.extend_from_slice(&self.arg);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }
}

fn ata_arg(aflags: u8, count: u8, cmd: u8, lba: u64, payload: &[u8]) -> Vec<u8> {
    let mut a = vec![aflags, 0, count, cmd];
    a.extend_from_slice(&lba.to_le_bytes()[..6]);
    a.extend_from_slice(&[0, 0]);
    a.extend_from_slice(payload);
    a
}

/// A received AoE reply.
#[derive(Debug, Clone)]
struct Reply {
    f: Vec<u8>,
}

impl Reply {
    fn flags(&self) -> u8 {
        self.f[14] & 0x0f
    }
    fn error(&self) -> u8 {
        self.f[15]
    }
    fn tag(&self) -> u32 {
        u32::from_be_bytes([self.f[20], self.f[21], self.f[22], self.f[23]])
    }
    fn arg(&self) -> &[u8] {
        &self.f[HDR..]
    }
    fn cfg_string(&self) -> &[u8] {
        let len = usize::from(u16::from_be_bytes([self.f[30], self.f[31]]));
        &self.f[32..(32 + len).min(self.f.len())]
    }
    /// The MACs of a Mac Mask List reply (Dir Count directives of 8 bytes after 4).
    fn mask_macs(&self) -> Result<Vec<[u8; 6]>> {
        let a = self.arg();
        let n = usize::from(a[3]);
        ensure!(
            a.len() >= 4 + 8 * n,
            "mask reply with Dir Count {n} is too short: {}",
            hex(&self.f)
        );
        Ok((0..n)
            .map(|i| a[4 + 8 * i + 2..4 + 8 * i + 8].try_into().unwrap())
            .collect())
    }
    /// The MACs of a Reserve/Release reply (NMacs after RCmd).
    fn reserve_macs(&self) -> Result<Vec<[u8; 6]>> {
        let a = self.arg();
        let n = usize::from(a[1]);
        ensure!(
            a.len() >= 2 + 6 * n,
            "reserve reply with NMacs {n} is too short: {}",
            hex(&self.f)
        );
        Ok((0..n)
            .map(|i| a[2 + 6 * i..2 + 6 * i + 6].try_into().unwrap())
            .collect())
    }
}

/// l2san serving e7.3 on `a` with extra arguments, a raw socket on `b`.
/// Fields drop in order: the target and the socket before the namespace.
struct Fx {
    target: Option<Target>,
    sock: RawSocket,
    ns: Netns,
    tap: Tap,
    args: Vec<String>,
    image: PathBuf,
    us: [u8; 6],
    them: [u8; 6],
    next_tag: u32,
}

impl Fx {
    fn start(run: &Run, extra: &[String]) -> Result<Fx> {
        let image = run.path("disk.img");
        let mut content = vec![0u8; SECTORS as usize * SECTOR];
        for (s, sector) in content.chunks_mut(SECTOR).enumerate() {
            for (i, b) in sector.iter_mut().enumerate() {
                *b = pattern(s as u64, i);
            }
        }
        fs::write(&image, &content)?;

        let ns = Netns::new()?;
        let veth = VethPair::create(
            &ns,
            VethOpts {
                mtu: None,
                no_ipv6: true,
            },
        )?;
        let (them, us) = (veth.them, veth.us);
        let sock = veth.socket(&ns, ETHERTYPE_AOE)?;
        let tap = veth.tap(1500);
        let mut args = vec![
            "--aoe".to_string(),
            format!("{SHELF}.{SLOT}={}", image.display()),
            "--ctl-socket".to_string(),
            run.path("ctl.sock").display().to_string(),
        ];
        args.extend_from_slice(extra);
        let target = Target::l2san_args(
            &ns,
            &tap,
            &rig::l2san_bin()?,
            &args,
            &run.path("target.log"),
        )?;
        Ok(Fx {
            target: Some(target),
            sock,
            ns,
            tap,
            args,
            image,
            us,
            them,
            next_tag: 0x5a7e_0000,
        })
    }

    fn target(&mut self) -> Result<&mut Target> {
        self.target.as_mut().context("no target running")
    }

    /// SIGTERM (exit 0 required), then the same command line again, logging to `log`.
    fn restart(&mut self, log: &Path) -> Result<()> {
        let target = self.target.take().context("no target running")?;
        target.stop().context("stopping l2san before the restart")?;
        let target = Target::l2san_args(&self.ns, &self.tap, &rig::l2san_bin()?, &self.args, log)?;
        self.target = Some(target);
        self.sock.drain();
        Ok(())
    }

    fn req(&mut self, command: u8, arg: Vec<u8>) -> Req {
        self.next_tag += 1;
        Req {
            dst: self.them,
            src: self.us,
            command,
            tag: self.next_tag,
            arg,
        }
    }

    fn config(&mut self, ccmd: u8, string: &[u8]) -> Req {
        let mut a = vec![0, 0, 0, 0, 0, ccmd];
        a.extend_from_slice(&(string.len() as u16).to_be_bytes());
        a.extend_from_slice(string);
        self.req(CMD_CONFIG, a)
    }

    fn ata(&mut self, aflags: u8, cmd: u8, count: u8, lba: u64, payload: &[u8]) -> Req {
        self.req(CMD_ATA, ata_arg(aflags, count, cmd, lba, payload))
    }

    fn send(&self, req: &Req) -> Result<()> {
        let f = req.frame();
        self.sock
            .send(&f)
            .with_context(|| format!("cannot send {}", hex(&f)))
    }

    /// Sends `req` and returns the reply with its tag, checked for the header every reply
    /// needs (Ver 1, R, our e7.3, the command, from the target to the requester, no E).
    fn exchange_within(&mut self, req: &Req, what: &str, timeout: Duration) -> Result<Reply> {
        self.send(req)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = self.sock.recv(left)? else {
                bail!(
                    "{what}: no reply within {timeout:?} to {}",
                    hex(&req.frame())
                );
            };
            if f.len() < HDR {
                continue;
            }
            let r = Reply { f };
            if r.tag() != req.tag || r.f[14] & FLAG_R == 0 {
                continue;
            }
            let f = &r.f;
            let ctx = || format!("{what}: reply {}", hex(f));
            ensure!(f.len() >= 60, "{}: shorter than 60 bytes", ctx());
            ensure!(
                f[0..6] == req.src,
                "{}: sent to {}, not to the requester {}",
                ctx(),
                mac_str(&f[0..6]),
                mac_str(&req.src)
            );
            ensure!(
                f[6..12] == self.them,
                "{}: not from the target's MAC",
                ctx()
            );
            ensure!(f[14] >> 4 == 1, "{}: version nibble is not 1", ctx());
            ensure!(
                u16::from_be_bytes([f[16], f[17]]) == SHELF && f[18] == SLOT,
                "{}: Major/Minor are not e{SHELF}.{SLOT}",
                ctx()
            );
            ensure!(f[19] == req.command, "{}: command not echoed", ctx());
            ensure!(
                r.flags() & FLAG_E == 0,
                "{}: AoE error {}",
                ctx(),
                r.error()
            );
            return Ok(r);
        }
    }

    fn exchange(&mut self, req: &Req, what: &str) -> Result<Reply> {
        self.exchange_within(req, what, REPLY_TIMEOUT)
    }

    /// An ATA command that must succeed, with `len` bytes of data in the reply.
    fn ata_ok(&mut self, req: &Req, len: usize, what: &str) -> Result<Reply> {
        let r = self.exchange(req, what)?;
        ensure!(
            r.f[27] == DRDY && r.f[25] == 0,
            "{what}: ATA status {:#04x} error {:#04x}, expected success: {}",
            r.f[27],
            r.f[25],
            hex(&r.f)
        );
        ensure!(
            r.f.len() >= ATA_HDR + len,
            "{what}: reply carries {} bytes of data, expected {len}",
            r.f.len().saturating_sub(ATA_HDR)
        );
        Ok(r)
    }

    fn ping(&mut self, what: &str) -> Result<()> {
        let req = self.ata(0, ATA_CHECK_POWER, 0, 0, &[]);
        self.ata_ok(&req, 0, what).map(drop)
    }

    /// Pings until the target answers (after a restart or a link flap), up to 10 s.
    fn wait_serving(&mut self, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let req = self.ata(0, ATA_CHECK_POWER, 0, 0, &[]);
            match self.exchange_within(&req, what, Duration::from_millis(200)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("{what}: not serving within 10 s")))
                }
                Err(_) => {}
            }
        }
    }

    /// Sends every frame in `reqs`, which must go unanswered, then a ping from us; fails if a
    /// frame with one of their tags comes back before the ping's reply plus a grace period.
    fn silent(&mut self, reqs: &[Req], what: &str) -> Result<()> {
        for r in reqs {
            self.send(r)?;
        }
        let ping = self.ata(0, ATA_CHECK_POWER, 0, 0, &[]);
        self.send(&ping)?;
        let start = Instant::now();
        let mut pinged: Option<Instant> = None;
        loop {
            let until = match pinged {
                Some(t) => t + SILENCE_GRACE,
                None => start + REPLY_TIMEOUT,
            };
            let now = Instant::now();
            if now >= until {
                break;
            }
            let Some(f) = self.sock.recv(until - now)? else {
                break;
            };
            if f.len() < HDR {
                continue;
            }
            let r = Reply { f };
            if let Some(bad) = reqs.iter().find(|q| q.tag == r.tag()) {
                bail!(
                    "{what}: expected no reply to {}\n  but got {}",
                    hex(&bad.frame()),
                    hex(&r.f)
                );
            }
            if r.tag() == ping.tag && pinged.is_none() {
                pinged = Some(Instant::now());
            }
        }
        ensure!(
            pinged.is_some(),
            "{what}: no reply to the CHECK POWER MODE sent after the silent frames"
        );
        Ok(())
    }

    fn read_config(&mut self, what: &str) -> Result<Vec<u8>> {
        let req = self.config(CCMD_READ, &[]);
        Ok(self.exchange(&req, what)?.cfg_string().to_vec())
    }

    fn read_mask(&mut self, what: &str) -> Result<Vec<[u8; 6]>> {
        let req = self.req(CMD_MASK, vec![0, MCMD_READ, 0, 0]);
        self.exchange(&req, what)?.mask_macs()
    }

    fn read_reserve(&mut self, what: &str) -> Result<Vec<[u8; 6]>> {
        let req = self.req(CMD_RESERVE, vec![RCMD_READ, 0]);
        self.exchange(&req, what)?.reserve_macs()
    }

    /// Writes one sector at `lba`, flushes, reads it back through the target, and checks the
    /// image file holds it.
    fn write_read_check(&mut self, lba: u64, seed: u8, what: &str) -> Result<()> {
        let payload = data(seed, SECTOR);
        let req = self.ata(0x41, ATA_WRITE_EXT, 1, lba, &payload);
        self.ata_ok(&req, 0, &format!("{what}: WRITE"))?;
        let req = self.ata(0, ATA_FLUSH, 0, 0, &[]);
        self.ata_ok(&req, 0, &format!("{what}: FLUSH"))?;
        let req = self.ata(0x40, ATA_READ_EXT, 1, lba, &[]);
        let r = self.ata_ok(&req, SECTOR, &format!("{what}: READ"))?;
        ensure!(
            r.f[ATA_HDR..ATA_HDR + SECTOR] == payload[..],
            "{what}: READ of sector {lba} does not return what was written"
        );
        let image = fs::read(&self.image)?;
        let at = lba as usize * SECTOR;
        ensure!(
            image[at..at + SECTOR] == payload[..],
            "{what}: the image file does not hold the sector written at {lba}"
        );
        Ok(())
    }

    /// Reads sector `lba` through the target and compares it with the pristine pattern.
    fn read_pristine(&mut self, lba: u64, what: &str) -> Result<()> {
        let req = self.ata(0x40, ATA_READ_EXT, 1, lba, &[]);
        let r = self.ata_ok(&req, SECTOR, what)?;
        let expected: Vec<u8> = (0..SECTOR).map(|i| pattern(lba, i)).collect();
        ensure!(
            r.f[ATA_HDR..ATA_HDR + SECTOR] == expected[..],
            "{what}: sector {lba} is not the image's"
        );
        Ok(())
    }

    /// Still running, no panic in the log, exit 0 on SIGTERM.
    fn finish(mut self) -> Result<()> {
        let mut target = self.target.take().context("no target running")?;
        target.check_running()?;
        let log = target.log_text();
        ensure!(!log.contains("panicked"), "l2san panicked:\n{log}");
        target.stop()
    }
}

/// Polls `path` until it has every line in `lines` (2 s), else fails with its content.
fn wait_for_lines(path: &Path, lines: &[String]) -> Result<()> {
    let has_all = || {
        let text = fs::read_to_string(path).unwrap_or_default();
        lines.iter().all(|l| text.lines().any(|t| t.trim() == l))
    };
    if !rig::wait_until(Duration::from_secs(2), has_all) {
        bail!(
            "the state file {path:?} does not have {lines:?} 2 s after the changes; it holds:\n{}",
            fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"))
        );
    }
    Ok(())
}

/// The pid of the one process whose command line holds `needle` (l2san itself: `ip netns exec`
/// execs it, and the image path is unique to the run directory).
fn pid_with_arg(needle: &str) -> Result<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.iter().any(|a| *a == b"serve")
            && args
                .iter()
                .any(|a| String::from_utf8_lossy(a).contains(needle))
        {
            found.push(pid);
        }
    }
    match found[..] {
        [pid] => Ok(pid),
        [] => bail!("no process has {needle:?} on its command line"),
        _ => bail!("several processes have {needle:?} on their command line: {found:?}"),
    }
}

/// One field of a `/proc/.../status` file.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// The process and every one of its threads run as nobody with CAP_NET_ADMIN|CAP_NET_RAW
/// effective (and nothing else permitted) and no_new_privs.
fn check_dropped(pid: u32, what: &str) -> Result<()> {
    let mut files = vec![PathBuf::from(format!("/proc/{pid}/status"))];
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        files.push(task?.path().join("status"));
    }
    for file in files {
        let status =
            fs::read_to_string(&file).with_context(|| format!("{what}: cannot read {file:?}"))?;
        let field = |name: &str| -> Result<&str> {
            status_field(&status, name).with_context(|| format!("{what}: no {name} in {file:?}"))
        };
        let uids: Vec<&str> = field("Uid")?.split_whitespace().collect();
        ensure!(
            uids.len() == 4 && uids.iter().all(|u| *u == NOBODY_UID),
            "{what}: {file:?} Uid (real, effective, saved, fs) is {uids:?}, expected all \
             {NOBODY_UID} (nobody)"
        );
        ensure!(
            field("CapEff")? == CAP_EFF_NET,
            "{what}: {file:?} CapEff {}, expected {CAP_EFF_NET} (CAP_NET_ADMIN|CAP_NET_RAW)",
            field("CapEff")?
        );
        let prm = u64::from_str_radix(field("CapPrm")?, 16)?;
        ensure!(
            prm & !0x3000 == 0,
            "{what}: {file:?} CapPrm {prm:016x} permits more than CAP_NET_ADMIN|CAP_NET_RAW"
        );
        ensure!(
            field("NoNewPrivs")? == "1",
            "{what}: {file:?} NoNewPrivs {}, expected 1",
            field("NoNewPrivs")?
        );
    }
    Ok(())
}

#[test]
fn state_file_keeps_mask_reserve_and_config_across_restart() {
    rig::e2e_l2san("privilege_state_file", L2SAN_ONLY, |run| {
        let state = run.path("aoe.state");
        let extra = vec!["--state-file".to_string(), state.display().to_string()];
        let mut fx = Fx::start(run, &extra)?;
        fx.ping("CHECK POWER MODE at start")?;
        let us = fx.us;

        // Before any mask: a frame from the stranger's MAC is answered (to the stranger), so
        // that its silence later is the mask's doing.
        let mut req = fx.config(CCMD_READ, &[]);
        req.src = STRANGER;
        fx.exchange(&req, "Query Config from another MAC before the mask")?;

        let req = fx.config(CCMD_SET, CONFIG);
        let r = fx.exchange(&req, "Query Config set")?;
        ensure!(
            r.cfg_string() == CONFIG,
            "Query Config set replied with config string {:?}",
            String::from_utf8_lossy(r.cfg_string())
        );
        let mut arg = vec![0, MCMD_EDIT, 0, 1, 0, DCMD_ADD];
        arg.extend_from_slice(&us);
        let req = fx.req(CMD_MASK, arg);
        let r = fx.exchange(&req, "Mac Mask List add of our MAC")?;
        ensure!(
            r.arg()[2] == 0,
            "Mac Mask List add: MError {}: {}",
            r.arg()[2],
            hex(&r.f)
        );
        let mut arg = vec![RCMD_SET, 1];
        arg.extend_from_slice(&us);
        let req = fx.req(CMD_RESERVE, arg);
        fx.exchange(&req, "Reserve set to our MAC")?;

        let config_hex: String = CONFIG.iter().map(|b| format!("{b:02x}")).collect();
        wait_for_lines(
            &state,
            &[
                format!("e{SHELF}.{SLOT} config {config_hex}"),
                format!("e{SHELF}.{SLOT} mask {}", mac_str(&us)),
                format!("e{SHELF}.{SLOT} reserve {}", mac_str(&us)),
            ],
        )?;

        fx.restart(&run.path("target2.log"))?;
        fx.wait_serving("CHECK POWER MODE after the restart")?;
        let log = fx.target()?.log_text();
        ensure!(
            log.contains("restored AoE state"),
            "l2san's log after the restart does not say it restored the state:\n{log}"
        );

        let config = fx.read_config("Query Config read after the restart")?;
        ensure!(
            config == CONFIG,
            "config string after the restart is {:?}, expected {:?}",
            String::from_utf8_lossy(&config),
            String::from_utf8_lossy(CONFIG)
        );
        let mask = fx.read_mask("Mac Mask List read after the restart")?;
        ensure!(
            mask == [us],
            "Mac Mask List after the restart is {:?}, expected [{}]",
            mask.iter().map(|m| mac_str(m)).collect::<Vec<_>>(),
            mac_str(&us)
        );
        let reserve = fx.read_reserve("Reserve read after the restart")?;
        ensure!(
            reserve == [us],
            "reserve list after the restart is {:?}, expected [{}]",
            reserve.iter().map(|m| mac_str(m)).collect::<Vec<_>>(),
            mac_str(&us)
        );
        // We hold the reservation and are on the mask: reads and writes work.
        fx.read_pristine(9, "READ by the holder after the restart")?;
        fx.write_read_check(10, 0x21, "after the restart")?;

        // The stranger is masked out: nothing it sends is answered.
        let mut stranger = Vec::new();
        let mut r = fx.config(CCMD_READ, &[]);
        r.src = STRANGER;
        stranger.push(r);
        let mut r = fx.ata(0x40, ATA_READ_EXT, 1, 0, &[]);
        r.src = STRANGER;
        stranger.push(r);
        let mut r = fx.req(CMD_MASK, vec![0, MCMD_READ, 0, 0]);
        r.src = STRANGER;
        stranger.push(r);
        fx.silent(&stranger, "frames from a MAC not on the restored mask list")?;

        fx.finish()
    });
}

#[test]
fn user_drops_privileges_and_keeps_serving() {
    rig::e2e_l2san("privilege_user_nobody", L2SAN_ONLY, |run| {
        let extra = vec!["--user".to_string(), "nobody".to_string()];
        let mut fx = Fx::start(run, &extra)?;
        fx.wait_serving("CHECK POWER MODE at start")?;
        let pid = pid_with_arg(&fx.image.display().to_string())?;
        check_dropped(pid, "after start")?;

        fx.read_pristine(5, "READ as nobody")?;
        fx.write_read_check(6, 0x33, "as nobody")?;

        fx.ns.run("ip", ["link", "set", "dev", "a", "down"])?;
        // Longer than l2san's 1 s link check, so that it notices and reopens.
        std::thread::sleep(Duration::from_millis(1200));
        fx.ns.run("ip", ["link", "set", "dev", "a", "up"])?;
        fx.wait_serving("CHECK POWER MODE after the link flap")?;
        fx.read_pristine(7, "READ after the link flap")?;
        fx.write_read_check(8, 0x44, "after the link flap")?;
        ensure!(
            pid_with_arg(&fx.image.display().to_string())? == pid,
            "l2san's pid changed"
        );
        check_dropped(pid, "after the link flap")?;
        let log = fx.target()?.log_text();
        ensure!(
            log.contains("running as nobody"),
            "l2san's log does not say it dropped to nobody:\n{log}"
        );
        fx.finish()
    });
}
