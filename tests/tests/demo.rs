//! `l2san demo`, the README's first command, does what it says: boots iPXE from its built-in
//! image and exits 0. l2san only: under `L2SAN_E2E_TARGET=vblade` it says so and does not run.

#![forbid(unsafe_code)]

use anyhow::ensure;
use l2san_rig::rig;

#[test]
fn demo_boots_and_exits_0() {
    rig::e2e_l2san("demo", "it runs `l2san demo`", |_run| {
        let out = std::process::Command::new(rig::l2san_bin()?)
            .arg("demo")
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        rig::report(stdout.lines().last().unwrap_or(""));
        ensure!(
            out.status.success(),
            "l2san demo failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            stdout.contains("L2SAN-BOOT OK"),
            "no boot verdict in the console:\n{stdout}"
        );
        ensure!(
            stdout.contains("l2san demo: OK"),
            "no success line:\n{stdout}"
        );
        Ok(())
    });
}
