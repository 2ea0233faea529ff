//! What a handler's result means for the message: the seed's `ProcessResult` mapped onto
//! JetStream's ack, nak with delay, and term.

use std::time::Duration;

/// A handler's verdict (seed S-5 `ProcessResult { success, retryable, error }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `success: true`.
    Done,
    /// `success: false, retryable: true`: try again later.
    Retry(String),
    /// `success: false, retryable: false`: never try again.
    Fail(String),
}

impl Outcome {
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Done => None,
            Outcome::Retry(error) | Outcome::Fail(error) => Some(error),
        }
    }
}

/// What to tell JetStream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Redeliver after the delay.
    Nak(Duration),
    /// Never redeliver; `dead` when the message goes to the dead-letter stream.
    Term {
        reason: DeadReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// The handler said the message can never succeed.
    Terminated,
    /// Retryable, but this was the last delivery the consumer allows.
    MaxDeliveries,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Terminated => "terminated",
            DeadReason::MaxDeliveries => "max-deliveries",
        }
    }
}

/// The seed's fixed retry delay (`msg.nak(5000)`), used when the consumer has no backoff.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How the consumer is set up, as far as retries go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The consumer's backoff: the delay before delivery n+1 is `backoff[n-1]`, the last one repeating.
    pub backoff: Vec<Duration>,
    /// The consumer's max deliveries; `None` for unlimited.
    pub max_deliver: Option<u64>,
}

impl RetryPolicy {
    /// What to do with a message on its `delivered`-th delivery (1-based) after `outcome`.
    pub fn disposition(&self, outcome: &Outcome, delivered: u64) -> Disposition {
        match outcome {
            Outcome::Done => Disposition::Ack,
            Outcome::Fail(_) => Disposition::Term {
                reason: DeadReason::Terminated,
            },
            Outcome::Retry(_) if self.max_deliver.is_some_and(|max| delivered >= max) => {
                Disposition::Term {
                    reason: DeadReason::MaxDeliveries,
                }
            }
            Outcome::Retry(_) => Disposition::Nak(self.delay_after(delivered)),
        }
    }

    /// How long JetStream waits for an ack of delivery `delivered` before redelivering: with a
    /// backoff, its step for that delivery (the server uses it in place of the ack wait).
    pub fn ack_window(&self, delivered: u64, ack_wait: Duration) -> Duration {
        if self.backoff.is_empty() {
            ack_wait
        } else {
            self.delay_after(delivered)
        }
    }

    fn delay_after(&self, delivered: u64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(DEFAULT_RETRY_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn success_acks_and_terminal_failure_terms() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.disposition(&Outcome::Done, 1), Disposition::Ack);
        assert_eq!(
            policy.disposition(&Outcome::Fail("bad".into()), 1),
            Disposition::Term {
                reason: DeadReason::Terminated
            }
        );
    }

    #[test]
    fn retries_follow_the_consumers_backoff_then_repeat_its_last_step() {
        let policy = RetryPolicy {
            backoff: vec![secs(1), secs(10), secs(60)],
            max_deliver: Some(5),
        };
        let retry = Outcome::Retry("timeout".into());
        assert_eq!(policy.disposition(&retry, 1), Disposition::Nak(secs(1)));
        assert_eq!(policy.disposition(&retry, 2), Disposition::Nak(secs(10)));
        assert_eq!(policy.disposition(&retry, 4), Disposition::Nak(secs(60)));
        assert_eq!(
            policy.disposition(&retry, 5),
            Disposition::Term {
                reason: DeadReason::MaxDeliveries
            },
            "the last allowed delivery goes to the dead letters instead of vanishing"
        );
    }

    #[test]
    fn the_ack_window_is_the_backoff_step_when_there_is_one() {
        let ack_wait = secs(30);
        assert_eq!(RetryPolicy::default().ack_window(3, ack_wait), ack_wait);
        let policy = RetryPolicy {
            backoff: vec![secs(1), secs(5)],
            max_deliver: Some(4),
        };
        assert_eq!(policy.ack_window(1, ack_wait), secs(1));
        assert_eq!(policy.ack_window(3, ack_wait), secs(5));
    }

    #[test]
    fn without_backoff_the_seeds_five_seconds_apply() {
        let policy = RetryPolicy {
            backoff: vec![],
            max_deliver: None,
        };
        assert_eq!(
            policy.disposition(&Outcome::Retry("x".into()), 100),
            Disposition::Nak(DEFAULT_RETRY_DELAY)
        );
    }
}
