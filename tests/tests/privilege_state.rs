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
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use l2san_rig::fixture::aoe::{self, ata_arg, Reply, Req, ATA_HDR, ETHERTYPE_AOE, FLAG_E};
use l2san_rig::fixture::{
    data, fmt_mac, hex, pattern, patterned_image, retry_for, stop_clean, VethOpts, VethPair,
    REPLY_TIMEOUT,
};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run, Tap, Target};

/// Why these tests do not run against vblade.
const L2SAN_ONLY: &str = "vblade has no --state-file and no --user";
const SHELF: u16 = 7;
const SLOT: u8 = 3;
/// 1 MiB image.
const SECTORS: u64 = 2048;
const SECTOR: usize = 512;

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

/// The config string the first test sets.
const CONFIG: &[u8] = b"fenced-cluster-7";
/// A station that is not on the mask list.
const STRANGER: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x31];

/// CAP_NET_ADMIN (12) | CAP_NET_RAW (13).
const CAP_EFF_NET: &str = "0000000000003000";
const NOBODY_UID: &str = "65534";

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
        patterned_image(&image, SECTORS, SECTOR)?;

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
        Req::new(self.them, self.us, SHELF, SLOT, command, self.next_tag, arg)
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

    /// Sends `req` and returns the reply with its tag, checked for the header every reply
    /// needs (Ver 1, R, our e7.3, the command, from the target to the requester, no E).
    fn exchange_within(&mut self, req: &Req, what: &str, timeout: Duration) -> Result<Reply> {
        let r = aoe::exchange(&self.sock, req, timeout, what)?;
        aoe::check_header(req, &r, (req.src, self.them), (SHELF, SLOT), what)?;
        ensure!(
            r.flags() & FLAG_E == 0,
            "{what}: AoE error {}: {}",
            r.error(),
            hex(&r.f)
        );
        Ok(r)
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
        retry_for(Duration::from_secs(10), || {
            let req = self.ata(0, ATA_CHECK_POWER, 0, 0, &[]);
            self.exchange_within(&req, what, Duration::from_millis(200))
        })
        .with_context(|| format!("{what}: not serving within 10 s"))?;
        Ok(())
    }

    /// Sends every frame in `reqs`, which must go unanswered, then a ping from us; fails if a
    /// frame with one of their tags comes back before the ping's reply plus a grace period.
    fn silent(&mut self, reqs: &[Req], what: &str) -> Result<()> {
        let ping = self.ata(0, ATA_CHECK_POWER, 0, 0, &[]);
        aoe::silent(&self.sock, reqs, &ping, what)
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
        stop_clean(self.target.take().context("no target running")?)
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
                format!("e{SHELF}.{SLOT} mask {}", fmt_mac(&us)),
                format!("e{SHELF}.{SLOT} reserve {}", fmt_mac(&us)),
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
            mask.iter().map(fmt_mac).collect::<Vec<_>>(),
            fmt_mac(&us)
        );
        let reserve = fx.read_reserve("Reserve read after the restart")?;
        ensure!(
            reserve == [us],
            "reserve list after the restart is {:?}, expected [{}]",
            reserve.iter().map(fmt_mac).collect::<Vec<_>>(),
            fmt_mac(&us)
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
