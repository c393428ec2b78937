//! A verified write workload in a Linux guest over AoE or FCoE (VN2VN), for the crash, link-flap
//! and frame-storm tests, and the host-side checks of what it left in the image.
//!
//! # Guest side
//!
//! The same Debian kernel as [`crate::linux`], with a busybox initramfs whose `/init` loads
//! virtio-net and aoe and then, on `/dev/etherd/e<shelf>.<slot>`:
//! 1. writes `gens` generations over a region of `blocks` blocks of [`BLOCK`] bytes starting at
//!    block `base`, one O_DIRECT `dd` per block, in order. Generation `g` writes data set
//!    `g % SETS` ([`sector_data`]): every 512-byte sector starts with a readable header naming
//!    its set, block and sector, and the rest is a hash of the three, so a sector written to the
//!    wrong place, a stale sector or a torn block is told apart from the right one. The sets are
//!    files in the initramfs (built on the host), so the guest needs nothing but busybox;
//! 2. after every `ack_every` successful writes, and at the end of each generation, prints
//!    `L2SAN-WL ACK gen=<g> block=<b>`: every block `0..=b` of generation `g` (and all of every
//!    earlier generation) has been written and acknowledged by the target (O_DIRECT on a block
//!    device returns only when the aoe driver has the target's response). A write that fails
//!    prints `L2SAN-WL IOERR ...` and stops the ACK lines of its generation;
//! 3. prints `WRITTEN writes=<n> ioerrors=<n> ms=<n>`, reads the region back with O_DIRECT and
//!    compares it with the last generation's set: `VERIFY OK blocks=<n>` or
//!    `VERIFY FAIL bad=<blocks> first=<block>`;
//! 4. prints the aoe driver's debugfs statistics (`aoestat:` lines) and its dmesg lines
//!    (`dmesg:`), then `DONE writes=<n> ioerrors=<n>` and powers off. A setup failure prints
//!    `FAIL <reason>`.
//!
//! The FCoE variant ([`WorkloadGuest::start_fcoe`]) loads the open-fcoe initiator instead of aoe,
//! creates a VN2VN controller on eth0 as [`crate::fcoe_guest`]'s scenario does, waits for the
//! SCSI disk and runs steps 1-3 on it; its `dmesg:` lines are the FCoE and SCSI messages.
//!
//! # Host side
//!
//! [`WorkloadGuest`] starts and watches the guest ([`Progress`] parses its console);
//! [`check_snapshot`] checks an image taken at any moment (say, right after a kill -9 of the
//! target) against the ACK lines printed before that moment: every acknowledged block holds its
//! data, and every other sector holds either its previous data or the data being written, never
//! anything else. [`check_final`] checks the image after the run. [`L2sanProcess`] runs l2san
//! with access to its pid (kill -9, restart, `/proc/<pid>/status` memory).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::fcoe_guest::{FCOE_FUNCTIONS, FCOE_MODULES};
use crate::linux::{self, base_initramfs, Guest, Kernel, AOE_FUNCTIONS};
use crate::rig::{l2san_bin, packet_socket_on, run_cmd, wait_until, Child, Netns, Qemu, Tap};

/// Bytes per guest write (one `dd` each).
pub const BLOCK: usize = 64 << 10;
/// Sector size.
pub const SECTOR: usize = 512;
/// Distinct data sets; generation `g` writes set `g % SETS`.
pub const SETS: u32 = 3;
/// Console line prefix of the guest scenario.
pub const PREFIX: &str = "L2SAN-WL ";

/// Sector `sector` of block `block` in data set `set`: a header line, then hash bytes.
pub fn sector_data(set: u32, block: u32, sector: u32) -> [u8; SECTOR] {
    let mut out = [0u8; SECTOR];
    let mut x = (u64::from(set) << 48 | u64::from(block) << 16 | u64::from(sector))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    for chunk in out.chunks_exact_mut(8) {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let header = format!("L2SAN-WL set={set} block={block:05} sector={sector:03}\n");
    out[..header.len()].copy_from_slice(header.as_bytes());
    out
}

/// Block `block` of data set `set`.
pub fn block_data(set: u32, block: u32) -> Vec<u8> {
    let per = (BLOCK / SECTOR) as u32;
    (0..per).flat_map(|s| sector_data(set, block, s)).collect()
}

/// The whole data set `set` for a region of `blocks` blocks, as written by one generation.
pub fn set_data(set: u32, blocks: u32) -> Vec<u8> {
    (0..blocks).flat_map(|b| block_data(set, b)).collect()
}

/// Parameters of the guest workload.
#[derive(Debug, Clone)]
pub struct WorkloadOpts {
    /// AoE shelf of the device.
    pub shelf: u16,
    /// AoE slot of the device.
    pub slot: u8,
    /// The guest's eth0 MTU.
    pub mtu: u32,
    /// Blocks of [`BLOCK`] bytes in the region.
    pub blocks: u32,
    /// First block of the region on the device.
    pub base: u32,
    /// Generations written over the region.
    pub gens: u32,
    /// An ACK line every this many writes (and at the end of each generation).
    pub ack_every: u32,
    /// Guest memory.
    pub memory_mb: u32,
}

impl Default for WorkloadOpts {
    fn default() -> Self {
        WorkloadOpts {
            shelf: 0,
            slot: 0,
            mtu: 1500,
            blocks: 128,
            base: 16,
            gens: 2,
            ack_every: 4,
            memory_mb: 384,
        }
    }
}

impl WorkloadOpts {
    /// Byte offset of the region in the image.
    pub fn region_offset(&self) -> usize {
        self.base as usize * BLOCK
    }

    /// Byte length of the region.
    pub fn region_len(&self) -> usize {
        self.blocks as usize * BLOCK
    }

    /// The data set the last generation writes: what the region holds after the run.
    pub fn final_set(&self) -> u32 {
        (self.gens - 1) % SETS
    }
}

/// The part of both workload `/init`s that writes: `GENS` generations of `BLOCKS` blocks from
/// the data sets to `$D` at block `BASE` with `IOERR` and `ACK` lines, then `WRITTEN` and the
/// read-back of the region into `/tmp/back`. It stands for `@GENERATIONS@` in them.
const GENERATIONS: &str = r#"T0=$(ms)
W=0; ERR=0; g=0
while [ $g -lt $GENS ]; do
    f=/set$((g % SETS)).bin
    ok=1; b=0
    while [ $b -lt $BLOCKS ]; do
        if dd if=$f of=$D bs=65536 skip=$b seek=$((BASE + b)) count=1 oflag=direct conv=notrunc 2>/tmp/err; then
            W=$((W + 1))
        else
            ERR=$((ERR + 1)); ok=0
            say "IOERR gen=$g block=$b $(tail -n 1 /tmp/err)"
        fi
        b=$((b + 1))
        if [ $ok = 1 ] && { [ $((b % ACK)) -eq 0 ] || [ $b -eq $BLOCKS ]; }; then
            say "ACK gen=$g block=$((b - 1))"
        fi
    done
    g=$((g + 1))
done
say "WRITTEN writes=$W ioerrors=$ERR ms=$(($(ms) - T0))"
LAST=/set$(((GENS - 1) % SETS)).bin
if ! dd if=$D of=/tmp/back bs=65536 skip=$BASE count=$BLOCKS iflag=direct 2>/tmp/err; then
    ERR=$((ERR + 1))
    say "IOERR read-back $(tail -n 1 /tmp/err)"
fi
"#;

/// Both workload `/init`s read the same parameters off the kernel command line (see
/// [`WorkloadGuest`]'s `boot`, which gives them all).
const WORKLOAD_PARAMS: &str = r#"MTU=1500; DEV=e0.0; BLOCKS=128; BASE=16; GENS=2; ACK=4; SETS=@SETS@
for a in $(cat /proc/cmdline); do
    case "$a" in
    l2san.mtu=*) MTU=${a#*=} ;;
    l2san.dev=*) DEV=${a#*=} ;;
    l2san.blocks=*) BLOCKS=${a#*=} ;;
    l2san.base=*) BASE=${a#*=} ;;
    l2san.gens=*) GENS=${a#*=} ;;
    l2san.ack=*) ACK=${a#*=} ;;
    esac
done
"#;

/// The AoE workload's steps (after [`linux::init_script`]'s prelude, [`AOE_FUNCTIONS`] and
/// [`WORKLOAD_PARAMS`]).
const WORKLOAD_STEPS: &str = r#"mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# fq_codel drops frames that queue for more than 5 ms; AoE would only retransmit, but slowly.
echo pfifo_fast > /proc/sys/net/core/default_qdisc
aoe_up $MTU $DEV
say DEVICE $D $(size $D)
@GENERATIONS@
if cmp -s /tmp/back $LAST; then
    say "VERIFY OK blocks=$BLOCKS"
else
    bad=0; first=-1; b=0
    while [ $b -lt $BLOCKS ]; do
        x=$(dd if=/tmp/back bs=65536 skip=$b count=1 2>/dev/null | md5sum)
        y=$(dd if=$LAST bs=65536 skip=$b count=1 2>/dev/null | md5sum)
        if [ "$x" != "$y" ]; then
            bad=$((bad + 1)); [ $first -lt 0 ] && first=$b
        fi
        b=$((b + 1))
    done
    say "VERIFY FAIL bad=$bad first=$first blocks=$BLOCKS"
fi
rm -f /tmp/back
for s in /sys/kernel/debug/aoe/*; do
    [ -r "$s" ] && sed 's/^/@PREFIX@ aoestat: /' "$s"
done
dmesg | grep -i aoe | tail -n 60 | sed 's/^/@PREFIX@ dmesg: /'
say "DONE writes=$W ioerrors=$ERR"
poweroff -f
sleep 10
"#;

/// The FCoE variant of the workload's `/init`: the VN2VN login of [`crate::fcoe_guest`]'s
/// scenario (controller on eth0, wait for a SCSI disk), then the same generations, `ACK`,
/// `IOERR`, `WRITTEN`, `VERIFY` and `DONE` lines on the SCSI disk; `dmesg:` lines are the FCoE
/// and SCSI kernel messages.
const FCOE_WORKLOAD_STEPS: &str = r#"# fq_codel drops frames that wait over 5 ms and FCoE never retransmits.
echo pfifo_fast > /proc/sys/net/core/default_qdisc || fail "cannot set the default qdisc"
load_modules net
eth0_up $MTU
load_modules fcoe
vn2vn_create
wait_scsi_disk 60
D=/dev/$B
say DEVICE $D $(blockdev --getsize64 $D)
@GENERATIONS@
if cmp -s /tmp/back $LAST; then
    say "VERIFY OK blocks=$BLOCKS"
else
    say "VERIFY FAIL blocks=$BLOCKS"
fi
rm -f /tmp/back
interesting 60
say "DONE writes=$W ioerrors=$ERR"
poweroff -f
sleep 10
"#;

/// Builds the workload's initramfs (uncompressed newc cpio) for `kernel`: busybox, the virtio-net
/// and aoe modules, the data sets for `blocks` blocks, and `/init`.
pub fn workload_initramfs(kernel: &Kernel, blocks: u32) -> Result<Vec<u8>> {
    let mut w = base_initramfs(kernel, &["aoe"], "aoe")?;
    for set in 0..SETS {
        w.file(&format!("set{set}.bin"), 0o644, &set_data(set, blocks));
    }
    w.file("init", 0o755, aoe_init().as_bytes());
    Ok(w.finish())
}

/// Builds the FCoE workload's initramfs for `kernel`: busybox, virtio-net, the FCoE initiator
/// and SCSI disk modules, the data sets for `blocks` blocks, and `/init`.
pub fn fcoe_workload_initramfs(kernel: &Kernel, blocks: u32) -> Result<Vec<u8>> {
    let mut w = base_initramfs(kernel, FCOE_MODULES, "fcoe")?;
    for set in 0..SETS {
        w.file(&format!("set{set}.bin"), 0o644, &set_data(set, blocks));
    }
    w.file("init", 0o755, fcoe_init().as_bytes());
    Ok(w.finish())
}

/// The AoE workload's `/init`.
fn aoe_init() -> String {
    fill_in(linux::init_script(
        "L2SAN-WL",
        &[AOE_FUNCTIONS, WORKLOAD_PARAMS, WORKLOAD_STEPS],
    ))
}

/// The FCoE workload's `/init`.
fn fcoe_init() -> String {
    fill_in(linux::init_script(
        "L2SAN-WL",
        &[FCOE_FUNCTIONS, WORKLOAD_PARAMS, FCOE_WORKLOAD_STEPS],
    ))
}

/// A workload `/init` with [`GENERATIONS`] and [`SETS`] filled in.
fn fill_in(init: String) -> String {
    init.replace("@GENERATIONS@\n", GENERATIONS)
        .replace("@SETS@", &SETS.to_string())
}

/// What the guest has reported so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Highest acknowledged block per generation (`ACK` lines).
    pub acks: BTreeMap<u32, u32>,
    /// `IOERR` lines.
    pub io_errors: Vec<String>,
    /// The `WRITTEN` line.
    pub written: Option<String>,
    /// The `VERIFY` line.
    pub verify: Option<String>,
    /// The `DONE` line.
    pub done: Option<String>,
    /// The `FAIL` line.
    pub fail: Option<String>,
    /// The `DEVICE` line.
    pub device: Option<String>,
    /// `aoestat:` lines (the aoe driver's debugfs statistics).
    pub aoe_stats: Vec<String>,
    /// `dmesg:` lines (the aoe driver's kernel messages).
    pub dmesg: Vec<String>,
}

impl Progress {
    /// Parses the complete lines of a console log.
    pub fn parse(log: &str) -> Progress {
        let mut p = Progress::default();
        let complete = log.rfind('\n').map_or("", |at| &log[..at]);
        for line in complete.lines() {
            let Some(at) = line.find(PREFIX) else {
                continue;
            };
            let rest = line[at + PREFIX.len()..].trim_end();
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            let value = value.trim().to_string();
            match key {
                "ACK" => {
                    let num = |k: &str| -> Option<u32> {
                        value
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix(k))
                            .and_then(|v| v.parse().ok())
                    };
                    if let (Some(g), Some(b)) = (num("gen="), num("block=")) {
                        let e = p.acks.entry(g).or_insert(b);
                        *e = (*e).max(b);
                    }
                }
                "IOERR" => p.io_errors.push(value),
                "WRITTEN" => p.written = Some(value),
                "VERIFY" => p.verify = Some(value),
                "DONE" => p.done = Some(value),
                "FAIL" => p.fail = Some(value),
                "DEVICE" => p.device = Some(value),
                "aoestat:" => p.aoe_stats.push(value),
                "dmesg:" => p.dmesg.push(value),
                _ => {}
            }
        }
        p
    }

    /// The latest acknowledged (generation, block).
    pub fn latest(&self) -> Option<(u32, u32)> {
        self.acks.iter().next_back().map(|(&g, &b)| (g, b))
    }

    /// Writes acknowledged, counting every block of the generations before the latest.
    pub fn writes_acked(&self, blocks: u32) -> u64 {
        self.latest().map_or(0, |(g, b)| {
            u64::from(g) * u64::from(blocks) + u64::from(b) + 1
        })
    }

    /// Whether the scenario ended (DONE or FAIL).
    pub fn ended(&self) -> bool {
        self.done.is_some() || self.fail.is_some()
    }
}

/// A running workload guest.
#[derive(Debug)]
pub struct WorkloadGuest {
    qemu: Qemu,
    opts: WorkloadOpts,
    start: Instant,
}

impl WorkloadGuest {
    /// Boots `kernel` with the AoE workload on `tap` (inside `ns`); files go in `dir`.
    pub fn start(
        ns: &Netns,
        tap: &Tap,
        kernel: &Kernel,
        opts: &WorkloadOpts,
        dir: &Path,
    ) -> Result<WorkloadGuest> {
        ensure!(opts.gens >= 1 && opts.blocks >= 1 && opts.ack_every >= 1);
        let initramfs = dir.join("initramfs-workload.cpio");
        fs::write(&initramfs, workload_initramfs(kernel, opts.blocks)?)?;
        Self::boot("workload", ns, tap, kernel, opts, &initramfs, None, dir)
    }

    /// Boots `kernel` with the FCoE (VN2VN) workload on `tap` (inside `ns`), its NIC at
    /// `guest_mac` (which makes its WWPN `20:00:<mac>` and its first port id the MAC's low 16
    /// bits); files go in `dir`.
    pub fn start_fcoe(
        ns: &Netns,
        tap: &Tap,
        kernel: &Kernel,
        opts: &WorkloadOpts,
        guest_mac: &[u8; 6],
        dir: &Path,
    ) -> Result<WorkloadGuest> {
        ensure!(opts.gens >= 1 && opts.blocks >= 1 && opts.ack_every >= 1);
        let initramfs = dir.join("initramfs-fcoe-workload.cpio");
        fs::write(&initramfs, fcoe_workload_initramfs(kernel, opts.blocks)?)?;
        Self::boot(
            "fcoe-workload",
            ns,
            tap,
            kernel,
            opts,
            &initramfs,
            Some(*guest_mac),
            dir,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn boot(
        name: &str,
        ns: &Netns,
        tap: &Tap,
        kernel: &Kernel,
        opts: &WorkloadOpts,
        initramfs: &Path,
        mac: Option<[u8; 6]>,
        dir: &Path,
    ) -> Result<WorkloadGuest> {
        let params = format!(
            "l2san.mtu={} l2san.dev=e{}.{} l2san.blocks={} l2san.base={} l2san.gens={} \
             l2san.ack={}",
            opts.mtu, opts.shelf, opts.slot, opts.blocks, opts.base, opts.gens, opts.ack_every
        );
        let guest = Guest {
            name,
            kernel,
            initramfs,
            params: &params,
            mac,
            memory_mb: opts.memory_mb,
        };
        let start = Instant::now();
        let qemu = guest.start(ns, tap, dir)?;
        Ok(WorkloadGuest {
            qemu,
            opts: opts.clone(),
            start,
        })
    }

    /// The options it runs with.
    pub fn opts(&self) -> &WorkloadOpts {
        &self.opts
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// What the guest printed so far.
    pub fn serial_log(&self) -> String {
        self.qemu.serial_log()
    }

    /// What the guest reported so far.
    pub fn progress(&self) -> Progress {
        Progress::parse(&self.qemu.serial_log())
    }

    /// Waits up to `timeout` for `cond` on the progress; fails if the guest ends (DONE, FAIL or
    /// QEMU exit) or the time runs out first.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Progress) -> bool,
    ) -> Result<Progress> {
        let mut last = Progress::default();
        let mut exited = false;
        let met = wait_until(timeout, || {
            last = self.progress();
            if cond(&last) {
                return true;
            }
            exited = matches!(self.qemu.child().exited(), Ok(Some(_)));
            exited || last.ended()
        });
        if met && cond(&last) {
            return Ok(last);
        }
        let dmesg = last.dmesg.join("\n  ");
        if let Some(why) = &last.fail {
            bail!("waiting for {what}: guest failed: {why}; guest dmesg:\n  {dmesg}");
        }
        if exited || last.ended() {
            bail!("waiting for {what}: the guest ended first; guest dmesg:\n  {dmesg}");
        }
        bail!(
            "waiting for {what}: not within {timeout:?} (latest ACK {:?}, I/O errors {:?})",
            last.latest(),
            last.io_errors
        )
    }

    /// Waits up to `timeout` for the scenario to end and for QEMU to power off, then stops QEMU.
    pub fn finish(mut self, timeout: Duration) -> Result<(Progress, Duration)> {
        let ended = wait_until(timeout, || {
            matches!(self.qemu.child().exited(), Ok(Some(_))) || self.progress().ended()
        });
        let elapsed = self.start.elapsed();
        self.qemu.child().wait_exit(Duration::from_secs(10))?;
        // Killing a QEMU that did not power off is part of the plan, not an error.
        let _ = self.qemu.child().stop(Duration::from_secs(2));
        let p = self.progress();
        if !ended {
            bail!(
                "the guest workload did not end within {timeout:?} (latest ACK {:?}, I/O errors \
                 {:?})",
                p.latest(),
                p.io_errors
            );
        }
        Ok((p, elapsed))
    }
}

/// Fails unless the finished workload wrote everything without an I/O error and verified.
pub fn check_outcome(p: &Progress, opts: &WorkloadOpts) -> Result<()> {
    if let Some(why) = &p.fail {
        bail!("guest failed: {why}");
    }
    ensure!(p.done.is_some(), "guest stopped before DONE");
    ensure!(
        p.io_errors.is_empty(),
        "guest saw {} I/O errors: {:?}; aoe dmesg: {:?}",
        p.io_errors.len(),
        p.io_errors,
        p.dmesg
    );
    let want = format!("OK blocks={}", opts.blocks);
    ensure!(
        p.verify.as_deref() == Some(want.as_str()),
        "guest read-back: VERIFY {:?}",
        p.verify
    );
    ensure!(
        p.latest() == Some((opts.gens - 1, opts.blocks - 1)),
        "last ACK {:?}, expected gen={} block={}",
        p.latest(),
        opts.gens - 1,
        opts.blocks - 1
    );
    Ok(())
}

/// What [`check_snapshot`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// Writes acknowledged before the snapshot (per the ACK lines).
    pub acked_writes: u64,
    /// Blocks of the latest generation checked to hold their acknowledged data.
    pub acked_blocks_checked: u32,
    /// Blocks after the acknowledged ones that already held (all or part of) new data.
    pub unacked_blocks_written: u32,
}

/// Checks `region` (the workload region of an image taken at some moment) against `acked`, the
/// latest ACK printed before that moment, and `original` (the region before the run):
/// - every block acknowledged in the latest generation holds exactly its data (or, if that
///   generation was complete, data of the next one in part);
/// - every later block holds, sector by sector, either the previous generation's data (the
///   original before generation 0) or the latest generation's: nothing else.
pub fn check_snapshot(
    region: &[u8],
    original: &[u8],
    acked: Option<(u32, u32)>,
    opts: &WorkloadOpts,
) -> Result<SnapshotCheck> {
    ensure!(region.len() == opts.region_len() && original.len() == opts.region_len());
    let (gen, last) = match acked {
        Some(a) => (a.0, Some(a.1)),
        None => (0, None),
    };
    let per = (BLOCK / SECTOR) as u32;
    let set = gen % SETS;
    let complete = last == Some(opts.blocks - 1);
    let mut unacked_written = 0;
    let mut bad = Vec::new();
    for block in 0..opts.blocks {
        let acked_block = last.is_some_and(|l| block <= l);
        let mut new_seen = false;
        for s in 0..per {
            let at = (block * per + s) as usize * SECTOR;
            let got = &region[at..at + SECTOR];
            let cur = sector_data(set, block, s);
            let ok = if acked_block {
                got == cur
                    || (complete
                        && gen + 1 < opts.gens
                        && got == sector_data((gen + 1) % SETS, block, s))
            } else {
                let prev_ok = if gen == 0 {
                    got == &original[at..at + SECTOR]
                } else {
                    got == sector_data((gen - 1) % SETS, block, s)
                };
                new_seen |= got == cur;
                prev_ok || got == cur
            };
            if !ok {
                bad.push(format!(
                    "block {block} sector {s} (acknowledged: {acked_block}): {:?}",
                    describe_sector(got)
                ));
            }
        }
        if new_seen {
            unacked_written += 1;
        }
    }
    if !bad.is_empty() {
        bail!(
            "{} sectors of the region do not hold what the ACKs before the snapshot (gen {gen}, \
             block {last:?}) allow; first: {}",
            bad.len(),
            bad[..bad.len().min(5)].join("; ")
        );
    }
    Ok(SnapshotCheck {
        acked_writes: last.map_or(0, |l| {
            u64::from(gen) * u64::from(opts.blocks) + u64::from(l) + 1
        }),
        acked_blocks_checked: last.map_or(0, |l| l + 1),
        unacked_blocks_written: unacked_written,
    })
}

/// A sector's header line if it has one, else its first bytes.
fn describe_sector(s: &[u8]) -> String {
    if s.starts_with(b"L2SAN-WL ") {
        let end = s.iter().position(|&b| b == b'\n').unwrap_or(40);
        String::from_utf8_lossy(&s[..end]).into_owned()
    } else {
        format!("{:02x?}", &s[..16])
    }
}

/// Checks the whole image after the run: the region holds the last generation's data and
/// `[0, keep_until)` outside the region is as in `original` (the whole image when `keep_until`
/// is its length).
pub fn check_final(
    image: &[u8],
    original: &[u8],
    opts: &WorkloadOpts,
    keep_until: usize,
) -> Result<()> {
    ensure!(
        image.len() == original.len(),
        "image is {} bytes, was {}",
        image.len(),
        original.len()
    );
    let (from, to) = (
        opts.region_offset(),
        opts.region_offset() + opts.region_len(),
    );
    let want = set_data(opts.final_set(), opts.blocks);
    let bad: Vec<usize> = image[from..to]
        .chunks(BLOCK)
        .zip(want.chunks(BLOCK))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    ensure!(
        bad.is_empty(),
        "{} blocks of the region do not hold the last generation's data (first: block {}, holds \
         {})",
        bad.len(),
        bad.first().copied().unwrap_or(0),
        describe_sector(&image[from + bad.first().copied().unwrap_or(0) * BLOCK..])
    );
    for (a, b) in [(0, from), (to, keep_until.max(to))] {
        if let Some(at) = image[a..b]
            .chunks(SECTOR)
            .zip(original[a..b].chunks(SECTOR))
            .position(|(x, y)| x != y)
        {
            bail!(
                "sector {} outside the workload region changed",
                (a / SECTOR) + at
            );
        }
    }
    Ok(())
}

/// An l2san process whose pid the test controls: kill -9, restart with the same command line,
/// memory and CPU from `/proc/<pid>`.
#[derive(Debug)]
pub struct L2sanProcess {
    child: Child,
    log: PathBuf,
    iface: String,
    ifindex: u32,
    /// Everything after `serve` on its command line.
    args: Vec<String>,
    bin: PathBuf,
}

impl L2sanProcess {
    /// Starts `l2san serve -i <iface> <args>...` inside `ns` (`RUST_LOG=info` unless set), output
    /// appended to `log`, and waits until it has a packet socket on `iface`.
    pub fn start(ns: &Netns, iface: &str, args: &[String], log: &Path) -> Result<L2sanProcess> {
        let mut serve = vec!["-i".to_string(), iface.to_string()];
        serve.extend_from_slice(args);
        Self::start_serve(ns, iface, serve, log)
    }

    /// Starts `l2san serve --config <config> <args>...` inside `ns`, like
    /// [`L2sanProcess::start`]; waits until it has a packet socket on `iface` (one of the
    /// file's interfaces).
    pub fn start_config(
        ns: &Netns,
        iface: &str,
        config: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<L2sanProcess> {
        let mut serve = vec!["--config".to_string(), config.display().to_string()];
        serve.extend_from_slice(args);
        Self::start_serve(ns, iface, serve, log)
    }

    fn start_serve(
        ns: &Netns,
        iface: &str,
        serve: Vec<String>,
        log: &Path,
    ) -> Result<L2sanProcess> {
        let ifindex = ns
            .run("cat", [format!("/sys/class/net/{iface}/ifindex")])?
            .trim()
            .parse()
            .context("bad ifindex")?;
        let bin = l2san_bin()?;
        let child = Self::spawn(ns, &bin, iface, ifindex, &serve, log)?;
        Ok(L2sanProcess {
            child,
            log: log.to_path_buf(),
            iface: iface.to_string(),
            ifindex,
            args: serve,
            bin,
        })
    }

    /// Runs `l2san serve <serve>...` and waits for its packet socket on `iface`.
    fn spawn(
        ns: &Netns,
        bin: &Path,
        iface: &str,
        ifindex: u32,
        serve: &[String],
        log: &Path,
    ) -> Result<Child> {
        let mut cmd = ns.command(bin);
        cmd.arg("serve").args(serve);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = Child::spawn_logged("l2san", &mut cmd, log)?;
        let packet = format!("/proc/{}/net/packet", child.pid());
        let mut exited = None;
        let bound = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.exited() {
                exited = Some(status);
                return true;
            }
            packet_socket_on(&packet, ifindex)
        });
        if let Some(status) = exited {
            bail!(
                "l2san exited at start ({status}); its log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        ensure!(bound, "l2san has no packet socket on {iface} after 10 s");
        Ok(child)
    }

    /// The process id (l2san itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill9(&mut self) -> Result<()> {
        self.check_running()?;
        self.child.signal(libc::SIGKILL);
        ensure!(
            self.child.wait_exit(Duration::from_secs(5))?.is_some(),
            "l2san still running 5 s after SIGKILL"
        );
        Ok(())
    }

    /// Starts l2san again with the same command line (after [`L2sanProcess::kill9`]).
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        ensure!(
            self.child.exited()?.is_some(),
            "restart of an l2san that still runs"
        );
        self.child = Self::spawn(
            ns,
            &self.bin,
            &self.iface,
            self.ifindex,
            &self.args,
            &self.log,
        )?;
        Ok(())
    }

    /// Fails if l2san has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.exited()? {
            bail!("l2san exited ({status})");
        }
        Ok(())
    }

    /// SIGTERM; l2san must flush and exit 0 within 20 s.
    pub fn stop(mut self) -> Result<()> {
        self.check_running()?;
        let status = self.child.stop(Duration::from_secs(20))?;
        ensure!(
            status.success(),
            "l2san exited with {status} after SIGTERM, expected 0"
        );
        Ok(())
    }

    /// Everything l2san printed so far (all runs).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `RssAnon`, ...), in KiB.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// l2san's counters and gauges as `l2san ctl --socket <socket> metrics` prints them (the
    /// process must run with `--ctl-socket <socket>`), summed over their labels, by name.
    pub fn ctl_metrics(&self, socket: &Path) -> Result<BTreeMap<String, f64>> {
        let out = run_cmd(
            std::process::Command::new(&self.bin)
                .args(["ctl", "--socket"])
                .arg(socket)
                .arg("metrics"),
        )?;
        Ok(parse_metrics(&out))
    }

    /// User plus system CPU time so far, in clock ticks (`/proc/<pid>/stat`, all threads).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let after = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the state (field 3).
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }
}

/// The image region `[opts.region_offset(), + region_len)` of the file at `path`.
pub fn read_region(path: &Path, opts: &WorkloadOpts) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).with_context(|| format!("cannot open {path:?}"))?;
    let mut buf = vec![0u8; opts.region_len()];
    f.read_exact_at(&mut buf, opts.region_offset() as u64)
        .with_context(|| format!("cannot read the workload region of {path:?}"))?;
    Ok(buf)
}

/// Prometheus text (`name{labels} value` lines; `#` lines skipped) as sums by name.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.trim().rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// `l2san` log lines at WARN or ERROR level.
pub fn warn_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_scripts_are_filled_in() {
        for init in [aoe_init(), fcoe_init()] {
            assert!(
                init.starts_with("#!/bin/sh\n") && !init.contains('@'),
                "{init}"
            );
            assert!(init.contains("\nT0=$(ms)\n") && init.contains("\nif cmp -s /tmp/back $LAST"));
            linux::assert_sh_parses(&init);
        }
    }

    #[test]
    fn sectors_differ_and_carry_headers() {
        let a = sector_data(0, 1, 2);
        assert!(a.starts_with(b"L2SAN-WL set=0 block=00001 sector=002\n"));
        assert_ne!(a[64..], sector_data(1, 1, 2)[64..]);
        assert_ne!(a[64..], sector_data(0, 2, 2)[64..]);
        assert_ne!(a[64..], sector_data(0, 1, 3)[64..]);
        assert_eq!(block_data(2, 5).len(), BLOCK);
    }

    #[test]
    fn metrics_parse() {
        let text = "# HELP a x\n# TYPE a counter\na{port=\"0\"} 2\na{port=\"1\"} 3\nb 7\n\n";
        let m = parse_metrics(text);
        assert_eq!(m.get("a"), Some(&5.0));
        assert_eq!(m.get("b"), Some(&7.0));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn progress_parses() {
        let log = "x\r\nL2SAN-WL ACK gen=0 block=3\r\nL2SAN-WL ACK gen=0 block=7\r\n[ 1.0] aoe: \
                   L2SAN-WL ACK gen=1 block=3\r\nL2SAN-WL IOERR gen=1 block=4 dd: EIO\r\n\
                   L2SAN-WL VERIFY OK blocks=8\r\nL2SAN-WL DONE writes=12 ioerrors=1\r\n\
                   L2SAN-WL ACK gen=1 block=7";
        let p = Progress::parse(log);
        assert_eq!(p.latest(), Some((1, 3)));
        assert_eq!(p.writes_acked(8), 12);
        assert_eq!(p.io_errors, ["gen=1 block=4 dd: EIO"]);
        assert_eq!(p.verify.as_deref(), Some("OK blocks=8"));
        assert!(p.ended());
    }

    #[test]
    fn snapshot_rules() {
        let opts = WorkloadOpts {
            blocks: 4,
            gens: 2,
            ..WorkloadOpts::default()
        };
        let original = vec![7u8; opts.region_len()];
        // gen 0 blocks 0..=1 acknowledged, block 2 half written, block 3 untouched.
        let mut r = original.clone();
        r[..2 * BLOCK].copy_from_slice(&set_data(0, 2));
        r[2 * BLOCK..2 * BLOCK + 1024].copy_from_slice(&block_data(0, 2)[..1024]);
        let c = check_snapshot(&r, &original, Some((0, 1)), &opts).unwrap();
        assert_eq!(c.acked_writes, 2);
        assert_eq!(c.unacked_blocks_written, 1);
        // An acknowledged block lost.
        assert!(check_snapshot(&r, &original, Some((0, 2)), &opts).is_err());
        // Garbage in an unacknowledged block.
        let mut g = r.clone();
        g[3 * BLOCK + 700] ^= 1;
        assert!(check_snapshot(&g, &original, Some((0, 1)), &opts).is_err());
        // Generation 0 complete, generation 1 started.
        let mut n = set_data(0, 4);
        n[..BLOCK].copy_from_slice(&block_data(1, 0));
        check_snapshot(&n, &original, Some((0, 3)), &opts).unwrap();
        check_snapshot(&n, &original, Some((1, 0)), &opts).unwrap();
        let mut img = vec![7u8; 3 * opts.region_offset()];
        let at = opts.region_offset();
        img[at..at + opts.region_len()].copy_from_slice(&set_data(1, 4));
        let orig = vec![7u8; img.len()];
        check_final(&img, &orig, &opts, img.len()).unwrap();
        img[0] = 0;
        assert!(check_final(&img, &orig, &opts, img.len()).is_err());
    }
}
