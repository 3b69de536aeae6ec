//! An endpoint's health: up, or down after `webhooks.down_after_failures` consecutive failed
//! attempts. Pure: the clock is an input, so every rule is tested without a network or sleeping.
//!
//! While an endpoint is down its records are neither tried one by one nor dead-lettered: one
//! lane holds the probe (the record it was trying when the endpoint went down, the oldest of its
//! lane) and retries it with backoff; every other lane waits with its record, so the partition
//! readers stop handing records over and the endpoint's consumer group stops reading (its lag
//! grows). The probe's success brings the endpoint up and every lane resumes in order. After
//! `webhooks.outage_max_secs` down, the outage is *expired*: every record gets one attempt and a
//! failure is its dead letter, so an endpoint that never comes back does not hold its records
//! forever. Any answer that is not a failure of the endpoint (a 2xx, or a 4xx refusing one
//! record) shows it is up.

use std::time::{Duration, Instant};

/// When an endpoint counts as down, and for how long it may stay down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failed attempts (timeouts, connection errors, 5xx, 408, 429) that make the
    /// endpoint down; at least 1.
    pub down_after: u32,
    /// How long the endpoint may stay down before its records are dead-lettered.
    pub outage_max: Duration,
}

/// What a lane may do with the record at its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The endpoint is up: attempt under the retry policy (`max_attempts`).
    Attempt,
    /// The endpoint is down and this lane holds the probe: attempt, and on failure retry with
    /// backoff, without counting towards `max_attempts`.
    Probe,
    /// The endpoint is down and another lane probes: wait for a change (at most `Duration`, when
    /// the outage expires).
    Wait(Duration),
    /// The endpoint has been down longer than `outage_max`: one attempt; a failure is the
    /// record's dead letter.
    LastChance,
}

/// A change of state, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The endpoint just went down.
    Down,
    /// The endpoint is up again after being down this long.
    Up(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up {
        failures: u32,
    },
    Down {
        since: Instant,
        /// The lane holding the probe, if any.
        probe: Option<usize>,
    },
}

/// One endpoint's health.
#[derive(Debug, Clone)]
pub struct Health {
    policy: HealthPolicy,
    state: State,
}

impl Health {
    pub fn new(policy: HealthPolicy) -> Self {
        Health {
            policy,
            state: State::Up { failures: 0 },
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// How long the endpoint has been down (zero while up).
    pub fn down_for(&self, now: Instant) -> Duration {
        match self.state {
            State::Up { .. } => Duration::ZERO,
            State::Down { since, .. } => now.saturating_duration_since(since),
        }
    }

    /// What `lane` may do now with its head record. While down, the first lane to ask holds the
    /// probe until it [`release`](Self::release)s it or the endpoint is up.
    pub fn gate(&mut self, lane: usize, now: Instant) -> Gate {
        let outage_max = self.policy.outage_max;
        match &mut self.state {
            State::Up { .. } => Gate::Attempt,
            State::Down { since, probe } => {
                let down_for = now.saturating_duration_since(*since);
                if down_for >= outage_max {
                    return Gate::LastChance;
                }
                match probe {
                    Some(p) if *p != lane => Gate::Wait(outage_max - down_for),
                    _ => {
                        *probe = Some(lane);
                        Gate::Probe
                    }
                }
            }
        }
    }

    /// A lane stops holding the probe (its record was abandoned or finished otherwise): the next
    /// lane to ask takes it.
    pub fn release(&mut self, lane: usize) {
        if let State::Down { probe, .. } = &mut self.state {
            if *probe == Some(lane) {
                *probe = None;
            }
        }
    }

    /// The endpoint answered (a 2xx, or a 4xx refusing the record): it is up.
    pub fn on_answer(&mut self, now: Instant) -> Option<Transition> {
        let was = std::mem::replace(&mut self.state, State::Up { failures: 0 });
        match was {
            State::Down { since, .. } => Some(Transition::Up(now.saturating_duration_since(since))),
            State::Up { .. } => None,
        }
    }

    /// An attempt failed in a way that may be the endpoint's (timeout, connection, 5xx, 408, 429).
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        match &mut self.state {
            State::Up { failures } => {
                *failures += 1;
                if *failures >= self.policy.down_after {
                    self.state = State::Down {
                        since: now,
                        probe: None,
                    };
                    Some(Transition::Down)
                } else {
                    None
                }
            }
            State::Down { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(3600);

    fn health(down_after: u32) -> Health {
        Health::new(HealthPolicy {
            down_after,
            outage_max: MAX,
        })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn goes_down_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut h = health(3);
        assert_eq!(h.on_failure(t), None);
        assert_eq!(h.on_failure(t), None);
        // An answer in between resets the count.
        assert_eq!(h.on_answer(t), None);
        assert_eq!(h.on_failure(t), None);
        assert_eq!(h.on_failure(t), None);
        assert!(h.is_up());
        assert_eq!(h.gate(0, t), Gate::Attempt);
        assert_eq!(h.on_failure(t), Some(Transition::Down));
        assert!(!h.is_up());
        // Further failures while down change nothing.
        assert_eq!(h.on_failure(t + secs(1)), None);
        assert_eq!(h.down_for(t + secs(5)), secs(5));
    }

    #[test]
    fn while_down_one_lane_probes_and_the_others_wait() {
        let t = Instant::now();
        let mut h = health(1);
        h.on_failure(t);
        assert_eq!(h.gate(2, t), Gate::Probe);
        assert_eq!(h.gate(2, t + secs(1)), Gate::Probe);
        assert_eq!(h.gate(0, t + secs(1)), Gate::Wait(MAX - secs(1)));
        assert_eq!(h.gate(5, t + secs(10)), Gate::Wait(MAX - secs(10)));
        // Another lane's release does not free the probe; the holder's does.
        h.release(0);
        assert_eq!(h.gate(0, t + secs(11)), Gate::Wait(MAX - secs(11)));
        h.release(2);
        assert_eq!(h.gate(0, t + secs(12)), Gate::Probe);
        assert_eq!(h.gate(2, t + secs(12)), Gate::Wait(MAX - secs(12)));
    }

    #[test]
    fn an_answer_brings_the_endpoint_up_and_every_lane_attempts() {
        let t = Instant::now();
        let mut h = health(2);
        h.on_failure(t);
        h.on_failure(t);
        h.gate(1, t);
        assert_eq!(h.on_answer(t + secs(70)), Some(Transition::Up(secs(70))));
        assert!(h.is_up());
        assert_eq!(h.down_for(t + secs(80)), Duration::ZERO);
        for lane in 0..4 {
            assert_eq!(h.gate(lane, t + secs(70)), Gate::Attempt);
        }
        // The count starts again from zero.
        assert_eq!(h.on_failure(t + secs(71)), None);
        assert_eq!(h.on_failure(t + secs(71)), Some(Transition::Down));
        // Down again: a new probe, a new start.
        assert_eq!(h.gate(3, t + secs(72)), Gate::Probe);
        assert_eq!(h.down_for(t + secs(72)), secs(1));
    }

    #[test]
    fn an_outage_longer_than_the_maximum_gives_every_record_a_last_chance() {
        let t = Instant::now();
        let mut h = Health::new(HealthPolicy {
            down_after: 1,
            outage_max: secs(60),
        });
        h.on_failure(t);
        assert_eq!(h.gate(0, t + secs(59)), Gate::Probe);
        assert_eq!(h.gate(1, t + secs(59)), Gate::Wait(secs(1)));
        for lane in 0..3 {
            assert_eq!(h.gate(lane, t + secs(60)), Gate::LastChance);
        }
        // Still down (its records are dead-lettered) until it answers.
        assert!(!h.is_up());
        assert_eq!(h.on_answer(t + secs(90)), Some(Transition::Up(secs(90))));
        assert_eq!(h.gate(1, t + secs(90)), Gate::Attempt);
    }
}
