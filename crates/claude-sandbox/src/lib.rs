//! Tenant isolation for supervised sessions.
//!
//! A session asks for an isolation [`Level`]; [`SessionSandbox::start`] checks this host can
//! give it ([`HostSupport`]), leases a uid from a [`UidRange`] for the session's life, grants
//! that uid its working directory by POSIX ACL, and is the [`claude_proc::SpawnHook`] that
//! makes every run of the session switch to the uid (and, for [`Level::Sandbox`], enter its
//! own namespaces with a read-only view of the host). [`SessionSandbox::release`] (or the
//! drop) ends whatever still runs under the uid, takes the access back and frees the uid.
//!
//! Leases are `flock`ed files in a lease directory shared by every manager on the host, so no
//! uid is given twice; a manager killed with SIGKILL loses its locks with its descriptors, and
//! the next holder of the uid undoes what the lease file records (see `lease.rs`).

mod acl;
mod error;
mod host;
mod lease;
mod level;
mod net;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use claude_proc::{ChildSetup, FsView, HookError, HookInstance, SpawnHook};

pub use error::{Error, Result};
pub use host::{HostSupport, Mechanism, Promise};
pub use level::{Level, UidRange};
pub use net::{ApiEndpoint, Network, DEFAULT_API_URL};

use lease::Lease;

/// The default lease directory, shared by every manager of the host.
pub const DEFAULT_LEASE_DIR: &str = "/run/claude-pm/uids";

/// How sessions are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// The level.
    pub level: Level,
    /// Where session uids come from.
    pub uid_range: UidRange,
    /// Where leases live ([`DEFAULT_LEASE_DIR`]); hidden from sandboxed sessions.
    pub lease_dir: PathBuf,
    /// More directories a sandboxed session must not see (the manager's state).
    pub hidden: Vec<PathBuf>,
    /// The sandbox's network.
    pub network: Network,
    /// The API the session talks to (its `ANTHROPIC_BASE_URL`), the one way out under
    /// [`Network::Api`].
    pub api_url: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            level: Level::None,
            uid_range: UidRange::DEFAULT,
            lease_dir: PathBuf::from(DEFAULT_LEASE_DIR),
            hidden: Vec::new(),
            network: Network::Host,
            api_url: DEFAULT_API_URL.to_owned(),
        }
    }
}

/// The first user or group of `/etc/passwd` or `/etc/group` whose id is in `range`.
fn overlapping(range: UidRange) -> Option<(&'static str, String, u32)> {
    [("user", "/etc/passwd"), ("group", "/etc/group")]
        .into_iter()
        .find_map(|(kind, file)| {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id: u32 = fields.nth(1)?.parse().ok()?;
                range.contains(id).then(|| (kind, name.to_owned(), id))
            })
        })
}

impl SandboxConfig {
    /// Check the configuration against this host: the level can be enforced, and no existing
    /// user or group has an id in the range.
    pub fn check(&self) -> Result<()> {
        if self.network == Network::Api {
            if self.level != Level::Sandbox {
                return Err(Error::NetworkNeedsSandbox);
            }
            ApiEndpoint::parse(&self.api_url)?;
        }
        if self.level == Level::None {
            return Ok(());
        }
        if let Some(missing) = HostSupport::probe().missing(self.level) {
            return Err(Error::Unsupported {
                level: self.level,
                missing,
            });
        }
        if let Some((kind, name, id)) = overlapping(self.uid_range) {
            return Err(Error::RangeOverlapsUsers {
                range: self.uid_range,
                kind,
                name,
                id,
            });
        }
        Ok(())
    }
}

/// A parent of `dir` another uid cannot search, with its mode.
fn unreachable_parent(dir: &Path) -> Option<(PathBuf, u32)> {
    dir.ancestors().skip(1).find_map(|p| {
        let mode = std::fs::metadata(p).ok()?.mode();
        (mode & 0o001 == 0).then(|| (p.to_path_buf(), mode & 0o7777))
    })
}

/// One session's isolation: its leased uid and what was changed for it.
#[derive(Debug)]
pub struct SessionSandbox {
    level: Level,
    uid: u32,
    workdir: PathBuf,
    view: Mutex<FsView>,
    lease: Mutex<Option<Lease>>,
    /// Under [`Network::Api`]: the namespace, its forwarder and the `/etc/hosts` naming the
    /// API host.
    net: Option<(net::ApiNetwork, Option<tempfile::NamedTempFile>)>,
}

impl SessionSandbox {
    /// Isolate a session working in `workdir` as `config` says: check, lease a uid, grant it
    /// the working directory (and close that directory to other non-root users for the
    /// session's life). `None` for [`Level::None`].
    pub fn start(config: &SandboxConfig, workdir: &Path) -> Result<Option<SessionSandbox>> {
        config.check()?;
        if config.level == Level::None {
            return Ok(None);
        }
        let workdir = std::fs::canonicalize(workdir)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| Error::MissingWorkdir {
                path: workdir.to_path_buf(),
            })?;
        if workdir == Path::new("/") {
            return Err(Error::WorkdirNotAllowed {
                path: workdir,
                why: "it is the root directory; give the session a directory of its own",
            });
        }
        if ["/proc", "/sys", "/dev", "/run"]
            .iter()
            .any(|p| workdir.starts_with(p))
        {
            return Err(Error::WorkdirNotAllowed {
                path: workdir,
                why: "it is a kernel or runtime file system",
            });
        }
        if let Some((blocked, mode)) = unreachable_parent(&workdir) {
            return Err(Error::WorkdirUnreachable {
                path: workdir,
                blocked,
                mode,
            });
        }
        let api = match config.network {
            Network::Api => Some(ApiEndpoint::parse(&config.api_url)?),
            Network::Host => None,
        };
        let mut lease = Lease::acquire(&config.lease_dir, config.uid_range)?;
        let meta = std::fs::metadata(&workdir).map_err(|e| Error::io("inspect", &workdir, e))?;
        let mode = meta.mode() & 0o7777;
        lease.record.workdir = Some((workdir.clone(), meta.uid(), meta.gid(), mode));
        lease.save()?;
        let uid = lease.uid;
        // The lease's drop (on an error below) would keep the record for the next holder;
        // release now instead.
        // With an ACL the mode's group bits are its mask: re-read them after the grant, so
        // closing the directory to others does not narrow the session's entry.
        let granted = acl::grant(&workdir, uid).and_then(|()| {
            let now = std::fs::metadata(&workdir)
                .map_err(|e| Error::io("inspect", &workdir, e))?
                .mode();
            std::fs::set_permissions(&workdir, std::fs::Permissions::from_mode(now & 0o7770))
                .map_err(|e| Error::io("close to other users", &workdir, e))
        });
        if let Err(e) = granted {
            lease.release();
            return Err(e);
        }
        let mut view = FsView::default();
        view.writable.push(workdir.clone());
        for dir in ["/tmp", "/var/tmp", "/dev/shm", "/run"] {
            view.private.push(dir.into());
        }
        view.hidden.push(config.lease_dir.clone());
        view.hidden.extend(config.hidden.iter().cloned());
        // The working directories of the sessions live now; one started later is closed to
        // this uid by its mode instead. Never a directory this session's own lies in.
        view.hidden.extend(
            lease::live_workdirs(&config.lease_dir, uid)
                .into_iter()
                .filter(|other| !workdir.starts_with(other)),
        );
        // DNS keeps working when resolv.conf points into the private /run.
        if let Ok(target) = std::fs::canonicalize("/etc/resolv.conf") {
            if target.starts_with("/run") {
                view.read_only.push(target);
            }
        }
        let net = match api.map(|api| api_network(&api, &mut view)).transpose() {
            Ok(net) => net,
            Err(e) => {
                lease.release();
                return Err(e);
            }
        };
        tracing::info!(uid, level = %config.level, workdir = %workdir.display(), "uid leased");
        Ok(Some(SessionSandbox {
            level: config.level,
            uid,
            workdir,
            view: Mutex::new(view),
            lease: Mutex::new(Some(lease)),
            net,
        }))
    }

    /// The session's uid (also its gid).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The session's working directory, as granted.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Make `dir` (the session's home and config directory, made by the manager) the uid's,
    /// mode 0700, writable in the sandbox, and removed if the manager dies before releasing.
    pub fn adopt_home(&self, dir: &Path) -> Result<()> {
        if let Ok(mut guard) = self.lease.lock() {
            if let Some(lease) = guard.as_mut() {
                lease.record.home = Some(dir.to_path_buf());
                lease.save()?;
            }
        }
        chown_tree(dir, self.uid)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("restrict", dir, e))?;
        if let Ok(mut view) = self.view.lock() {
            view.writable.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// End every process still under the uid, take the working directory back (ACL entries,
    /// files the session created given to the directory's owner, its mode), remove the home
    /// directory and free the uid. Idempotent. `false` if a process under the uid survived.
    pub fn release(&self) -> bool {
        let lease = self.lease.lock().ok().and_then(|mut l| l.take());
        match lease {
            Some(lease) => {
                let uid = lease.uid;
                let clean = lease.release();
                tracing::info!(uid, clean, "uid released");
                clean
            }
            None => true,
        }
    }
}

impl Drop for SessionSandbox {
    fn drop(&mut self) {
        self.release();
    }
}

/// The network namespace and forwarder for `api`; a name gets an `/etc/hosts` of its own in
/// the view, pointing it at the forwarder's loopback listener.
fn api_network(
    api: &ApiEndpoint,
    view: &mut FsView,
) -> Result<(net::ApiNetwork, Option<tempfile::NamedTempFile>)> {
    let network = net::ApiNetwork::start(api)?;
    let hosts = if api.is_name() {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| Error::io("create the sandbox's hosts file", "/tmp", e))?;
        writeln!(file, "127.0.0.1\tlocalhost {}\n::1\tlocalhost", api.host)
            .map_err(|e| Error::io("write the sandbox's hosts file", file.path(), e))?;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io("open the sandbox's hosts file", file.path(), e))?;
        view.replaced
            .push((file.path().to_path_buf(), PathBuf::from("/etc/hosts")));
        Some(file)
    } else {
        None
    };
    Ok((network, hosts))
}

/// Give `dir` and everything under it to `uid` (symlinks themselves, never followed).
fn chown_tree(dir: &Path, uid: u32) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid))
            .map_err(|e| Error::io("give to the session", &path, e))?;
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| Error::io("list", &path, e))?;
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// The per-run part of the hook: nothing to follow (the lease outlives runs).
struct Run;

impl HookInstance for Run {}

impl SpawnHook for SessionSandbox {
    fn name(&self) -> &str {
        "sandbox"
    }

    fn prepare(&self, setup: &mut ChildSetup) -> Result<Box<dyn HookInstance>, HookError> {
        setup.run_as(self.uid, self.uid);
        setup.no_new_privileges();
        if self.level >= Level::Sandbox {
            let view = self
                .view
                .lock()
                .map_err(|_| HookError::from("the sandbox's view is poisoned".to_owned()))?
                .clone();
            let netns = match &self.net {
                Some((net, _)) => Some(net.netns.try_clone()?),
                None => None,
            };
            setup.sandbox(view, netns);
        }
        Ok(Box::new(Run))
    }
}
