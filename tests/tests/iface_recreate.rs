//! The served interface deleted and created again under a running l2san.
//!
//! A namespace holds a veth pair `a`–`b`; l2san serves e6.1 over AoE and LUN 0 over FCoE (the
//! same image) on `a` with two workers (a fanout group of two sockets), and the test talks to it
//! through raw sockets on `b` ([`RawSocket`]), with hand-made frames: an AoE Query Config, an
//! AoE READ and WRITE (checked against the image), and an iPXE-style point-to-point FCoE login
//! (FLOGI, PLOGI, PRLI) followed by a SCSI READ(10) whose data is checked against the image.
//!
//! Then `a` is deleted (`ip link del`, which takes `b` with it), the test waits, and makes the
//! pair again with the same names and `a`'s MAC (a new ifindex each time): once after 3 s away,
//! once at once. After each, l2san must still run, must advertise e6.1 again by itself (its
//! leader re-advertises whenever it opens a socket), must answer all of the above on the new
//! interface, and must hold exactly its two packet sockets, both bound to the new `a` (no socket
//! of the old interface left behind). The first loss must be logged; warnings are rate-limited
//! (at most one per worker per 10 s, so the second loss, seconds later, is only counted), and
//! the test checks that bound. At the end l2san exits 0 on SIGTERM and the image holds exactly
//! what the test wrote.
//!
//! What l2san does (common/src/worker.rs): the deletion wakes every worker with ENETDOWN on its
//! socket; each drops the socket and tries to open one again every second, looking the
//! interface up anew by name, until the new `a` is there and up.
//!
//! The interface comes back with the MAC it had, as a VLAN or bond interface re-created on the
//! same NIC would.
//!
//! `interface_recreated_with_another_mac`: `a` comes back with another MAC, then with its first
//! one again. The worker reads the MAC when it reopens and tells the handlers: AoE answers and
//! advertises from the new MAC (checked as above, with the MAC each time), while FCoE keeps the
//! MAC it started with (its ENode and point-to-point address; it still serves there, the
//! interface being promiscuous), so l2san logs one error that names the fix (restart, or
//! `ip link set dev a address <old>`); the way back to the first MAC is a warning.

#![forbid(unsafe_code)]

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Body, Request};
use l2san_common::MacAddr;
use l2san_fcoe::initiator::{
    frame, scsi, Command, DataDirection, ElsRequest, ElsVerdict, Exchange, ExchangeStep, Initiator,
    Outcome, Port,
};
use l2san_fcoe::wire::{FcId, Wwn};
use l2san_rig::fixture::{fmt_mac, ifindex_of, mac_of};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, wait_until, Netns, Run};
use l2san_rig::workload::{self, L2sanProcess};

const ETH_AOE: u16 = 0x88a2;
const ETH_FCOE: u16 = 0x8906;
const SHELF: u16 = 6;
const SLOT: u8 = 1;
/// `a`'s MAC, kept across its re-creations.
const A_MAC: [u8; 6] = [0x02, 0x4c, 0x32, 0x00, 0x66, 0x01];
/// Another MAC for `a` (`interface_recreated_with_another_mac`).
const B_MAC: [u8; 6] = [0x02, 0x4c, 0x32, 0x00, 0x66, 0x02];
/// 4 MiB image.
const SECTORS: usize = 8192;
const SECTOR: usize = 512;
/// l2san's workers: two, so that the fanout group is rebuilt too.
const WORKERS: usize = 2;
/// How long `a` stays away in the first round.
const ABSENT: Duration = Duration::from_secs(3);
/// How long l2san may take to serve again once `a` is back (it retries every second).
const RECOVER: Duration = Duration::from_secs(15);
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Why these tests do not run against vblade.
const L2SAN_ONLY: &str = "vblade exits when its interface goes away, and has no FCoE";
/// Our WWPN (higher than l2san's: we are 01.01.02).
const OUR_WWPN: u64 = 0x2000_5254_0012_3456;
const OUR_ID: u32 = 0x01_0102;
const TARGET_ID: u32 = 0x01_0101;

/// Byte `i` of sector `s` of the image: never zero, different in every sector.
fn pattern(s: usize, i: usize) -> u8 {
    ((s * 7 + i) % 251 + 1) as u8
}

/// Makes the pair `a`–`b` with `a` at `mac`, IPv6 off, `b` up and `a` still down (so that
/// sockets on `b` can be opened before l2san can send on `a`). Returns `a`'s ifindex.
fn make_pair(ns: &Netns, mac: [u8; 6]) -> Result<u32> {
    ns.run(
        "ip",
        [
            "link", "add", "name", "a", "type", "veth", "peer", "name", "b",
        ],
    )
    .context("cannot create a veth pair (veth module?)")?;
    ns.run("ip", ["link", "set", "dev", "a", "address", &fmt_mac(&mac)])?;
    for dev in ["a", "b"] {
        let _ = ns.run(
            "sh",
            [
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ],
        );
    }
    ns.run("ip", ["link", "set", "dev", "b", "up"])?;
    ifindex_of(ns, "a")
}

fn set_a_up(ns: &Netns) -> Result<()> {
    ns.run("ip", ["link", "set", "dev", "a", "up"])?;
    Ok(())
}

/// The packet sockets l2san holds (its fds that are in `/proc/<pid>/net/packet`), by the
/// ifindex each is bound to.
fn l2san_packet_sockets(pid: u32) -> Result<Vec<i64>> {
    let table = fs::read_to_string(format!("/proc/{pid}/net/packet"))?;
    let mut inodes = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = fs::read_link(entry?.path()).unwrap_or_default();
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    // sk RefCnt Type Proto Iface R Rmem User Inode
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let inode = w.get(8)?;
            inodes
                .iter()
                .any(|i| i == inode)
                .then(|| w.get(4)?.parse().ok())?
        })
        .collect())
}

/// Raw sockets on `b` and the state of our side of the conversation.
struct Client {
    aoe: RawSocket,
    fcoe: RawSocket,
    us: [u8; 6],
    /// Where l2san's AoE answers from: `a`'s MAC.
    aoe_mac: [u8; 6],
    tag: u32,
    ox: u16,
}

/// Our point-to-point N_Port (01.01.02, receive size 1452) and its login to l2san's
/// (01.01.01 at `a`'s first MAC), iPXE style: plain FLOGI, PLOGI, PRLI.
fn fcoe_initiator(us: [u8; 6]) -> Initiator {
    let local = Port::p2p(
        MacAddr(us),
        FcId::new(OUR_ID),
        Wwn(OUR_WWPN),
        Wwn(OUR_WWPN ^ 0x3000 << 48),
    );
    let remote = Port::p2p(MacAddr(A_MAC), FcId::new(TARGET_ID), Wwn(0), Wwn(0));
    Initiator::p2p(local, remote, 1452)
}

impl Client {
    fn open(ns: &Netns) -> Result<Client> {
        let us = mac_of(ns, "b")?;
        Ok(Client {
            aoe: RawSocket::open_in_netns(ns.name(), "b", ETH_AOE)
                .context("cannot open a raw AoE socket on b")?,
            fcoe: RawSocket::open_in_netns(ns.name(), "b", ETH_FCOE)
                .context("cannot open a raw FCoE socket on b")?,
            us,
            aoe_mac: A_MAC,
            tag: 0x6000_0000,
            ox: 0x0600,
        })
    }

    /// An AoE request to e6.1 at `dst` with the next tag, `data` after the argument.
    fn aoe_request(&mut self, dst: [u8; 6], body: Body, data: &[u8]) -> Vec<u8> {
        self.tag += 1;
        Request {
            dst: MacAddr(dst),
            src: MacAddr(self.us),
            major: SHELF,
            minor: SLOT,
            tag: self.tag,
            body,
        }
        .to_frame(data)
    }

    /// The reply to the AoE request with our latest tag (others are skipped), within `timeout`.
    fn aoe_reply(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = self.aoe.recv(left)? else {
                return Ok(None);
            };
            if f.len() >= 24 && f[14] & 0x08 != 0 && f[20..24] == self.tag.to_be_bytes() {
                ensure!(
                    f[0..6] == self.us && f[6..12] == self.aoe_mac,
                    "AoE reply from {:02x?} to {:02x?}, expected from {:02x?} to us",
                    &f[6..12],
                    &f[0..6],
                    self.aoe_mac
                );
                ensure!(
                    f[16..18] == SHELF.to_be_bytes() && f[18] == SLOT && f[15] == 0,
                    "AoE reply for e{}.{} with error {}",
                    u16::from_be_bytes([f[16], f[17]]),
                    f[18],
                    f[15]
                );
                return Ok(Some(f));
            }
        }
    }

    /// An unsolicited Query Config response (an advert) for e6.1 from `a`, within `timeout`.
    fn advert(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = self.aoe.recv(left)? else {
                return Ok(false);
            };
            if f.len() >= 24
                && f[6..12] == self.aoe_mac
                && f[14] & 0x08 != 0
                && f[19] == 1
                && f[16..18] == SHELF.to_be_bytes()
                && f[18] == SLOT
            {
                return Ok(true);
            }
        }
    }

    /// Query Config (broadcast) until e6.1 answers or `timeout` passes; the time it took.
    fn query_until_answered(&mut self, timeout: Duration) -> Result<Option<Duration>> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let f = self.aoe_request([0xff; 6], Body::QueryConfig, &[]);
            self.aoe.send(&f)?;
            if let Some(r) = self.aoe_reply(Duration::from_millis(250))? {
                ensure!(r[19] == 1, "Query Config answered with command {}", r[19]);
                return Ok(Some(start.elapsed()));
            }
        }
        Ok(None)
    }

    /// AoE READ SECTORS EXT of two sectors at `lba`.
    fn aoe_read(&mut self, lba: u64) -> Result<Vec<u8>> {
        let read = AtaRequest::Read {
            lba,
            sector_count: 2,
            lba48: true,
        };
        let f = self.aoe_request(self.aoe_mac, Body::Ata(read), &[]);
        self.aoe.send(&f)?;
        let r = self
            .aoe_reply(REPLY_TIMEOUT)?
            .with_context(|| format!("no answer to an AoE READ at LBA {lba}"))?;
        ensure!(
            r.len() >= 36 + 2 * SECTOR && r[27] & 0x01 == 0,
            "AoE READ at LBA {lba}: status {:#04x}, {} bytes",
            r.get(27).copied().unwrap_or(0),
            r.len()
        );
        Ok(r[36..36 + 2 * SECTOR].to_vec())
    }

    /// AoE WRITE SECTORS EXT of `data` (two sectors) at `lba`.
    fn aoe_write(&mut self, lba: u64, data: &[u8]) -> Result<()> {
        let write = AtaRequest::Write {
            lba,
            sector_count: 2,
            lba48: true,
        };
        let f = self.aoe_request(self.aoe_mac, Body::Ata(write), data);
        self.aoe.send(&f)?;
        let r = self
            .aoe_reply(REPLY_TIMEOUT)?
            .with_context(|| format!("no answer to an AoE WRITE at LBA {lba}"))?;
        ensure!(
            r.len() >= 36 && r[27] & 0x01 == 0,
            "AoE WRITE at LBA {lba}: status {:#04x}",
            r.get(27).copied().unwrap_or(0)
        );
        Ok(())
    }

    /// The next FCoE frame to us before `deadline`: from l2san's FCoE MAC, with a good CRC.
    fn fc_recv(&self, deadline: Instant, what: &str) -> Result<Option<Vec<u8>>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = self.fcoe.recv(left)? else {
                return Ok(None);
            };
            if f.len() < 14 + 14 + 24 + 8 || f[0..6] != self.us {
                continue;
            }
            ensure!(
                f[6..12] == A_MAC,
                "{what}: FCoE frame from {:02x?}",
                &f[6..12]
            );
            ensure!(
                frame::receive(&f, true).is_some(),
                "{what}: bad CRC in l2san's frame"
            );
            return Ok(Some(f));
        }
    }

    /// An ELS request; its reply must be LS_ACC.
    fn els(&mut self, login: &mut Initiator, kind: ElsRequest, what: &str) -> Result<()> {
        self.ox += 1;
        let ox = self.ox;
        self.fcoe.send(&login.request(kind, ox))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let Some(f) = self.fc_recv(deadline, what)? else {
                bail!("{what}: no complete answer within {REPLY_TIMEOUT:?}");
            };
            if let Some(v) = login.on_els_reply(kind, ox, &f) {
                ensure!(
                    v == ElsVerdict::Accepted,
                    "{what}: expected an LS_ACC, got {v:?}"
                );
                return Ok(());
            }
        }
    }

    /// A SCSI command to LUN 0 reading up to `fcp_dl` bytes; returns how it ended.
    fn scsi(
        &mut self,
        login: &Initiator,
        cdb: [u8; 16],
        fcp_dl: u32,
        what: &str,
    ) -> Result<Outcome> {
        self.ox += 1;
        let ox = self.ox;
        let cmd = Command::new(scsi::lun(0), cdb, DataDirection::Read, fcp_dl);
        self.fcoe.send(&login.command(ox, &cmd))?;
        let mut exchange = Exchange::new(ox, fcp_dl);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let Some(f) = self.fc_recv(deadline, what)? else {
                bail!("{what}: no FCP_RSP within {REPLY_TIMEOUT:?}");
            };
            let Some((got_ox, rx_id, reply)) = login.fcp_reply(&f, true) else {
                continue;
            };
            if got_ox != ox {
                continue;
            }
            match exchange.on_reply(rx_id, &reply) {
                ExchangeStep::Pending => {}
                ExchangeStep::SendData { .. } => bail!("{what}: XFER_RDY for a read"),
                ExchangeStep::Done(o) => return Ok(o),
            }
        }
    }

    /// Point-to-point login (FLOGI, PLOGI, PRLI), TEST UNIT READY until GOOD (the first one
    /// reports the power-on unit attention), then READ(10) of 8 blocks at `lba`.
    fn fcoe_read(&mut self, lba: u32) -> Result<Vec<u8>> {
        let mut login = fcoe_initiator(self.us);
        self.els(&mut login, ElsRequest::Flogi, "FLOGI")?;
        self.els(&mut login, ElsRequest::Plogi, "PLOGI")?;
        self.els(&mut login, ElsRequest::Prli, "PRLI")?;
        let mut ready = false;
        for _ in 0..3 {
            let o = self.scsi(&login, scsi::test_unit_ready(), 0, "TEST UNIT READY")?;
            if o.good() {
                ready = true;
                break;
            }
        }
        ensure!(ready, "TEST UNIT READY never GOOD");
        let cdb = scsi::read_write(false, u64::from(lba), 8, false);
        let o = self.scsi(&login, cdb, 8 * SECTOR as u32, "READ(10)")?;
        ensure!(
            o.good(),
            "READ(10) at LBA {lba}: SCSI status {:#04x}",
            o.status
        );
        Ok(o.data)
    }
}

/// The image as it must be, and the checks of real requests against it.
struct Expected {
    image: Vec<u8>,
    written: usize,
}

impl Expected {
    fn sectors(&self, lba: usize, n: usize) -> &[u8] {
        &self.image[lba * SECTOR..(lba + n) * SECTOR]
    }

    /// AoE READ, WRITE and read-back, and an FCoE login and READ: l2san serves on `a`.
    fn check_serving(&mut self, c: &mut Client, round: usize, what: &str) -> Result<()> {
        let lba = 100 + 10 * round;
        let got = c.aoe_read(lba as u64)?;
        ensure!(
            got == self.sectors(lba, 2),
            "{what}: AoE READ at LBA {lba} returned other data"
        );
        let data: Vec<u8> = (0..2 * SECTOR)
            .map(|i| (i as u8) ^ (round as u8 + 0x40))
            .collect();
        let wlba = 2000 + 10 * round;
        c.aoe_write(wlba as u64, &data)?;
        self.image[wlba * SECTOR..(wlba + 2) * SECTOR].copy_from_slice(&data);
        self.written += 2;
        ensure!(
            c.aoe_read(wlba as u64)? == data,
            "{what}: AoE read-back at LBA {wlba} differs from what was written"
        );
        let flba = 3000 + 100 * round;
        let got = c.fcoe_read(flba as u32)?;
        ensure!(
            got == self.sectors(flba, 8),
            "{what}: FCoE READ(10) at LBA {flba} returned {} bytes of other data",
            got.len()
        );
        Ok(())
    }
}

/// The image, every sector of it [`pattern`]ed, and what it must hold.
fn write_image(run: &Run) -> Result<(std::path::PathBuf, Expected)> {
    let image_path = run.path("disk.img");
    let mut image = vec![0u8; SECTORS * SECTOR];
    for (s, sector) in image.chunks_mut(SECTOR).enumerate() {
        for (i, b) in sector.iter_mut().enumerate() {
            *b = pattern(s, i);
        }
    }
    fs::write(&image_path, &image)?;
    Ok((image_path, Expected { image, written: 0 }))
}

/// l2san serving e6.1 and LUN 0 of `image` on `a` with [`WORKERS`] workers.
fn start_l2san(
    ns: &Netns,
    run: &Run,
    image: &std::path::Path,
    ctl: &std::path::Path,
) -> Result<L2sanProcess> {
    L2sanProcess::start(
        ns,
        "a",
        &[
            "--aoe".into(),
            format!("{SHELF}.{SLOT}={}", image.display()),
            "--fcoe".into(),
            format!("0={}", image.display()),
            "--workers".into(),
            WORKERS.to_string(),
            "--ctl-socket".into(),
            ctl.display().to_string(),
        ],
        &run.path("l2san.log"),
    )
}

/// Both tests' start: the pair with `a` at [`A_MAC`], the client on `b`, then `a` up and
/// l2san serving on it; the client has seen the advert and read what `expected` holds. Returns
/// `a`'s ifindex.
fn start_serving(
    ns: &Netns,
    run: &Run,
    image: &std::path::Path,
    ctl: &std::path::Path,
    expected: &mut Expected,
) -> Result<(u32, Client, L2sanProcess)> {
    let index = make_pair(ns, A_MAC)?;
    let mut client = Client::open(ns)?;
    set_a_up(ns)?;
    let l2san = start_l2san(ns, run, image, ctl)?;
    ensure!(
        client.advert(Duration::from_secs(5))?,
        "no advert of e{SHELF}.{SLOT} at start"
    );
    expected.check_serving(&mut client, 0, "at start")?;
    Ok((index, client, l2san))
}

fn iface_recreate(run: &Run) -> Result<()> {
    let (image_path, mut expected) = write_image(run)?;
    let ns = Netns::new()?;
    let ctl = run.path("ctl.sock");
    let (mut index, mut client, mut l2san) =
        start_serving(&ns, run, &image_path, &ctl, &mut expected)?;
    let started = Instant::now();

    for (round, absent) in [(1, ABSENT), (2, Duration::ZERO)] {
        let what = format!("round {round} ({:.0} s away)", absent.as_secs_f64());
        let warns_before = workload::warn_lines(&l2san.log_text()).len();
        drop(client);
        ns.run("ip", ["link", "del", "dev", "a"])?;
        let deleted = Instant::now();
        if !absent.is_zero() {
            // l2san notices at once (ENETDOWN on its sockets) and says so.
            let noticed = wait_until(ABSENT, || {
                workload::warn_lines(&l2san.log_text()).len() > warns_before
            });
            ensure!(noticed, "{what}: l2san logged nothing when `a` was deleted");
            // ... and keeps running while `a` is away.
            let died = wait_until(absent.saturating_sub(deleted.elapsed()), || {
                l2san.check_running().is_err()
            });
            ensure!(!died, "{what}: l2san exited while `a` was away");
            let sockets = l2san_packet_sockets(l2san.pid())?;
            rig::report(format_args!(
                "{}: {what}: while `a` is away l2san holds packet sockets bound to {sockets:?}",
                run.name()
            ));
        }
        let old_index = index;
        index = make_pair(&ns, A_MAC)?;
        ensure!(
            index != old_index,
            "{what}: `a` came back with the same ifindex {index}"
        );
        client = Client::open(&ns)?;
        set_a_up(&ns)?;
        let back = Instant::now();
        let advert = client.advert(RECOVER)?;
        let advert_after = back.elapsed();
        let answered = client.query_until_answered(RECOVER)?;
        l2san
            .check_running()
            .with_context(|| format!("{what}: l2san exited"))?;
        ensure!(
            advert,
            "{what}: no advert of e{SHELF}.{SLOT} within {RECOVER:?} of `a` coming back"
        );
        let Some(answered) = answered else {
            bail!("{what}: no answer to Query Config within {RECOVER:?} of `a` coming back");
        };
        expected.check_serving(&mut client, round, &what)?;
        // Every worker reopens on its own, once a second: wait for all of them.
        let mut sockets = Vec::new();
        wait_until(RECOVER.saturating_sub(back.elapsed()), || {
            sockets = l2san_packet_sockets(l2san.pid()).unwrap_or_default();
            sockets.len() == WORKERS && sockets.iter().all(|&i| i == i64::from(index))
        });
        let all_back = back.elapsed();
        ensure!(
            sockets.len() == WORKERS && sockets.iter().all(|&i| i == i64::from(index)),
            "{what}: l2san's packet sockets are bound to {sockets:?}; expected {WORKERS} on the \
             new `a` ({index})"
        );
        rig::report(format_args!(
            "{}: {what}: `a` back as ifindex {index} (was {old_index}); l2san advertised e{SHELF}.{SLOT} \
             {:.2} s later and answered Query Config after {:.2} s more; AoE read, write and \
             read-back and an FCoE login and READ(10) checked; all {WORKERS} packet sockets on \
             the new `a` {:.2} s after it came back",
            run.name(),
            advert_after.as_secs_f64(),
            answered.as_secs_f64(),
            all_back.as_secs_f64()
        ));
    }

    let elapsed = started.elapsed();
    let log = l2san.log_text();
    let warns = workload::warn_lines(&log);
    let io_errors = l2san
        .ctl_metrics(&ctl)?
        .get("l2san_worker_io_errors_total")
        .copied()
        .unwrap_or(0.0);
    drop(client);
    l2san.stop()?;
    let after = fs::read(&image_path)?;
    ensure!(
        after == expected.image,
        "the image does not hold exactly what was written ({} sectors)",
        expected.written
    );
    // At most one warning per worker per 10 s, plus one each for the start of a window.
    let bound = WORKERS * (elapsed.as_secs() as usize / 10 + 2);
    rig::report(format_args!(
        "{}: l2san kept running through both rounds and exited 0; {} warnings in {:.1} s (bound \
         {bound}), {io_errors:.0} socket errors counted; the image holds exactly the {} sectors \
         written{}",
        run.name(),
        warns.len(),
        elapsed.as_secs_f64(),
        expected.written,
        warns
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    ));
    ensure!(
        warns.len() <= bound,
        "{} warnings in {:.1} s: not rate-limited",
        warns.len(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

#[test]
fn interface_deleted_and_recreated_while_serving() {
    rig::e2e_l2san(
        "interface_deleted_and_recreated_while_serving",
        L2SAN_ONLY,
        iface_recreate,
    );
}

/// `a` comes back with another MAC, then with its first one: AoE follows both times (advert,
/// Query Config, READ, WRITE and read-back at the MAC `a` has), FCoE keeps the first MAC and
/// serves there (promiscuous), and l2san logs one error naming the fix, then one warning.
fn iface_new_mac(run: &Run) -> Result<()> {
    let (image_path, mut expected) = write_image(run)?;
    let ns = Netns::new()?;
    let (_, mut client, mut l2san) =
        start_serving(&ns, run, &image_path, &run.path("ctl.sock"), &mut expected)?;
    let changed = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("came back with another MAC"))
            .map(str::to_string)
            .collect()
    };

    for (round, mac, was) in [(1, B_MAC, A_MAC), (2, A_MAC, B_MAC)] {
        let what = format!("round {round} (`a` back as {})", fmt_mac(&mac));
        drop(client);
        ns.run("ip", ["link", "del", "dev", "a"])?;
        make_pair(&ns, mac)?;
        client = Client::open(&ns)?;
        client.aoe_mac = mac;
        set_a_up(&ns)?;
        let back = Instant::now();
        let advert = client.advert(RECOVER)?;
        let advert_after = back.elapsed();
        l2san
            .check_running()
            .with_context(|| format!("{what}: l2san exited"))?;
        ensure!(
            advert,
            "{what}: no advert of e{SHELF}.{SLOT} from {} within {RECOVER:?}",
            fmt_mac(&mac)
        );
        client
            .query_until_answered(RECOVER)?
            .with_context(|| format!("{what}: no answer to Query Config from the new MAC"))?;
        expected.check_serving(&mut client, round, &what)?;
        let lines = changed(&l2san.log_text());
        ensure!(
            lines.len() == round,
            "{what}: {} log lines about the MAC change, expected {round} (once per change, \
             by the leader): {lines:#?}",
            lines.len()
        );
        let line = &lines[round - 1];
        let (mac, was) = (fmt_mac(&mac), fmt_mac(&was));
        if round == 1 {
            // FCoE does not follow: an error with both fixes.
            ensure!(
                line.contains("ERROR")
                    && line.contains(&format!("({mac}, was {was})"))
                    && line.contains("FCoE keeps")
                    && line.contains("Restart l2san")
                    && line.contains(&format!("`ip link set dev a address {was}`")),
                "{what}: the log line does not name the fix: {line}"
            );
        } else {
            // Back to the MAC FCoE has: everyone follows, a warning.
            ensure!(
                line.contains("WARN")
                    && line.contains(&format!("({mac}, was {was}); answering from {mac}")),
                "{what}: unexpected log line: {line}"
            );
        }
        rig::report(format_args!(
            "{}: {what}: l2san advertised e{SHELF}.{SLOT} from {mac} {:.2} s after `a` came \
             back; AoE READ, WRITE and read-back at {mac} and an FCoE login and READ(10) at \
             {} checked; logged: {line}",
            run.name(),
            advert_after.as_secs_f64(),
            fmt_mac(&A_MAC)
        ));
    }
    drop(client);
    l2san.stop()?;
    ensure!(
        fs::read(&image_path)? == expected.image,
        "the image does not hold exactly what was written ({} sectors)",
        expected.written
    );
    Ok(())
}

#[test]
fn interface_recreated_with_another_mac() {
    rig::e2e_l2san(
        "interface_recreated_with_another_mac",
        L2SAN_ONLY,
        iface_new_mac,
    );
}
