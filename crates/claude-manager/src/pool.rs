//! A warm pool of stream-json Claude sessions: started and initialized before anyone asks,
//! so a caller gets a ready session in microseconds instead of the CLI's start-up (0.2 to
//! 1.5 s here). Sessions are supervised by the pool's [`ProcessManager`] (under its live cap),
//! handed out per key (a tenant, a user), and recycled after a number of turns, above a memory
//! threshold or after an idle time. A session a key has used is never handed to another key.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use claude_proc::{ClaudeSession, RestartMode, Turn};
use tokio::sync::Notify;

use crate::error::{describe_error, Error, Result};
use crate::events::SessionState;
use crate::manager::{ProcessManager, SessionHandle};
use crate::spec::SessionSpec;

/// How a [`SessionPool`] keeps and recycles its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Sessions kept started and initialized, ready for any key.
    pub size: usize,
    /// A session is recycled (stopped, replaced) after this many turns.
    pub max_turns: Option<u32>,
    /// ... or when its process tree's RSS is above this when it comes back.
    pub max_rss_bytes: Option<u64>,
    /// ... or when it has waited in the pool this long.
    pub max_idle: Option<Duration>,
    /// How long a new session may take to answer `initialize`.
    pub ready_timeout: Duration,
    /// How long [`SessionPool::acquire`] waits for a session before it fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 2,
            max_turns: Some(50),
            max_rss_bytes: None,
            max_idle: Some(Duration::from_secs(600)),
            ready_timeout: Duration::from_secs(60),
            acquire_timeout: Duration::from_secs(120),
        }
    }
}

/// What the pool holds now and has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Ready sessions no key has used.
    pub ready: usize,
    /// Sessions a key used and gave back, waiting for that key.
    pub kept: usize,
    /// Sessions starting.
    pub starting: usize,
    /// Sessions handed out now.
    pub out: usize,
    /// Sessions started so far.
    pub started: u64,
    /// Sessions stopped by the pool so far (recycled, idle, evicted, failed).
    pub recycled: u64,
}

/// One live session the pool holds.
struct Warm {
    handle: SessionHandle,
    session: ClaudeSession,
    pid: u32,
    turns: u32,
    idle_since: Instant,
}

impl Warm {
    /// Whether its first run is still the one running.
    fn alive(&self) -> bool {
        matches!(self.handle.state(), SessionState::Running { pid, .. } if pid == self.pid)
    }
}

#[derive(Default)]
struct State {
    /// Sessions being started, by task id: aborted when the pool closes (a start waiting for
    /// a slot or for `initialize` is dropped, its session stopped).
    starts: std::collections::HashMap<u64, tokio::task::AbortHandle>,
    next_start: u64,
    ready: VecDeque<Warm>,
    kept: Vec<(String, Warm)>,
    starting: usize,
    out: usize,
    failures: u32,
    last_error: Option<String>,
    closed: bool,
    started: u64,
    recycled: u64,
}

struct Inner {
    manager: Arc<ProcessManager>,
    spec: SessionSpec,
    config: PoolConfig,
    state: Mutex<State>,
    changed: Notify,
    next: AtomicU64,
}

/// A warm pool of stream-json Claude sessions. Cheap to clone; the sessions are stopped when
/// the last clone is dropped (or at [`SessionPool::close`]).
#[derive(Clone)]
pub struct SessionPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("spec", &self.inner.spec.name)
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SessionPool {
    /// A pool of sessions of `spec` (a stream-json Claude session: `SessionSpec::claude` with
    /// [`claude_proc::STREAM_JSON_ARGS`] and a piped stdin) run by `manager`. Its sessions are
    /// named `<spec name>-<n>`, count toward the manager's live cap, keep their stderr as a
    /// tail (an inherited stderr is not mixed into the host's) and are not restarted by the
    /// manager: a session that ends is replaced by the pool. Starts filling at once; must be
    /// called within a tokio runtime.
    pub fn new(manager: Arc<ProcessManager>, spec: SessionSpec, config: PoolConfig) -> Self {
        let mut spec = spec;
        spec.restart.mode = RestartMode::Never;
        // Many headless sessions: their stderr is kept as a tail (for start-up errors), not
        // mixed into the host's.
        if spec.stderr == claude_proc::OutputMode::Inherit {
            spec.stderr = claude_proc::OutputMode::Discard;
        }
        let inner = Arc::new(Inner {
            manager,
            spec,
            config,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            next: AtomicU64::new(1),
        });
        if let Some(idle) = inner.config.max_idle {
            tokio::spawn(reap_idle(Arc::downgrade(&inner), idle));
        }
        inner.refill(0);
        SessionPool { inner }
    }

    /// A ready session for `key`: one this key used before and gave back (its conversation
    /// goes on), else a fresh one (the pool starts another in the background). Waits for one
    /// up to the configured time, then fails naming the last start failure.
    pub async fn acquire(&self, key: &str) -> Result<PooledSession> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.inner.config.acquire_timeout;
        loop {
            let changed = self.inner.changed.notified();
            let evicted;
            {
                let mut state = self.inner.lock();
                if state.closed {
                    return Err(Error::PoolClosed);
                }
                if let Some(warm) = take(&mut state, key) {
                    state.out += 1;
                    drop(state);
                    self.inner.refill(0);
                    return Ok(PooledSession {
                        warm: Some(warm),
                        key: key.to_owned(),
                        pool: Arc::downgrade(&self.inner),
                    });
                }
                evicted = self.inner.evict_for_room(&mut state);
            }
            drop(evicted);
            self.inner.refill(1);
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let last_error = self.inner.lock().last_error.clone();
                return Err(Error::PoolTimeout {
                    waited: started.elapsed(),
                    last_error,
                });
            }
        }
    }

    /// What the pool holds now.
    pub fn stats(&self) -> PoolStats {
        let state = self.inner.lock();
        PoolStats {
            ready: state.ready.len(),
            kept: state.kept.len(),
            starting: state.starting,
            out: state.out,
            started: state.started,
            recycled: state.recycled,
        }
    }

    /// Wait until `n` fresh sessions are ready (or `timeout` passes; then `false`).
    pub async fn wait_ready(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inner.changed.notified();
            if self.inner.lock().ready.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.inner.lock().ready.len() >= n;
            }
        }
    }

    /// Stop every session the pool holds and take no more; sessions handed out are stopped
    /// when they come back.
    pub fn close(&self) {
        let held = {
            let mut state = self.inner.lock();
            state.closed = true;
            for (_, start) in state.starts.drain() {
                start.abort();
            }
            let mut held: Vec<Warm> = state.ready.drain(..).collect();
            held.extend(state.kept.drain(..).map(|(_, w)| w));
            state.recycled += held.len() as u64;
            held
        };
        drop(held);
        self.inner.changed.notify_waiters();
    }
}

/// A kept session of `key`, else a ready one; dead sessions found on the way are dropped.
fn take(state: &mut State, key: &str) -> Option<Warm> {
    let before = state.kept.len() + state.ready.len();
    state.kept.retain(|(_, w)| w.alive());
    state.ready.retain(Warm::alive);
    state.recycled += (before - state.kept.len() - state.ready.len()) as u64;
    if let Some(i) = state.kept.iter().position(|(k, _)| k == key) {
        return Some(state.kept.swap_remove(i).1);
    }
    state.ready.pop_front()
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, start) in state.starts.drain() {
            start.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// With the manager at its live cap, the longest-idle session kept for some key is
    /// stopped to make room (a waiting key outranks an idle one).
    fn evict_for_room(&self, state: &mut State) -> Option<Warm> {
        let cap = self.manager.max_live();
        if cap == 0 || state.kept.is_empty() {
            return None;
        }
        let metrics = self.manager.metrics();
        if metrics.live_processes + metrics.queued < cap as u64 {
            return None;
        }
        let oldest = (0..state.kept.len()).min_by_key(|i| state.kept[*i].1.idle_since)?;
        state.recycled += 1;
        Some(state.kept.swap_remove(oldest).1)
    }

    /// Start sessions until `size + extra` are ready or starting.
    fn refill(self: &Arc<Self>, extra: usize) {
        let mut state = self.lock();
        let target = self.config.size + extra;
        while !state.closed && state.ready.len() + state.starting < target {
            state.starting += 1;
            let delay = match state.failures {
                0 => Duration::ZERO,
                n => Duration::from_secs(1 << n.min(5)),
            };
            let id = state.next_start;
            state.next_start += 1;
            // Registered under the lock the task takes to finish: no finished task stays listed.
            let task = tokio::spawn(start_one(Arc::downgrade(self), delay, id));
            state.starts.insert(id, task.abort_handle());
        }
    }

    /// Give `warm` back for `key`, or stop it if it should be recycled.
    fn give_back(self: &Arc<Self>, key: String, mut warm: Warm) {
        let keep = !self.lock().closed && warm.alive() && !self.spent(&warm);
        if !keep {
            self.recycle(warm);
            return;
        }
        let mut state = self.lock();
        state.out = state.out.saturating_sub(1);
        warm.idle_since = Instant::now();
        state.kept.push((key, warm));
        drop(state);
        self.changed.notify_waiters();
    }

    /// Stop `warm`, handed out until now, and start a replacement.
    fn recycle(self: &Arc<Self>, warm: Warm) {
        let mut state = self.lock();
        state.out = state.out.saturating_sub(1);
        state.recycled += 1;
        drop(state);
        drop(warm);
        self.refill_if_runtime();
        self.changed.notify_waiters();
    }

    /// [`Inner::refill`] when called within a runtime (a session dropped elsewhere is only
    /// replaced at the next acquire).
    fn refill_if_runtime(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_ok() {
            self.refill(0);
        }
    }

    /// Whether `warm` has had its turns or grown past the memory threshold.
    fn spent(&self, warm: &Warm) -> bool {
        if self.config.max_turns.is_some_and(|max| warm.turns >= max) {
            return true;
        }
        self.config.max_rss_bytes.is_some_and(|max| {
            claude_health::Sampler::default()
                .tree(warm.pid)
                .is_ok_and(|tree| tree.totals.rss_bytes > max)
        })
    }
}

/// Start one session after `delay` and put it in the pool once `initialize` is answered.
async fn start_one(pool: Weak<Inner>, delay: Duration, id: u64) {
    tokio::time::sleep(delay).await;
    let Some(inner) = pool.upgrade() else { return };
    let n = inner.next.fetch_add(1, Ordering::Relaxed);
    let mut spec = inner.spec.clone();
    spec.name = format!("{}-{n}", spec.name);
    let (manager, timeout) = (Arc::clone(&inner.manager), inner.config.ready_timeout);
    // Not held while waiting: a pool dropped meanwhile ends the wait.
    drop(inner);
    let made = ready_session(&manager, spec, &pool, timeout).await;
    let Some(inner) = pool.upgrade() else { return };
    let mut state = inner.lock();
    state.starts.remove(&id);
    state.starting = state.starting.saturating_sub(1);
    state.started += 1;
    let retry = match made {
        Ok(warm) if !state.closed => {
            state.failures = 0;
            state.ready.push_back(warm);
            false
        }
        Ok(warm) => {
            state.recycled += 1;
            drop(warm);
            false
        }
        Err(e) => {
            tracing::warn!(pool = %inner.spec.name, error = %e, "a pooled session did not start");
            state.failures = state.failures.saturating_add(1);
            state.last_error = Some(e);
            !state.closed
        }
    };
    drop(state);
    inner.changed.notify_waiters();
    if retry {
        inner.refill(0);
    }
}

/// A started session whose CLI answered `initialize` within `timeout` of its start (the wait
/// for a slot under the live cap is not counted), or why not.
async fn ready_session(
    manager: &ProcessManager,
    spec: SessionSpec,
    pool: &Weak<Inner>,
    timeout: Duration,
) -> std::result::Result<Warm, String> {
    let mut handle = manager.start(spec).map_err(|e| describe_error(&e))?;
    let run = loop {
        match tokio::time::timeout(Duration::from_millis(250), handle.next_run()).await {
            Ok(Some(run)) => break run,
            Ok(None) => return Err(ended(&mut handle, "before it started").await),
            Err(_) => {
                let gone = pool.upgrade().is_none_or(|p| p.lock().closed);
                if gone {
                    return Err("the pool closed".into());
                }
            }
        }
    };
    let session = run
        .session
        .ok_or("not a stream-json session: give STREAM_JSON_ARGS and a piped stdin")?;
    if let Err(e) = session.initialize(timeout).await {
        return Err(match e {
            claude_proc::Error::SessionClosed => ended(&mut handle, "during start-up").await,
            other => describe_error(&other),
        });
    }
    Ok(Warm {
        handle,
        session,
        pid: run.pid,
        turns: 0,
        idle_since: Instant::now(),
    })
}

/// The report of a session that ended `when`, as one line.
async fn ended(handle: &mut SessionHandle, when: &str) -> String {
    match tokio::time::timeout(Duration::from_secs(10), handle.wait()).await {
        Ok(Ok(report)) => format!("the CLI ended {when}: {}", report.detail),
        _ => format!("the CLI ended {when}"),
    }
}

/// Stop sessions that waited longer than `idle`, while the pool lives.
async fn reap_idle(pool: Weak<Inner>, idle: Duration) {
    let every = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = pool.upgrade() else { return };
        let stale = {
            let mut state = inner.lock();
            let old = |w: &Warm| w.idle_since.elapsed() >= idle;
            let mut stale: Vec<Warm> = Vec::new();
            let (keep, gone): (Vec<_>, Vec<_>) = state.kept.drain(..).partition(|(_, w)| !old(w));
            state.kept = keep;
            stale.extend(gone.into_iter().map(|(_, w)| w));
            let (keep, gone): (VecDeque<_>, VecDeque<_>) =
                state.ready.drain(..).partition(|w| !old(w));
            state.ready = keep;
            stale.extend(gone);
            state.recycled += stale.len() as u64;
            stale
        };
        if !stale.is_empty() {
            drop(stale);
            inner.refill(0);
        }
    }
}

/// A session handed out by a [`SessionPool`]; dropping it gives it back (or recycles it).
pub struct PooledSession {
    warm: Option<Warm>,
    key: String,
    pool: Weak<Inner>,
}

impl std::fmt::Debug for PooledSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledSession")
            .field("key", &self.key)
            .field("pid", &self.warm.as_ref().map(|w| w.pid))
            .field("turns", &self.warm.as_ref().map(|w| w.turns))
            .finish()
    }
}

impl PooledSession {
    fn warm(&mut self) -> Result<&mut Warm> {
        self.warm.as_mut().ok_or(Error::PoolClosed)
    }

    /// Send `text` and wait for the turn's result (counted toward the recycling limit).
    pub async fn turn(&mut self, text: &str) -> Result<Turn> {
        let warm = self.warm()?;
        warm.turns += 1;
        Ok(warm.session.turn(text).await?)
    }

    /// A turn of content blocks (see [`ClaudeSession::turn_blocks`]), counted likewise.
    pub async fn turn_blocks(&mut self, blocks_json: &str) -> Result<Turn> {
        let warm = self.warm()?;
        warm.turns += 1;
        Ok(warm.session.turn_blocks(blocks_json).await?)
    }

    /// The session itself, for control requests and events (turns sent through it directly
    /// are not counted).
    pub fn session(&mut self) -> Option<&mut ClaudeSession> {
        self.warm.as_mut().map(|w| &mut w.session)
    }

    /// The key it was handed to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The CLI's pid.
    pub fn pid(&self) -> Option<u32> {
        self.warm.as_ref().map(|w| w.pid)
    }

    /// Turns sent through [`PooledSession::turn`] since the session started.
    pub fn turns(&self) -> u32 {
        self.warm.as_ref().map_or(0, |w| w.turns)
    }

    /// Stop the session instead of giving it back.
    pub fn discard(mut self) {
        if let (Some(warm), Some(pool)) = (self.warm.take(), self.pool.upgrade()) {
            pool.recycle(warm);
        }
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let (Some(warm), Some(pool)) = (self.warm.take(), self.pool.upgrade()) {
            pool.give_back(std::mem::take(&mut self.key), warm);
        }
    }
}
