//! Live reload, on the running binary: l2san serves `--config` on a veth end inside a
//! namespace; the test edits the file and reloads, with `l2san ctl reload` and with SIGHUP,
//! and checks from a raw socket on the other end that
//!
//! - a grown image is served at its new size (IDENTIFY), and a write past the old end works;
//! - an added export answers and is advertised (an unsolicited Query Config response), one
//!   allowed only to another host stays silent, even in the advert;
//! - a removed export stops answering, the others go on;
//! - a broken file and a change only a restart can apply (`workers`) are refused whole, with
//!   the reason, and the running configuration stays;
//! - l2san exits 0 at the end.
//!
//! And under load: while a Linux guest runs the verified AoE write workload of
//! [`l2san_rig::workload`] on e0.0, the test reloads again and again (an export added, its
//! allow-list changed, e0.0's own image grown and its buffer count changed, the added export
//! removed); the workload must end with no I/O error and a verified read-back, and the image
//! must hold exactly what the guest wrote.
//!
//! l2san only: under `L2SAN_E2E_TARGET=vblade` they say so and do not run.

#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Body, Request, Response, ResponseBody};
use l2san_common::MacAddr;
use l2san_rig::bootdisk;
use l2san_rig::fixture::{ctl, fmt_mac, serve_config, VethOpts, VethPair};
use l2san_rig::linux::Kernel;
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run};
use l2san_rig::workload::{self, WorkloadGuest, WorkloadOpts};

const ETHERTYPE_AOE: u16 = 0x88a2;
/// Why these tests do not run against vblade.
const L2SAN_ONLY: &str = "configuration files and live reload are l2san's";
const SECTOR: usize = 512;

struct Peer {
    sock: RawSocket,
    us: [u8; 6],
    them: [u8; 6],
    tag: u32,
}

/// READ SECTORS EXT.
fn read(lba: u64, sector_count: u8) -> AtaRequest {
    AtaRequest::Read {
        lba,
        sector_count,
        lba48: true,
    }
}

/// A reply: (shelf, slot, the whole frame).
type Reply = (u16, u8, Vec<u8>);

impl Peer {
    /// The request frame to shelf.slot at `dst`, with the next tag.
    fn request(&mut self, dst: [u8; 6], shelf: u16, slot: u8, body: Body, data: &[u8]) -> Vec<u8> {
        self.tag += 1;
        Request {
            dst: MacAddr(dst),
            src: MacAddr(self.us),
            major: shelf,
            minor: slot,
            tag: self.tag,
            body,
        }
        .to_frame(data)
    }

    /// Sends `f` and collects every reply with its tag for `wait`.
    fn ask(&mut self, f: Vec<u8>, wait: Duration) -> Result<Vec<Reply>> {
        self.sock.send(&f)?;
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(r) = self
            .sock
            .recv(deadline.saturating_duration_since(Instant::now()))?
        {
            if let Some(h) = Response::parse(&r).map(|reply| reply.header) {
                if h.tag == self.tag {
                    out.push((h.major, h.minor, r));
                }
            }
        }
        Ok(out)
    }

    /// One ATA command to shelf.slot; the reply, if any, within a second.
    fn ata(
        &mut self,
        shelf: u16,
        slot: u8,
        request: AtaRequest,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let them = self.them;
        let f = self.request(them, shelf, slot, Body::Ata(request), data);
        let mut r = self.ask(f, Duration::from_millis(700))?;
        ensure!(r.len() <= 1, "{} replies to one ATA command", r.len());
        Ok(r.pop().map(|(_, _, f)| f))
    }

    /// The sector count of shelf.slot from IDENTIFY, or None when it does not answer.
    fn sectors(&mut self, shelf: u16, slot: u8) -> Result<Option<u64>> {
        let Some(r) = self.ata(shelf, slot, AtaRequest::Identify, &[])? else {
            return Ok(None);
        };
        let Some(ResponseBody::Ata(a)) = Response::parse(&r).map(|reply| reply.body) else {
            bail!("IDENTIFY answered with {:02x?}", &r[..r.len().min(36)]);
        };
        ensure!(!a.failed(), "IDENTIFY failed: status {:#x}", a.status);
        let info = a
            .identify()
            .context("IDENTIFY reply shorter than 512 bytes")?;
        Ok(Some(info.sectors))
    }

    /// Shelf.slot of every export answering a broadcast Query Config.
    fn discover(&mut self) -> Result<Vec<(u16, u8)>> {
        let f = self.request([0xff; 6], 0xffff, 0xff, Body::QueryConfig, &[]);
        let mut found: Vec<(u16, u8)> = self
            .ask(f, Duration::from_millis(700))?
            .into_iter()
            .map(|(s, l, _)| (s, l))
            .collect();
        found.sort();
        Ok(found)
    }

    /// Unsolicited Query Config responses (tag 0) that reach us (broadcast, or unicast to
    /// our MAC: the veth shows us frames for other stations too) within `wait`.
    fn adverts(&mut self, wait: Duration) -> Result<Vec<(u16, u8)>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(r) = self
            .sock
            .recv(deadline.saturating_duration_since(Instant::now()))?
        {
            let to_us = r[..6] == self.us || r[..6] == [0xff; 6];
            if to_us && r.len() >= 24 && r[14] & 0x08 != 0 && r[19] == 1 && r[20..24] == [0; 4] {
                out.push((u16::from_be_bytes([r[16], r[17]]), r[18]));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The config file: interface `a`, one worker, and these `[[export]]` tables.
fn write_config(path: &Path, workers: u16, exports: &str) -> Result<()> {
    write_config_on(path, "a", workers, exports)
}

fn write_config_on(path: &Path, iface: &str, workers: u16, exports: &str) -> Result<()> {
    fs::write(
        path,
        format!("workers = {workers}\n\n[[interface]]\nname = \"{iface}\"\n\n{exports}"),
    )?;
    Ok(())
}

fn export(name: &str, image: &Path, aoe: &str, extra: &str) -> String {
    format!(
        "[[export]]\nname = \"{name}\"\nimage = \"{}\"\naoe = \"{aoe}\"\n{extra}\n",
        image.display()
    )
}

/// `l2san ctl reload`: whether it succeeded, and what it printed.
fn ctl_reload(bin: &Path, socket: &Path) -> Result<(bool, String)> {
    let (ok, out, err) = ctl(bin, socket, &["reload"])?;
    Ok((ok, format!("{out}{err}")))
}

fn wait_for_log(log: &Path, needle: &str, after: usize) -> Result<String> {
    let mut text = String::new();
    let found = rig::wait_until(Duration::from_secs(5), || {
        text = fs::read_to_string(log).unwrap_or_default();
        text.get(after..).is_some_and(|t| t.contains(needle))
    });
    ensure!(
        found,
        "no {needle:?} in the log after byte {after}:\n{text}"
    );
    Ok(text)
}

#[test]
fn reload_adds_resizes_and_removes_exports_without_a_restart() {
    rig::e2e_l2san("reload", L2SAN_ONLY, |run: &Run| {
        let golden = run.path("golden.img");
        let pc1 = run.path("pc1.img");
        let private = run.path("private.img");
        fs::write(&golden, vec![0x11u8; 2048 * SECTOR])?;
        fs::write(&pc1, vec![0x22u8; 1024 * SECTOR])?;
        fs::write(&private, vec![0x33u8; 64 * SECTOR])?;

        let ns = Netns::new()?;
        let veth = VethPair::create(&ns, VethOpts::default())?;
        let mut peer = Peer {
            sock: veth.socket(&ns, ETHERTYPE_AOE)?,
            us: veth.us,
            them: veth.them,
            tag: 0x524c_0000,
        };
        let us_text = fmt_mac(&veth.us);

        let config = run.path("l2san.toml");
        write_config(&config, 1, &export("golden", &golden, "0.0", ""))?;
        let socket = run.path("ctl.sock");
        let log = run.path("target.log");
        let bin = rig::l2san_bin()?;
        let mut l2san = serve_config(&ns, &config, &socket, &log)?;
        // The start-up advert may still be on its way: discovery settles it.
        rig::wait_until(Duration::from_secs(5), || {
            peer.discover().is_ok_and(|d| d == [(0, 0)])
        });
        ensure!(peer.discover()? == [(0, 0)], "before the reload");
        ensure!(peer.sectors(0, 0)? == Some(2048));
        ensure!(
            peer.ata(0, 0, read(3000, 1), &[])?
                .is_some_and(|r| r[27] & 0x01 != 0),
            "a read past the end must fail before the image grows"
        );

        // Grow golden, add pc1 (allowed to us) and private (allowed to another host).
        let f = fs::OpenOptions::new().write(true).open(&golden)?;
        f.set_len(4096 * SECTOR as u64)?;
        drop(f);
        let two = [
            export("golden", &golden, "0.0", ""),
            export("pc1", &pc1, "0.1", &format!("allow = [\"{us_text}\"]")),
            export(
                "private",
                &private,
                "0.2",
                "allow = [\"52:54:00:00:00:99\"]",
            ),
        ]
        .concat();
        write_config(&config, 1, &two)?;
        peer.sock.drain();
        let (ok, out) = ctl_reload(&bin, &socket)?;
        ensure!(ok, "ctl reload failed: {out}");
        ensure!(
            out.contains("a: AoE added e0.1 e0.2") && out.contains("a: AoE changed e0.0"),
            "ctl reload said: {out}"
        );
        let adverts = peer.adverts(Duration::from_millis(1500))?;
        ensure!(
            adverts == [(0, 0), (0, 1)],
            "adverts after the reload: {adverts:?} (e0.2 must stay silent)"
        );
        ensure!(peer.discover()? == [(0, 0), (0, 1)]);
        ensure!(peer.sectors(0, 0)? == Some(4096), "golden's new size");
        ensure!(peer.sectors(0, 1)? == Some(1024));
        ensure!(peer.sectors(0, 2)?.is_none(), "e0.2 is not ours to see");
        let data = vec![0x5au8; SECTOR];
        let write = AtaRequest::Write {
            lba: 3000,
            sector_count: 1,
            lba48: true,
        };
        let r = peer.ata(0, 0, write, &data)?.context("no reply")?;
        ensure!(r[27] & 0x01 == 0, "write past the old end: {:#x}", r[27]);
        let r = peer.ata(0, 1, read(10, 2), &[])?.context("no reply")?;
        ensure!(
            r[36..36 + 2 * SECTOR].iter().all(|&b| b == 0x22),
            "pc1 data"
        );

        // A broken file: refused whole, everything stays.
        fs::write(&config, format!("{two}\n[[export]\nname = 3\n"))?;
        let (ok, out) = ctl_reload(&bin, &socket)?;
        ensure!(!ok && out.contains("l2san.toml"), "broken file: {out}");
        // A change only a restart applies: refused, naming it.
        write_config(&config, 2, &two)?;
        let (ok, out) = ctl_reload(&bin, &socket)?;
        ensure!(!ok && out.contains("workers"), "workers change: {out}");
        ensure!(
            peer.discover()? == [(0, 0), (0, 1)],
            "still the second config"
        );

        // SIGHUP: pc1 goes away, golden stays.
        write_config(&config, 1, &export("golden", &golden, "0.0", ""))?;
        let before = fs::read_to_string(&log)?.len();
        l2san.signal(libc::SIGHUP);
        wait_for_log(&log, "AoE removed e0.1 e0.2", before)?;
        ensure!(peer.sectors(0, 1)?.is_none(), "e0.1 removed");
        ensure!(peer.sectors(0, 0)? == Some(4096));
        ensure!(peer.discover()? == [(0, 0)]);

        let status = l2san.stop(Duration::from_secs(20))?;
        if !status.success() {
            bail!(
                "l2san exited with {status}; log:\n{}",
                fs::read_to_string(&log)?
            );
        }
        let mut back = vec![0u8; SECTOR];
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::File::open(&golden)?;
        f.seek(SeekFrom::Start(3000 * SECTOR as u64))?;
        f.read_exact(&mut back)?;
        ensure!(back == data, "the write past the old end is in the file");
        Ok(())
    });
}

const IMAGE_MIB: usize = 16;
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const FINISH_TIMEOUT: Duration = Duration::from_secs(150);

#[test]
fn reload_under_a_guest_workload() {
    rig::e2e_l2san("reload_under_a_guest_workload", L2SAN_ONLY, |run: &Run| {
        let kernel = Kernel::debian()?;
        let image = run.path("disk.img");
        let original = bootdisk::build(IMAGE_MIB << 20);
        fs::write(&image, &original)?;
        let extra = run.path("extra.img");
        fs::write(&extra, vec![0x44u8; 1 << 20])?;
        let opts = WorkloadOpts {
            gens: 8,
            ..WorkloadOpts::default()
        };
        let ns = Netns::new()?;
        let tap = ns.tap("tap0", 1500)?;
        let config = run.path("l2san.toml");
        let disk = |extra_keys: &str| export("disk", &image, "0.0", extra_keys);
        write_config_on(&config, "tap0", 1, &disk(""))?;
        let socket = run.path("ctl.sock");
        let log = run.path("l2san.log");
        let bin = rig::l2san_bin()?;
        let mut l2san = serve_config(&ns, &config, &socket, &log)?;
        let mut guest = WorkloadGuest::start(&ns, &tap, &kernel, &opts, run.dir())?;
        guest.wait_for("the first writes", BOOT_TIMEOUT, |p| {
            p.writes_acked(opts.blocks) >= 8
        })?;

        // Each step: a new file, a reload that must succeed, a pause with the guest writing.
        let extra_export = |allow: &str| export("extra", &extra, "0.1", allow);
        let steps: Vec<(&str, String)> = vec![
            ("add e0.1", [disk(""), extra_export("")].concat()),
            (
                "allow-list of e0.1",
                [disk(""), extra_export("allow = [\"52:54:00:00:00:99\"]")].concat(),
            ),
            ("grow e0.0", [disk(""), extra_export("")].concat()),
            (
                "buffer count of e0.0",
                [disk("buffer-count = 16"), extra_export("")].concat(),
            ),
            ("remove e0.1", disk("buffer-count = 16")),
        ];
        let mut reloads = 0;
        for (what, exports) in steps {
            if what == "grow e0.0" {
                let f = fs::OpenOptions::new().write(true).open(&image)?;
                f.set_len(((IMAGE_MIB + 8) << 20) as u64)?;
            }
            write_config_on(&config, "tap0", 1, &exports)?;
            let (ok, out) = ctl_reload(&bin, &socket)?;
            ensure!(ok && !out.contains("no change"), "reload ({what}): {out}");
            let p = guest.progress();
            if p.ended() || p.writes_acked(opts.blocks) == u64::from(opts.gens * opts.blocks) {
                break;
            }
            reloads += 1;
            let acked = p.writes_acked(opts.blocks);
            guest.wait_for(what, FINISH_TIMEOUT, |p| {
                p.ended() || p.writes_acked(opts.blocks) >= acked + 4
            })?;
        }
        let (p, elapsed) = guest.finish(FINISH_TIMEOUT)?;
        workload::check_outcome(&p, &opts)?;
        ensure!(
            reloads == 5,
            "only {reloads} of the 5 reloads came while the guest was still writing"
        );
        ensure!(l2san.exited()?.is_none(), "l2san exited");
        let status = l2san.stop(Duration::from_secs(20))?;
        ensure!(status.success(), "l2san exit status {status}");
        let after = fs::read(&image)?;
        ensure!(
            after.len() == (IMAGE_MIB + 8) << 20,
            "image size {}",
            after.len()
        );
        workload::check_final(&after[..original.len()], &original, &opts, original.len())?;
        rig::report(format_args!(
            "{}: {reloads} reloads during the guest's workload ({}, guest run {:.1} s): no I/O \
             error, read-back {}, image holds the last generation",
            run.name(),
            p.written.as_deref().unwrap_or("?"),
            elapsed.as_secs_f64(),
            p.verify.as_deref().unwrap_or("?"),
        ));
        Ok(())
    });
}
