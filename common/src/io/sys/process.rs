//! Child processes: one that dies with the thread that started it, and signals to a whole
//! process group. (Starting a child in a group of its own needs no system call of ours:
//! `std::os::unix::process::CommandExt::process_group`.)

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child that `cmd` starts get SIGKILL when the thread that started it ends
/// (`PR_SET_PDEATHSIG`): a test killed before its `Drop`s run leaves no child behind. The
/// signal follows the spawning *thread*, not the process: keep that thread alive as long as the
/// child should live.
pub fn kill_with_parent_thread(cmd: &mut Command) -> &mut Command {
    // SAFETY: `pre_exec` runs the hook in the child between fork and exec, where only
    // async-signal-safe work is allowed and no other thread of the parent exists: the hook
    // makes one prctl system call and, on failure, reads errno into an `io::Error` (no
    // allocation), and it takes no lock and touches no memory shared with the parent.
    unsafe { cmd.pre_exec(set_parent_death_signal) }
}

/// The `pre_exec` hook of [`kill_with_parent_thread`].
fn set_parent_death_signal() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes integers and reads or writes no memory of
    // ours; it only sets which signal this process gets when its parent thread ends.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to every process of the process group `pgid`. Refuses 0 and 1: `kill(0)`
/// would signal the caller's own group and `kill(-1)` every process it may signal.
///
/// The caller must know that the group is still its own: a group id is free for reuse once
/// its leader has been reaped and the group is empty.
pub fn signal_process_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{pgid} is not a process group to signal"),
            )
        })?;
    // SAFETY: kill(2) takes integers and reads or writes no memory of ours. `-pgid` is below
    // -1 (checked above), so it names exactly one process group: never the caller's own group
    // (0) nor every process (-1).
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn own_group_and_every_process_refused() {
        for pgid in [0, 1, u32::MAX] {
            let e = signal_process_group(pgid, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{pgid}");
        }
    }

    /// `sleep 30` ends by the signal, not after 30 s (which would leave no signal in its status).
    #[test]
    fn a_group_is_signalled_and_the_hook_lets_the_child_start() {
        let mut child = kill_with_parent_thread(Command::new("sleep").arg("30"))
            .process_group(0)
            .spawn()
            .expect("sleep");
        signal_process_group(child.id(), libc::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn the_child_dies_with_its_parent_thread() {
        let mut child = std::thread::spawn(|| {
            kill_with_parent_thread(Command::new("sleep").arg("30"))
                .spawn()
                .expect("sleep")
        })
        .join()
        .unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
