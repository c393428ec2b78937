//! Per-client copy-on-write overlays on the running binary: l2san serves one base image as
//! e0.0 with `overlay = "persistent"` from `--config`; 20 simulated AoE clients (each its own
//! source MAC, from a raw socket on the other end of a veth) write their own data at the same
//! LBAs, partly over half-written 4 KiB blocks, then read back. The test checks that
//!
//! - every client reads exactly its own writes, and the base's bytes everywhere else;
//! - a client that never wrote reads the base; the base file is byte-for-byte unchanged;
//! - `l2san ctl overlay list` shows the 20 overlays; `overlay reset` discards one (that
//!   client reads the base again); `overlay commit` writes base + one client's overlay into a
//!   new image (checked byte for byte) with a progress bar, and changes neither;
//! - after a restart the persistent overlays are all still there.
//!
//! l2san only: under `L2SAN_E2E_TARGET=vblade` it says so and does not run.

#![forbid(unsafe_code)]

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Response, ResponseBody};
use l2san_rig::fixture::{ata_frame, ctl, fmt_mac, serve_config, VethOpts, VethPair};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run};

const ETHERTYPE_AOE: u16 = 0x88a2;
const SECTOR: usize = 512;
const SECTORS: usize = 4096;
const CLIENTS: u8 = 20;

fn client_mac(i: u8) -> [u8; 6] {
    [0x02, 0x4c, 0x32, 0x0c, 0x00, i]
}

/// The base image: each sector filled with its number's low byte, XOR 0x5a.
fn base_bytes() -> Vec<u8> {
    (0..SECTORS * SECTOR)
        .map(|i| ((i / SECTOR) as u8) ^ 0x5a)
        .collect()
}

/// What client `i` writes: (LBA, sector count, fill byte), at most 2 sectors a frame at MTU
/// 1500. The same LBAs for everyone: a whole 4 KiB block at 64, 3 sectors in the middle of
/// the block at 128 (partial first writes: the rest of that block must stay the base's), and
/// one sector of its own at 1000+i.
fn writes_of(i: u8) -> Vec<(u64, u8, u8)> {
    vec![
        (64, 2, 0x80 | i),
        (66, 2, 0x80 | i),
        (68, 2, 0x80 | i),
        (70, 2, 0x80 | i),
        (130, 2, 0x40 | i),
        (132, 1, 0x40 | i),
        (1000 + u64::from(i), 1, i + 1),
    ]
}

/// The disk client `i` must see: the base with its writes applied.
fn disk_of(i: u8) -> Vec<u8> {
    let mut d = base_bytes();
    for (lba, n, fill) in writes_of(i) {
        let at = lba as usize * SECTOR;
        d[at..at + n as usize * SECTOR].fill(fill);
    }
    d
}

struct Peer {
    sock: RawSocket,
    them: [u8; 6],
    tag: u32,
}

impl Peer {
    /// One ATA command from `src` to e0.0; its reply (status, data).
    fn ata(&mut self, src: [u8; 6], request: AtaRequest, data: &[u8]) -> Result<(u8, Vec<u8>)> {
        self.tag += 1;
        let f = ata_frame(self.them, src, self.tag, request, data);
        for _attempt in 0..3 {
            self.sock.send(&f)?;
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Some(r) = self
                .sock
                .recv(deadline.saturating_duration_since(Instant::now()))?
            {
                let Some(reply) = Response::parse(&r) else {
                    continue;
                };
                if let (true, ResponseBody::Ata(a)) = (
                    reply.dst.0 == src && reply.header.tag == self.tag,
                    reply.body,
                ) {
                    return Ok((a.status, a.data.to_vec()));
                }
            }
        }
        bail!("no reply to {} from e0.0", fmt_mac(&src))
    }

    /// Reads `count` sectors at `lba` as `src`.
    fn read(&mut self, src: [u8; 6], lba: u64, count: u8) -> Result<Vec<u8>> {
        let read = AtaRequest::Read {
            lba,
            sector_count: count,
            lba48: true,
        };
        let (status, data) = self.ata(src, read, &[])?;
        ensure!(status & 0x01 == 0, "read failed: status {status:#x}");
        ensure!(data.len() >= count as usize * SECTOR, "short read reply");
        Ok(data[..count as usize * SECTOR].to_vec())
    }
}

/// Checks what `src` reads at every place any client wrote (and around them).
fn check_disk(peer: &mut Peer, src: [u8; 6], want: &[u8]) -> Result<()> {
    let ranges = [(60u64, 16u64), (124, 16), (1000, 22)];
    let reads = ranges
        .iter()
        .flat_map(|&(from, n)| (from..from + n).step_by(2).map(|lba| (lba, 2u8)));
    for (lba, count) in reads {
        let got = peer.read(src, lba, count)?;
        let at = lba as usize * SECTOR;
        let expected = &want[at..at + got.len()];
        if got != expected {
            let first = got
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            bail!(
                "{} reads {:#04x} at byte {} of LBA {lba}+{count}, expected {:#04x}",
                fmt_mac(&src),
                got[first],
                first,
                expected[first]
            );
        }
    }
    Ok(())
}

#[test]
fn twenty_clients_write_their_own_overlays_of_one_base() {
    rig::e2e_l2san("overlay", "overlay exports are l2san's", |run: &Run| {
        let base = run.path("golden.img");
        fs::write(&base, base_bytes())?;
        let dir = run.path("overlays");
        let config = run.path("l2san.toml");
        fs::write(
            &config,
            format!(
                "[[interface]]\nname = \"a\"\n\n[[export]]\nname = \"golden\"\nimage = \"{}\"\n\
                 aoe = \"0.0\"\noverlay = \"persistent\"\noverlay-dir = \"{}\"\n",
                base.display(),
                dir.display()
            ),
        )?;
        let ns = Netns::new()?;
        let veth = VethPair::create(&ns, VethOpts::default())?;
        let mut peer = Peer {
            sock: veth.socket(&ns, ETHERTYPE_AOE)?,
            them: veth.them,
            tag: 0x4f56_0000,
        };
        let socket = run.path("ctl.sock");
        let log = run.path("l2san.log");
        let bin = rig::l2san_bin()?;
        let mut l2san = serve_config(&ns, &config, &socket, &log)?;

        let t0 = Instant::now();
        for i in 0..CLIENTS {
            for (lba, n, fill) in writes_of(i) {
                let data = vec![fill; n as usize * SECTOR];
                let write = AtaRequest::Write {
                    lba,
                    sector_count: n,
                    lba48: true,
                };
                let (status, _) = peer.ata(client_mac(i), write, &data)?;
                ensure!(status & 0x01 == 0, "client {i}: write at {lba} failed");
            }
        }
        for i in 0..CLIENTS {
            check_disk(&mut peer, client_mac(i), &disk_of(i))?;
        }
        let stranger = [0x02, 0x4c, 0x32, 0x0c, 0x01, 0x01];
        check_disk(&mut peer, stranger, &base_bytes())?;
        ensure!(fs::read(&base)? == base_bytes(), "the base image changed");
        rig::report(format_args!(
            "overlay: {CLIENTS} clients wrote {} sectors each and read back only their own \
             ({:.1} s)",
            writes_of(0).iter().map(|w| u32::from(w.1)).sum::<u32>(),
            t0.elapsed().as_secs_f64()
        ));

        let (ok, list, err) = ctl(&bin, &socket, &["overlay", "list"])?;
        ensure!(ok, "overlay list: {err}");
        let lines: Vec<&str> = list.lines().filter(|l| l.starts_with("golden")).collect();
        ensure!(lines.len() == CLIENTS as usize, "overlay list:\n{list}");
        for i in 0..CLIENTS {
            let mac = fmt_mac(&client_mac(i));
            let line = lines
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(mac.as_str()))
                .with_context(|| format!("{mac} not listed:\n{list}"))?;
            // Blocks at 64 (LBA 64-71), 128-135 and the one holding LBA 1000+i.
            let blocks: u64 = line.split_whitespace().nth(2).unwrap_or("").parse()?;
            ensure!(blocks == 3, "{mac}: {blocks} blocks:\n{list}");
        }

        // Reset client 0: it reads the base again; the others keep theirs.
        let c0 = fmt_mac(&client_mac(0));
        let (ok, out, err) = ctl(&bin, &socket, &["overlay", "reset", &c0])?;
        ensure!(ok && out.contains("reset"), "overlay reset: {out}{err}");
        check_disk(&mut peer, client_mac(0), &base_bytes())?;
        check_disk(&mut peer, client_mac(5), &disk_of(5))?;
        let (_, list, _) = ctl(&bin, &socket, &["overlay", "list"])?;
        ensure!(
            list.lines().filter(|l| l.starts_with("golden")).count() == CLIENTS as usize - 1,
            "after the reset:\n{list}"
        );
        let (ok, _, err) = ctl(&bin, &socket, &["overlay", "reset", &c0])?;
        ensure!(!ok && err.contains("has no overlay"), "second reset: {err}");

        // Commit client 1 into a new image.
        let committed = run.path("golden-pc1.img");
        let c1 = fmt_mac(&client_mac(1));
        let commit_c1 = || -> Result<(bool, String, String)> {
            let to = committed.to_str().context("path")?;
            ctl(&bin, &socket, &["overlay", "commit", &c1, to])
        };
        let (ok, out, err) = commit_c1()?;
        ensure!(
            ok && out.contains("committed"),
            "overlay commit: {out}{err}"
        );
        ensure!(err.contains("100%"), "no progress bar on stderr: {err:?}");
        ensure!(
            fs::read(&committed)? == disk_of(1),
            "the committed image is not base + client 1's writes"
        );
        let (ok, _, err) = commit_c1()?;
        ensure!(
            !ok && err.contains("already exists"),
            "commit over a file: {err}"
        );
        check_disk(&mut peer, client_mac(1), &disk_of(1))?;
        ensure!(fs::read(&base)? == base_bytes(), "the base image changed");

        // Persistent: all there after a restart.
        let status = l2san.stop(Duration::from_secs(20))?;
        ensure!(status.success(), "l2san exit status {status}");
        let mut l2san = serve_config(&ns, &config, &socket, &log)?;
        check_disk(&mut peer, client_mac(0), &base_bytes())?;
        for i in 1..CLIENTS {
            check_disk(&mut peer, client_mac(i), &disk_of(i))?;
        }
        let status = l2san.stop(Duration::from_secs(20))?;
        ensure!(status.success(), "l2san exit status {status}");
        ensure!(fs::read(&base)? == base_bytes(), "the base image changed");
        rig::report(format_args!(
            "overlay: list, reset and commit checked; {} overlays survived a restart",
            CLIENTS - 1
        ));
        Ok(())
    });
}
