//! The live shard assignment, between the operator (writer) and the gateway pods (readers), and
//! the per-shard leases that keep a shard from running in two pods at once.
//!
//! Both live in NATS KV, in the account the gateway publishes to:
//!
//! | bucket                      | key                   | value                                      |
//! |-----------------------------|-----------------------|--------------------------------------------|
//! | `arrakis-shard-assignments` | `<pool>`              | [`ShardAssignment`] as JSON                |
//! | `arrakis-gateway-leases`    | `<pool>.<shard>.<total>` | the holding member's name, renewed while it runs the shard |
//!
//! A pod runs the shards the assignment lists under its member name (its pod name), each only
//! while it holds the shard's lease. Moving a shard is therefore: the operator rewrites the
//! assignment; the old holder closes the shard resumably, saves its session and deletes the lease;
//! the new holder creates the lease, loads the session and resumes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// KV bucket of live assignments, one key per pool.
pub const ASSIGNMENT_BUCKET: &str = "arrakis-shard-assignments";
/// KV bucket of shard leases.
pub const LEASE_BUCKET: &str = "arrakis-gateway-leases";
/// A lease not renewed for this long expires, and another member may take the shard.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// Which member runs which shards of one shard set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAssignment {
    /// Bumped by the writer on every change; shown in logs and status.
    pub generation: u64,
    /// The shard set: every shard id is below this.
    pub total_shards: u32,
    /// Member name (pod name) → the shard ids it runs.
    pub members: BTreeMap<String, Vec<u32>>,
}

/// Why an assignment cannot be used as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssignmentError {
    #[error("total_shards is 0: an assignment needs at least one shard")]
    NoShards,
    #[error("member {member:?} is given shard {shard}, which is not below total_shards {total}")]
    ShardOutside {
        member: String,
        shard: u32,
        total: u32,
    },
    #[error(
        "shard {shard} is given to both {first:?} and {second:?}; give each shard to one member"
    )]
    SharedShard {
        shard: u32,
        first: String,
        second: String,
    },
}

impl ShardAssignment {
    /// The shards `member` runs, in order; none if it is not listed.
    pub fn shards_of(&self, member: &str) -> BTreeSet<u32> {
        self.members
            .get(member)
            .map(|shards| shards.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Checks that every shard is in the set and given to one member at most.
    pub fn validate(&self) -> Result<(), AssignmentError> {
        if self.total_shards == 0 {
            return Err(AssignmentError::NoShards);
        }
        let mut owners: BTreeMap<u32, &str> = BTreeMap::new();
        for (member, shards) in &self.members {
            for &shard in shards {
                if shard >= self.total_shards {
                    return Err(AssignmentError::ShardOutside {
                        member: member.clone(),
                        shard,
                        total: self.total_shards,
                    });
                }
                if let Some(first) = owners.insert(shard, member) {
                    return Err(AssignmentError::SharedShard {
                        shard,
                        first: first.to_owned(),
                        second: member.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The assignment's key for `pool`.
pub fn assignment_key(pool: &str) -> String {
    pool.to_owned()
}

/// The key of a shard's lease, and of its saved session: shard sets of different totals never share one.
pub fn shard_key(pool: &str, shard: u32, total: u32) -> String {
    format!("{pool}.{shard}.{total}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(total: u32, members: &[(&str, &[u32])]) -> ShardAssignment {
        ShardAssignment {
            generation: 1,
            total_shards: total,
            members: members
                .iter()
                .map(|(m, s)| ((*m).to_owned(), s.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn members_see_their_own_shards_only() {
        let a = assignment(4, &[("gw-0", &[2, 0]), ("gw-1", &[1, 3])]);
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.shards_of("gw-0"), BTreeSet::from([0, 2]));
        assert_eq!(a.shards_of("gw-2"), BTreeSet::new());
    }

    #[test]
    fn rejects_shards_outside_the_set_or_given_twice() {
        assert_eq!(
            assignment(2, &[("gw-0", &[0, 2])]).validate(),
            Err(AssignmentError::ShardOutside {
                member: "gw-0".into(),
                shard: 2,
                total: 2
            })
        );
        assert_eq!(
            assignment(2, &[("gw-0", &[0, 1]), ("gw-1", &[1])]).validate(),
            Err(AssignmentError::SharedShard {
                shard: 1,
                first: "gw-0".into(),
                second: "gw-1".into()
            })
        );
        assert_eq!(
            assignment(0, &[]).validate(),
            Err(AssignmentError::NoShards)
        );
    }

    #[test]
    fn the_json_form_is_stable() {
        let a = assignment(2, &[("gw-0", &[0, 1])]);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"generation":1,"total_shards":2,"members":{"gw-0":[0,1]}}"#
        );
        assert_eq!(serde_json::from_str::<ShardAssignment>(&text).unwrap(), a);
        assert_eq!(shard_key("bot", 3, 16), "bot.3.16");
    }
}
