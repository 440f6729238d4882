//! What a stalled process waits on, read from `/proc` (only for processes already stalled for
//! `diagnosis.hang_after`, so this costs nothing per event): each thread's state, wait channel
//! and the system call it sleeps in with its arguments, the file, pipe or socket behind the
//! descriptor it names, and the holders of the lock it wants (`/proc/locks`).

use std::collections::HashMap;

/// What a process is blocked on, as far as `/proc` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// On a CPU or runnable: not blocked.
    Running,
    /// A timed sleep (`nanosleep`): `sleep 30` is not a hang.
    Sleep,
    /// In `wait4`/`waitid`: on its children.
    Children,
    /// Reading from (`writing` false: waits for a writer) or writing to a pipe or FIFO.
    Pipe { inode: u64, writing: bool },
    /// `flock` or `fcntl(F_SETLKW)` on a file: waits for the lock's holders.
    Lock {
        device: (u32, u32),
        inode: u64,
        path: String,
    },
    /// Reading, writing or connecting on a socket: waits on the peer.
    Socket {
        call: &'static str,
        peer: Option<String>,
    },
    /// `poll`, `select`, `epoll_wait`, `pause`, `accept`: an event loop or a server waiting
    /// for work.
    EventLoop(&'static str),
    /// A futex: a lock or condition inside the process.
    Futex,
    /// Stopped by a signal or a debugger.
    Stopped,
    /// Uninterruptible (D): the kernel's wait channel (disk, NFS, a driver).
    Uninterruptible(String),
    /// Something else: the system call or wait channel, or a file it reads.
    Other(String),
}

impl Wait {
    /// How a person reads it: `write to pipe 81234`, `lock on /tmp/b`.
    pub fn describe(&self) -> String {
        match self {
            Self::Running => "running".into(),
            Self::Sleep => "a timed sleep".into(),
            Self::Children => "its children".into(),
            Self::Pipe {
                inode,
                writing: true,
            } => format!("a write to pipe {inode}"),
            Self::Pipe {
                inode,
                writing: false,
            } => format!("a read from pipe {inode}"),
            Self::Lock { path, .. } => format!("a lock on {path}"),
            Self::Socket {
                call,
                peer: Some(peer),
            } => format!("a {call} on a socket to {peer}"),
            Self::Socket { call, peer: None } => format!("a {call} on a socket"),
            Self::EventLoop(call) => format!("{call} (an event loop)"),
            Self::Futex => "a futex (a lock inside the process)".into(),
            Self::Stopped => "being stopped (SIGSTOP or a debugger)".into(),
            Self::Uninterruptible(wchan) => format!("an uninterruptible wait in {wchan}"),
            Self::Other(what) => what.clone(),
        }
    }

    /// `pipe`, `lock`, `socket` …: the `wait` evidence field.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Sleep => "sleep",
            Self::Children => "children",
            Self::Pipe { .. } => "pipe",
            Self::Lock { .. } => "lock",
            Self::Socket { .. } => "socket",
            Self::EventLoop(_) => "event_loop",
            Self::Futex => "futex",
            Self::Stopped => "stopped",
            Self::Uninterruptible(_) => "uninterruptible",
            Self::Other(_) => "other",
        }
    }
}

/// One process looked at: its main wait and what the kernel shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub wait: Wait,
    /// Task state letter of the thread the wait is from (`S`, `D`, `T` …).
    pub state: char,
    /// Its wait channel (`pipe_write`, `do_wait`), empty when the kernel hides it.
    pub wchan: String,
    /// Its system call by name, empty when not in one or not readable.
    pub syscall: String,
}

/// A thread as `/proc/PID/task/TID/*` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Thread {
    state: char,
    wchan: String,
    /// Number and first two arguments, when in a system call.
    syscall: Option<(i64, u64, u64)>,
}

fn read(path: String) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The state letter after the parenthesised comm of a `stat` file.
fn state_of(stat: &str) -> Option<char> {
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// `/proc/…/syscall`: `NR arg1 … arg6 sp pc`, `-1 sp pc` (blocked outside a call), `running`.
fn parse_syscall(text: &str) -> Option<(i64, u64, u64)> {
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let hex = |s: Option<&str>| {
        s.and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    Some((nr, hex(fields.next()), hex(fields.next())))
}

fn threads(tgid: u32) -> Vec<Thread> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let base = format!("/proc/{tgid}/task/{}", entry.file_name().to_string_lossy());
        let Some(state) = read(format!("{base}/stat")).and_then(|s| state_of(&s)) else {
            continue;
        };
        let wchan = read(format!("{base}/wchan"))
            .filter(|w| w != "0")
            .unwrap_or_default();
        let syscall = read(format!("{base}/syscall")).and_then(|s| parse_syscall(&s));
        out.push(Thread {
            state,
            wchan,
            syscall,
        });
    }
    out
}

/// The target of descriptor `fd`: `pipe:[81234]`, `socket:[9]`, `/tmp/b`.
fn fd_target(tgid: u32, fd: u64) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The inode of `pipe:[N]` / `socket:[N]`.
fn bracketed(target: &str, prefix: &str) -> Option<u64> {
    target.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
}

/// Major and minor of a `st_dev`, as `/proc/locks` prints them (glibc's `gnu_dev_*`).
fn split_device(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn lock_wait(tgid: u32, fd: u64) -> Wait {
    use std::os::unix::fs::MetadataExt;
    let path = fd_target(tgid, fd).unwrap_or_else(|| format!("descriptor {fd}"));
    match std::fs::metadata(format!("/proc/{tgid}/fd/{fd}")) {
        Ok(m) => Wait::Lock {
            device: split_device(m.dev()),
            inode: m.ino(),
            path,
        },
        Err(_) => Wait::Other(format!("a lock on {path}")),
    }
}

/// A read or write on descriptor `fd`.
fn io_wait(tgid: u32, fd: u64, writing: bool) -> Wait {
    let call = if writing { "write" } else { "read" };
    let Some(target) = fd_target(tgid, fd) else {
        return Wait::Other(format!("a {call} on descriptor {fd}"));
    };
    if let Some(inode) = bracketed(&target, "pipe:[") {
        return Wait::Pipe { inode, writing };
    }
    if let Some(inode) = bracketed(&target, "socket:[") {
        return Wait::Socket {
            call,
            peer: socket_peer(tgid, inode),
        };
    }
    if target.starts_with('/') && !target.starts_with("/dev/") {
        // A FIFO (a named pipe) shows its path; its inode matches the pipe's.
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if let Ok(m) = std::fs::metadata(format!("/proc/{tgid}/fd/{fd}"))
            && m.file_type().is_fifo()
        {
            return Wait::Pipe {
                inode: m.ino(),
                writing,
            };
        }
    }
    Wait::Other(format!("a {call} from {target}"))
}

/// What one thread waits on, from its state and system call.
fn thread_wait(tgid: u32, t: &Thread) -> Wait {
    match t.state {
        'R' => return Wait::Running,
        'T' | 't' => return Wait::Stopped,
        _ => {}
    }
    let Some((nr, a0, a1)) = t.syscall else {
        return match (t.state, t.wchan.is_empty()) {
            ('D', _) => Wait::Uninterruptible(t.wchan.clone()),
            (_, false) => Wait::Other(format!("the kernel in {}", t.wchan)),
            _ => Wait::Other("an unknown wait".into()),
        };
    };
    if t.state == 'D' {
        return Wait::Uninterruptible(t.wchan.clone());
    }
    if let Some(name) = call_name(nr).filter(|name| EVENT_LOOPS.contains(name)) {
        return Wait::EventLoop(name);
    }
    match nr {
        libc::SYS_read
        | libc::SYS_readv
        | libc::SYS_pread64
        | libc::SYS_preadv
        | libc::SYS_preadv2
        | libc::SYS_recvfrom
        | libc::SYS_recvmsg
        | libc::SYS_recvmmsg => io_wait(tgid, a0, false),
        libc::SYS_write
        | libc::SYS_writev
        | libc::SYS_pwrite64
        | libc::SYS_pwritev
        | libc::SYS_pwritev2
        | libc::SYS_sendto
        | libc::SYS_sendmsg
        | libc::SYS_sendmmsg => io_wait(tgid, a0, true),
        libc::SYS_connect => Wait::Socket {
            call: "connect",
            peer: fd_target(tgid, a0)
                .and_then(|t| bracketed(&t, "socket:["))
                .and_then(|inode| socket_peer(tgid, inode)),
        },
        libc::SYS_wait4 | libc::SYS_waitid => Wait::Children,
        libc::SYS_flock => lock_wait(tgid, a0),
        libc::SYS_fcntl if matches!(a1 as libc::c_int, libc::F_SETLKW | libc::F_OFD_SETLKW) => {
            lock_wait(tgid, a0)
        }
        libc::SYS_nanosleep | libc::SYS_clock_nanosleep => Wait::Sleep,
        libc::SYS_futex => Wait::Futex,
        _ if !t.wchan.is_empty() => Wait::Other(format!("system call {nr} in {}", t.wchan)),
        _ => Wait::Other(format!("system call {nr}")),
    }
}

/// How telling a wait is, to pick one for a process with many threads: a runnable thread wins
/// (the process is not stalled), then a concrete blocker, then sleeps and event loops.
fn rank(w: &Wait) -> u8 {
    match w {
        Wait::Running => 0,
        Wait::Lock { .. } | Wait::Pipe { .. } | Wait::Socket { .. } => 1,
        Wait::Uninterruptible(_) | Wait::Stopped => 2,
        Wait::Children => 3,
        Wait::Other(_) => 4,
        Wait::Sleep => 5,
        Wait::EventLoop(_) => 6,
        Wait::Futex => 7,
    }
}

/// The system calls a stalled thread is commonly found in, by name; the rest go by number.
const CALLS: &[(libc::c_long, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_waitid, "waitid"),
    (libc::SYS_flock, "flock"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_futex, "futex"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_ppoll, "ppoll"),
    (libc::SYS_pselect6, "pselect6"),
    (libc::SYS_epoll_pwait, "epoll_pwait"),
    (libc::SYS_epoll_pwait2, "epoll_pwait2"),
    (libc::SYS_rt_sigsuspend, "rt_sigsuspend"),
    (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_poll, "poll"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_select, "select"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_epoll_wait, "epoll_wait"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_pause, "pause"),
];

/// Calls an event loop or a server waiting for work sleeps in.
const EVENT_LOOPS: &[&str] = &[
    "ppoll",
    "pselect6",
    "epoll_pwait",
    "epoll_pwait2",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "accept",
    "accept4",
    "poll",
    "select",
    "epoll_wait",
    "pause",
];

fn call_name(nr: i64) -> Option<&'static str> {
    CALLS.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

fn syscall_name(nr: i64) -> String {
    call_name(nr).map_or_else(|| nr.to_string(), str::to_owned)
}

/// Looks at live process `tgid`; `None` when it is gone (a zombie has ended: it only waits
/// for its parent to collect it).
pub fn probe(tgid: u32) -> Option<Probe> {
    let threads = threads(tgid);
    let (wait, t) = threads
        .iter()
        .filter(|t| !matches!(t.state, 'Z' | 'X' | 'x'))
        .map(|t| (thread_wait(tgid, t), t))
        .min_by_key(|(w, _)| rank(w))?;
    Some(Probe {
        wait,
        state: t.state,
        wchan: t.wchan.clone(),
        syscall: t.syscall.map(|s| syscall_name(s.0)).unwrap_or_default(),
    })
}

/// The pipes a process has open: inode → (open for reading, open for writing).
pub fn pipes(tgid: u32) -> HashMap<u64, (bool, bool)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{tgid}/fd")) else {
        return out;
    };
    for entry in dir.flatten() {
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = match bracketed(&target, "pipe:[") {
            Some(inode) => inode,
            None if target.starts_with('/') => match std::fs::metadata(entry.path()) {
                Ok(m) if m.file_type().is_fifo() => m.ino(),
                _ => continue,
            },
            None => continue,
        };
        // `flags:` in fdinfo is octal; its low two bits are the access mode.
        let mode = read(format!("/proc/{tgid}/fdinfo/{fd}"))
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            })
            .map_or(libc::O_RDWR as u32, |f| f & 3);
        let e = out.entry(inode).or_insert((false, false));
        e.0 |= mode == libc::O_RDONLY as u32 || mode == libc::O_RDWR as u32;
        e.1 |= mode == libc::O_WRONLY as u32 || mode == libc::O_RDWR as u32;
    }
    out
}

/// A held file lock, from `/proc/locks` (waiters, the `->` lines, are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub pid: u32,
    pub device: (u32, u32),
    pub inode: u64,
}

/// `1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF` (device in hex, inode in decimal).
pub fn parse_locks(text: &str) -> Vec<Held> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.len() < 6 {
            continue;
        }
        // pid is -1 for an open-file-description lock: no process to name.
        let (Ok(pid), Some(id)) = (fields[4].parse::<u32>(), fields.get(5)) else {
            continue;
        };
        let parts: Vec<&str> = id.split(':').collect();
        let [major, minor, inode] = parts[..] else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(inode)) = (
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        out.push(Held {
            pid,
            device: (major, minor),
            inode,
        });
    }
    out
}

pub fn locks() -> Vec<Held> {
    read("/proc/locks".into())
        .map(|t| parse_locks(&t))
        .unwrap_or_default()
}

/// The remote end of TCP socket `inode`, from the process's own network namespace:
/// `127.0.0.1:5432`, `[::1]:8080`.
fn socket_peer(tgid: u32, inode: u64) -> Option<String> {
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Some(text) = read(format!("/proc/{tgid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(9).and_then(|i| i.parse::<u64>().ok()) == Some(inode) {
                return f.get(2).and_then(|a| parse_address(a, v6));
            }
        }
    }
    None
}

/// `0100007F:1F90` → `127.0.0.1:8080`; IPv6 as four little-endian words.
fn parse_address(text: &str, v6: bool) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !v6 {
        let n = u32::from_str_radix(addr, 16).ok()?;
        return Some(format!(
            "{}:{port}",
            std::net::Ipv4Addr::from(n.swap_bytes())
        ));
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let ip = std::net::Ipv6Addr::from(bytes);
    Some(match ip.to_ipv4_mapped() {
        Some(v4) => format!("{v4}:{port}"),
        None => format!("[{ip}]:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_parse_holders_and_skip_waiters() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4243 08:01:1234 0 EOF\n\
                    2: OFDLCK ADVISORY  READ  -1 00:05:99 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 7 fd:00:5 0 EOF\n";
        assert_eq!(
            parse_locks(text),
            vec![
                Held {
                    pid: 4242,
                    device: (8, 1),
                    inode: 1234
                },
                Held {
                    pid: 7,
                    device: (0xfd, 0),
                    inode: 5
                },
            ]
        );
    }

    #[test]
    fn socket_addresses_read_as_people_write_them() {
        assert_eq!(
            parse_address("0100007F:1F90", false).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            parse_address("00000000000000000000000001000000:0050", true).as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(
            parse_address("0000000000000000FFFF00000100007F:0050", true).as_deref(),
            Some("127.0.0.1:80")
        );
    }

    #[test]
    fn syscall_lines_give_the_call_and_its_first_arguments() {
        assert_eq!(
            parse_syscall("0 0x3 0x7ffd 0x1000 0 0 0 0x7ffc 0x7f00"),
            Some((0, 3, 0x7ffd))
        );
        assert_eq!(parse_syscall("-1 0x7ffc 0x7f00"), None);
        assert_eq!(parse_syscall("running"), None);
        assert_eq!(state_of("42 (a (b) c) S 1 2"), Some('S'));
    }

    #[test]
    fn a_sleeping_child_of_this_test_shows_its_sleep_and_a_pipe_writer_its_pipe() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // A writer to a pipe nobody reads: fills its 64 KiB and blocks.
        let mut writer = std::process::Command::new("sh")
            .args(["-c", "exec yes"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (mut slept, mut wrote) = (None, None);
        while std::time::Instant::now() < deadline && (slept.is_none() || wrote.is_none()) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            slept = probe(sleeper.id()).filter(|p| p.wait == Wait::Sleep);
            wrote =
                probe(writer.id()).filter(|p| matches!(p.wait, Wait::Pipe { writing: true, .. }));
        }
        let _ = (sleeper.kill(), writer.kill(), sleeper.wait(), writer.wait());
        assert!(slept.is_some(), "sleep 30 is in a timed sleep");
        let wrote = wrote.expect("yes blocks writing to the pipe");
        assert_eq!(wrote.state, 'S');
        let Wait::Pipe { inode, .. } = wrote.wait else {
            unreachable!()
        };
        // This process holds the read end.
        assert_eq!(pipes(std::process::id()).get(&inode), Some(&(true, false)));
    }
}
