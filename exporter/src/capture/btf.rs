//! Minimal reader of kernel BTF (`/sys/kernel/btf/vmlinux`) that resolves struct member
//! offsets, including members reached through anonymous structs and unions.
//!
//! Rust BPF programs cannot carry CO-RE relocations, so the agent looks the offsets up here at
//! start-up and injects them as a read-only global.

use std::path::Path;

use exporter_common::KernelOffsets;

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read kernel BTF {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(String),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF has no member {member} in struct {strukt}")]
    NoMember { strukt: String, member: String },
    #[error("member {strukt}.{member} is a bitfield, not byte aligned")]
    Bitfield { strukt: String, member: String },
}

#[derive(Debug, Clone)]
struct Member {
    /// Offset of the name in the string section.
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// Struct or union with its members.
    Composite {
        /// `Btf::members[first..first + count]`.
        first: u32,
        count: u32,
        size: u32,
    },
    /// typedef / const / volatile / restrict / type tag: points at another type.
    Alias(u32),
    Other,
}

/// The struct and union types of a BTF blob, enough to resolve member offsets. Names stay
/// offsets into the string section (compared when looked up): the kernel's BTF has about
/// 100,000 members, and a string for each was most of the agent's start-up parse.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    members: Vec<Member>,
    strings: Vec<u8>,
    /// (name, type id) of every named struct, in type order.
    structs: Vec<(u32, u32)>,
    /// Names of the raw tracepoints the kernel has (`btf_trace_NAME` typedefs), after the
    /// prefix.
    tracepoints: Vec<u32>,
    /// The kernel has the `bpf_loop` helper (5.17 and later).
    has_bpf_loop: bool,
    /// Type id of `bpf_iter_task`, the task iterator's attach point (5.8 and later).
    task_iterator: Option<u32>,
}

const TRACEPOINT_PREFIX: &[u8] = b"btf_trace_";
const TASK_ITERATOR: &[u8] = b"bpf_iter_task";

/// A BTF blob in which type `id` is the function `bpf_iter_task` (its prototype follows; every
/// type before it is a placeholder). Loading an iterator with aya reads nothing else of the
/// kernel's BTF than that function's id; parsing all of it again with aya took ≈ 20 ms and
/// left ≈ 10 MiB of fragmented heap behind.
pub fn task_iterator_blob(id: u32) -> Vec<u8> {
    const HEADER_LEN: u32 = 24;
    let strings: Vec<u8> = [&[0u8][..], TASK_ITERATOR, &[0]].concat();
    let mut types = Vec::with_capacity(12 * (id as usize + 1));
    let mut push = |name_off: u32, info: u32, size_or_type: u32| {
        for word in [name_off, info, size_or_type] {
            types.extend_from_slice(&word.to_le_bytes());
        }
    };
    for _ in 1..id {
        push(0, KIND_PTR << 24, 0);
    }
    push(1, KIND_FUNC << 24, id + 1);
    push(0, KIND_FUNC_PROTO << 24, 0);
    let mut blob = Vec::with_capacity(HEADER_LEN as usize + types.len() + strings.len());
    blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
    blob.extend_from_slice(&[1, 0]);
    for word in [
        HEADER_LEN,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        blob.extend_from_slice(&word.to_le_bytes());
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(&strings);
    blob
}

/// The NUL-terminated name at `off` of the string section (empty when out of range, which
/// [`check_name`] rules out while parsing).
fn name_at(strings: &[u8], off: u32) -> &[u8] {
    let rest = strings.get(off as usize..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    &rest[..end]
}

fn check_name(strings: &[u8], off: u32) -> Result<(), BtfError> {
    if off as usize > strings.len() {
        return Err(BtfError::Malformed(format!(
            "string offset {off} out of range"
        )));
    }
    Ok(())
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, BtfError> {
    data.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| BtfError::Malformed(format!("truncated at byte {at}")))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| BtfError::Malformed(format!("truncated at byte {at}")))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if u16_at(data, 0)? != BTF_MAGIC {
            return Err(BtfError::Malformed(
                "bad magic (not little-endian BTF)".into(),
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= data.len() => Ok(&data[s..e]),
                _ => Err(BtfError::Malformed("section outside the blob".into())),
            }
        };
        let types_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut types = vec![Type::Other];
        let mut members = Vec::new();
        let mut structs = Vec::new();
        let mut tracepoints = Vec::new();
        let mut has_bpf_loop = false;
        let mut task_iterator = None;
        let name_is = |off: u32, wanted: &[u8]| name_at(strings, off) == wanted;
        let mut at = 0usize;
        while at < types_data.len() {
            let name_off = u32_at(types_data, at)?;
            let info = u32_at(types_data, at + 4)?;
            let size_or_type = u32_at(types_data, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let id = types.len() as u32;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let first = members.len() as u32;
                    for _ in 0..vlen {
                        let m_name = u32_at(types_data, at)?;
                        let m_type = u32_at(types_data, at + 4)?;
                        let m_off = u32_at(types_data, at + 8)?;
                        at += 12;
                        check_name(strings, m_name)?;
                        members.push(Member {
                            name: m_name,
                            type_id: m_type,
                            bit_offset: if kind_flag {
                                m_off & 0x00ff_ffff
                            } else {
                                m_off
                            },
                        });
                    }
                    check_name(strings, name_off)?;
                    if kind == KIND_STRUCT && !name_at(strings, name_off).is_empty() {
                        // The first definition wins at lookup (later ones may be forwards).
                        structs.push((name_off, id));
                    }
                    Type::Composite {
                        first,
                        count: vlen as u32,
                        size: size_or_type,
                    }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    if kind == KIND_TYPEDEF {
                        check_name(strings, name_off)?;
                        if name_at(strings, name_off).starts_with(TRACEPOINT_PREFIX) {
                            tracepoints.push(name_off + TRACEPOINT_PREFIX.len() as u32);
                        }
                    }
                    Type::Alias(size_or_type)
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    at += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    at += 12;
                    Type::Other
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    at += 8 * vlen;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    at += 12 * vlen;
                    Type::Other
                }
                KIND_FUNC => {
                    has_bpf_loop |= name_is(name_off, b"bpf_loop");
                    if name_is(name_off, TASK_ITERATOR) {
                        task_iterator = Some(id);
                    }
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FLOAT => Type::Other,
                other => {
                    return Err(BtfError::Malformed(format!(
                        "unknown BTF kind {other} for type {id}"
                    )));
                }
            };
            types.push(ty);
        }
        if at != types_data.len() {
            return Err(BtfError::Malformed("type section ends mid-type".into()));
        }
        Ok(Self {
            types,
            members,
            strings: strings.to_vec(),
            structs,
            tracepoints,
            has_bpf_loop,
            task_iterator,
        })
    }

    fn resolve_alias(&self, mut id: u32) -> u32 {
        // Alias chains are short; the bound guards against a malformed cycle.
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias(next)) => id = *next,
                _ => break,
            }
        }
        id
    }

    /// Bit offset of `member` inside composite `id`, looking through anonymous members.
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        let Some(&Type::Composite { first, count, .. }) = self.types.get(id as usize) else {
            return None;
        };
        let members = self
            .members
            .get(first as usize..(first + count) as usize)
            .unwrap_or_default();
        let name = |m: &Member| name_at(&self.strings, m.name);
        if let Some(m) = members.iter().find(|m| name(m) == member.as_bytes()) {
            return Some(m.bit_offset);
        }
        members.iter().filter(|m| name(m).is_empty()).find_map(|m| {
            let inner = self.resolve_alias(m.type_id);
            self.find_member(inner, member, depth + 1)
                .map(|off| m.bit_offset + off)
        })
    }

    /// Byte offset of `strukt.member`.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .struct_id(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let bits = self
            .find_member(id, member, 0)
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            })?;
        if bits % 8 != 0 {
            return Err(BtfError::Bitfield {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            });
        }
        Ok(bits / 8)
    }

    /// Size in bytes of a struct, if the BTF has it.
    /// Does the kernel have raw tracepoint `name` (e.g. `sched_process_exec`)?
    pub fn has_tracepoint(&self, name: &str) -> bool {
        self.tracepoints
            .iter()
            .any(|&off| name_at(&self.strings, off) == name.as_bytes())
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        self.structs
            .iter()
            .find(|&&(off, _)| name_at(&self.strings, off) == name.as_bytes())
            .map(|&(_, id)| id)
    }

    /// Can programs call `bpf_loop` (Linux 5.17 and later)?
    pub fn has_bpf_loop(&self) -> bool {
        self.has_bpf_loop
    }

    /// Type id of the task iterator's attach point, if the kernel has task iterators.
    pub fn task_iterator(&self) -> Option<u32> {
        self.task_iterator
    }

    pub fn struct_size(&self, strukt: &str) -> Option<u32> {
        let id = self.struct_id(strukt)?;
        match self.types.get(id as usize) {
            Some(Type::Composite { size, .. }) => Some(*size),
            _ => None,
        }
    }

    /// Layout of `mm_struct.rss_stat[]`: `(element size, offset of the count in an element)`.
    /// Since 6.2 the elements are `percpu_counter`s; before, `atomic_long_t`s.
    fn rss_counter_layout(&self) -> (u32, u32) {
        match (
            self.struct_size("percpu_counter"),
            self.member_offset("percpu_counter", "count"),
        ) {
            (Some(size), Ok(count)) => (size, count),
            _ => (8, 0),
        }
    }

    /// Every offset the kernel programs need.
    /// Byte offset of `strukt.member`, or [`exporter_common::ABSENT`] when this kernel was
    /// built without it (a struct or member behind a configuration option).
    pub fn optional_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        match self.member_offset(strukt, member) {
            Err(BtfError::NoStruct(_) | BtfError::NoMember { .. }) => Ok(exporter_common::ABSENT),
            other => other,
        }
    }

    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        let o = |s: &str, m: &str| self.member_offset(s, m);
        let opt = |s: &str, m: &str| self.optional_offset(s, m);
        // `struct sock` begins with its `sock_common`.
        let sock = o("sock", "__sk_common")?;
        let plus = |base: u32, at: u32| {
            if at == exporter_common::ABSENT {
                at
            } else {
                base + at
            }
        };
        Ok(KernelOffsets {
            task_pid: o("task_struct", "pid")?,
            task_tgid: o("task_struct", "tgid")?,
            task_flags: o("task_struct", "flags")?,
            task_real_parent: o("task_struct", "real_parent")?,
            task_group_leader: o("task_struct", "group_leader")?,
            task_start_time: o("task_struct", "start_time")?,
            task_comm: o("task_struct", "comm")?,
            task_mm: o("task_struct", "mm")?,
            task_fs: o("task_struct", "fs")?,
            task_signal: o("task_struct", "signal")?,
            task_exit_code: o("task_struct", "exit_code")?,
            task_exit_state: o("task_struct", "exit_state")?,
            task_ptrace: o("task_struct", "ptrace")?,
            signal_live: o("signal_struct", "live")?,
            signal_nr_threads: o("signal_struct", "nr_threads")?,
            // `seqlock_t` begins with its `seqcount_t`, which begins with `sequence`, in every
            // configuration.
            signal_stats_lock: o("signal_struct", "stats_lock")?,
            signal_flags: o("signal_struct", "flags")?,
            signal_group_exit_code: o("signal_struct", "group_exit_code")?,
            mm_arg_start: o("mm_struct", "arg_start")?,
            mm_arg_end: o("mm_struct", "arg_end")?,
            mm_exe_file: o("mm_struct", "exe_file")?,
            file_f_path: o("file", "f_path")?,
            path_mnt: o("path", "mnt")?,
            path_dentry: o("path", "dentry")?,
            dentry_d_parent: o("dentry", "d_parent")?,
            dentry_d_name: o("dentry", "d_name")?,
            qstr_name: o("qstr", "name")?,
            mount_mnt: o("mount", "mnt")?,
            mount_mnt_parent: o("mount", "mnt_parent")?,
            mount_mnt_mountpoint: o("mount", "mnt_mountpoint")?,
            vfsmount_mnt_root: o("vfsmount", "mnt_root")?,
            fs_pwd: o("fs_struct", "pwd")?,
            bprm_filename: o("linux_binprm", "filename")?,
            task_utime: o("task_struct", "utime")?,
            task_stime: o("task_struct", "stime")?,
            task_sum_exec_runtime: o("task_struct", "se")? + o("sched_entity", "sum_exec_runtime")?,
            task_run_delay: match (
                opt("task_struct", "sched_info")?,
                opt("sched_info", "run_delay")?,
            ) {
                (exporter_common::ABSENT, _) | (_, exporter_common::ABSENT) => {
                    exporter_common::ABSENT
                }
                (info, delay) => info + delay,
            },
            signal_utime: o("signal_struct", "utime")?,
            signal_stime: o("signal_struct", "stime")?,
            signal_sum_sched_runtime: o("signal_struct", "sum_sched_runtime")?,
            signal_maxrss: o("signal_struct", "maxrss")?,
            mm_hiwater_rss: o("mm_struct", "hiwater_rss")?,
            mm_rss_stat: o("mm_struct", "rss_stat")?,
            rss_counter_size: self.rss_counter_layout().0,
            rss_counter_count: self.rss_counter_layout().1,
            task_ioac: opt("task_struct", "ioac")?,
            signal_ioac: opt("signal_struct", "ioac")?,
            ioac_rchar: opt("task_io_accounting", "rchar")?,
            ioac_wchar: opt("task_io_accounting", "wchar")?,
            ioac_syscr: opt("task_io_accounting", "syscr")?,
            ioac_syscw: opt("task_io_accounting", "syscw")?,
            ioac_read_bytes: opt("task_io_accounting", "read_bytes")?,
            ioac_write_bytes: opt("task_io_accounting", "write_bytes")?,
            ioac_cancelled_write_bytes: opt("task_io_accounting", "cancelled_write_bytes")?,
            task_min_flt: o("task_struct", "min_flt")?,
            task_maj_flt: o("task_struct", "maj_flt")?,
            task_nvcsw: o("task_struct", "nvcsw")?,
            task_nivcsw: o("task_struct", "nivcsw")?,
            signal_min_flt: o("signal_struct", "min_flt")?,
            signal_maj_flt: o("signal_struct", "maj_flt")?,
            signal_nvcsw: o("signal_struct", "nvcsw")?,
            signal_nivcsw: o("signal_struct", "nivcsw")?,
            signal_oom_mm: opt("signal_struct", "oom_mm")?,
            sock_family: sock + o("sock_common", "skc_family")?,
            sock_daddr: sock + o("sock_common", "skc_daddr")?,
            sock_rcv_saddr: sock + o("sock_common", "skc_rcv_saddr")?,
            sock_dport: sock + o("sock_common", "skc_dport")?,
            sock_num: sock + o("sock_common", "skc_num")?,
            sock_v6_daddr: plus(sock, opt("sock_common", "skc_v6_daddr")?),
            sock_v6_rcv_saddr: plus(sock, opt("sock_common", "skc_v6_rcv_saddr")?),
            // A bitfield before 5.6: the programs then take every state change for TCP's.
            sock_protocol: match o("sock", "sk_protocol") {
                Ok(at) => at,
                Err(BtfError::Bitfield { .. }) => exporter_common::ABSENT,
                Err(e) => return Err(e),
            },
            task_files: o("task_struct", "files")?,
            files_fdt: o("files_struct", "fdt")?,
            fdtable_fd: o("fdtable", "fd")?,
            fdtable_max_fds: o("fdtable", "max_fds")?,
            dentry_d_inode: o("dentry", "d_inode")?,
            inode_i_size: o("inode", "i_size")?,
            inode_i_ino: o("inode", "i_ino")?,
            inode_i_mode: o("inode", "i_mode")?,
            regs_syscall_nr: match opt("pt_regs", "orig_ax")? {
                exporter_common::ABSENT => opt("pt_regs", "syscallno")?,
                at => at,
            },
            regs_args: self.syscall_argument_registers()?,
        })
    }

    /// Where `struct pt_regs` keeps a syscall's six arguments at its entry: x86-64's di, si,
    /// dx, r10, r8, r9; arm64's regs[0..6]; [`exporter_common::ABSENT`] elsewhere.
    fn syscall_argument_registers(&self) -> Result<[u32; 6], BtfError> {
        let opt = |m: &str| self.optional_offset("pt_regs", m);
        let x86 = ["di", "si", "dx", "r10", "r8", "r9"];
        let mut out = [exporter_common::ABSENT; 6];
        if opt("di")? != exporter_common::ABSENT {
            for (slot, name) in out.iter_mut().zip(x86) {
                *slot = opt(name)?;
            }
        } else {
            let at = opt("regs")?;
            if at != exporter_common::ABSENT {
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = at + 8 * i as u32;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob by hand: the parser is checked against bytes laid out per the spec.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }
        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn head(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size: u32) -> u32 {
            let name = self.string(name);
            let info = (kind << 24) | vlen | if kind_flag { 1 << 31 } else { 0 };
            for v in [name, info, size] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }
        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            let id = self.head(name, KIND_INT, 0, false, bytes);
            self.types.extend_from_slice(&(bytes * 8).to_le_bytes());
            id
        }
        fn composite(&mut self, kind: u32, name: &str, members: &[(&str, u32, u32)]) -> u32 {
            let id = self.head(name, kind, members.len() as u32, false, 64);
            for (m, ty, bits) in members {
                let m = self.string(m);
                for v in [m, *ty, *bits] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.push(1);
            out.push(0);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    #[test]
    fn resolves_members_through_anonymous_struct_and_typedef() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let long = b.int("long", 8);
        let inner = b.composite(
            KIND_STRUCT,
            "",
            &[("arg_start", long, 0), ("arg_end", long, 64)],
        );
        let alias = b.head("inner_t", KIND_TYPEDEF, 0, false, inner);
        let union = b.composite(KIND_UNION, "", &[("x", int, 0), ("", alias, 0)]);
        b.composite(
            KIND_STRUCT,
            "mm_struct",
            &[("pad", int, 0), ("", union, 128)],
        );
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(btf.member_offset("mm_struct", "pad").unwrap(), 0);
        assert_eq!(btf.member_offset("mm_struct", "arg_start").unwrap(), 16);
        assert_eq!(btf.member_offset("mm_struct", "arg_end").unwrap(), 24);
    }

    #[test]
    fn missing_struct_member_and_bitfield_are_named() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite(
            KIND_STRUCT,
            "task_struct",
            &[("pid", int, 0), ("bits", int, 35)],
        );
        let btf = Btf::parse(&b.finish()).unwrap();
        assert!(
            matches!(btf.member_offset("nope", "pid"), Err(BtfError::NoStruct(s)) if s == "nope")
        );
        let err = btf.member_offset("task_struct", "tgid").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF has no member tgid in struct task_struct"
        );
        assert!(matches!(
            btf.member_offset("task_struct", "bits"),
            Err(BtfError::Bitfield { .. })
        ));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(matches!(
            Btf::parse(b"hello world, not btf at all"),
            Err(BtfError::Malformed(_))
        ));
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite(KIND_STRUCT, "s", &[("a", int, 0)]);
        let blob = b.finish();
        for cut in [0, 3, 10, 24, 30, blob.len() - 1] {
            assert!(Btf::parse(&blob[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    /// The real kernel's BTF (readable without root): every offset the programs need exists
    /// and agrees with bpftool's view of the well-known fields.
    #[test]
    fn task_iterator_blob_has_the_function_at_its_id() {
        let blob = task_iterator_blob(4321);
        assert_eq!(Btf::parse(&blob).unwrap().task_iterator(), Some(4321));
        aya::Btf::parse(&blob, aya::Endianness::default()).expect("aya reads it");
    }

    #[test]
    fn resolves_every_offset_on_this_kernel() {
        let path = Path::new(crate::config::VMLINUX_BTF);
        pipetrace_tests::require!(path.exists(), "no kernel BTF at /sys/kernel/btf/vmlinux");
        let btf = Btf::from_file(path).unwrap();
        assert!(btf.task_iterator().is_some(), "bpf_iter_task");
        let offsets = btf.kernel_offsets().unwrap();
        assert!(
            offsets.task_tgid == offsets.task_pid + 4,
            "pid and tgid are adjacent"
        );
        assert!(offsets.task_real_parent > offsets.task_tgid);
        assert_eq!(offsets.path_mnt, 0);
        assert_eq!(offsets.path_dentry, 8);
        assert_eq!(offsets.qstr_name, 8);
        assert!(offsets.mm_arg_end == offsets.mm_arg_start + 8);
        // struct task_io_accounting starts with rchar, wchar, syscr, syscw.
        assert_eq!(offsets.ioac_rchar, 0);
        assert_eq!(offsets.ioac_wchar, 8);
        assert!(offsets.task_min_flt + 8 == offsets.task_maj_flt);
        // sock_common: the address pair, then the port pair, then the family.
        assert_eq!(offsets.sock_daddr, 0);
        assert_eq!(offsets.sock_rcv_saddr, 4);
        assert_eq!(offsets.sock_dport, 12);
        assert_eq!(offsets.sock_num, 14);
        assert_eq!(offsets.sock_family, 16);
    }
}
