//! Loads the kernel programs with the offsets and settings of this host, fills the scope maps
//! and attaches the tracepoints. Everything the later stages need is handed out from here.

use std::{
    os::fd::{AsFd, AsRawFd, RawFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, IterableMap, MapData, PerCpuArray, RingBuf},
    programs::{Iter, Program, ProgramFd, RawTracePoint},
};
use exporter_common::{COMM_LEN, CaptureConfig, KernelOffsets, TrackState, counter, scope, track};

use crate::{
    capture::{file_hooks, sampler::Sampler, stats::KernelCounters},
    config::{Config, ScopeMode},
};

/// The compiled kernel programs, built by `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pipetrace"));

/// The task iterator that samples live processes.
const SAMPLER: &str = "sample_tasks";

/// Network hooks: a program and the raw tracepoint of the same name, and the `present` bit it
/// measures.
const NETWORK_TRACEPOINTS: [(&str, u32); 3] = [
    ("sock_send_length", exporter_common::present::NET_BYTES),
    ("sock_recv_length", exporter_common::present::NET_BYTES),
    (
        "inet_sock_set_state",
        exporter_common::present::NET_CONNECTIONS,
    ),
];

const TRACEPOINTS: [(&str, &str); 5] = [
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_exit", "sched_process_exit"),
    // Writes exit records once the exiting task's CPU time is complete.
    ("sched_switch", "sched_switch"),
    // RSS changes, aggregated into memory records.
    ("rss_stat", "rss_stat"),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("the kernel verifier rejected program {program}: {reason}")]
    Verifier { program: String, reason: String },
    #[error("attaching {program} to {target} failed: {reason}")]
    Attach {
        program: String,
        target: String,
        reason: String,
    },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    #[error("scope cgroup {path}: {reason}")]
    Cgroup { path: PathBuf, reason: String },
}

/// What the kernel should trace.
#[derive(Debug, Clone)]
pub enum KernelScope {
    /// Only processes put into `TRACKED` (the `run` command) and their descendants.
    Tracked,
    All,
    Cgroup(PathBuf),
    /// Descendants of processes whose comm is one of these.
    RootNames(Vec<String>),
}

impl KernelScope {
    pub fn describe(&self) -> String {
        match self {
            Self::Tracked => "the command's process tree".into(),
            Self::All => "every process".into(),
            Self::Cgroup(path) => format!("cgroup {}", path.display()),
            Self::RootNames(names) => format!("descendants of {}", names.join(", ")),
        }
    }

    pub fn from_config(config: &Config) -> Self {
        match config.scope.mode {
            ScopeMode::All => Self::All,
            ScopeMode::Cgroup => Self::Cgroup(config.scope.cgroup.clone().unwrap_or_default()),
            ScopeMode::Descendants => Self::RootNames(config.scope.root_names.clone()),
        }
    }
}

/// aya's loader, made on a thread of its own as soon as the agent starts: making one parses the
/// kernel's BTF (≈ 20 ms; it always does, though our programs carry no CO-RE relocations),
/// and the first load probes the kernel's features (a few ms), which then overlap the agent's
/// own BTF reading and set-up.
pub struct LoaderStart(JoinHandle<EbpfLoader<'static>>);

impl LoaderStart {
    pub fn begin() -> Self {
        Self(std::thread::spawn(|| {
            let loader = EbpfLoader::new();
            aya::features();
            loader
        }))
    }
}

/// What this kernel's BTF says it supports.
pub struct KernelSupport<'a> {
    /// Whether the kernel has a raw tracepoint.
    pub tracepoint: &'a dyn Fn(&str) -> bool,
    /// Programs can call `bpf_loop` (then the exec program that walks paths with it is loaded:
    /// a tenth of the other's verification).
    pub bpf_loop: bool,
    /// BTF type id of the task iterator's attach point.
    pub task_iterator: Option<u32>,
}

/// Loaded and attached programs. Dropping it detaches them.
pub struct Capture {
    /// Shared with the sampling thread, which loads the iterator into it when its first round
    /// is due.
    ebpf: Arc<Mutex<Ebpf>>,
    ring: Option<RingBuf<MapData>>,
    /// The iterator's attach point while it waits to be loaded (`None`: sampling is off).
    iterator: Option<Option<u32>>,
    tracked: HashMap<MapData, u32, TrackState>,
    counters: PerCpuArray<MapData, u64>,
}

fn comm_key(name: &str) -> [u8; COMM_LEN] {
    let mut key = [0u8; COMM_LEN];
    let bytes = name.as_bytes();
    let n = bytes.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

/// cgroup v2 id (the directory's inode) and depth below the v2 mount of `path`.
fn cgroup_identity(path: &Path) -> Result<(u64, u32), LoadError> {
    use std::os::unix::fs::MetadataExt;
    let err = |reason: String| LoadError::Cgroup {
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path
        .canonicalize()
        .map_err(|e| err(format!("cannot open it: {e}")))?;
    let meta = std::fs::metadata(&canonical).map_err(|e| err(e.to_string()))?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| err(e.to_string()))?;
    // Field 5 is the mount point; the filesystem type follows the " - " separator.
    let mount = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .filter(|m| canonical.starts_with(m))
        .max_by_key(|m| m.components().count())
        .ok_or_else(|| err("not inside a cgroup v2 (cgroup2) mount".into()))?;
    let level = canonical.components().count() - mount.components().count();
    Ok((meta.ino(), level as u32))
}

impl Capture {
    /// `kernel`: what this kernel's BTF says it supports; `loader`: aya's loader, begun at
    /// start.
    pub fn load(
        config: &Config,
        offsets: KernelOffsets,
        scope: &KernelScope,
        kernel: KernelSupport,
        loader: LoaderStart,
    ) -> Result<Self, LoadError> {
        raise_memlock_limit();
        let file_hooks = file_hooks(config, kernel.bpf_loop, &offsets);
        let mut capture = CaptureConfig {
            scope_mode: scope::TRACKED,
            argv_cap: config.capture.argv_max_bytes as u32,
            agent_tgid: std::process::id(),
            cgroup_level: 0,
            cgroup_id: 0,
            wakeup_bytes: (config.capture.ring_buffer_bytes / 16) as u32,
            network_hooks: network_hooks(config, kernel.tracepoint)
                | if file_hooks.is_empty() {
                    0
                } else {
                    exporter_common::present::FILES
                },
            memory_step_pages: (config.capture.memory_step_bytes
                / crate::capture::decode::page_size())
            .max(1),
            memory_step_percent: config.capture.memory_step_percent,
            page_shift: crate::capture::decode::page_size().trailing_zeros(),
            network_peers: config.capture.network_peers,
            files_max: config.capture.files_max,
        };
        match scope {
            KernelScope::Tracked | KernelScope::RootNames(_) => {}
            KernelScope::All => capture.scope_mode = scope::ALL,
            KernelScope::Cgroup(path) => {
                let (id, level) = cgroup_identity(path)?;
                capture.scope_mode = scope::CGROUP;
                capture.cgroup_id = id;
                capture.cgroup_level = level;
            }
        }

        let begun = std::time::Instant::now();
        let mut loader = loader.0.join().unwrap_or_else(|_| EbpfLoader::new());
        tracing::debug!(ms = begun.elapsed().as_millis(), "load: aya's loader ready");
        let mut ebpf = loader
            .override_global("OFFSETS", &offsets, true)
            .override_global("CONFIG", &capture, true)
            .map_max_entries("EVENTS", config.capture.ring_buffer_bytes as u32)
            .map_max_entries("TRACKED", config.capture.max_processes)
            .map_max_entries("MEMORY", config.capture.max_processes)
            .map_max_entries("NET_IO", config.capture.max_processes)
            .map_max_entries("EXEC_SCRATCH", possible_cpus()?)
            .load(PROGRAMS)?;
        tracing::debug!(ms = begun.elapsed().as_millis(), "load: maps created");

        fill_names(&mut ebpf, "DENY_COMMS", &config.scope.hide)?;
        if let KernelScope::RootNames(names) = scope {
            fill_names(&mut ebpf, "ROOT_COMMS", names)?;
        }

        let mut hooks: Vec<(&str, &str)> = Vec::new();
        for (program, tracepoint) in TRACEPOINTS {
            if program == "rss_stat" && !config.capture.memory_events {
                continue;
            }
            let program = match program {
                "sched_process_exec" if !kernel.bpf_loop => "sched_process_exec_unrolled",
                other => other,
            };
            hooks.push((program, tracepoint));
        }
        for (program, bit) in NETWORK_TRACEPOINTS {
            if capture.network_hooks & bit != 0 {
                hooks.push((program, program));
            }
        }
        if !file_hooks.is_empty() {
            fill_file_syscalls(&mut ebpf, &file_hooks)?;
            hooks.extend(FILE_PROGRAMS);
        }
        load_in_parallel(&mut ebpf, &hooks)?;
        tracing::debug!(ms = begun.elapsed().as_millis(), "load: programs verified");
        for (program, tracepoint) in &hooks {
            attach(&mut ebpf, program, tracepoint)?;
        }
        tracing::debug!(
            ms = begun.elapsed().as_millis(),
            "load: tracepoint programs attached"
        );
        let ring = RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(|e| LoadError::Map {
            name: "EVENTS",
            reason: e.to_string(),
        })?;
        let tracked =
            HashMap::try_from(take(&mut ebpf, "TRACKED")?).map_err(|e| LoadError::Map {
                name: "TRACKED",
                reason: e.to_string(),
            })?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?).map_err(|e| LoadError::Map {
                name: "COUNTERS",
                reason: e.to_string(),
            })?;
        Ok(Self {
            ebpf: Arc::new(Mutex::new(ebpf)),
            ring: Some(ring),
            iterator: (!config.capture.sample_interval.is_zero()).then_some(kernel.task_iterator),
            tracked,
            counters,
        })
    }

    /// The ring buffer, for the reader (once).
    pub fn take_ring(&mut self) -> Option<RingBuf<MapData>> {
        self.ring.take()
    }

    /// What loads and attaches the sampling iterator, for the sampling thread (once; `None`
    /// when sampling is off). It runs when the first round is due, not at start-up: a run
    /// shorter than `sample_interval` never needs it.
    pub fn sampler_loader(
        &mut self,
    ) -> Option<impl FnOnce() -> Result<Sampler, LoadError> + Send + use<>> {
        let attach_point = self.iterator.take()?;
        let ebpf = self.ebpf.clone();
        Some(move || {
            let id = attach_point.ok_or_else(|| {
                sampler_failed("this kernel has no task iterator (bpf_iter_task, Linux 5.8+)")
            })?;
            let mut ebpf = ebpf
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let program = ebpf
                .program_mut(SAMPLER)
                .ok_or_else(|| sampler_failed("not in the object"))?;
            let fd = load_iterator(program, id)?;
            Sampler::attach(fd).map_err(|e| LoadError::Attach {
                program: SAMPLER.into(),
                target: "the task iterator".into(),
                reason: e.to_string(),
            })
        })
    }

    /// Raw fd of `TRACKED`, for registering the `run` command from its pre-exec hook.
    pub fn tracked_fd(&self) -> RawFd {
        self.tracked.map().fd().as_fd().as_raw_fd()
    }

    /// tgids the kernel still tracks (hidden processes included).
    pub fn tracked_pids(&self) -> Vec<u32> {
        self.tracked.keys().filter_map(Result::ok).collect()
    }

    pub fn kernel_counters(&self) -> KernelCounters {
        let sum = |index: u32| -> u64 {
            self.counters
                .get(&index, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            ring_full: sum(counter::RING_FULL),
            track_full: sum(counter::TRACK_FULL),
            emitted: sum(counter::EMITTED),
            hidden: sum(counter::HIDDEN),
        }
    }
}

/// The network hooks to attach: those configured on, where the kernel has the tracepoint
/// (`sock_send_length` / `sock_recv_length` came in Linux 6.3; without them the counts stay
/// null, with a warning).
fn network_hooks(config: &Config, has: &dyn Fn(&str) -> bool) -> u32 {
    use exporter_common::present::{NET_BYTES, NET_CONNECTIONS};
    let mut bits = 0;
    if config.capture.network_bytes {
        if has("sock_send_length") && has("sock_recv_length") {
            bits |= NET_BYTES;
        } else {
            tracing::warn!(
                "this kernel has no sock_send_length/sock_recv_length tracepoints (Linux 6.3+): \
                 bytes sent and received per process are not measured"
            );
        }
    }
    if config.capture.network_connections {
        if has("inet_sock_set_state") {
            bits |= NET_CONNECTIONS;
        } else {
            tracing::warn!(
                "this kernel has no inet_sock_set_state tracepoint: TCP connections per process \
                 are not measured"
            );
        }
    }
    bits
}

/// The two programs of the file hooks and their raw tracepoints.
const FILE_PROGRAMS: [(&str, &str); 2] = [("file_enter", "sys_enter"), ("file_exit", "sys_exit")];

/// The file syscalls to watch: none when `capture.files` is off or the kernel cannot (no
/// `bpf_loop`, which the path walk of the file program needs; no syscall tracepoints), with a
/// warning for the latter.
fn file_hooks(
    config: &Config,
    bpf_loop: bool,
    offsets: &KernelOffsets,
) -> Vec<file_hooks::FileHook> {
    if !config.capture.files.is_on() {
        return Vec::new();
    }
    if offsets.regs_syscall_nr == exporter_common::ABSENT
        || offsets.regs_args.contains(&exporter_common::ABSENT)
    {
        tracing::warn!(
            "this architecture's syscall registers are not known: the files of each process \
             are not recorded"
        );
        return Vec::new();
    }
    if !bpf_loop {
        tracing::warn!(
            "this kernel has no bpf_loop (Linux 5.17+) or capture.bpf_loop is off: the files \
             of each process are not recorded"
        );
        return Vec::new();
    }
    file_hooks::hooks()
        .into_iter()
        .filter(|h| h.nr < exporter_common::SYSCALLS_MAX)
        .collect()
}

/// Fills `FILE_SYSCALLS` with the layouts of the chosen syscalls.
fn fill_file_syscalls(ebpf: &mut Ebpf, hooks: &[file_hooks::FileHook]) -> Result<(), LoadError> {
    let map_err = |e: aya::maps::MapError| LoadError::Map {
        name: "FILE_SYSCALLS",
        reason: e.to_string(),
    };
    let map = ebpf
        .map_mut("FILE_SYSCALLS")
        .ok_or(LoadError::MissingMap("FILE_SYSCALLS"))?;
    let mut map: aya::maps::Array<_, exporter_common::FileSyscall> =
        aya::maps::Array::try_from(map).map_err(map_err)?;
    for h in hooks {
        map.set(h.nr, h.layout, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Number of possible CPUs (ids range over 0..n), for per-CPU slots.
fn possible_cpus() -> Result<u32, LoadError> {
    aya::util::nr_cpus()
        .map(|n| n as u32)
        .map_err(|(path, e)| LoadError::Map {
            name: "EXEC_SCRATCH",
            reason: format!("cannot count CPUs from {path}: {e}"),
        })
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, LoadError> {
    ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
}

fn fill_names(ebpf: &mut Ebpf, name: &'static str, names: &[String]) -> Result<(), LoadError> {
    let map_err = |e: aya::maps::MapError| LoadError::Map {
        name,
        reason: e.to_string(),
    };
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    let mut map: HashMap<_, [u8; COMM_LEN], u8> = HashMap::try_from(map).map_err(map_err)?;
    for n in names {
        map.insert(comm_key(n), 1, 0).map_err(map_err)?;
    }
    Ok(())
}

/// The verifier's reason, shortened to one line (the whole log goes to debug logging).
fn load_failure(program: &str, e: aya::programs::ProgramError) -> LoadError {
    let reason = match &e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            tracing::debug!(program, "verifier log:\n{verifier_log}");
            // The last lines of the log say why; keep the one-line error short.
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            format!(
                "{io_error}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        }
        other => other.to_string(),
    };
    LoadError::Verifier {
        program: program.into(),
        reason,
    }
}

/// Verification is most of start-up, and programs are verified independently: each on a
/// thread of its own, so that loading takes about the longest program's time per core rather
/// than the sum.
fn load_in_parallel(ebpf: &mut Ebpf, hooks: &[(&str, &str)]) -> Result<(), LoadError> {
    let wanted: Vec<_> = ebpf
        .programs_mut()
        .filter(|(name, _)| hooks.iter().any(|(hook, _)| hook == name))
        .collect();
    if let Some((missing, _)) = hooks
        .iter()
        .find(|(hook, _)| !wanted.iter().any(|(name, _)| name == hook))
    {
        return Err(LoadError::Verifier {
            program: (*missing).into(),
            reason: "not in the object".into(),
        });
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = wanted
            .into_iter()
            .map(|(name, program)| (name, scope.spawn(move || load_hook(name, program))))
            .collect();
        threads.into_iter().try_for_each(|(name, thread)| {
            thread.join().unwrap_or_else(|_| {
                Err(LoadError::Verifier {
                    program: name.into(),
                    reason: "its loading thread panicked".into(),
                })
            })
        })
    })
}

fn load_hook(name: &str, program: &mut Program) -> Result<(), LoadError> {
    let begun = std::time::Instant::now();
    let info = match program {
        Program::TracePoint(p) => {
            p.load().map_err(|e| load_failure(name, e))?;
            p.info()
        }
        other => {
            let p: &mut RawTracePoint = other.try_into().map_err(|e| load_failure(name, e))?;
            p.load().map_err(|e| load_failure(name, e))?;
            p.info()
        }
    };
    let instructions = info.ok().and_then(|info| info.verified_instruction_count());
    tracing::debug!(
        program = name,
        ms = begun.elapsed().as_millis(),
        instructions,
        "load: verified"
    );
    Ok(())
}

fn attach(ebpf: &mut Ebpf, program: &str, tracepoint: &str) -> Result<(), LoadError> {
    let attach_failed = |reason: String| LoadError::Attach {
        program: program.into(),
        target: format!("raw tracepoint {tracepoint}"),
        reason,
    };
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| attach_failed("not in the object".into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| attach_failed(e.to_string()))?;
    prog.attach(tracepoint)
        .map_err(|e| attach_failed(e.to_string()))?;
    Ok(())
}

fn sampler_failed(reason: impl Into<String>) -> LoadError {
    LoadError::Verifier {
        program: SAMPLER.into(),
        reason: reason.into(),
    }
}

/// Loads the task iterator that samples live processes, attached at BTF type `id`.
fn load_iterator(program: &mut Program, id: u32) -> Result<ProgramFd, LoadError> {
    let begun = std::time::Instant::now();
    let btf = aya::Btf::parse(
        &crate::capture::btf::task_iterator_blob(id),
        aya::Endianness::default(),
    )
    .map_err(|e| sampler_failed(format!("its attach point: {e}")))?;
    let prog: &mut Iter = program.try_into().map_err(|e| load_failure(SAMPLER, e))?;
    prog.load("task", &btf)
        .map_err(|e| load_failure(SAMPLER, e))?;
    tracing::debug!(
        program = SAMPLER,
        ms = begun.elapsed().as_millis(),
        "load: verified"
    );
    prog.fd()
        .and_then(|fd| fd.try_clone().map_err(aya::programs::ProgramError::from))
        .map_err(|e| load_failure(SAMPLER, e))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid rlimit struct; failure only matters on old kernels and shows at load.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
}

/// The value the `run` command is registered with: a scope root, never hidden, not the command
/// until its exec succeeds.
pub fn run_root_state() -> TrackState {
    TrackState {
        tree_ppid: 0,
        flags: track::ROOT | track::AWAITING_EXEC,
        parent_start_ns: 0,
    }
}

/// Inserts the calling process into `TRACKED`. Runs between fork and exec of the `run`
/// command, so it allocates nothing and takes no locks: only async-signal-safe syscalls.
pub fn register_self(tracked_fd: RawFd, state: &TrackState) -> std::io::Result<()> {
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    register_pid(tracked_fd, pid, state)
}

/// Inserts `pid` into `TRACKED` with a raw `bpf(BPF_MAP_UPDATE_ELEM)` (no allocation).
pub fn register_pid(tracked_fd: RawFd, pid: u32, state: &TrackState) -> std::io::Result<()> {
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let attr = MapElemAttr {
        map_fd: tracked_fd as u32,
        _pad: 0,
        key: &pid as *const u32 as u64,
        value: state as *const TrackState as u64,
        flags: 0,
    };
    // SAFETY: attr points at a live key and value of the map's key and value sizes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &attr as *const MapElemAttr,
            std::mem::size_of::<MapElemAttr>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
