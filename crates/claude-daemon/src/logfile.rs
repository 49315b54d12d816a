//! Per-session log files: `<state>/logs/<name>.log`, every kept line appended; past the size
//! cap the file is rotated (`.1` is the newest old one) and at most [`KEPT_FILES`] old ones
//! stay, so a chatty session can never fill the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Old files kept besides the current one.
pub const KEPT_FILES: u32 = 3;

/// One session's log file.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    cap: u64,
}

impl LogFile {
    /// The log of `name` in `dir`, at most `cap` bytes a file.
    pub(crate) fn open(dir: &Path, name: &str, cap: u64) -> LogFile {
        let path = dir.join(format!("{name}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        LogFile {
            path,
            file,
            size,
            cap: cap.max(1024),
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(self.rotated(KEPT_FILES));
        for n in (1..KEPT_FILES).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        let _ = std::fs::rename(&self.path, self.rotated(1));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }

    /// Append `line` (and a newline), rotating first if it would pass the cap. A write that
    /// fails (a full disk) drops the line from the file, never the session.
    pub(crate) fn append(&mut self, line: &str) {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.cap {
            self.rotate();
        }
        if let Some(file) = &mut self.file {
            if file
                .write_all(line.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .is_ok()
            {
                self.size += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_at_the_cap_and_old_ones_are_bounded() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut log = LogFile::open(dir.path(), "s", 4096);
        for i in 0..2000 {
            log.append(&format!("line {i:05} of a chatty session"));
        }
        let mut files: Vec<(String, u64)> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map_or(0, |m| m.len()),
                )
            })
            .collect();
        files.sort();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["s.log", "s.log.1", "s.log.2", "s.log.3"]);
        assert!(files.iter().all(|(_, size)| *size <= 4096), "{files:?}");
        let newest = std::fs::read_to_string(dir.path().join("s.log")).unwrap_or_default();
        assert!(newest.ends_with("line 01999 of a chatty session\n"));
        let older = std::fs::read_to_string(dir.path().join("s.log.1")).unwrap_or_default();
        assert!(
            older.lines().last() < newest.lines().next(),
            "order kept across rotation"
        );
    }
}
