//! The IO half of sampling: a `/proc` root that tests can move, and open `/proc/<pid>`
//! directories whose files are read with `pread` (parsing lives in `parse.rs` and claude-proc).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The `/proc` to read; tests point it at a directory of fixture files.
#[derive(Debug, Clone)]
pub struct ProcRoot {
    pub(crate) path: PathBuf,
    /// Whether `path` is a real procfs (whose `fd/` directory reports its entry count as size).
    pub(crate) procfs: bool,
}

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot::new("/proc")
    }
}

impl ProcRoot {
    /// A root at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let procfs = is_procfs(&path);
        ProcRoot { path, procfs }
    }

    pub(crate) fn file(&self, pid: u32, name: &str) -> PathBuf {
        self.path.join(pid.to_string()).join(name)
    }

    /// First-level children of `pid` over all its threads.
    pub(crate) fn children(&self, pid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(self.path.join(pid.to_string()).join("task")) else {
            return out;
        };
        for task in tasks.filter_map(|t| t.ok()) {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        out
    }
}

/// The whole content of `handle` from offset 0 with `pread` into `buf` (grown as needed, never
/// shrunk, so steady-state reads allocate nothing); one call for a small file.
fn read_from_start(handle: &std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = handle.read_at(buf.get_mut(len..).unwrap_or_default(), len as u64)?;
        len += n;
        // procfs hands out a small file whole: a short read is the end.
        if n == 0 || len < buf.len() {
            return Ok(len);
        }
    }
}

fn is_procfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: statfs with a valid C string and a buffer the kernel fills on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), fs.as_mut_ptr()) };
    // SAFETY: statfs returned 0, so it filled the buffer.
    rc == 0 && unsafe { fs.assume_init() }.f_type == libc::PROC_SUPER_MAGIC
}

/// The files a sample reads from `/proc/<pid>`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PidFile {
    Stat = 0,
    Status = 1,
    Io = 2,
    Wchan = 3,
    /// The main thread's `task/<pid>/children`.
    Children = 4,
}

/// An open `/proc/<pid>` directory: files inside are opened relative to it, so the pid is
/// looked up once instead of once per file. A [`TreeWatch`] also keeps the files it reads open
/// and re-reads them with `pread` at offset 0 (procfs regenerates the content on every read):
/// one system call per file per sample instead of three. The directory descriptor pins the
/// process: after it exits, reads fail with `ESRCH` even if the pid is reused.
pub(crate) struct PidDir {
    pub(crate) pid: u32,
    dir: std::fs::File,
    path: PathBuf,
    /// Files kept open for re-reading, by [`PidFile`] (all `None` unless `keep`).
    pub(crate) kept: [Option<std::fs::File>; 5],
    keep: bool,
    /// Where files are read to.
    buf: Vec<u8>,
}

impl PidDir {
    pub(crate) fn open(root: &ProcRoot, pid: u32, keep: bool) -> Result<PidDir> {
        let path = root.path.join(pid.to_string());
        match std::fs::File::open(&path) {
            Ok(dir) => Ok(PidDir {
                pid,
                dir,
                path,
                kept: Default::default(),
                keep,
                buf: Vec::new(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ProcessGone { pid }),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn name(&self, file: PidFile) -> String {
        match file {
            PidFile::Stat => "stat".into(),
            PidFile::Status => "status".into(),
            PidFile::Io => "io".into(),
            PidFile::Wchan => "wchan".into(),
            PidFile::Children => format!("task/{}/children", self.pid),
        }
    }

    fn error(&self, name: &str, source: std::io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => Error::ProcessGone { pid: self.pid },
            _ => Error::Read {
                path: self.path.join(name),
                source,
            },
        }
    }

    /// Open `name` relative to the directory.
    fn open_at(&self, name: &str) -> Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let c_name = std::ffi::CString::new(name).map_err(|_| Error::Parse {
            path: self.path.join(name),
            why: "file name with NUL".into(),
        })?;
        // SAFETY: openat on a directory descriptor we own, with a valid C string.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(self.error(name, std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }

    /// Read `file` into the directory's buffer, reusing a kept descriptor (and keeping a new
    /// one when `keep`); the bytes stay valid until the next read.
    pub(crate) fn read(&mut self, file: PidFile) -> Result<&[u8]> {
        let slot = file as usize;
        let mut fresh = None;
        if self.kept.get(slot).is_some_and(Option::is_none) {
            let handle = self.open_at(&self.name(file))?;
            match self.kept.get_mut(slot) {
                Some(kept) if self.keep => *kept = Some(handle),
                _ => fresh = Some(handle),
            }
        }
        let handle = fresh
            .as_ref()
            .or_else(|| self.kept.get(slot).and_then(Option::as_ref));
        let len = match handle.map(|h| read_from_start(h, &mut self.buf)) {
            Some(Ok(len)) => len,
            Some(Err(e)) => return Err(self.error(&self.name(file), e)),
            None => return Err(Error::ProcessGone { pid: self.pid }),
        };
        Ok(self.buf.get(..len).unwrap_or_default())
    }

    /// Open descriptors: the size the kernel reports for `fd/` (Linux 6.2 and later), else a
    /// listing of it.
    pub(crate) fn count_fds(&self, procfs: bool) -> Option<u64> {
        use std::os::fd::AsRawFd;
        if !procfs {
            return std::fs::read_dir(self.path.join("fd"))
                .ok()
                .map(|d| d.count() as u64);
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstatat on our directory descriptor with a valid C string and a buffer the
        // kernel fills on success.
        let rc = unsafe { libc::fstatat(self.dir.as_raw_fd(), c"fd".as_ptr(), st.as_mut_ptr(), 0) };
        if rc == 0 {
            // SAFETY: fstatat returned 0, so it filled the buffer.
            let size = unsafe { st.assume_init() }.st_size;
            if size > 0 {
                return u64::try_from(size).ok();
            }
        }
        std::fs::read_dir(self.path.join("fd"))
            .ok()
            .map(|d| d.count() as u64)
    }
}

pub(crate) fn parse_pids(bytes: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(bytes)
        .split_ascii_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect()
}
