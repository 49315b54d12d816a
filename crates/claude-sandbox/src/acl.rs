//! A session's access to its working directory: a POSIX ACL entry for its uid on every file and
//! directory of the tree, taken back (and files it created given to the directory's owner) when
//! the session ends.
//!
//! The ACL is read and written as the kernel's `system.posix_acl_access` attribute (the
//! `xattr` crate, never following symlinks): a 4-byte version header and 8-byte entries
//! (tag, permissions, id), sorted by tag then id (`linux/posix_acl_xattr.h`). libacl's C
//! library (through `posix-acl` or `exacl`) would add a C dependency for these few lines.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const ATTR: &str = "system.posix_acl_access";
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED: u32 = u32::MAX;

/// One ACL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    tag: u16,
    id: u32,
    perm: u16,
}

/// Decode an ACL attribute; `None` for anything malformed.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != VERSION || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// Encode entries (sorted here, as the kernel requires).
pub(crate) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| (e.tag, e.id));
    let mut out = VERSION.to_le_bytes().to_vec();
    for e in sorted {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// The three entries a file without an ACL has, from its mode.
fn from_mode(mode: u32) -> Vec<Entry> {
    let e = |tag, shift: u32| Entry {
        tag,
        id: UNDEFINED,
        perm: ((mode >> shift) & 7) as u16,
    };
    vec![e(USER_OBJ, 6), e(GROUP_OBJ, 3), e(OTHER, 0)]
}

/// `entries` with `uid`'s entry set to `perm` (or removed with `None`) and the mask
/// recomputed; `None` when only the three base entries are left (no ACL needed).
pub(crate) fn with_user(entries: &[Entry], uid: u32, perm: Option<u16>) -> Option<Vec<Entry>> {
    let mut out: Vec<Entry> = entries
        .iter()
        .copied()
        .filter(|e| e.tag != MASK && !(e.tag == USER && e.id == uid))
        .collect();
    if let Some(perm) = perm {
        out.push(Entry {
            tag: USER,
            id: uid,
            perm,
        });
    }
    if !out.iter().any(|e| e.tag == USER || e.tag == GROUP) {
        return None;
    }
    let mask = out
        .iter()
        .filter(|e| matches!(e.tag, USER | GROUP_OBJ | GROUP))
        .fold(0, |m, e| m | e.perm);
    out.push(Entry {
        tag: MASK,
        id: UNDEFINED,
        perm: mask,
    });
    Some(out)
}

/// The group-owner permissions of an ACL (what the mode's group bits return to without one).
fn group_obj(entries: &[Entry]) -> Option<u16> {
    entries.iter().find(|e| e.tag == GROUP_OBJ).map(|e| e.perm)
}

fn current(path: &Path, mode: u32) -> Result<Vec<Entry>> {
    match xattr::get(path, ATTR) {
        Ok(Some(bytes)) => Ok(decode(&bytes).unwrap_or_else(|| from_mode(mode))),
        Ok(None) => Ok(from_mode(mode)),
        Err(e) => Err(Error::io("read the ACL of", path, e)),
    }
}

/// Set or remove `uid`'s entry on one file or directory.
fn set_one(path: &Path, meta: &std::fs::Metadata, uid: u32, perm: Option<u16>) -> Result<()> {
    let entries = current(path, meta.mode())?;
    let had = entries.iter().any(|e| e.tag == USER && e.id == uid);
    if perm.is_none() && !had {
        return Ok(());
    }
    match with_user(&entries, uid, perm) {
        Some(acl) => {
            xattr::set(path, ATTR, &encode(&acl)).map_err(|e| Error::io("set the ACL of", path, e))
        }
        None => {
            xattr::remove(path, ATTR).map_err(|e| Error::io("remove the ACL of", path, e))?;
            // Without the ACL the group bits are the group owner's again, not the mask.
            let group = u32::from(group_obj(&entries).unwrap_or(0));
            let mode = (meta.mode() & !0o070 & 0o7777) | (group << 3);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("restore the mode of", path, e))
        }
    }
}

/// Every file and directory under `root` (itself first) on `root`'s file system, symlinks
/// included but never followed; other file systems mounted beneath are not entered.
fn walk(root: &Path, mut each: impl FnMut(&Path, &std::fs::Metadata) -> Result<()>) -> Result<()> {
    let device = std::fs::symlink_metadata(root)
        .map_err(|e| Error::io("inspect", root, e))?
        .dev();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
        if meta.dev() != device {
            continue;
        }
        each(&path, &meta)?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| Error::io("list", &path, e))?;
            for entry in entries.flatten() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Give `uid` read and write access to everything under `root` (search on directories,
/// execute where the owner has it).
pub(crate) fn grant(root: &Path, uid: u32) -> Result<()> {
    walk(root, |path, meta| {
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let exec = meta.is_dir() || meta.mode() & 0o100 != 0;
        set_one(path, meta, uid, Some(if exec { 7 } else { 6 }))
    })
}

/// Take `uid`'s access back from everything under `root`, and give what it created (owned by
/// it) to `owner`, so a later session under the same uid finds nothing of this one.
pub(crate) fn revoke(root: &Path, uid: u32, owner: (u32, u32)) -> Result<()> {
    walk(root, |path, meta| {
        if meta.uid() == uid || meta.gid() == uid {
            let (o, g) = owner;
            std::os::unix::fs::lchown(path, Some(o), Some(g))
                .map_err(|e| Error::io("give back", path, e))?;
        }
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))?;
        set_one(path, &meta, uid, None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            prop_oneof![
                Just(USER_OBJ),
                Just(USER),
                Just(GROUP_OBJ),
                Just(GROUP),
                Just(MASK),
                Just(OTHER)
            ],
            0u32..5,
            0u16..8,
        )
            .prop_map(|(tag, id, perm)| Entry { tag, id, perm })
    }

    proptest! {
        /// Decoding what was encoded gives the same entries (sorted), and granting then
        /// revoking a uid leaves no entry of it.
        #[test]
        fn encoding_round_trips_and_revoke_undoes_grant(entries in proptest::collection::vec(entry(), 0..8), uid in 100u32..105) {
            let mut sorted = entries.clone();
            sorted.sort_by_key(|e| (e.tag, e.id));
            prop_assert_eq!(decode(&encode(&entries)), Some(sorted));
            let base = from_mode(0o750);
            let granted = with_user(&base, uid, Some(7)).unwrap();
            prop_assert!(granted.iter().any(|e| e.tag == MASK && e.perm == 7));
            prop_assert_eq!(with_user(&granted, uid, None), None);
        }
    }

    #[test]
    fn malformed_attributes_are_refused() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[3, 0, 0, 0]), None);
        assert_eq!(decode(&[2, 0, 0, 0, 1]), None);
    }
}
