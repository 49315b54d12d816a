//! The restart engine against a small model, and with paused time.

use super::*;
use proptest::prelude::*;

fn policy(mode: RestartMode) -> RestartPolicy {
    RestartPolicy {
        mode,
        max_restarts: 3,
        window: Duration::from_secs(60),
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
        },
        reset_after: Duration::from_secs(30),
        breaker_threshold: 4,
        breaker_open_for: Duration::from_secs(20),
        rate_limit_pause: Duration::from_secs(5),
    }
}

/// The model: the same rules written from the whole history instead of incremental state.
/// Window counts come from every policy restart's time, the backoff attempt from the restarts
/// since the last stable run, the breaker from the failures since the last success or stable run.
#[derive(Default)]
struct Model {
    /// Times of restarts the policy made (not refreshes, not requested ones).
    policy_restarts: Vec<Instant>,
    /// Policy restarts since the last run that lasted `reset_after`.
    since_stable: u32,
    /// Failures since the last success or stable run.
    failures: u32,
    /// The breaker opened at the last decision: the run after it is the trial.
    trial: bool,
    /// The last run was the one refresh an auth failure earns.
    refreshed: bool,
}

/// What the model expects: the decision's kind, and for a policy restart the delay's bounds.
#[derive(Debug, PartialEq)]
enum Expect {
    Done,
    GiveUp(GiveUpReason),
    Now { refresh: bool },
    After { min: Duration, max: Duration },
}

impl Model {
    fn decide(&mut self, p: &RestartPolicy, end: RunEnd, now: Instant, refresh: bool) -> Expect {
        match end.outcome {
            RunOutcome::StopRequested => return Expect::Done,
            RunOutcome::RestartRequested => return Expect::Now { refresh: false },
            _ => {}
        }
        let stable = end.ran_for >= p.reset_after;
        if stable {
            self.since_stable = 0;
            self.failures = 0;
            self.trial = false;
        }
        match end.outcome {
            RunOutcome::AuthFailed => {
                if refresh && !self.refreshed {
                    self.refreshed = true;
                    return Expect::Now { refresh: true };
                }
                return Expect::GiveUp(GiveUpReason::AuthFailed);
            }
            RunOutcome::FailedPermanently => return Expect::GiveUp(GiveUpReason::NotRetryable),
            _ => self.refreshed = false,
        }
        let failed = end.outcome != RunOutcome::Succeeded;
        let mut opens = false;
        if failed {
            self.failures += 1;
            opens = self.trial || self.failures >= p.breaker_threshold;
        } else {
            self.failures = 0;
            self.trial = false;
        }
        let restart = match p.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => failed,
            RestartMode::Always => true,
        };
        if !restart {
            // A failed trial still leaves the breaker open for whatever comes next.
            self.trial = opens;
            return Expect::Done;
        }
        let in_window = self
            .policy_restarts
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= p.window)
            .count() as u32;
        if in_window >= p.max_restarts {
            return Expect::GiveUp(GiveUpReason::TooManyRestarts {
                restarts: in_window,
                window: p.window,
            });
        }
        let ceiling = p.backoff.ceiling(self.since_stable);
        self.policy_restarts.push(now);
        self.since_stable += 1;
        let mut min = Duration::ZERO;
        let mut max = ceiling;
        if end.rate_limited {
            min = min.max(p.rate_limit_pause);
            max = max.max(p.rate_limit_pause * 2);
        }
        if opens {
            // Opened just now: the whole open period is still ahead.
            min = min.max(p.breaker_open_for);
            max = max.max(p.breaker_open_for);
        }
        self.trial = opens;
        Expect::After { min, max }
    }
}

fn outcome_strategy() -> impl Strategy<Value = RunOutcome> {
    prop_oneof![
        4 => Just(RunOutcome::Failed),
        3 => Just(RunOutcome::Succeeded),
        1 => Just(RunOutcome::FailedPermanently),
        1 => Just(RunOutcome::AuthFailed),
        1 => Just(RunOutcome::StopRequested),
        1 => Just(RunOutcome::RestartRequested),
    ]
}

proptest! {
    #[test]
    fn the_engine_follows_the_model(
        mode in prop_oneof![
            Just(RestartMode::Never),
            Just(RestartMode::OnFailure),
            Just(RestartMode::Always),
        ],
        refresh in any::<bool>(),
        seed in any::<u64>(),
        runs in proptest::collection::vec(
            (outcome_strategy(), 0u64..40_000, any::<bool>()),
            1..40,
        ),
    ) {
        let p = policy(mode);
        let mut engine = RestartState::with_seed(p.clone(), seed).with_credential_refresh(refresh);
        let mut model = Model::default();
        let mut now = Instant::now();
        let mut restarts = 0;
        for (outcome, ran_ms, rate_limited) in runs {
            let end = RunEnd::new(outcome, Duration::from_millis(ran_ms)).rate_limited(rate_limited);
            now += end.ran_for;
            let expect = model.decide(&p, end, now, refresh);
            let got = engine.on_run_end(end, now);
            match (&expect, got) {
                (Expect::Done, Decision::Done) => break,
                (Expect::GiveUp(want), Decision::GiveUp(reason)) => {
                    prop_assert_eq!(*want, reason);
                    break;
                }
                (Expect::Now { refresh: want }, Decision::Restart { delay, refresh_credential }) => {
                    prop_assert_eq!(delay, Duration::ZERO);
                    prop_assert_eq!(*want, refresh_credential);
                    restarts += 1;
                }
                (Expect::After { min, max }, Decision::Restart { delay, refresh_credential }) => {
                    prop_assert!(!refresh_credential);
                    prop_assert!(delay >= *min && delay <= *max, "{:?} not in {:?}..={:?}", delay, min, max);
                    restarts += 1;
                    now += delay;
                }
                (expect, got) => prop_assert!(false, "model {:?}, engine {:?}", expect, got),
            }
        }
        prop_assert_eq!(engine.restarts(), restarts);
    }
}

/// The paused test clock's now, as the engine takes it.
fn paused_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[tokio::test(start_paused = true)]
async fn the_window_forgets_old_restarts_with_paused_time() {
    let mut p = policy(RestartMode::Always);
    p.max_restarts = 2;
    let mut engine = RestartState::with_seed(p, 1);
    let fail = RunEnd::new(RunOutcome::Failed, Duration::from_millis(10));
    for _ in 0..2 {
        assert!(matches!(
            engine.on_run_end(fail, paused_now()),
            Decision::Restart { .. }
        ));
    }
    assert_eq!(
        engine.on_run_end(fail, paused_now()),
        Decision::GiveUp(GiveUpReason::TooManyRestarts {
            restarts: 2,
            window: Duration::from_secs(60)
        })
    );
    // A minute later both restarts have left the window.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(matches!(
        engine.on_run_end(fail, paused_now()),
        Decision::Restart { .. }
    ));
    assert_eq!(engine.restarts(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_holds_restarts_for_its_open_period_then_allows_one_trial() {
    let mut p = policy(RestartMode::Always);
    p.max_restarts = 100;
    p.breaker_threshold = 3;
    let mut engine = RestartState::with_seed(p, 7);
    let fail = RunEnd::new(RunOutcome::Failed, Duration::from_millis(10));
    let mut delays = Vec::new();
    for _ in 0..4 {
        match engine.on_run_end(fail, paused_now()) {
            Decision::Restart { delay, .. } => {
                delays.push(delay);
                tokio::time::advance(delay).await;
            }
            other => panic!("{other:?}"),
        }
    }
    // The third failure opened the breaker: its restart waits the whole 20 s.
    assert!(delays[..2].iter().all(|d| *d <= Duration::from_millis(200)));
    assert!(delays[2] >= Duration::from_secs(20), "{delays:?}");
    // The trial after the open period failed: open again at once.
    assert!(delays[3] >= Duration::from_secs(20), "{delays:?}");
    // A stable run closes it: the next failure is back to the backoff.
    let stable = RunEnd::new(RunOutcome::Failed, Duration::from_secs(31));
    match engine.on_run_end(stable, paused_now()) {
        Decision::Restart { delay, .. } => assert!(delay <= Duration::from_millis(100)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_auth_failure_earns_one_refresh_then_gives_up() {
    let mut engine =
        RestartState::with_seed(policy(RestartMode::Never), 3).with_credential_refresh(true);
    let auth = RunEnd::new(RunOutcome::AuthFailed, Duration::from_secs(1));
    let now = Instant::now();
    assert_eq!(
        engine.on_run_end(auth, now),
        Decision::Restart {
            delay: Duration::ZERO,
            refresh_credential: true
        }
    );
    assert_eq!(
        engine.on_run_end(auth, now),
        Decision::GiveUp(GiveUpReason::AuthFailed)
    );
    // Without a source that can refresh there is nothing to try.
    let mut engine = RestartState::with_seed(policy(RestartMode::Always), 3);
    assert_eq!(
        engine.on_run_end(auth, now),
        Decision::GiveUp(GiveUpReason::AuthFailed)
    );
}

#[test]
fn a_rate_limited_run_waits_the_pause_jittered_up_to_twice() {
    let mut p = policy(RestartMode::Always);
    p.max_restarts = 1000;
    p.window = Duration::from_millis(1);
    let mut engine = RestartState::with_seed(p, 11);
    let limited = RunEnd::new(RunOutcome::Succeeded, Duration::from_secs(40)).rate_limited(true);
    let mut now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..200 {
        now += Duration::from_secs(100);
        match engine.on_run_end(limited, now) {
            Decision::Restart { delay, .. } => delays.push(delay),
            other => panic!("{other:?}"),
        }
    }
    let (lo, hi) = (Duration::from_secs(5), Duration::from_secs(10));
    assert!(delays.iter().all(|d| *d >= lo && *d <= hi), "{delays:?}");
    // Spread over the range, not bunched at one end.
    assert!(delays.iter().any(|d| *d < Duration::from_secs(6)));
    assert!(delays.iter().any(|d| *d > Duration::from_secs(9)));
}

#[test]
fn the_give_up_reason_reads_as_a_sentence() {
    let r = GiveUpReason::TooManyRestarts {
        restarts: 2,
        window: Duration::from_secs(300),
    };
    assert_eq!(r.to_string(), "gave up after 2 restarts in 5 min");
    assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
    assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
    assert_eq!(human_duration(Duration::from_secs(5400)), "1 h 30 min");
}
