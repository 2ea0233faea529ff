//! The ShardPool rebalancing planner (pure): how to go from the pods and shard assignment that
//! exist to the replica count asked for, with the total unchanged, moving as few shards as
//! possible and never giving a shard to two pods.
//!
//! The gateway pods follow the assignment and hand shards over by session resume, guarded by
//! leases (see `gateway/src/live.rs`). The order of steps is what keeps events flowing:
//! - scaling up: start the new pods first, then move shards onto them;
//! - scaling down: move shards off the leaving pods first, wait until they have released them,
//!   then remove the pods.

use std::collections::{BTreeMap, BTreeSet};

/// Member (pod name) → the shards it runs.
pub type Assignment = BTreeMap<String, BTreeSet<u32>>;

/// One step of a rebalance; the reconciler does them in order, one per pass, each once the
/// previous one is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Set the StatefulSet's replicas.
    ScaleTo(u32),
    /// Wait until pods `0..replicas` are ready.
    AwaitPods(u32),
    /// Write this assignment.
    Assign(Assignment),
    /// Wait until these members hold no shard leases.
    AwaitReleased(Vec<String>),
}

/// The StatefulSet pod name of `ordinal`.
pub fn member(pool: &str, ordinal: u32) -> String {
    format!("{pool}-{ordinal}")
}

/// Spreads `total` shards over `members` as evenly as possible (sizes differ by at most one),
/// keeping every shard that can stay where it is in `current`.
pub fn balance(total: u32, members: &[String], current: &Assignment) -> Assignment {
    let mut out: Assignment = members
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let count = members.len() as u32;
    // The first `total % count` members (in order) take one more.
    let quota = |index: usize| total / count + u32::from((index as u32) < total % count);
    let mut placed = BTreeSet::new();
    for (index, name) in members.iter().enumerate() {
        let keep = current
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|shard| *shard < total && !placed.contains(shard))
            .take(quota(index) as usize)
            .collect::<Vec<_>>();
        for shard in keep {
            placed.insert(shard);
            out.get_mut(name).expect("listed").insert(shard);
        }
    }
    let mut unplaced = (0..total).filter(|shard| !placed.contains(shard));
    for (index, name) in members.iter().enumerate() {
        let owned = out.get_mut(name).expect("listed");
        while (owned.len() as u32) < quota(index) {
            match unplaced.next() {
                Some(shard) => owned.insert(shard),
                None => break,
            };
        }
    }
    out
}

/// The steps from `replicas` pods running `current` to `desired` pods, for a pool of `total`
/// shards. Empty when nothing needs to change.
pub fn plan(
    pool: &str,
    total: u32,
    replicas: u32,
    desired: u32,
    current: &Assignment,
) -> Vec<Step> {
    let members: Vec<String> = (0..desired).map(|i| member(pool, i)).collect();
    let target = balance(total, &members, current);
    let reassign = target != *current;
    if desired > replicas {
        let mut steps = vec![Step::ScaleTo(desired), Step::AwaitPods(desired)];
        if reassign {
            steps.push(Step::Assign(target));
        }
        steps
    } else if desired < replicas {
        let leaving: Vec<String> = (desired..replicas).map(|i| member(pool, i)).collect();
        let mut steps = Vec::new();
        if reassign {
            steps.push(Step::Assign(target));
        }
        steps.push(Step::AwaitReleased(leaving));
        steps.push(Step::ScaleTo(desired));
        steps
    } else if reassign {
        vec![Step::Assign(target)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(assignment: &Assignment) -> BTreeMap<u32, Vec<String>> {
        let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (member, shards) in assignment {
            for shard in shards {
                out.entry(*shard).or_default().push(member.clone());
            }
        }
        out
    }

    /// Every shard of `total` has exactly one owner.
    fn each_shard_once(total: u32, assignment: &Assignment) -> bool {
        let owners = owners(assignment);
        (0..total).all(|s| owners.get(&s).is_some_and(|o| o.len() == 1))
            && owners.len() == total as usize
    }

    /// A small deterministic generator, so the properties run over many shapes reproducibly.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, below: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % u64::from(below.max(1))) as u32
        }
    }

    /// Some valid assignment of `total` shards over `replicas` members, not necessarily balanced.
    fn random_assignment(rng: &mut Lcg, pool: &str, total: u32, replicas: u32) -> Assignment {
        let mut out: Assignment = (0..replicas)
            .map(|i| (member(pool, i), BTreeSet::new()))
            .collect();
        for shard in 0..total {
            let owner = member(pool, rng.next(replicas));
            out.get_mut(&owner).unwrap().insert(shard);
        }
        out
    }

    #[test]
    fn balancing_gives_every_shard_one_owner_and_keeps_sizes_even() {
        let mut rng = Lcg(7);
        for total in 1..=40 {
            for members in 1..=8u32 {
                for previous in 1..=8u32 {
                    let current = random_assignment(&mut rng, "gw", total, previous);
                    let names: Vec<String> = (0..members).map(|i| member("gw", i)).collect();
                    let balanced = balance(total, &names, &current);
                    assert!(
                        each_shard_once(total, &balanced),
                        "{total} over {members}: {balanced:?}"
                    );
                    let sizes: Vec<usize> = balanced.values().map(BTreeSet::len).collect();
                    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(max - min <= 1, "{total} over {members}: sizes {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn a_balanced_pool_stays_put_and_scaling_moves_only_what_it_must() {
        let names = |n: u32| (0..n).map(|i| member("gw", i)).collect::<Vec<_>>();
        let four = balance(100, &names(4), &Assignment::new());
        assert_eq!(
            balance(100, &names(4), &four),
            four,
            "nothing moves when balanced"
        );
        let five = balance(100, &names(5), &four);
        let moved = (0..100)
            .filter(|s| owners(&four)[s] != owners(&five)[s])
            .count();
        assert_eq!(moved, 20, "exactly the new pod's share moves");
    }

    #[test]
    fn scaling_up_starts_pods_before_moving_shards() {
        let current = balance(10, &[member("gw", 0)], &Assignment::new());
        let steps = plan("gw", 10, 1, 2, &current);
        assert_eq!(steps[0], Step::ScaleTo(2));
        assert_eq!(steps[1], Step::AwaitPods(2));
        assert!(matches!(&steps[2], Step::Assign(a) if a[&member("gw", 1)].len() == 5));
    }

    #[test]
    fn scaling_down_moves_shards_off_and_waits_before_removing_pods() {
        let names: Vec<String> = (0..3).map(|i| member("gw", i)).collect();
        let current = balance(9, &names, &Assignment::new());
        let steps = plan("gw", 9, 3, 2, &current);
        assert!(matches!(&steps[0], Step::Assign(a) if !a.contains_key(&member("gw", 2))));
        assert_eq!(steps[1], Step::AwaitReleased(vec![member("gw", 2)]));
        assert_eq!(steps[2], Step::ScaleTo(2));
        assert_eq!(
            plan("gw", 9, 2, 2, &balance(9, &names[..2], &current)),
            Vec::new()
        );
    }

    /// Walking any plan step by step, every assignment written gives each shard one owner, and no
    /// assigned member is a pod that is not running at that point.
    #[test]
    fn no_step_runs_a_shard_twice_or_on_a_missing_pod() {
        let mut rng = Lcg(42);
        for total in 1..=30 {
            for from in 1..=6u32 {
                for to in 1..=6u32 {
                    let current = random_assignment(&mut rng, "gw", total, from);
                    let mut running = from;
                    for step in plan("gw", total, from, to, &current) {
                        match step {
                            Step::ScaleTo(n) => running = n,
                            Step::AwaitPods(_) | Step::AwaitReleased(_) => {}
                            Step::Assign(assignment) => {
                                assert!(each_shard_once(total, &assignment));
                                for name in assignment.keys() {
                                    let ordinal: u32 =
                                        name.rsplit('-').next().unwrap().parse().unwrap();
                                    assert!(
                                        ordinal < running,
                                        "{name} assigned while {running} pods run"
                                    );
                                }
                            }
                        }
                    }
                    assert_eq!(running, to, "{from} → {to} ends at {to} pods");
                }
            }
        }
    }
}
