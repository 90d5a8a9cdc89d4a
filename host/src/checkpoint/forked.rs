//! Snapshots encoded in a forked child process, as Redis saves in the
//! background: `fork` gives the child a copy-on-write image of the whole
//! process at one instant, so the loop stalls only for the fork (copying
//! page tables, a few milliseconds for a million open windows) instead of
//! for the encoding (about 160 ms for a million). The child encodes from
//! its frozen image and pipes the bytes back; the parent goes on, and pages
//! it writes to are copied by the kernel.
//!
//! The child is a copy of a multi-threaded process with only the forking
//! thread in it, so it does nothing but run the encoder (which only reads
//! memory and allocates: glibc's `fork` leaves the allocator usable in the
//! child), write to the pipe and `_exit`: no logging, no destructors, no
//! locks other threads may have held. A child that dies or outlives the
//! deadline is reported (and killed), never waited for forever.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A snapshot being encoded by a child process.
pub struct ForkedSnapshot {
    pid: libc::pid_t,
    pipe: File,
    /// Whether the child was reaped.
    reaped: bool,
}

/// Why a forked snapshot gave no bytes.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// The process could not be forked (or the pipe made).
    #[error("cannot fork a process to encode the snapshot: {0}")]
    Fork(#[source] io::Error),
    /// Reading the child's bytes failed.
    #[error("cannot read the snapshot from the encoding process: {0}")]
    Read(#[source] io::Error),
    /// The child did not finish in time; it was killed.
    #[error("the process encoding the snapshot took longer than {0:?} and was killed")]
    Timeout(Duration),
    /// The child ended without encoding the snapshot.
    #[error("the process encoding the snapshot {0}")]
    Died(String),
}

/// Forks a child that runs `encode` on its copy of this process and sends
/// back what it wrote. Returns at once in the parent; see
/// [`ForkedSnapshot::collect`].
pub fn fork_snapshot(encode: &mut dyn FnMut(&mut Vec<u8>)) -> Result<ForkedSnapshot, ForkError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ForkError::Fork(io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: a plain system call.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only runs `child_main`, which keeps to what is safe
    // after a fork of a threaded process (see the module documentation).
    match unsafe { libc::fork() } {
        -1 => Err(ForkError::Fork(io::Error::last_os_error())),
        0 => {
            drop(read_end);
            child_main(encode, write_end, parent)
        }
        pid => {
            drop(write_end);
            // A larger pipe (up to the system's limit, 1 MiB by default)
            // takes megabytes of state in fewer wake-ups.
            // SAFETY: sets a property of a live descriptor.
            unsafe { libc::fcntl(read_end.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
            Ok(ForkedSnapshot { pid, pipe: File::from(read_end), reaped: false })
        }
    }
}

/// The child: encode, write, exit. Never returns.
fn child_main(encode: &mut dyn FnMut(&mut Vec<u8>), pipe: OwnedFd, parent: libc::pid_t) -> ! {
    // Dies with the thread that forked it (a killed job leaves no encoder
    // behind); a parent gone before this call is caught by the check.
    // SAFETY: plain system calls on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(3);
        }
    }
    let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = Vec::new();
        encode(&mut out);
        out
    }));
    // The length first, so that the parent reserves the room at once.
    let code = match encoded {
        Ok(bytes) => {
            match write_all(&pipe, &(bytes.len() as u64).to_le_bytes()) && write_all(&pipe, &bytes) {
                true => 0,
                false => 4,
            }
        }
        Err(_) => 2,
    };
    // SAFETY: ends the child without running the parent's destructors or
    // exit handlers.
    unsafe { libc::_exit(code) }
}

/// Writes all of `bytes` with raw `write` calls (no std I/O locks).
fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice to an open descriptor.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

impl ForkedSnapshot {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the child's bytes, at most until `within` has passed; a
    /// child still running then is killed. Returns once they are all in,
    /// without waiting for the child's exit (tearing down its copy of a
    /// large process takes a while): dropping the snapshot reaps it.
    pub fn collect(&mut self, within: Duration) -> Result<Vec<u8>, ForkError> {
        let deadline = Instant::now() + within;
        // The length (8 bytes), then the snapshot, read straight into a
        // vector with room for all of it.
        let mut header = [0u8; 8];
        let mut have = 0;
        while have < header.len() {
            let n = self.read_some(header[have..].as_mut_ptr(), header.len() - have, deadline, within)?;
            if n == 0 {
                break;
            }
            have += n;
        }
        let expected = (have == header.len()).then(|| u64::from_le_bytes(header));
        let mut bytes: Vec<u8> = Vec::with_capacity(expected.map_or(0, |n| n.min(1 << 30) as usize));
        while expected.is_some_and(|n| (bytes.len() as u64) < n) {
            if bytes.capacity() == bytes.len() {
                bytes.reserve(1 << 16);
            }
            let spare = bytes.spare_capacity_mut();
            let n = self.read_some(spare.as_mut_ptr().cast(), spare.len(), deadline, within)?;
            if n == 0 {
                break;
            }
            // SAFETY: `read_some` initialized `n` bytes of the spare room.
            unsafe { bytes.set_len(bytes.len() + n) };
        }
        if expected == Some(bytes.len() as u64) {
            return Ok(bytes);
        }
        // The pipe closed early: the child has exited or is about to.
        match self.reap() {
            Some(0) => Err(ForkError::Died("sent a snapshot cut short".into())),
            Some(code) if code > 0 => Err(ForkError::Died(format!("exited with code {code}"))),
            Some(signal) => Err(ForkError::Died(format!("was killed by signal {}", -signal))),
            None => Err(ForkError::Died("could not be waited for".into())),
        }
    }

    /// Reads what the pipe has, up to `len` bytes at `to`, waiting until
    /// `deadline` (then the child is killed); 0 at its end.
    fn read_some(
        &mut self,
        to: *mut u8,
        len: usize,
        deadline: Instant,
        within: Duration,
    ) -> Result<usize, ForkError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Err(ForkError::Timeout(within));
            }
            let mut fd = libc::pollfd { fd: self.pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: polls one live descriptor.
            let ready = unsafe { libc::poll(&mut fd, 1, ms) };
            if ready == 0 {
                continue;
            }
            let n = match ready {
                r if r > 0 => {
                    // SAFETY: the caller gives `len` writable bytes at `to`.
                    unsafe { libc::read(self.pipe.as_raw_fd(), to.cast(), len) }
                }
                _ => -1,
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                self.kill();
                return Err(ForkError::Read(e));
            }
        }
    }

    /// Waits for the child to end: its exit code, or minus the signal that
    /// ended it.
    fn reap(&mut self) -> Option<i32> {
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out place.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Some(match libc::WIFEXITED(status) {
                    true => libc::WEXITSTATUS(status),
                    false => -libc::WTERMSIG(status),
                });
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                self.reaped = true;
                return None;
            }
        }
    }

    fn kill(&mut self) {
        if !self.reaped {
            // SAFETY: signals and reaps our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.reap();
        }
    }
}

impl Drop for ForkedSnapshot {
    /// A snapshot given up is killed and reaped: no zombie is left.
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_encodes_the_state_as_it_was_at_the_fork() {
        let mut state: Vec<u64> = (0..100_000).collect();
        let snapshot = {
            let state = &state;
            fork_snapshot(&mut |out| state.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())))
                .unwrap()
        };
        // The parent changes its state at once; the child's copy does not.
        state.iter_mut().for_each(|x| *x = u64::MAX);
        let mut snapshot = snapshot;
        let bytes = snapshot.collect(Duration::from_secs(30)).unwrap();
        let expected: Vec<u8> = (0..100_000u64).flat_map(|x| x.to_le_bytes()).collect();
        assert!(bytes == expected, "{} bytes, {} expected", bytes.len(), expected.len());
    }

    #[test]
    fn a_child_that_dies_or_hangs_is_reported_and_reaped() {
        let mut died = fork_snapshot(&mut |_| panic!("an encoder bug")).unwrap();
        let pid = died.pid();
        let e = died.collect(Duration::from_secs(30)).unwrap_err();
        assert!(e.to_string().contains("exited with code 2"), "{e}");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "reaped");

        let mut hung = fork_snapshot(&mut |_| std::thread::sleep(Duration::from_secs(60))).unwrap();
        let pid = hung.pid();
        let started = Instant::now();
        let e = hung.collect(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ForkError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "killed and reaped");

        let dropped = fork_snapshot(&mut |_| std::thread::sleep(Duration::from_secs(60))).unwrap();
        let pid = dropped.pid();
        drop(dropped);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "given up: killed and reaped");
    }
}
