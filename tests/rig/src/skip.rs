//! The one place that decides what a test that cannot run does.
//!
//! A test that cannot run here never passes in silence: [`skip`] prints
//! `SKIPPED <test>: <why>; to run it: <how>` straight to stderr (past the harness's capture, so
//! it shows in plain `cargo test` output). What happens next depends on the reason:
//!
//! - [`Reason::Missing`]: the machine lacks something the test needs (root, `/dev/net/tun`, a
//!   tool). The test passes with that line, unless `L2SAN_REQUIRE_E2E=1`, which makes it fail
//!   instead: CI sets it (`.ci/run`), so a CI run in which a test did not run is red.
//! - [`Reason::OtherTarget`]: `L2SAN_E2E_TARGET` chose a target the test has nothing to check
//!   on (vblade, for a test of l2san's own features). Choosing a target is a request, not a
//!   lack: the test passes with that line even under `L2SAN_REQUIRE_E2E=1`.

use std::path::Path;

use crate::rig::{self, TargetKind};

/// Why a test does not run.
#[derive(Debug, Clone)]
pub enum Reason {
    /// The machine lacks something: `what` is missing, `fix` says how to get it.
    Missing {
        /// What is missing ("not running as root (euid 1000)", "nasm is not installed").
        what: String,
        /// How to get the test to run.
        fix: String,
    },
    /// `L2SAN_E2E_TARGET` chose `target`, and the test applies to l2san only, for `why`.
    OtherTarget {
        /// The target chosen.
        target: TargetKind,
        /// Why the test is l2san's only ("vblade has no FCoE").
        why: String,
    },
}

/// Whether `L2SAN_REQUIRE_E2E=1`: every test must run, and one that cannot fails. Unset, empty
/// and `0` mean no; any other value is a mistake and panics, rather than be guessed at.
pub fn required() -> bool {
    match std::env::var("L2SAN_REQUIRE_E2E").as_deref() {
        Err(_) | Ok("") | Ok("0") => false,
        Ok("1") => true,
        Ok(other) => panic!("L2SAN_REQUIRE_E2E={other:?}: expected 1 (or 0, or unset)"),
    }
}

/// Reports that `test` does not run, and why. Panics (failing the test) instead of returning
/// when the reason is [`Reason::Missing`] and [`required`].
pub fn skip(test: &str, reason: Reason) {
    let who = match harness_test() {
        Some(full) if !full.ends_with(test) => format!("{test} ({full})"),
        _ => test.to_string(),
    };
    match reason {
        Reason::Missing { what, fix } => {
            if required() {
                panic!(
                    "{who} did not run: {what}; L2SAN_REQUIRE_E2E=1 makes that a failure. \
                     To run it: {fix}"
                );
            }
            rig::report(format_args!(
                "SKIPPED {who}: {what}; to run it: {fix} (L2SAN_REQUIRE_E2E=1 makes this a \
                 failure)"
            ));
        }
        Reason::OtherTarget { target, why } => rig::report(format_args!(
            "SKIPPED {who}: l2san only ({why}), and L2SAN_E2E_TARGET={target} chose {target}; \
             to run it: unset L2SAN_E2E_TARGET"
        )),
    }
}

/// The command that runs the current test alone: `cargo test -p <package> [--test <file>] --
/// <test> --exact`, from the test binary's name and the harness thread's name (which is the
/// test's path). `None` outside a test harness.
pub fn command_for_this_test() -> Option<String> {
    let test = harness_test()?;
    let exe = std::env::current_exe().ok()?;
    let stem = exe.file_stem()?.to_str()?;
    // Cargo names test binaries `<target>-<16 hex digits>`.
    let target = stem.rsplit_once('-').map_or(stem, |(name, _)| name);
    let what = match target {
        "l2san_rig" => "-p l2san-rig --lib".to_string(),
        file => format!("-p l2san-tests --test {file}"),
    };
    Some(format!("cargo test {what} -- {test} --exact"))
}

/// The name libtest gave the current test (its thread's name), if this is a test thread.
fn harness_test() -> Option<String> {
    let thread = std::thread::current();
    let name = thread.name()?;
    (name != "main").then(|| name.to_string())
}

/// Why end-to-end tests cannot run here, with how to make them run, or `None` if they can.
pub fn e2e_environment() -> Option<Reason> {
    let what = rig::missing_privileges()?;
    let how = command_for_this_test().unwrap_or_else(|| "cargo test -p l2san-tests".into());
    Some(Reason::Missing {
        what,
        fix: format!(
            "as root, on a machine with /dev/net/tun: `sudo -E {how}` (scripts/setup installs \
             the tools)"
        ),
    })
}

/// Whether `program` is on `PATH`; if not, the [`Reason::Missing`] that says which Debian
/// package brings it.
pub fn tool(program: &str, package: &str) -> Result<(), Reason> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(program))));
    if found {
        return Ok(());
    }
    Err(Reason::Missing {
        what: format!("{program} is not installed"),
        fix: format!("apt-get install {package} (scripts/setup does)"),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_names_its_own_command() {
        let cmd = command_for_this_test().expect("a harness thread");
        assert_eq!(
            cmd,
            "cargo test -p l2san-rig --lib -- skip::tests::this_test_names_its_own_command --exact"
        );
    }

    #[test]
    fn a_tool_that_is_not_there_is_missing_with_its_package() {
        assert!(tool("sh", "dash").is_ok());
        match tool("l2san-no-such-tool", "l2san-pkg") {
            Err(Reason::Missing { what, fix }) => {
                assert!(what.contains("l2san-no-such-tool"), "{what}");
                assert!(fix.contains("apt-get install l2san-pkg"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
    }
}
