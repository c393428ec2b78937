//! A Linux guest as AoE initiator: a Debian kernel, fetched with apt and cached, booted in QEMU
//! with a busybox initramfs whose `/init` runs a scenario and reports on the serial console.
//!
//! The kernel package is the one `linux-image-amd64` depends on (`apt-cache depends`), downloaded
//! with `apt-get download` and unpacked with `dpkg -x` under `<rig_dir>/linux/<package>/`. It is
//! never installed. Only the modules the guest needs go into the initramfs, in dependency order
//! (read from each module's `.modinfo` `depends=`), loaded with `insmod`.
//!
//! The AoE scenario ([`run_aoe`]) on `/dev/etherd/e<shelf>.<slot>`, reported as lines
//! `L2SAN-LINUX <KEY> <value>`:
//! 1. `MTU`: eth0's MTU, set from the `l2san.mtu=` kernel parameter before `aoe` loads;
//! 2. `DEVICE`: the device and its size in bytes;
//! 3. `READ-RATE`: busybox dd's summary of an O_DIRECT read of the whole device in 1 MiB blocks;
//! 4. `READ-MD5`: md5 of the whole device (buffered read);
//! 5. writes [`aoe_pattern`] at LBA [`AOE_PATTERN_LBA`] with O_DIRECT and fsync, then `READBACK-MD5`:
//!    md5 of those sectors re-read with O_DIRECT;
//! 6. `WRITE-RATE`: dd's summary of writing zeros over the last `write_mib` MiB with O_DIRECT;
//! 7. `DONE`, then `poweroff -f`. Any failure prints `FAIL <reason>` and powers off.
//!
//! [`expected_after_aoe`] gives what the image must hold afterwards.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::cpio;
use crate::fixture::{fmt_mac, Mac};
use crate::rig::{rig_dir, run_cmd, wait_until, FileLock, Netns, Qemu, Tap};

/// The busybox the initramfs is built from (package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// Modules that bring up eth0 on QEMU's virtio-net-pci.
pub const NET_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// First sector the AoE scenario writes [`aoe_pattern`] at (odd on purpose).
pub const AOE_PATTERN_LBA: u64 = 12345;

/// Sectors of [`aoe_pattern`] (odd on purpose).
pub const AOE_PATTERN_SECTORS: u64 = 37;

/// An unpacked Debian kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Package name, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// Where the package was unpacked.
    pub root: PathBuf,
}

impl Kernel {
    /// The kernel `linux-image-amd64` depends on (or `$L2SAN_LINUX_PACKAGE`), fetched and unpacked
    /// on first use and cached. Holds a lock while fetching so parallel callers wait for one fetch.
    pub fn debian() -> Result<Kernel> {
        let package = match std::env::var("L2SAN_LINUX_PACKAGE") {
            Ok(p) if !p.is_empty() => p,
            _ => default_package()?,
        };
        let cache = rig_dir().join("linux").join(&package);
        let _lock = FileLock::acquire(&rig_dir().join("linux.lock"))?;
        let ready = cache.join("READY");
        let root = cache.join("root");
        if !ready.exists() {
            if cache.exists() {
                fs::remove_dir_all(&cache).with_context(|| format!("cannot clean {cache:?}"))?;
            }
            let dl = cache.join("download");
            fs::create_dir_all(&dl)?;
            eprintln!("rig: fetching {package} into {cache:?} (once)");
            run_cmd(
                Command::new("apt-get")
                    .args(["download", &package])
                    .current_dir(&dl),
            )
            .with_context(|| format!("apt-get download {package} failed"))?;
            let deb = fs::read_dir(&dl)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .ok_or_else(|| anyhow!("apt-get download {package} left no .deb in {dl:?}"))?;
            run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))
                .with_context(|| format!("dpkg -x {deb:?} failed"))?;
            fs::remove_dir_all(&dl)?;
            fs::write(&ready, b"")?;
        }
        let release = fs::read_dir(root.join("lib/modules"))
            .context("unpacked kernel has no lib/modules")?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .ok_or_else(|| anyhow!("unpacked kernel has no lib/modules/<release>"))?;
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
        ensure!(vmlinuz.is_file(), "{vmlinuz:?} is missing");
        Ok(Kernel {
            package,
            release,
            vmlinuz,
            root,
        })
    }

    /// `lib/modules/<release>` of the unpacked package.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// The `.ko` files needed to load `wanted`, dependencies first. Modules built into the kernel
    /// (`modules.builtin`) are left out.
    pub fn module_closure(&self, wanted: &[&str]) -> Result<Vec<PathBuf>> {
        let dir = self.modules_dir();
        let mut index = HashMap::new();
        index_modules(&dir.join("kernel"), &mut index)?;
        let builtin: HashSet<String> = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|f| module_name(f.trim_end_matches(".ko")))
            .collect();
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in wanted {
            visit(
                &module_name(name),
                &index,
                &builtin,
                &mut seen,
                &mut order,
                0,
            )?;
        }
        Ok(order)
    }
}

/// The package `apt-cache depends linux-image-amd64` names.
fn default_package() -> Result<String> {
    let out = run_cmd(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("cannot ask apt-cache which kernel linux-image-amd64 depends on")?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().trim_matches(|c| c == '<' || c == '>'))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("apt-cache depends linux-image-amd64 names no linux-image-*"))
}

/// Module names treat `-` and `_` alike.
fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {dir:?}"))? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = name.strip_suffix(".ko") {
                index.insert(module_name(stem), path.clone());
            }
        }
    }
    Ok(())
}

fn visit(
    name: &str,
    index: &HashMap<String, PathBuf>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    order: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<()> {
    ensure!(depth < 32, "module dependency loop at {name}");
    if builtin.contains(name) || !seen.insert(name.to_string()) {
        return Ok(());
    }
    let path = index
        .get(name)
        .ok_or_else(|| anyhow!("module {name} is neither in the package nor built in"))?;
    let bytes = fs::read(path).with_context(|| format!("cannot read {path:?}"))?;
    for dep in modinfo_depends(&bytes) {
        visit(&module_name(&dep), index, builtin, seen, order, depth + 1)?;
    }
    order.push(path.clone());
    Ok(())
}

/// The `depends=` list from a module's `.modinfo` strings (NUL-separated `key=value`).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether an ELF file has no program interpreter (statically linked).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
    })
}

/// The bytes the scenario writes at [`AOE_PATTERN_LBA`]: 37 sectors, each starting with a readable
/// tag and otherwise position-dependent.
pub fn aoe_pattern() -> Vec<u8> {
    let mut data = vec![0u8; (AOE_PATTERN_SECTORS * 512) as usize];
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ 0x5a;
    }
    for (s, sector) in data.chunks_exact_mut(512).enumerate() {
        let tag = format!("L2SAN-LINUX pattern sector {s:02}\n");
        sector[..tag.len()].copy_from_slice(tag.as_bytes());
    }
    data
}

/// What an image holds after the AoE scenario ran on `original` with `write_mib`.
pub fn expected_after_aoe(original: &[u8], write_mib: u64) -> Vec<u8> {
    expected_after_pattern(original, AOE_PATTERN_LBA, write_mib)
}

/// What an image holds after a scenario wrote [`aoe_pattern`] at `lba` of `original`, then zeros
/// over its last `write_mib` MiB (the AoE scenario, and the read-write FCoE one).
pub fn expected_after_pattern(original: &[u8], lba: u64, write_mib: u64) -> Vec<u8> {
    let mut image = original.to_vec();
    let at = (lba * 512) as usize;
    let pattern = aoe_pattern();
    image[at..at + pattern.len()].copy_from_slice(&pattern);
    let mib = image.len() / (1 << 20);
    let from = (mib - write_mib as usize) << 20;
    image[from..mib << 20].fill(0);
    image
}

/// The start of every guest's `/init`, with `@PREFIX@` for its console prefix: `PATH`, `/proc`,
/// `/sys` and `/dev` mounted, and the functions the scenarios share:
/// - `say <words>`: a `@PREFIX@ <words>` line on the console;
/// - `fail <reason>`: `FAIL <reason>`, then `diagnose` (the last 40 kernel messages as `dmesg:`
///   lines, unless the script defines its own), then power off;
/// - `ms`: milliseconds since boot from `/proc/uptime`, which always has two decimals (Debian's
///   busybox dd prints no rate); the fraction gets a leading 1 so that "0.09" is not read as
///   octal;
/// - `load_modules <list>`: `insmod` each module of `/modules/<list>.order` (see
///   [`base_initramfs`]) in order;
/// - `eth0_up [mtu]`: waits up to 10 s for eth0, sets its MTU if given, and sets it up.
///
/// Then it says `START`.
const INIT_PRELUDE: &str = r#"#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "@PREFIX@ $*"; }
diagnose() { dmesg | tail -n 40 | sed 's/^/@PREFIX@ dmesg: /'; }
fail() {
    say "FAIL $*"
    diagnose
    poweroff -f
    sleep 10
}
ms() { read t rest < /proc/uptime; echo $((${t%.*} * 1000 + 1${t#*.} * 10 - 1000)); }
load_modules() {
    for m in $(cat /modules/$1.order); do
        insmod /modules/$m || fail "insmod $m"
    done
}
eth0_up() {
    n=0
    while [ ! -e /sys/class/net/eth0 ]; do
        n=$((n + 1)); [ $n -gt 100 ] && fail "no eth0 after 10 s"
        usleep 100000
    done
    if [ -n "$1" ]; then
        ip link set eth0 mtu $1 || fail "cannot set MTU $1 on eth0"
    fi
    ip link set eth0 up || fail "cannot set eth0 up"
}
say START
"#;

/// A guest's `/init`: [`INIT_PRELUDE`], then `parts` in order (shell functions such as
/// [`AOE_FUNCTIONS`], then the scenario's own steps), every `@PREFIX@` replaced by `prefix`.
pub fn init_script(prefix: &str, parts: &[&str]) -> String {
    let mut script = INIT_PRELUDE.to_string();
    for part in parts {
        script.push_str(part);
    }
    script.replace("@PREFIX@", prefix)
}

/// Shell functions of the AoE guests (after [`INIT_PRELUDE`]):
/// - `load_aoe`: loads `/modules/aoe.order`, the aoe driver bound to eth0 only;
/// - `size <device>`: its size in bytes, 0 if it has none (yet);
/// - `wait_aoe <device>`: waits up to 30 s for the device to exist with a size, asking the
///   segment again (`/dev/etherd/discover`) every 2 s.
/// - `aoe_up <mtu> <e<shelf>.<slot>>`: eth0 up at that MTU (`MTU` line), the aoe driver on it,
///   and the device waited for: `$D`.
pub const AOE_FUNCTIONS: &str = r#"load_aoe() {
    for m in $(cat /modules/aoe.order); do
        if [ $m = aoe.ko ]; then
            insmod /modules/$m aoe_iflist=eth0 || fail "insmod $m"
        else
            insmod /modules/$m || fail "insmod $m"
        fi
    done
}
size() { blockdev --getsize64 $1 2>/dev/null || echo 0; }
wait_aoe() {
    n=0
    while [ ! -b $1 ] || [ "$(size $1)" = 0 ]; do
        n=$((n + 1)); [ $n -gt 300 ] && fail "no $1 after 30 s"
        if [ $((n % 20)) -eq 0 ] && [ -e /dev/etherd/discover ]; then echo > /dev/etherd/discover; fi
        usleep 100000
    done
}
aoe_up() {
    load_modules net
    eth0_up $1
    say MTU $(cat /sys/class/net/eth0/mtu)
    load_aoe
    D=/dev/etherd/$2
    wait_aoe $D
}
"#;

/// The AoE scenario's steps (after [`INIT_PRELUDE`] and [`AOE_FUNCTIONS`]).
const AOE_STEPS: &str = r#"MTU=1500
DEV=e0.0
WMIB=32
for a in $(cat /proc/cmdline); do
    case "$a" in
    l2san.mtu=*) MTU=${a#*=} ;;
    l2san.dev=*) DEV=${a#*=} ;;
    l2san.wmib=*) WMIB=${a#*=} ;;
    esac
done
aoe_up $MTU $DEV
SIZE=$(blockdev --getsize64 $D) || fail "blockdev $D"
say DEVICE $D $SIZE
T0=$(ms)
dd if=$D of=/dev/null bs=1M iflag=direct 2>/tmp/err || fail "direct read: $(cat /tmp/err)"
say READ-RATE $SIZE bytes $(($(ms) - T0)) ms
S=$(md5sum $D) || fail "md5sum $D"
set -- $S; say READ-MD5 $1
dd if=/pattern.bin of=$D bs=512 seek=@PLBA@ oflag=direct conv=notrunc,fsync 2>/tmp/err \
    || fail "pattern write: $(cat /tmp/err)"
dd if=$D of=/tmp/back bs=512 skip=@PLBA@ count=@PSECTORS@ iflag=direct 2>/tmp/err \
    || fail "pattern read-back: $(cat /tmp/err)"
S=$(md5sum /tmp/back); set -- $S; say READBACK-MD5 $1
T0=$(ms)
dd if=/dev/zero of=$D bs=1M seek=$((SIZE / 1048576 - WMIB)) count=$WMIB oflag=direct conv=notrunc,fsync \
    2>/tmp/err || fail "direct write: $(cat /tmp/err)"
say WRITE-RATE $((WMIB * 1048576)) bytes $(($(ms) - T0)) ms
dmesg | grep -i aoe | sed 's/^/@PREFIX@ dmesg: /'
say DONE
poweroff -f
sleep 10
"#;

/// The part every guest's initramfs shares: busybox (with a symlink per applet), `/dev/console`,
/// the virtio-net modules listed in `modules/net.order` and the modules `wanted` needs beyond
/// them in `modules/<name>.order`, in load order. The caller adds its files and `/init`.
pub fn base_initramfs(kernel: &Kernel, wanted: &[&str], name: &str) -> Result<cpio::Writer> {
    let busybox = fs::read(BUSYBOX)
        .with_context(|| format!("cannot read {BUSYBOX}: install busybox-static"))?;
    ensure!(
        is_static_elf(&busybox),
        "{BUSYBOX} is dynamically linked: install busybox-static"
    );
    let applets = run_cmd(Command::new(BUSYBOX).arg("--list"))?;
    let mut w = cpio::Writer::new();
    for dir in ["proc", "sys", "dev", "tmp", "bin", "modules"] {
        w.dir(dir, 0o755);
    }
    w.char_device("dev/console", 0o600, 5, 1);
    w.file("bin/busybox", 0o755, &busybox);
    // Not one named busybox: that would replace the binary with a symlink loop.
    for applet in applets.split_whitespace().filter(|a| *a != "busybox") {
        w.symlink(&format!("bin/{applet}"), "busybox");
    }
    let net = kernel.module_closure(NET_MODULES)?;
    let mut extra = kernel.module_closure(wanted)?;
    extra.retain(|m| !net.contains(m));
    let extra_order = format!("modules/{name}.order");
    for (list, order_file) in [(&net, "modules/net.order"), (&extra, extra_order.as_str())] {
        let mut order = String::new();
        for path in list.iter() {
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("bad module path {path:?}"))?;
            w.file(&format!("modules/{file}"), 0o644, &fs::read(path)?);
            order.push_str(file);
            order.push('\n');
        }
        w.file(order_file, 0o644, order.as_bytes());
    }
    Ok(w)
}

/// Builds the AoE scenario's initramfs (uncompressed newc cpio) for `kernel`.
pub fn aoe_initramfs(kernel: &Kernel) -> Result<Vec<u8>> {
    let mut w = base_initramfs(kernel, &["aoe"], "aoe")?;
    w.file("pattern.bin", 0o644, &aoe_pattern());
    w.file("init", 0o755, aoe_init().as_bytes());
    Ok(w.finish())
}

/// The AoE scenario's `/init`.
fn aoe_init() -> String {
    init_script("L2SAN-LINUX", &[AOE_FUNCTIONS, AOE_STEPS])
        .replace("@PLBA@", &AOE_PATTERN_LBA.to_string())
        .replace("@PSECTORS@", &AOE_PATTERN_SECTORS.to_string())
}

/// Options for [`run_aoe`].
#[derive(Debug, Clone)]
pub struct AoeScenario {
    /// AoE shelf of the device.
    pub shelf: u16,
    /// AoE slot of the device.
    pub slot: u8,
    /// The guest's eth0 MTU (make the tap's at least this).
    pub mtu: u32,
    /// MiB the write-rate step overwrites with zeros at the end of the device.
    pub write_mib: u64,
    /// How long the whole guest run may take.
    pub timeout: Duration,
    /// Guest memory.
    pub memory_mb: u32,
}

impl Default for AoeScenario {
    fn default() -> Self {
        AoeScenario {
            shelf: 0,
            slot: 0,
            mtu: 1500,
            write_mib: 32,
            timeout: Duration::from_secs(100),
            memory_mb: 384,
        }
    }
}

/// What the guest reported.
#[derive(Debug, Clone)]
pub struct LinuxOutcome {
    /// The guest's serial console.
    pub serial_log: String,
    /// `L2SAN-LINUX <KEY> <value>` lines, by key (the last one wins).
    pub report: BTreeMap<String, String>,
    /// From QEMU start to the final line.
    pub elapsed: Duration,
    /// Whether QEMU was still running when the timeout struck.
    pub timed_out: bool,
}

impl LinuxOutcome {
    /// Parses a guest's serial log: `L2SAN-LINUX <KEY> <value>` lines of complete lines only.
    pub fn from_log(serial_log: String, elapsed: Duration, timed_out: bool) -> LinuxOutcome {
        let mut report = BTreeMap::new();
        let complete = serial_log.rfind('\n').map_or("", |at| &serial_log[..at]);
        for line in complete.lines() {
            if let Some(rest) = line.trim().strip_prefix("L2SAN-LINUX ") {
                let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                report.insert(key.to_string(), value.trim().to_string());
            }
        }
        LinuxOutcome {
            serial_log,
            report,
            elapsed,
            timed_out,
        }
    }

    /// The value reported for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.report.get(key).map(String::as_str)
    }

    /// Fails unless the scenario ran to `DONE` without `FAIL`.
    pub fn check_done(&self) -> Result<()> {
        if let Some(why) = self.get("FAIL") {
            bail!("guest failed: {why}");
        }
        if self.get("DONE").is_none() {
            if self.timed_out {
                bail!("guest did not finish within the timeout");
            }
            bail!("guest stopped before DONE");
        }
        Ok(())
    }

    /// A reported md5, or an error naming the missing key.
    pub fn md5(&self, key: &str) -> Result<&str> {
        self.get(key)
            .filter(|v| v.len() == 32)
            .ok_or_else(|| anyhow!("guest reported no {key}"))
    }

    /// The rate of a `<bytes> bytes <ms> ms` report (`READ-RATE`, `WRITE-RATE`) in MB/s
    /// (10^6 bytes per second). `/proc/uptime` gives the guest 10 ms resolution.
    pub fn rate_mb_s(&self, key: &str) -> Option<f64> {
        let mut words = self.get(key)?.split_whitespace();
        let bytes: f64 = words.next()?.parse().ok()?;
        let ms: f64 = words.nth(1)?.parse().ok()?;
        Some(bytes / 1e3 / ms.max(10.0))
    }

    /// [`LinuxOutcome::rate_mb_s`] for printing: `"41.2 MB/s (64 MiB in 1630 ms)"`.
    pub fn rate(&self, key: &str) -> String {
        let Some(rate) = self.rate_mb_s(key) else {
            return format!("? ({key} {:?})", self.get(key));
        };
        let words: Vec<&str> = self.get(key).unwrap_or("").split_whitespace().collect();
        let mib = words[0].parse::<u64>().unwrap_or(0) >> 20;
        format!("{rate:.1} MB/s ({mib} MiB in {} ms)", words[2])
    }
}

/// Boots `kernel` in QEMU on `tap` with the AoE scenario and waits for it to finish. Files go in
/// `dir`. A scenario failure is not an error here: see [`LinuxOutcome::check_done`].
pub fn run_aoe(
    ns: &Netns,
    tap: &Tap,
    kernel: &Kernel,
    scenario: &AoeScenario,
    dir: &Path,
) -> Result<LinuxOutcome> {
    ensure_tap_fits(tap, scenario.mtu)?;
    let initramfs = dir.join("initramfs-aoe.cpio");
    fs::write(&initramfs, aoe_initramfs(kernel)?)?;
    let params = format!(
        "l2san.mtu={} l2san.dev=e{}.{} l2san.wmib={}",
        scenario.mtu, scenario.shelf, scenario.slot, scenario.write_mib
    );
    let guest = Guest {
        name: "linux",
        kernel,
        initramfs: &initramfs,
        params: &params,
        mac: None,
        memory_mb: scenario.memory_mb,
    };
    boot_guest(ns, tap, &guest, scenario.timeout, dir)
}

/// Fails unless `tap` carries the frames of a guest whose eth0 has `mtu`.
pub fn ensure_tap_fits(tap: &Tap, mtu: u32) -> Result<()> {
    ensure!(
        tap.mtu >= mtu,
        "tap MTU {} is below the guest's {mtu}",
        tap.mtu
    );
    Ok(())
}

/// The kernel parameters every guest boots with: the console on the serial port, no IPv6 on the
/// segment, and no reboot on a panic (QEMU runs with `-no-reboot`).
pub const KERNEL_PARAMS: &str = "console=ttyS0 quiet panic=-1 ipv6.disable=1";

/// A Linux guest in QEMU: `kernel` booted straight into `initramfs`.
#[derive(Debug, Clone, Copy)]
pub struct Guest<'a> {
    /// Name of the QEMU log files.
    pub name: &'a str,
    pub kernel: &'a Kernel,
    pub initramfs: &'a Path,
    /// The scenario's kernel parameters (`l2san.*=`), after [`KERNEL_PARAMS`].
    pub params: &'a str,
    /// The NIC's MAC (QEMU's default when `None`).
    pub mac: Option<Mac>,
    pub memory_mb: u32,
}

impl Guest<'_> {
    /// Starts QEMU on `tap` inside `ns`; its logs go in `dir` (see [`Qemu::start`]).
    pub fn start(&self, ns: &Netns, tap: &Tap, dir: &Path) -> Result<Qemu> {
        let mut append = KERNEL_PARAMS.to_string();
        if !self.params.is_empty() {
            append = format!("{append} {}", self.params);
        }
        let mut args: Vec<OsString> = vec![
            "-kernel".into(),
            self.kernel.vmlinuz.clone().into(),
            "-initrd".into(),
            self.initramfs.into(),
            "-append".into(),
            append.into(),
        ];
        if let Some(mac) = &self.mac {
            // Qemu::start adds the NIC; its MAC is set as a global property of the device type.
            args.push("-global".into());
            args.push(format!("virtio-net-pci.mac={}", fmt_mac(mac)).into());
        }
        Qemu::start(self.name, ns, tap, self.memory_mb, dir, args)
    }
}

/// Boots `guest` on `tap` and waits for the scenario's `L2SAN-LINUX DONE` or `FAIL` line, or for
/// QEMU to end, or for `timeout`. A scenario failure is not an error here: see
/// [`LinuxOutcome::check_done`].
pub fn boot_guest(
    ns: &Netns,
    tap: &Tap,
    guest: &Guest,
    timeout: Duration,
    dir: &Path,
) -> Result<LinuxOutcome> {
    let start = Instant::now();
    let mut qemu = guest.start(ns, tap, dir)?;
    let finished = |log: &str| {
        log.lines()
            .any(|l| l.contains("L2SAN-LINUX DONE") || l.contains("L2SAN-LINUX FAIL"))
    };
    let ended = wait_until(timeout, || {
        matches!(qemu.child().exited(), Ok(Some(_))) || finished(&qemu.serial_log())
    });
    let elapsed = start.elapsed();
    // poweroff -f ends QEMU; give the guest a moment to print its last lines.
    qemu.child().wait_exit(Duration::from_secs(10))?;
    // Killing a QEMU that did not power off is part of the plan, not an error.
    let _ = qemu.child().stop(Duration::from_secs(2));
    Ok(LinuxOutcome::from_log(qemu.serial_log(), elapsed, !ended))
}

/// Fails unless `sh -n` (busybox's if it is there) reads `script` without a syntax error.
#[cfg(test)]
pub(crate) fn assert_sh_parses(script: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let shell = if Path::new(BUSYBOX).is_file() {
        vec![BUSYBOX, "sh"]
    } else {
        vec!["sh"]
    };
    let mut child = Command::new(shell[0])
        .args(&shell[1..])
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aoe_init_parses() {
        let init = aoe_init();
        assert!(init.starts_with("#!/bin/sh\n") && !init.contains('@'));
        assert_sh_parses(&init);
    }

    #[test]
    fn depends_parse() {
        let ko = b"xx\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(modinfo_depends(ko), ["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0name=aoe\0").is_empty());
        assert!(modinfo_depends(b"nothing").is_empty());
    }

    #[test]
    fn outcome_parse() {
        let log = "junk\r\nL2SAN-LINUX START\r\nL2SAN-LINUX READ-RATE 67108864 bytes 1600 ms\r\nL2SAN-LINUX DONE\r\n";
        let o = LinuxOutcome::from_log(log.into(), Duration::ZERO, false);
        o.check_done().unwrap();
        assert_eq!(o.rate_mb_s("READ-RATE"), Some(67108864.0 / 1600.0 / 1000.0));
        assert_eq!(o.rate("READ-RATE"), "41.9 MB/s (64 MiB in 1600 ms)");
        assert!(o.rate_mb_s("WRITE-RATE").is_none());
        let o = LinuxOutcome::from_log("L2SAN-LINUX FAIL no eth0\n".into(), Duration::ZERO, false);
        assert!(o.check_done().is_err());
    }

    #[test]
    fn expected_image() {
        let original = vec![0xa5u8; 48 << 20];
        let after = expected_after_aoe(&original, 32);
        assert_eq!(
            after[..AOE_PATTERN_LBA as usize * 512],
            original[..AOE_PATTERN_LBA as usize * 512]
        );
        assert!(after[16 << 20..].iter().all(|&b| b == 0));
        assert_eq!(after[(16 << 20) - 1], 0xa5);
        assert!(
            after[AOE_PATTERN_LBA as usize * 512..].starts_with(b"L2SAN-LINUX pattern sector 00\n")
        );
    }

    #[test]
    fn elf_checks() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        if let Ok(bytes) = fs::read(BUSYBOX) {
            assert!(is_static_elf(&bytes), "{BUSYBOX} is not static");
        }
    }
}
