//! Live reload seen by real Linux initiators: l2san serves one disk from `--config`; once the
//! guest has it, the test grows the image, adds a second export to the file and runs
//! `l2san ctl reload`.
//!
//! AoE: the guest must see the new size of e0.0 after `aoe-revalidate`
//! (`echo e0.0 > /dev/etherd/revalidate`) and read its last sector, and find e0.1 *without*
//! asking (no `/dev/etherd/discover`): from l2san's advert alone, and read it whole with the
//! host's MD5.
//!
//! FCoE (VN2VN): the guest must get CAPACITY DATA HAS CHANGED on its next read (the kernel
//! logs it), see the new size after rescanning the device, and find LUN 1 after rescanning
//! the host, with the host's MD5; the session is never lost.
//!
//! l2san only: under `L2SAN_E2E_TARGET=vblade` they say so and do not run.

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use l2san_rig::fcoe_guest::{self, FcoeMode, FcoeScenario};
use l2san_rig::fixture::{ctl, serve_config};
use l2san_rig::linux::{self, Kernel, LinuxOutcome};
use l2san_rig::rig::{self, Child, Netns, Run, Tap};

/// Why these tests do not run against vblade.
const L2SAN_ONLY: &str = "configuration files and live reload are l2san's";
const SECTOR: usize = 512;
const OLD_SECTORS: usize = 8192;
const NEW_SECTORS: usize = 12288;
const EXTRA_SECTORS: usize = 2048;

/// The AoE guest's steps (after [`linux::init_script`]'s prelude and [`linux::AOE_FUNCTIONS`]).
const AOE_STEPS: &str = r#"load_modules net
eth0_up
load_aoe
# Waits up to 30 s for the device $1 from l2san's adverts alone: no discover here.
wait_advert() {
    n=0
    while [ ! -b $1 ] || [ "$(size $1)" = 0 ]; do
        n=$((n + 1)); [ $n -gt 300 ] && fail "no $1 after 30 s"
        usleep 100000
    done
}
D=/dev/etherd/e0.0
wait_advert $D
S1=$(size $D)
say SIZE1 $S1
# The host grows the image and reloads once it reads SIZE1; ask again until the size moves.
n=0
while [ "$(size $D)" = "$S1" ]; do
    n=$((n + 1)); [ $n -gt 120 ] && fail "size of $D still $S1 after 60 s"
    echo e0.0 > /dev/etherd/revalidate
    usleep 500000
done
S2=$(size $D)
say SIZE2 $S2
dd if=$D of=/dev/null bs=512 skip=$((S2 / 512 - 1)) count=1 iflag=direct 2>/tmp/err \
    || fail "reading the last sector: $(cat /tmp/err)"
say LAST-SECTOR-READ
# e0.1 must come from l2san's advert.
E=/dev/etherd/e0.1
wait_advert $E
say NEW-DEVICE $E $(size $E)
M=$(md5sum $E) || fail "md5sum $E"
set -- $M; say NEW-MD5 $1
dmesg | grep -i aoe | sed 's/^/@PREFIX@ dmesg: /'
say DONE
poweroff -f
sleep 10
"#;

fn export(name: &str, image: &Path, aoe: &str) -> String {
    format!(
        "[[export]]\nname = \"{name}\"\nimage = \"{}\"\naoe = \"{aoe}\"\n\n",
        image.display()
    )
}

fn config(exports: &str) -> String {
    format!("[[interface]]\nname = \"tap0\"\n\n{exports}")
}

fn md5_hex(data: &[u8]) -> Result<String> {
    let path = std::env::temp_dir().join(format!("l2san-reload-md5-{}", std::process::id()));
    fs::write(&path, data)?;
    let out = rig::run_cmd(Command::new("md5sum").arg(&path));
    let _ = fs::remove_file(&path);
    Ok(out?
        .split_whitespace()
        .next()
        .context("md5sum printed nothing")?
        .to_string())
}

/// Runs `boot` (a guest, to its end) on a thread; when the guest's serial log at `serial`
/// shows `L2SAN-LINUX SIZE1`, runs `reload`. Returns the guest's outcome.
fn guest_with_reload(
    serial: &Path,
    boot: impl FnOnce() -> Result<LinuxOutcome> + Send,
    reload: impl FnOnce() -> Result<()>,
) -> Result<LinuxOutcome> {
    std::thread::scope(|s| {
        let booted = s.spawn(boot);
        let seen = rig::wait_until(Duration::from_secs(120), || {
            booted.is_finished()
                || fs::read_to_string(serial).is_ok_and(|l| l.contains("L2SAN-LINUX SIZE1"))
        });
        let reloaded = if seen && !booted.is_finished() {
            reload()
        } else {
            Ok(())
        };
        let outcome = booted
            .join()
            .map_err(|_| anyhow::anyhow!("the guest thread panicked"))?;
        reloaded?;
        outcome
    })
}

/// `l2san ctl reload`; its report, or an error with its complaint.
fn ctl_reload(socket: &Path) -> Result<String> {
    let (ok, out, err) = ctl(&rig::l2san_bin()?, socket, &["reload"])?;
    ensure!(ok, "ctl reload: {err}");
    Ok(out.trim().replace('\n', "; "))
}

/// What both tests share: l2san serving `disk` (`OLD_SECTORS`) on `tap0` from `cfg`, with
/// `extra` (`EXTRA_SECTORS` of known bytes) ready to be added.
/// Fields drop in this order: l2san before the tap, the tap before its namespace.
struct Fx {
    l2san: Child,
    log: PathBuf,
    socket: PathBuf,
    tap: Tap,
    ns: Netns,
    cfg: PathBuf,
    extra_data: Vec<u8>,
    extra: PathBuf,
    disk: PathBuf,
    kernel: Kernel,
}

impl Fx {
    /// Writes the images and a config of `first(disk)`, starts l2san.
    fn start(run: &Run, first: impl FnOnce(&Path) -> String) -> Result<Fx> {
        let kernel = Kernel::debian()?;
        let disk = run.path("disk.img");
        fs::write(&disk, vec![0x11u8; OLD_SECTORS * SECTOR])?;
        let extra = run.path("extra.img");
        let extra_data: Vec<u8> = (0..EXTRA_SECTORS * SECTOR)
            .map(|i| (i / 512) as u8)
            .collect();
        fs::write(&extra, &extra_data)?;
        let cfg = run.path("l2san.toml");
        fs::write(&cfg, config(&first(&disk)))?;

        let ns = Netns::new()?;
        let tap = ns.tap("tap0", 1500)?;
        let socket = run.path("ctl.sock");
        let log = run.path("l2san.log");
        let l2san = serve_config(&ns, &cfg, &socket, &log)?;
        Ok(Fx {
            l2san,
            log,
            socket,
            tap,
            ns,
            cfg,
            extra_data,
            extra,
            disk,
            kernel,
        })
    }

    /// The reload: grows `disk` to `NEW_SECTORS`, writes a config of `exports`, `ctl reload`.
    fn grow_and_reload(&self, test: &str, exports: &str) -> Result<()> {
        let f = fs::OpenOptions::new().write(true).open(&self.disk)?;
        f.set_len((NEW_SECTORS * SECTOR) as u64)?;
        drop(f);
        fs::write(&self.cfg, config(exports))?;
        let said = ctl_reload(&self.socket)?;
        rig::report(format_args!("{test}: ctl reload said: {said}"));
        Ok(())
    }

    /// The guest ran to its end and saw the old size, then the new one.
    fn check_resized(&self, guest: &LinuxOutcome) -> Result<()> {
        guest.check_done().with_context(|| {
            format!(
                "guest log:\n{}\nl2san log:\n{}",
                guest.serial_log,
                fs::read_to_string(&self.log).unwrap_or_default()
            )
        })?;
        ensure!(guest.get("SIZE1") == Some(&(OLD_SECTORS * SECTOR).to_string()[..]));
        ensure!(guest.get("SIZE2") == Some(&(NEW_SECTORS * SECTOR).to_string()[..]));
        Ok(())
    }

    /// l2san still runs, and exits 0 on SIGTERM.
    fn stop(mut self) -> Result<()> {
        ensure!(self.l2san.exited()?.is_none(), "l2san exited");
        let status = self.l2san.stop(Duration::from_secs(20))?;
        ensure!(status.success(), "l2san exit status {status}");
        Ok(())
    }
}

#[test]
fn linux_aoe_sees_a_resize_and_a_new_export() {
    rig::e2e_l2san("linux_aoe_reload", L2SAN_ONLY, |run: &Run| {
        let fx = Fx::start(run, |disk| export("disk", disk, "0.0"))?;

        let mut w = linux::base_initramfs(&fx.kernel, &["aoe"], "aoe")?;
        let init = linux::init_script("L2SAN-LINUX", &[linux::AOE_FUNCTIONS, AOE_STEPS]);
        w.file("init", 0o755, init.as_bytes());
        let initramfs = run.path("initramfs-reload.cpio");
        fs::write(&initramfs, w.finish())?;
        let guest = linux::Guest {
            name: "linux-reload",
            kernel: &fx.kernel,
            initramfs: &initramfs,
            params: "",
            mac: None,
            memory_mb: 256,
        };
        let guest = guest_with_reload(
            &run.path("linux-reload.serial.log"),
            || linux::boot_guest(&fx.ns, &fx.tap, &guest, Duration::from_secs(150), run.dir()),
            || {
                let two = [
                    export("disk", &fx.disk, "0.0"),
                    export("extra", &fx.extra, "0.1"),
                ];
                fx.grow_and_reload("linux_aoe_reload", &two.concat())
            },
        )?;
        fx.check_resized(&guest)?;
        ensure!(guest.get("LAST-SECTOR-READ").is_some());
        let want = format!("/dev/etherd/e0.1 {}", EXTRA_SECTORS * SECTOR);
        ensure!(guest.get("NEW-DEVICE") == Some(want.as_str()));
        ensure!(
            guest.md5("NEW-MD5")? == md5_hex(&fx.extra_data)?,
            "e0.1 read by the guest differs from the image"
        );
        fx.stop()?;
        rig::report(format_args!(
            "linux_aoe_reload: guest saw {} -> {} bytes after aoe-revalidate and found e0.1 from \
             the advert (MD5 equal), {:.1} s",
            OLD_SECTORS * SECTOR,
            NEW_SECTORS * SECTOR,
            guest.elapsed.as_secs_f64()
        ));
        Ok(())
    });
}

fn lun(name: &str, image: &Path, lun: u16) -> String {
    format!(
        "[[export]]\nname = \"{name}\"\nimage = \"{}\"\nfcoe-lun = {lun}\n\n",
        image.display()
    )
}

#[test]
fn linux_fcoe_sees_a_resize_and_a_new_lun() {
    rig::e2e_l2san("linux_fcoe_reload", L2SAN_ONLY, |run: &Run| {
        let fx = Fx::start(run, |disk| lun("disk", disk, 0))?;
        let scenario = FcoeScenario {
            mode: FcoeMode::Reload,
            timeout: Duration::from_secs(150),
            ..FcoeScenario::default()
        };
        let guest = guest_with_reload(
            &run.path("linux-fcoe.serial.log"),
            || fcoe_guest::run_fcoe(&fx.ns, &fx.tap, &fx.kernel, &scenario, run.dir()),
            || {
                let two = [lun("disk", &fx.disk, 0), lun("extra", &fx.extra, 1)];
                fx.grow_and_reload("linux_fcoe_reload", &two.concat())
            },
        )?;
        fx.check_resized(&guest)?;
        let ua: u32 = guest.get("CAPACITY-UA").unwrap_or("0").parse()?;
        ensure!(
            ua >= 1,
            "the kernel never logged the capacity unit attention"
        );
        let new = guest.get("NEW-LUN").context("no NEW-LUN")?;
        ensure!(
            new.ends_with(&format!(" {}", EXTRA_SECTORS * SECTOR)),
            "NEW-LUN {new}"
        );
        ensure!(
            guest.md5("NEW-MD5")? == md5_hex(&fx.extra_data)?,
            "LUN 1 read by the guest differs from the image"
        );
        fx.stop()?;
        rig::report(format_args!(
            "linux_fcoe_reload: guest got CAPACITY DATA HAS CHANGED ({ua}x), saw {} -> {} bytes \
             after a device rescan, {} LUN-change notices, found LUN 1 after a host rescan (MD5 \
             equal), {:.1} s",
            OLD_SECTORS * SECTOR,
            NEW_SECTORS * SECTOR,
            guest.get("LUNS-UA").unwrap_or("?"),
            guest.elapsed.as_secs_f64()
        ));
        Ok(())
    });
}
