//! Crashes and faults under a real Linux AoE initiator (QEMU, busybox initramfs) running the
//! verified write workload of [`l2san_rig::workload`]:
//!
//! - `crash_restart_writeback`, `crash_restart_sync`: once the guest has some writes
//!   acknowledged, l2san is killed with SIGKILL; the image is read at once (what survived the
//!   kill: every block the guest saw acknowledged must be there, and nothing but old or new data
//!   anywhere in the region), and l2san is started again with the same command line on the same
//!   tap and image. The guest's aoe driver retransmits until the target answers again, so the
//!   workload must end with no I/O error and a verified read-back, and the image must hold the
//!   last generation afterwards.
//! - `link_flap_and_mtu_change_under_load`: the tap goes down for 1.5 s and up again, its MTU
//!   goes 1500 → 9000 → 1500 (the guest stays at 1500, so frames stay small), then another flap;
//!   l2san must keep running (and not spin while the link is down), and the workload must end
//!   clean and verified.
//!
//! l2san only ([`rig::e2e_l2san`]): under `L2SAN_E2E_TARGET=vblade` they say so and do not run.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use l2san_rig::linux::Kernel;
use l2san_rig::rig::{self, Netns, Run};
use l2san_rig::workload::{self, L2sanProcess, Progress, WorkloadGuest, WorkloadOpts};
use l2san_rig::{bootdisk, fixture};

/// Image size: the workload region (1 MiB .. 9 MiB) and some untouched space after it.
const IMAGE_MIB: usize = 16;
/// Writes acknowledged before the kill.
const KILL_AFTER_WRITES: u64 = 40;
/// Time for the guest to boot, find the device and reach the kill point.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Time for the rest of the workload.
const FINISH_TIMEOUT: Duration = Duration::from_secs(150);
/// Why these tests do not run against vblade.
const L2SAN_ONLY: &str = "they kill and restart l2san, and flap its link, which vblade exits on";

fn crash_restart(run: &Run, sync: bool) -> Result<()> {
    let kernel = Kernel::debian()?;
    let image = run.path("disk.img");
    let original = bootdisk::build(IMAGE_MIB << 20);
    std::fs::write(&image, &original)?;
    let opts = WorkloadOpts::default();

    let ns = Netns::new()?;
    let tap = ns.tap("tap0", 1500)?;
    let export = format!("0.0={}{}", image.display(), if sync { ",sync" } else { "" });
    let mut l2san = L2sanProcess::start(
        &ns,
        &tap.name,
        &["--aoe".into(), export],
        &run.path("l2san.log"),
    )?;
    let mut guest = WorkloadGuest::start(&ns, &tap, &kernel, &opts, run.dir())?;
    guest.wait_for("writes to kill at", BOOT_TIMEOUT, |p| {
        p.writes_acked(opts.blocks) >= KILL_AFTER_WRITES
    })?;

    fixture::kill_restart_resume(
        run,
        &ns,
        &mut l2san,
        &mut guest,
        &image,
        &original,
        &opts,
        FINISH_TIMEOUT,
    )?;

    let (p, elapsed, log) = finish(guest, l2san, &image, &original, &opts)?;
    rig::report(format_args!(
        "{}: {} (guest run {:.1} s); read-back {}; image holds the last generation in all {} \
         blocks; l2san warnings: {}",
        run.name(),
        p.written.as_deref().unwrap_or("?"),
        elapsed.as_secs_f64(),
        p.verify.as_deref().unwrap_or("?"),
        opts.blocks,
        workload::warn_lines(&log).len()
    ));
    for line in p.aoe_stats.iter().chain(p.dmesg.iter()).take(30) {
        rig::report(format_args!("{}:   guest: {line}", run.name()));
    }
    Ok(())
}

/// Lets the guest's workload end, checks it ended clean and verified, stops l2san (it must
/// still run, and exit 0) and checks the image holds the last generation. Returns the guest's
/// progress, its run time and l2san's log.
fn finish(
    guest: WorkloadGuest,
    mut l2san: L2sanProcess,
    image: &Path,
    original: &[u8],
    opts: &WorkloadOpts,
) -> Result<(Progress, Duration, String)> {
    let (p, elapsed) = guest.finish(FINISH_TIMEOUT)?;
    workload::check_outcome(&p, opts)?;
    l2san.check_running()?;
    let log = l2san.log_text();
    l2san.stop()?;
    let after = std::fs::read(image)?;
    workload::check_final(&after, original, opts, after.len())?;
    Ok((p, elapsed, log))
}

#[test]
fn crash_restart_writeback() {
    rig::e2e_l2san("crash_restart_writeback", L2SAN_ONLY, |run| {
        crash_restart(run, false)
    });
}

#[test]
fn crash_restart_sync() {
    rig::e2e_l2san("crash_restart_sync", L2SAN_ONLY, |run| {
        crash_restart(run, true)
    });
}

/// `ip link set dev <tap> <args>` inside the namespace.
fn link_set(ns: &Netns, tap: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["link", "set", "dev", tap];
    all.extend_from_slice(args);
    ns.run("ip", all)?;
    Ok(())
}

/// Takes the link down for `pause`, checks l2san lives and what CPU it burnt meanwhile, brings the
/// link up. Returns the CPU ticks spent while down.
fn flap(ns: &Netns, tap: &str, l2san: &mut L2sanProcess, pause: Duration) -> Result<u64> {
    let cpu0 = l2san.cpu_ticks().unwrap_or(0);
    link_set(ns, tap, &["down"])?;
    std::thread::sleep(pause);
    let cpu1 = l2san.cpu_ticks().unwrap_or(0);
    l2san.check_running()?;
    link_set(ns, tap, &["up"])?;
    Ok(cpu1.saturating_sub(cpu0))
}

fn link_flap(run: &Run) -> Result<()> {
    let kernel = Kernel::debian()?;
    let image = run.path("disk.img");
    let original = bootdisk::build(IMAGE_MIB << 20);
    std::fs::write(&image, &original)?;
    let opts = WorkloadOpts {
        gens: 3,
        ..WorkloadOpts::default()
    };
    let ns = Netns::new()?;
    let tap = ns.tap("tap0", 1500)?;
    let mut l2san = L2sanProcess::start(
        &ns,
        &tap.name,
        &["--aoe".into(), format!("0.0={}", image.display())],
        &run.path("l2san.log"),
    )?;
    let mut guest = WorkloadGuest::start(&ns, &tap, &kernel, &opts, run.dir())?;
    let step = |guest: &mut WorkloadGuest, what: &str, more: u64| -> Result<u64> {
        let from = guest.progress().writes_acked(opts.blocks);
        let t = Instant::now();
        let p = guest.wait_for(what, FINISH_TIMEOUT, |p| {
            p.writes_acked(opts.blocks) >= from + more
        })?;
        rig::report(format_args!(
            "{}: {what}: {} more writes in {:.1} s",
            run.name(),
            p.writes_acked(opts.blocks) - from,
            t.elapsed().as_secs_f64()
        ));
        Ok(p.writes_acked(opts.blocks))
    };
    guest.wait_for("first writes", BOOT_TIMEOUT, |p| {
        p.writes_acked(opts.blocks) >= 24
    })?;
    let hz = 100.0; // USER_HZ on Linux
    let pause = Duration::from_millis(1500);
    let cpu = flap(&ns, &tap.name, &mut l2san, pause)?;
    rig::report(format_args!(
        "{}: tap down {pause:?}: l2san used {:.2} s CPU meanwhile",
        run.name(),
        cpu as f64 / hz
    ));
    ensure!(
        (cpu as f64 / hz) < pause.as_secs_f64() * 0.5,
        "l2san burnt {:.2} s of CPU in {pause:?} with its link down (busy loop?)",
        cpu as f64 / hz
    );
    step(&mut guest, "after link up", 16)?;
    link_set(&ns, &tap.name, &["mtu", "9000"])?;
    step(&mut guest, "after tap MTU 9000", 16)?;
    l2san.check_running()?;
    link_set(&ns, &tap.name, &["mtu", "1500"])?;
    step(&mut guest, "after tap MTU 1500", 16)?;
    let cpu = flap(&ns, &tap.name, &mut l2san, Duration::from_millis(300))?;
    rig::report(format_args!(
        "{}: second flap (300 ms): l2san used {:.2} s CPU meanwhile",
        run.name(),
        cpu as f64 / hz
    ));
    step(&mut guest, "after the second flap", 8)?;

    let (p, elapsed, log) = finish(guest, l2san, &image, &original, &opts)?;
    let warns = workload::warn_lines(&log);
    rig::report(format_args!(
        "{}: {} (guest run {:.1} s); read-back {}; l2san kept running; {} warning lines{}",
        run.name(),
        p.written.as_deref().unwrap_or("?"),
        elapsed.as_secs_f64(),
        p.verify.as_deref().unwrap_or("?"),
        warns.len(),
        warns
            .iter()
            .take(5)
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    ));
    for line in p.aoe_stats.iter().chain(p.dmesg.iter()).take(30) {
        rig::report(format_args!("{}:   guest: {line}", run.name()));
    }
    Ok(())
}

#[test]
fn link_flap_and_mtu_change_under_load() {
    rig::e2e_l2san("link_flap_and_mtu_change_under_load", L2SAN_ONLY, link_flap);
}
