//! Uid leases: a session holds its uid by an exclusive `flock` on `<lease dir>/<uid>`, so two
//! managers never give out one uid, and a manager killed with SIGKILL releases its leases with
//! its descriptors. The file records what the holder changed (its working directory, its home);
//! whoever takes the uid next and finds a record undoes it first, and ends any process still
//! running under the uid (only a session of ours can have run as a leased uid).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::acl;
use crate::error::{Error, Result};
use crate::level::UidRange;

/// What a lease's holder changed, as recorded in its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// The working directory granted by ACL, its owner, and its mode before the grant.
    pub(crate) workdir: Option<(PathBuf, u32, u32, u32)>,
    /// The home and config directory made for the session.
    pub(crate) home: Option<PathBuf>,
}

impl Record {
    fn parse(text: &str) -> Record {
        let mut record = Record::default();
        for line in text.lines() {
            let mut fields = line.split('\t');
            match (fields.next(), fields.next()) {
                (Some("workdir"), Some(rest)) => {
                    let nums: Vec<u32> = fields.filter_map(|f| f.parse().ok()).collect();
                    if let [uid, gid, mode] = nums[..] {
                        record.workdir = Some((PathBuf::from(rest), uid, gid, mode));
                    }
                }
                (Some("home"), Some(path)) => record.home = Some(PathBuf::from(path)),
                _ => {}
            }
        }
        record
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Some((path, uid, gid, mode)) = &self.workdir {
            out.push_str(&format!(
                "workdir\t{}\t{uid}\t{gid}\t{mode}\n",
                path.display()
            ));
        }
        if let Some(home) = &self.home {
            out.push_str(&format!("home\t{}\n", home.display()));
        }
        out
    }
}

/// A held uid.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) uid: u32,
    file: Flock<File>,
    path: PathBuf,
    pub(crate) record: Record,
}

/// Processes whose real, effective or saved uid is `uid`.
pub(crate) fn processes_of(uid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| runs_as(*pid, uid))
        .collect()
}

/// Whether process `pid`'s real, effective or saved uid is `uid` (`Uid:` of its `status`).
fn runs_as(pid: u32, uid: u32) -> bool {
    let uid = uid.to_string();
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().take(3).any(|id| id == uid))
    })
}

/// SIGKILL every process running under `uid` until none is left (at most ~2 s).
pub(crate) fn end_processes_of(uid: u32) -> bool {
    for _ in 0..200 {
        let pids = processes_of(uid);
        if pids.is_empty() {
            return true;
        }
        for pid in pids {
            // Through a pidfd, so a recycled pid of another uid is never hit: the uid is
            // checked again after the descriptor pins the process.
            if let Ok(fd) = pidfd_open(pid) {
                if runs_as(pid, uid) {
                    use std::os::fd::AsRawFd;
                    // SAFETY: pidfd_send_signal on a descriptor we own, no siginfo.
                    unsafe {
                        nix::libc::syscall(
                            nix::libc::SYS_pidfd_send_signal,
                            fd.as_raw_fd(),
                            nix::libc::SIGKILL,
                            std::ptr::null::<nix::libc::siginfo_t>(),
                            0,
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    processes_of(uid).is_empty()
}

fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc_pidfd_open(pid) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// # Safety
/// A raw system call with plain integers.
unsafe fn libc_pidfd_open(pid: u32) -> i32 {
    // SAFETY: as above.
    unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) as i32 }
}

/// Undo what a previous holder recorded: its workdir's ACL entries and ownership, its mode,
/// its home directory.
fn recover(uid: u32, record: &Record) {
    end_processes_of(uid);
    if let Some((dir, owner, group, mode)) = &record.workdir {
        if dir.is_dir() {
            if let Err(e) = acl::revoke(dir, uid, (*owner, *group)) {
                tracing::warn!(uid, error = %e, "taking back a workdir left by a killed manager");
            }
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode));
        }
    }
    if let Some(home) = &record.home {
        let _ = std::fs::remove_dir_all(home);
    }
}

fn lease_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create the lease directory", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("restrict the lease directory", dir, e))
}

/// The working directories of the sessions that hold a lease in `dir` now (their files are
/// locked), other than `uid`'s.
pub(crate) fn live_workdirs(dir: &Path, uid: u32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str() != Some(uid.to_string().as_str()))
        .filter_map(|e| {
            let file = std::fs::File::open(e.path()).ok()?;
            // A lock we can take is a lease nobody holds.
            match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(_) => None,
                Err((mut file, _)) => {
                    let mut text = String::new();
                    file.read_to_string(&mut text).ok()?;
                    Record::parse(&text).workdir.map(|(path, ..)| path)
                }
            }
        })
        .collect()
}

impl Lease {
    /// Lease a free uid of `range`, starting at a random one.
    pub(crate) fn acquire(dir: &Path, range: UidRange) -> Result<Lease> {
        lease_dir(dir)?;
        let count = range.count();
        let start = fastrand::u32(0..count);
        for i in 0..count {
            let uid = range.first() + (start + i) % count;
            if let Some(lease) = Lease::try_one(dir, uid)? {
                return Ok(lease);
            }
        }
        Err(Error::RangeExhausted { range, count })
    }

    fn try_one(dir: &Path, uid: u32) -> Result<Option<Lease>> {
        let path = dir.join(uid.to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open the lease", &path, e))?;
        let Ok(mut file) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            return Ok(None);
        };
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let record = Record::parse(&text);
        if record == Record::default() {
            // Never held, or released cleanly: a process under this uid is not ours.
            if !processes_of(uid).is_empty() {
                return Ok(None);
            }
        } else {
            recover(uid, &record);
        }
        let mut lease = Lease {
            uid,
            file,
            path,
            record: Record::default(),
        };
        lease.save()?;
        Ok(Some(lease))
    }

    /// Write the record (before the change it describes is made).
    pub(crate) fn save(&mut self) -> Result<()> {
        let text = self.record.render();
        let file: &mut File = &mut self.file;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("write the lease", &self.path, e))
    }

    /// End the uid's processes and undo the record; the lock goes with the value.
    pub(crate) fn release(mut self) -> bool {
        let clean = end_processes_of(self.uid);
        recover(self.uid, &self.record);
        self.record = Record::default();
        let _ = self.save();
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = Record {
            workdir: Some(("/srv/a b".into(), 10, 20, 0o40755)),
            home: Some("/tmp/claude-pm-x".into()),
        };
        assert_eq!(Record::parse(&r.render()), r);
        assert_eq!(
            Record::parse("garbage\nworkdir\t/x\t1\n"),
            Record::default()
        );
    }
}
