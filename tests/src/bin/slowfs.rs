//! slowfs: a pass-through FUSE file system over a directory whose writes are slow, or held on
//! demand — the slow and the stuck disk of the output tests and `scripts/bench-slow-output`.
//! Ours because this kernel has no device-mapper `delay` target and no packaged tool delays or
//! holds writes on request; `fuser` does the FUSE protocol and the mount.
//!
//! ```text
//! slowfs BACKING MOUNTPOINT [--bytes-per-second N] [--hold FILE]
//! ```
//! Each write waits its length divided by N. While FILE exists every write waits, and the first
//! write held in each hold prints `held PATH` (relative to the mount) on standard output.
//! `mounted` is printed once the mount is in place; `umount MOUNTPOINT` ends the program.
//! Requests are served one at a time, as a single slow device would.

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::{File, Metadata, OpenOptions},
    io::Write,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session,
    SessionACL, TimeOrNow, WriteFlags,
};

/// Attributes are never cached: the tests also change the backing directory behind the mount.
const TTL: Duration = Duration::ZERO;

/// Inode numbers of the paths seen so far (relative to the backing directory; the root is "").
#[derive(Default)]
struct Nodes {
    by_ino: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
}

impl Nodes {
    fn intern(&mut self, path: PathBuf) -> u64 {
        if let Some(&ino) = self.by_path.get(&path) {
            return ino;
        }
        // Inode 1 is the root's.
        self.next = self.next.max(1) + 1;
        let ino = self.next;
        self.by_ino.insert(ino, path.clone());
        self.by_path.insert(path, ino);
        ino
    }

    /// A rename moves the path and everything under it.
    fn rename(&mut self, from: &Path, to: &Path) {
        if let Some(ino) = self.by_path.remove(to) {
            self.by_ino.remove(&ino);
        }
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, &ino)| (path.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            // `join("")` would add a trailing slash, which makes a file's path "not a directory".
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_path_buf(),
            };
            self.by_ino.insert(ino, new.clone());
            self.by_path.insert(new, ino);
        }
    }
}

struct SlowFs {
    backing: PathBuf,
    nodes: Mutex<Nodes>,
    open: Mutex<HashMap<u64, (PathBuf, File)>>,
    next_fh: AtomicU64,
    bytes_per_second: u64,
    hold: Option<PathBuf>,
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from(e)
}

fn attr(ino: u64, m: &Metadata) -> FileAttr {
    let at = |secs: i64, nanos: i64| {
        UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
    };
    let kind = if m.is_dir() {
        FileType::Directory
    } else if m.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: at(m.atime(), m.atime_nsec()),
        mtime: at(m.mtime(), m.mtime_nsec()),
        ctime: at(m.ctime(), m.ctime_nsec()),
        crtime: at(m.ctime(), m.ctime_nsec()),
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

impl SlowFs {
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        if ino == INodeNo::ROOT {
            return Ok(PathBuf::new());
        }
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.by_ino.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn real(&self, relative: &Path) -> PathBuf {
        self.backing.join(relative)
    }

    fn ino(&self, relative: PathBuf) -> u64 {
        if relative.as_os_str().is_empty() {
            return INodeNo::ROOT.0;
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.intern(relative)
    }

    fn entry(&self, relative: PathBuf) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.real(&relative)).map_err(errno)?;
        Ok(attr(self.ino(relative), &meta))
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    /// Files made through the mount belong to the caller, as on a local disk.
    fn give_to_caller(&self, req: &Request, relative: &Path) {
        let _ = std::os::unix::fs::lchown(self.real(relative), Some(req.uid()), Some(req.gid()));
    }

    fn file(&self, fh: FileHandle) -> Result<(PathBuf, File), Errno> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (path, file) = open.get(&fh.0).ok_or(Errno::EBADF)?;
        Ok((path.clone(), file.try_clone().map_err(errno)?))
    }

    fn keep_open(&self, relative: PathBuf, file: File) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed) + 1;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.insert(fh, (relative, file));
        FileHandle(fh)
    }

    /// `unlink` and `rmdir`: `remove` on the backing path of `name` in `parent`.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(PathBuf) -> std::io::Result<()>,
        reply: ReplyEmpty,
    ) {
        match self
            .child(parent, name)
            .and_then(|relative| remove(self.real(&relative)).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// The device's slowness: held while the hold file exists, then the write's transfer time.
    fn delay(&self, relative: &Path, len: usize) {
        if let Some(hold) = &self.hold {
            let mut said = false;
            while hold.exists() {
                if !said {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "held {}", relative.display());
                    let _ = out.flush();
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.bytes_per_second > 0 {
            std::thread::sleep(Duration::from_secs_f64(
                len as f64 / self.bytes_per_second as f64,
            ));
        }
    }
}

fn open_options(flags: i32) -> OpenOptions {
    let access = flags & libc::O_ACCMODE;
    let mut options = OpenOptions::new();
    options
        .read(access != libc::O_WRONLY)
        .write(access != libc::O_RDONLY)
        .custom_flags(flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC));
    options
}

impl Filesystem for SlowFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name).and_then(|path| self.entry(path)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.path(ino).and_then(|path| self.entry(path)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.path(ino).and_then(|relative| {
            let real = self.real(&relative);
            if let Some(mode) = mode {
                std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&real, uid, gid).map_err(errno)?;
            }
            if let Some(size) = size {
                OpenOptions::new()
                    .write(true)
                    .open(&real)
                    .and_then(|f| f.set_len(size))
                    .map_err(errno)?;
            }
            self.entry(relative)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.child(parent, name).and_then(|relative| {
            let real = self.real(&relative);
            std::fs::create_dir(&real).map_err(errno)?;
            std::fs::set_permissions(
                &real,
                std::fs::Permissions::from_mode(mode & !umask & 0o7777),
            )
            .map_err(errno)?;
            self.give_to_caller(req, &relative);
            self.entry(relative)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, std::fs::remove_file, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, std::fs::remove_dir, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.child(parent, name).and_then(|from| {
            let to = self.child(newparent, newname)?;
            std::fs::rename(self.real(&from), self.real(&to)).map_err(errno)?;
            let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
            nodes.rename(&from, &to);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = self.path(ino).and_then(|relative| {
            let file = open_options(flags.0)
                .open(self.real(&relative))
                .map_err(errno)?;
            Ok(self.keep_open(relative, file))
        });
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.child(parent, name).and_then(|relative| {
            let mut options = open_options(flags);
            options
                .create(true)
                .write(true)
                .mode(mode & !umask & 0o7777);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            }
            let file = options.open(self.real(&relative)).map_err(errno)?;
            self.give_to_caller(req, &relative);
            let attr = self.entry(relative.clone())?;
            Ok((attr, self.keep_open(relative, file)))
        });
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.file(fh).and_then(|(_, file)| {
            let mut buf = vec![0; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.file(fh).and_then(|(relative, file)| {
            self.delay(&relative, data.len());
            file.write_at(data, offset).map_err(errno)
        });
        match result {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self
            .file(fh)
            .and_then(|(_, file)| file.sync_all().map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = self.path(ino).and_then(|relative| {
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (ino.0, FileType::Directory, "..".into()),
            ];
            for entry in std::fs::read_dir(self.real(&relative)).map_err(errno)? {
                let entry = entry.map_err(errno)?;
                let kind = match entry.file_type() {
                    Ok(t) if t.is_dir() => FileType::Directory,
                    Ok(t) if t.is_symlink() => FileType::Symlink,
                    _ => FileType::RegularFile,
                };
                let name = entry.file_name();
                entries.push((self.ino(relative.join(&name)), kind, name));
            }
            Ok(entries)
        });
        match listing {
            Ok(entries) => {
                for (i, (child, kind, name)) in
                    entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The backing file system's numbers, so that "disk full" reads as it would on it.
        let path =
            std::ffi::CString::new(self.backing.as_os_str().as_encoded_bytes()).unwrap_or_default();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `st` a properly sized out-parameter.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            reply.error(errno(std::io::Error::last_os_error()));
            return;
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }
}

fn usage() -> ! {
    eprintln!("usage: slowfs BACKING MOUNTPOINT [--bytes-per-second N] [--hold FILE]");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(backing), Some(mountpoint)) = (args.next(), args.next()) else {
        usage()
    };
    let mut bytes_per_second = 0;
    let mut hold = None;
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.to_str() {
            Some("--bytes-per-second") => {
                bytes_per_second = value
                    .to_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            Some("--hold") => hold = Some(PathBuf::from(value)),
            _ => usage(),
        }
    }
    let backing = match std::fs::canonicalize(&backing) {
        Ok(path) => path,
        Err(e) => {
            eprintln!(
                "slowfs: backing directory {}: {e}",
                Path::new(&backing).display()
            );
            std::process::exit(2);
        }
    };
    let fs = SlowFs {
        backing,
        nodes: Mutex::new(Nodes::default()),
        open: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(0),
        bytes_per_second,
        hold,
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("slowfs".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::All;
    let session = match Session::new(fs, Path::new(&mountpoint), &config) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("slowfs: mount on {}: {e}", Path::new(&mountpoint).display());
            std::process::exit(1);
        }
    };
    println!("mounted");
    let _ = std::io::stdout().flush();
    if let Err(e) = session.run() {
        eprintln!("slowfs: {e}");
        std::process::exit(1);
    }
}
