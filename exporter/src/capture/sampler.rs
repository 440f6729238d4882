//! Periodic samples: runs the kernel's task iterator (`sample_tasks`) once per
//! `capture.sample_interval`. Reading an iterator file runs the program over every task; it
//! writes its records into the event ring, not into the file, so each round is one
//! `BPF_ITER_CREATE` and one read that returns end-of-file. A dedicated thread, because the
//! read runs the whole iteration in the kernel.

use std::{
    fs::File,
    io::Read,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::programs::ProgramFd;

use crate::capture::stats::Stats;

/// Records a sampling round sends before it checks that the reader keeps up.
const PACE_RECORDS: usize = 1024;
/// Longest a round waits for the reader per chunk (a stalled reader must not stall sampling
/// forever: the ring then counts what does not fit).
const PACE_WAIT: Duration = Duration::from_secs(1);

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

fn bpf(cmd: libc::c_long, attr: &[u64]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-padded bpf_attr prefix of the command's layout.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the bpf syscall returns a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// The attached iterator (a BPF link), ready for rounds.
pub struct Sampler {
    link: OwnedFd,
    _program: ProgramFd,
}

impl Sampler {
    /// Attaches the loaded iterator program.
    pub fn attach(program: ProgramFd) -> std::io::Result<Self> {
        // link_create: prog_fd, target_fd, attach_type, flags, iter_info, iter_info_len.
        let prog_fd = program.as_fd().as_raw_fd() as u64;
        let attr = [prog_fd, u64::from(BPF_TRACE_ITER), 0, 0];
        let link = bpf(BPF_LINK_CREATE, &attr)?;
        Ok(Self {
            link,
            _program: program,
        })
    }

    /// One sampling round: every live traced thread's record, then the round end, go into
    /// the ring. The program writes a byte to the iterator's file per record, so each read
    /// of up to [`PACE_RECORDS`] bytes moves the round on by that many records; before the
    /// next, the round waits (at most [`PACE_WAIT`]) until the agent has handled all but one
    /// such chunk (read, tracked, written). 50,000 live processes are ≈ 12 MiB of records:
    /// sent at once they would overflow the ring, and faster than the agent handles them they
    /// would overflow its queue; paced, a round holds at most ≈ 2 chunks (≈ 0.5 MiB) and
    /// takes as long as the agent needs.
    pub fn round(&self, stats: &Stats) -> std::io::Result<()> {
        let attr = [self.link.as_raw_fd() as u64];
        let mut iter = File::from(bpf(BPF_ITER_CREATE, &attr)?);
        let mut buf = [0u8; PACE_RECORDS];
        let handled_before = Stats::get(&stats.records_routed);
        let mut sent = 0u64;
        loop {
            let n = iter.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            sent += n as u64;
            let deadline = Instant::now() + PACE_WAIT;
            while sent.saturating_sub(Stats::get(&stats.records_routed) - handled_before)
                > PACE_RECORDS as u64
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Stops the sampling thread when told to (or dropped).
pub struct SamplerHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl SamplerHandle {
    /// Runs a round every `interval` on its own thread until the handle is stopped; `load`
    /// makes the sampler when the first round is due. Samples are an addition: if it fails
    /// (a kernel without task iterators), that is said once and the agent traces on.
    pub fn spawn<E: std::fmt::Display>(
        load: impl FnOnce() -> Result<Sampler, E> + Send + 'static,
        interval: Duration,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pipetrace-sampler".into())
            .spawn(move || {
                let (lock, wake) = &*signal;
                let mut load = Some(load);
                let mut sampler = None;
                let Ok(mut stopped) = lock.lock() else {
                    return;
                };
                loop {
                    let Ok((guard, _)) = wake.wait_timeout_while(stopped, interval, |s| !*s) else {
                        return;
                    };
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    if let Some(load) = load.take() {
                        match load() {
                            Ok(loaded) => sampler = Some(loaded),
                            Err(e) => {
                                tracing::warn!("no live samples: {e}");
                                return;
                            }
                        }
                    }
                    let Some(sampler) = &sampler else {
                        return;
                    };
                    match sampler.round(&stats) {
                        Ok(()) => Stats::add(&stats.sample_rounds, 1),
                        Err(e) => {
                            if stats
                                .sample_failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                                == 0
                            {
                                tracing::warn!("sampling round failed: {e}");
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the rounds; a round in progress finishes first (its records are in the ring).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        self.halt();
    }
}
