//! Ring-buffer bytes to typed events. Pure and length-checked: any byte string either decodes
//! or yields a [`DecodeError`]; nothing here panics or trusts a length field.

use exporter_common::{ExecTail, ExitTail, RecordHeader, flags, kind};

use crate::event::{
    Activity, Body, Common, Connection, Event, Exec, Exit, FileAccess, FileOp, Memory,
    ThreadSample, Usage, normalize,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need} its kind needs")]
    Short { need: usize, got: usize },
    #[error("record header says {declared} bytes but {got} arrived")]
    LengthMismatch { declared: usize, got: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("exec record data lengths ({declared} bytes) exceed its data area ({available})")]
    DataOverrun { declared: usize, available: usize },
}

/// An address as the kernel stores it (network byte order; IPv4 in the first 4 bytes).
fn address(family: u16, bytes: &[u8]) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    const AF_INET6: u16 = 10;
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    if family == AF_INET6 {
        Ipv6Addr::from(b).to_canonical()
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// Size of a memory page (read once).
pub fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

const HEADER: usize = std::mem::size_of::<RecordHeader>();
const EXEC_TAIL: usize = std::mem::size_of::<ExecTail>();
#[cfg(test)]
const EXIT_TAIL: usize = std::mem::size_of::<ExitTail>();
#[cfg(test)]
const MEMORY_TAIL: usize = std::mem::size_of::<exporter_common::MemoryTail>();

/// The shared `#[repr(C)]` record parts: integers and byte arrays only, so every bit pattern
/// is a valid value.
trait Plain: Copy {}
impl Plain for u64 {}
impl Plain for RecordHeader {}
impl Plain for ExecTail {}
impl Plain for ExitTail {}
impl Plain for exporter_common::MemoryTail {}
impl Plain for exporter_common::SampleTail {}
impl Plain for exporter_common::FileTail {}
impl Plain for exporter_common::ConnectionTail {}

/// The record part `T` at byte `at`, read whole as the kernel program wrote it: every field at
/// the offset the compiler gave it in `exporter-common`, none at an offset written by hand.
fn read_at<T: Plain>(record: &[u8], at: usize) -> Result<T, DecodeError> {
    let need = at + std::mem::size_of::<T>();
    if record.len() < need {
        return Err(DecodeError::Short {
            need,
            got: record.len(),
        });
    }
    // SAFETY: `at..need` is inside `record` (checked above); `read_unaligned` needs no
    // alignment; `T: Plain` has no invalid bit patterns.
    Ok(unsafe { std::ptr::read_unaligned(record.as_ptr().add(at).cast::<T>()) })
}

/// Bytes up to the first NUL, as text (invalid UTF-8 replaced).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Path components written leaf first, each NUL-terminated, joined root first.
fn walked_path(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    let mut path = String::new();
    for part in parts.iter().rev() {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(part));
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}

/// NUL-separated argv strings; a truncated last string is kept as far as it goes.
fn split_argv(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A file record's operation with its paths made absolute: a walked path as is, a string
/// joined to the walked directory it is relative to.
fn file_access(record: &[u8]) -> Result<FileAccess, DecodeError> {
    use exporter_common::{FileTail, file_op, file_path};
    const TAIL: usize = std::mem::size_of::<FileTail>();
    let t: FileTail = read_at(record, HEADER)?;
    let data = &record[HEADER + TAIL..];
    let lens = [t.path_len, t.base_len, t.path2_len, t.base2_len].map(usize::from);
    let declared: usize = lens.iter().sum();
    if declared > data.len() {
        return Err(DecodeError::DataOverrun {
            declared,
            available: data.len(),
        });
    }
    let (path, rest) = data.split_at(lens[0]);
    let (base, rest) = rest.split_at(lens[1]);
    let (path2, rest) = rest.split_at(lens[2]);
    let base2 = &rest[..lens[3]];
    let named = |name: &[u8], base: &[u8], root: bool| -> String {
        let name = c_string(name);
        if name.starts_with('/') {
            return normalize(&name);
        }
        match walked_path(base) {
            Some(dir) => normalize(&format!("{dir}/{name}")),
            None if root => normalize(&format!("/{name}")),
            // The directory could not be read: the name as passed.
            None => name,
        }
    };
    let opened = t.path_flags & file_path::WALKED != 0;
    let first = if opened {
        let walked = walked_path(path).unwrap_or_else(|| "/".into());
        if t.path_flags & file_path::DETACHED != 0 {
            format!("{} (deleted)", walked.trim_start_matches('/'))
        } else {
            walked
        }
    } else {
        named(path, base, t.path_flags & file_path::BASE_ROOT != 0)
    };
    let second =
        (lens[2] > 0).then(|| named(path2, base2, t.path_flags & file_path::BASE2_ROOT != 0));
    const O_ACCMODE: u64 = 3;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    const AT_REMOVEDIR: u64 = 0x200;
    let failed = t.result < 0;
    let op = match t.op {
        file_op::OPEN if failed => FileOp::Probe,
        file_op::OPEN if t.flags & O_CREAT != 0 => FileOp::Create,
        file_op::OPEN if t.flags & O_ACCMODE != 0 || t.flags & O_TRUNC != 0 => FileOp::Write,
        file_op::OPEN => FileOp::Read,
        file_op::RENAME => FileOp::Rename,
        file_op::UNLINK if t.flags & AT_REMOVEDIR != 0 => FileOp::Rmdir,
        file_op::UNLINK => FileOp::Delete,
        file_op::RMDIR => FileOp::Rmdir,
        file_op::MKDIR => FileOp::Mkdir,
        file_op::TRUNCATE => FileOp::Truncate,
        file_op::LINK => FileOp::Link,
        file_op::SYMLINK => FileOp::Symlink,
        other => return Err(DecodeError::UnknownKind(other)),
    };
    // A symlink's target is kept as written; the link is the path made.
    let (path, target) = match op {
        FileOp::Symlink => (second.unwrap_or_default(), Some(c_string(path))),
        _ => (first, second),
    };
    Ok(FileAccess {
        op,
        path,
        target,
        flags: t.flags,
        errno: failed.then(|| (-t.result) as i32),
        size: (opened && !failed).then_some(t.size),
        ino: t.ino,
        truncated: t.path_flags & file_path::TRUNCATED != 0,
    })
}

pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let h: RecordHeader = read_at(record, 0)?;
    let declared = h.len as usize;
    if declared != record.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            got: record.len(),
        });
    }
    let common = Common {
        flags: h.flags,
        ktime_ns: h.ktime_ns,
        start_ns: h.start_ns,
        parent_start_ns: h.parent_start_ns,
        cgroup_id: h.cgroup_id,
        tgid: h.tgid,
        tid: h.pid,
        ppid: h.ppid,
        tree_ppid: h.tree_ppid,
        uid: h.uid,
        comm: c_string(&h.comm),
    };
    let body = match h.kind {
        kind::FORK => Body::Fork,
        kind::MEMORY => {
            let t: exporter_common::MemoryTail = read_at(record, HEADER)?;
            Body::Memory(Memory {
                rss_bytes: t.rss_bytes,
                previous_bytes: t.previous_bytes,
            })
        }
        kind::SAMPLE => Body::ThreadSample(ThreadSample {
            _pad0: 0,
            ..read_at(record, HEADER)?
        }),
        kind::CONNECTION => {
            let t: exporter_common::ConnectionTail = read_at(record, HEADER)?;
            Body::Connection(Connection {
                outbound: t.direction == exporter_common::direction::OUTBOUND,
                protocol: t.protocol,
                peer: address(t.family, &t.peer_addr),
                peer_port: t.peer_port,
                local: address(t.family, &t.local_addr),
                local_port: (t.local_port != 0).then_some(t.local_port),
                established: t.outcome == exporter_common::outcome::ESTABLISHED,
            })
        }
        kind::SAMPLE_END => Body::SampleEnd(read_at(record, HEADER)?),
        kind::FILE => Body::File(Box::new(file_access(record)?)),
        kind::EXIT => {
            let t: ExitTail = read_at(record, HEADER)?;
            Body::Exit(Exit {
                status: t.exit_status,
                usage: Usage::from_kernel(
                    t.utime_ns,
                    t.stime_ns,
                    t.runtime_ns,
                    t.maxrss_pages.saturating_mul(page_size()),
                ),
                activity: Activity::from_kernel(&t.activity, &t.network, t.present),
                oom_killed: t.present & exporter_common::present::OOM_VICTIM != 0,
                files_unsent: u64::from(t.file_unsent),
            })
        }
        kind::EXEC => {
            let t: ExecTail = read_at(record, HEADER)?;
            let exe_len = usize::from(t.exe_len);
            let cwd_len = usize::from(t.cwd_len);
            let filename_len = usize::from(t.filename_len);
            let argv_len = t.argv_len as usize;
            let argv_total = t.argv_total;
            let data = &record[HEADER + EXEC_TAIL..];
            let declared = exe_len + cwd_len + filename_len + argv_len;
            if declared > data.len() {
                return Err(DecodeError::DataOverrun {
                    declared,
                    available: data.len(),
                });
            }
            let (exe, rest) = data.split_at(exe_len);
            let (cwd, rest) = rest.split_at(cwd_len);
            let (filename, rest) = rest.split_at(filename_len);
            let argv = &rest[..argv_len];
            let exe = if common.has(flags::EXE_DETACHED) {
                // As `d_path` shows a file outside any directory (`/memfd:x (deleted)`).
                walked_path(exe).map(|name| format!("{name} (deleted)"))
            } else {
                walked_path(exe)
            };
            let cwd = match walked_path(cwd) {
                None if common.has(flags::CWD_ROOT) => Some("/".to_owned()),
                cwd => cwd,
            };
            Body::Exec(Box::new(Exec {
                exe,
                cwd,
                filename: c_string(filename),
                argv: split_argv(argv),
                // The kernel flags a cap it hit; a shorter read than the process's argv is
                // a truncation whatever the reason.
                argv_truncated: common.flags & flags::ARGV_TRUNCATED != 0
                    || (argv_len as u64) < u64::from(argv_total),
                argv_total_bytes: argv_total,
                hidden: common.flags & flags::HIDDEN != 0,
            }))
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(Event { common, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter_common::{COMM_LEN, ExecTail, ExitTail, RecordHeader};

    fn header(kind: u16, flags: u16, len: usize) -> RecordHeader {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"make");
        RecordHeader {
            kind,
            flags,
            len: len as u32,
            ktime_ns: 1_000,
            start_ns: 900,
            parent_start_ns: 100,
            cgroup_id: 7,
            tgid: 42,
            pid: 43,
            ppid: 41,
            tree_ppid: 40,
            uid: 1000,
            _pad0: 0,
            comm,
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: the record types are #[repr(C)] integers with explicit padding.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn exec_record(exe: &[u8], cwd: &[u8], filename: &[u8], argv: &[u8], flags: u16) -> Vec<u8> {
        let len = HEADER + EXEC_TAIL + exe.len() + cwd.len() + filename.len() + argv.len();
        let mut out = bytes_of(&header(kind::EXEC, flags, len));
        out.extend(bytes_of(&ExecTail {
            exe_len: exe.len() as u16,
            cwd_len: cwd.len() as u16,
            filename_len: filename.len() as u16,
            _pad0: 0,
            argv_len: argv.len() as u32,
            argv_total: argv.len() as u32 + 10,
        }));
        for part in [exe, cwd, filename, argv] {
            out.extend_from_slice(part);
        }
        out
    }

    /// Every header field set to a value no other field has: each lands in its own place.
    #[test]
    fn every_header_field_is_read_from_its_own_place() {
        let mut comm = [0u8; COMM_LEN];
        comm[..7].copy_from_slice(b"distinc");
        let h = RecordHeader {
            kind: kind::MEMORY,
            flags: 0x0a0b,
            len: (HEADER + MEMORY_TAIL) as u32,
            ktime_ns: 1_000_000_011,
            start_ns: 1_000_000_012,
            parent_start_ns: 1_000_000_013,
            cgroup_id: 1_000_000_014,
            tgid: 15,
            pid: 16,
            ppid: 17,
            tree_ppid: 18,
            uid: 19,
            _pad0: 0xffff_ffff,
            comm,
        };
        let mut rec = bytes_of(&h);
        rec.extend(bytes_of(&exporter_common::MemoryTail {
            rss_bytes: 21,
            previous_bytes: 22,
        }));
        let ev = decode(&rec).unwrap();
        assert_eq!(
            ev.common,
            Common {
                flags: 0x0a0b,
                ktime_ns: 1_000_000_011,
                start_ns: 1_000_000_012,
                parent_start_ns: 1_000_000_013,
                cgroup_id: 1_000_000_014,
                tgid: 15,
                tid: 16,
                ppid: 17,
                tree_ppid: 18,
                uid: 19,
                comm: "distinc".into(),
            }
        );
        assert_eq!(
            ev.body,
            Body::Memory(Memory {
                rss_bytes: 21,
                previous_bytes: 22
            })
        );
    }

    #[test]
    fn decodes_exec_with_paths_and_argv() {
        let rec = exec_record(
            b"python3.11\0bin\0usr\0",
            b"w\0tmp\0",
            b"./job.py\0",
            "python3\0-c\0print('h\u{e9}llo w')\0".as_bytes(),
            flags::ARGV_TRUNCATED | flags::FIRST_SIGHT,
        );
        let ev = decode(&rec).unwrap();
        assert_eq!(ev.common.tgid, 42);
        assert_eq!(ev.common.tid, 43);
        assert_eq!(ev.common.comm, "make");
        assert!(ev.common.has(flags::FIRST_SIGHT));
        let Body::Exec(exec) = ev.body else {
            panic!("not exec")
        };
        assert_eq!(exec.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(exec.cwd.as_deref(), Some("/tmp/w"));
        assert_eq!(exec.filename, "./job.py");
        assert_eq!(exec.argv, vec!["python3", "-c", "print('h\u{e9}llo w')"]);
        assert!(exec.argv_truncated);
        assert!(!exec.hidden);
    }

    #[test]
    fn root_directory_and_empty_argv() {
        let ev = decode(&exec_record(b"", b"\0", b"\0", b"", 0)).unwrap();
        let Body::Exec(exec) = ev.body else { panic!() };
        assert_eq!(exec.exe, None);
        assert_eq!(exec.cwd.as_deref(), Some("/"));
        assert!(exec.argv.is_empty());
    }

    #[test]
    fn decodes_thread_samples_and_round_ends() {
        use exporter_common::{SampleEndRecord, SampleRecord, SampleTail};
        let size = std::mem::size_of::<SampleRecord>();
        let tail = SampleTail {
            session: 7,
            utime_ns: 1,
            stime_ns: 2,
            runtime_ns: 3,
            dead_utime_ns: 4,
            dead_stime_ns: 5,
            dead_runtime_ns: 6,
            run_delay_ns: 13,
            rss_pages: 8,
            present: exporter_common::present::IO_CHARS,
            _pad0: 0,
            activity: exporter_common::Activity {
                rchar: 9,
                nvcsw: 10,
                ..Default::default()
            },
            dead_activity: exporter_common::Activity {
                min_flt: 11,
                ..Default::default()
            },
            network: exporter_common::Network {
                sent_bytes: 12,
                ..Default::default()
            },
        };
        let rec = SampleRecord {
            header: header(kind::SAMPLE, 0, size),
            tail,
        };
        let ev = decode(&bytes_of(&rec)).unwrap();
        assert_eq!(ev.kind_name(), "thread_sample");
        assert_eq!(ev.body, Body::ThreadSample(tail));
        let end = SampleEndRecord {
            header: header(kind::SAMPLE_END, 0, std::mem::size_of::<SampleEndRecord>()),
            session: 7,
        };
        assert_eq!(decode(&bytes_of(&end)).unwrap().body, Body::SampleEnd(7));
        let short = bytes_of(&header(kind::SAMPLE, 0, HEADER));
        assert!(matches!(decode(&short), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn decodes_connections_of_both_families() {
        use exporter_common::{ConnectionRecord, ConnectionTail, direction, outcome};
        let size = std::mem::size_of::<ConnectionRecord>();
        let mut mapped = [0u8; 16];
        mapped[10..12].copy_from_slice(&[0xff, 0xff]);
        mapped[12..].copy_from_slice(&[10, 0, 0, 7]);
        let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
        let record = |family, peer: [u8; 16], local_port, dir, result| {
            bytes_of(&ConnectionRecord {
                header: header(kind::CONNECTION, 0, size),
                tail: ConnectionTail {
                    family,
                    protocol: 6,
                    local_port,
                    peer_port: 443,
                    direction: dir,
                    outcome: result,
                    peer_addr: peer,
                    ..Default::default()
                },
            })
        };
        let ev = decode(&record(10, mapped, 0, direction::OUTBOUND, outcome::FAILED)).unwrap();
        assert_eq!(ev.kind_name(), "connection");
        let Body::Connection(c) = ev.body else {
            panic!("not a connection")
        };
        // An IPv4-mapped IPv6 peer reads as the IPv4 address it is.
        assert_eq!(c.peer.to_string(), "10.0.0.7");
        assert_eq!(c.network_type(), "ipv4");
        assert_eq!((c.peer_port, c.local_port), (443, None));
        assert_eq!((c.direction(), c.outcome()), ("outbound", "failed"));
        assert_eq!(c.transport(), "tcp");
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        let Body::Connection(c) = decode(&record(
            2,
            v4,
            8080,
            direction::INBOUND,
            outcome::ESTABLISHED,
        ))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!(c.peer.to_string(), "127.0.0.1");
        assert_eq!((c.direction(), c.local_port), ("inbound", Some(8080)));
        let Body::Connection(c) = decode(&record(
            10,
            v6,
            1,
            direction::OUTBOUND,
            outcome::ESTABLISHED,
        ))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!(
            (c.peer.to_string().as_str(), c.network_type()),
            ("2001:db8::1", "ipv6")
        );
        let short = bytes_of(&header(kind::CONNECTION, 0, HEADER + 4));
        let mut short = short;
        short.extend([0u8; 4]);
        assert!(decode(&short).is_err());
    }

    fn file_record(tail: exporter_common::FileTail, data: &[u8]) -> Vec<u8> {
        let len = HEADER + std::mem::size_of::<exporter_common::FileTail>() + data.len();
        let mut out = bytes_of(&header(kind::FILE, 0, len));
        out.extend(bytes_of(&tail));
        out.extend_from_slice(data);
        out
    }

    fn access_of(record: &[u8]) -> FileAccess {
        match decode(record).unwrap().body {
            Body::File(f) => *f,
            other => panic!("not a file record: {other:?}"),
        }
    }

    #[test]
    fn file_paths_are_made_absolute() {
        use exporter_common::{FileTail, file_op, file_path};
        // An opened file: its walked path, leaf first.
        let opened = access_of(&file_record(
            FileTail {
                result: 3,
                flags: 0o1101,
                size: 0,
                ino: 9,
                op: file_op::OPEN,
                path_flags: file_path::WALKED,
                path_len: 13,
                ..Default::default()
            },
            b"out.o\0build\0w\0",
        ));
        assert_eq!(
            (opened.op, opened.path.as_str(), opened.size),
            (FileOp::Create, "/w/build/out.o", Some(0))
        );
        // A relative rename: each name joined to its walked directory, `..` resolved.
        let renamed = access_of(&file_record(
            FileTail {
                result: 0,
                op: file_op::RENAME,
                path_len: 6,
                base_len: 8,
                path2_len: 9,
                base2_len: 0,
                ..Default::default()
            },
            b"a.tmp\0sub\0src\0../b.txt\0",
        ));
        assert_eq!(renamed.op, FileOp::Rename);
        assert_eq!(renamed.path, "/src/sub/a.tmp");
        // No walked directory and not the root: the name as passed.
        assert_eq!(renamed.target.as_deref(), Some("../b.txt"));
        // A failed open is a probe with its errno; a symlink keeps its target as written.
        let probe = access_of(&file_record(
            FileTail {
                result: -2,
                op: file_op::OPEN,
                path_len: 7,
                path_flags: file_path::BASE_ROOT,
                ..Default::default()
            },
            b"x/../h\0",
        ));
        assert_eq!(
            (probe.op, probe.path.as_str(), probe.errno, probe.size),
            (FileOp::Probe, "/h", Some(2), None)
        );
        let link = access_of(&file_record(
            FileTail {
                op: file_op::SYMLINK,
                path_len: 5,
                path2_len: 4,
                ..Default::default()
            },
            b"../t\0/l1\0",
        ));
        assert_eq!(
            (link.op, link.path.as_str(), link.target.as_deref()),
            (FileOp::Symlink, "/l1", Some("../t"))
        );
        // Lengths past the data are an error, not a panic.
        let bad = file_record(
            FileTail {
                op: file_op::OPEN,
                path_len: 400,
                ..Default::default()
            },
            b"abc\0",
        );
        assert!(matches!(decode(&bad), Err(DecodeError::DataOverrun { .. })));
    }

    #[test]
    fn exit_status_is_split() {
        let mk = |status: u32| {
            let mut out = bytes_of(&header(kind::EXIT, 0, HEADER + EXIT_TAIL));
            out.extend(bytes_of(&ExitTail {
                exit_status: status,
                present: exporter_common::present::IO_BYTES | exporter_common::present::NET_BYTES,
                utime_ns: 3,
                stime_ns: 1,
                runtime_ns: 4_000,
                maxrss_pages: 10,
                activity: exporter_common::Activity {
                    rchar: 5,
                    write_bytes: 4096,
                    min_flt: 7,
                    nivcsw: 2,
                    ..Default::default()
                },
                network: exporter_common::Network {
                    sent_bytes: 100,
                    received_bytes: 200,
                    connections: 3,
                    ..Default::default()
                },
                file_records: 3,
                file_unsent: 2,
            }));
            match decode(&out).unwrap().body {
                Body::Exit(e) => e,
                _ => panic!(),
            }
        };
        let ok = mk(0);
        assert_eq!(ok.files_unsent, 2);
        assert_eq!(
            (ok.code(), ok.signal(), ok.failed()),
            (Some(0), None, false)
        );
        assert_eq!(ok.usage.cpu_user_ns, 3_000);
        // Only the fields the kernel has: storage bytes yes, call counters not.
        assert_eq!(ok.activity.write_bytes, Some(4096));
        assert_eq!(ok.activity.read_chars, None);
        assert_eq!(ok.activity.minor_faults, Some(7));
        assert_eq!(ok.activity.involuntary_switches, Some(2));
        // Bytes measured (their hooks on), connections not (that hook off): null, not zero.
        assert_eq!(ok.activity.network_sent_bytes, Some(100));
        assert_eq!(ok.activity.network_received_bytes, Some(200));
        assert_eq!(ok.activity.network_connections, None);
        assert_eq!(ok.usage.cpu_system_ns, 1_000);
        assert_eq!(ok.usage.peak_rss_bytes, 10 * page_size());
        let three = mk(3 << 8);
        assert_eq!(
            (three.code(), three.signal(), three.shell_status()),
            (Some(3), None, 3)
        );
        let killed = mk(9);
        assert_eq!(
            (killed.code(), killed.signal(), killed.shell_status()),
            (None, Some(9), 137)
        );
        let core = mk(0x80 | 11);
        assert!(core.core_dumped());
        assert_eq!(core.signal(), Some(11));
    }

    #[test]
    fn rejects_short_mismatched_unknown_and_overrun() {
        assert!(matches!(decode(&[0u8; 10]), Err(DecodeError::Short { .. })));
        let mut fork = bytes_of(&header(kind::FORK, 0, HEADER));
        assert_eq!(decode(&fork).unwrap().body, Body::Fork);
        fork.push(0);
        assert!(matches!(
            decode(&fork),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let unknown = bytes_of(&header(99, 0, HEADER));
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(99)));
        let exit_short = bytes_of(&header(kind::EXIT, 0, HEADER));
        assert!(matches!(
            decode(&exit_short),
            Err(DecodeError::Short { .. })
        ));
        let mut exec = exec_record(b"a\0", b"", b"", b"x\0", 0);
        // Claim more argv than the record holds.
        exec[HEADER + 8] = 200;
        assert!(matches!(
            decode(&exec),
            Err(DecodeError::DataOverrun { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_valid_record_is_an_error() {
        use exporter_common::{SampleEndRecord, SampleRecord, SampleTail};
        let exit = {
            let mut out = bytes_of(&header(kind::EXIT, 0, HEADER + EXIT_TAIL));
            out.extend(bytes_of(&ExitTail {
                exit_status: 0,
                utime_ns: 3,
                stime_ns: 1,
                runtime_ns: 4_000,
                maxrss_pages: 10,
                ..Default::default()
            }));
            out
        };
        let memory = {
            let mut out = bytes_of(&header(kind::MEMORY, 0, HEADER + MEMORY_TAIL));
            out.extend(16u64.to_ne_bytes());
            out.extend(8u64.to_ne_bytes());
            out
        };
        let sample = bytes_of(&SampleRecord {
            header: header(kind::SAMPLE, 0, std::mem::size_of::<SampleRecord>()),
            tail: SampleTail {
                session: 1,
                utime_ns: 1,
                stime_ns: 1,
                runtime_ns: 1,
                dead_utime_ns: 0,
                dead_stime_ns: 0,
                dead_runtime_ns: 0,
                rss_pages: 1,
                ..Default::default()
            },
        });
        let sample_end = bytes_of(&SampleEndRecord {
            header: header(kind::SAMPLE_END, 0, std::mem::size_of::<SampleEndRecord>()),
            session: 1,
        });
        let records = [
            (
                "exec",
                exec_record(b"sh\0bin\0", b"\0", b"/bin/sh\0", b"sh\0-c\0true\0", 0),
            ),
            ("fork", bytes_of(&header(kind::FORK, 0, HEADER))),
            ("exit", exit),
            ("memory", memory),
            ("sample", sample),
            ("sample_end", sample_end),
        ];
        for (name, rec) in records {
            assert!(decode(&rec).is_ok(), "{name}: the whole record decodes");
            for cut in 0..rec.len() {
                // A prefix whose header claims exactly its own length, so only the body's
                // own checks can reject it.
                let mut r = rec[..cut].to_vec();
                if r.len() >= 8 {
                    r[4..8].copy_from_slice(&(cut as u32).to_ne_bytes());
                }
                assert!(
                    decode(&r).is_err(),
                    "{name} cut at {cut} of {} accepted",
                    rec.len()
                );
            }
        }
    }
}
