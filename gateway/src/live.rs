//! Live assignment: run the shards the assignment in NATS KV gives this member, and follow it as
//! the operator rebalances.
//!
//! Each wanted shard gets an owner task: take the shard's lease, run the shard while the lease is
//! kept, and on release close resumably, save the session and delete the lease, so the next owner
//! resumes where this one stopped. A shard is never started twice in this process: a new owner
//! task waits until the previous one for the same shard has finished.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrakis_contract::assignment::{ASSIGNMENT_BUCKET, ShardAssignment, assignment_key};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use twilight_gateway::ShardId;

use crate::host::{Assigned, ShardHost};
use crate::leases::{Lease, LeaseStore, RENEW_EVERY, Renewal};
use crate::runner::ShardError;
use arrakis_support::open_bucket;

/// How often a wanted shard whose lease someone else holds is tried again.
const ACQUIRE_RETRY: Duration = Duration::from_millis(500);
/// A failed renewal is retried this soon, well before the fence deadline.
const RENEW_RETRY: Duration = Duration::from_secs(1);
/// How long to wait before watching the assignment again after the watch broke.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

/// What to do to go from the running shards to the wanted ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: HashSet<ShardId>,
    pub stop: HashSet<ShardId>,
}

/// Starts wanted shards that have no owner task, and stops owned shards no longer wanted.
/// `stopping` shards are still releasing: they start again only once their task has ended.
pub fn plan(
    wanted: &HashSet<ShardId>,
    running: &HashSet<ShardId>,
    stopping: &HashSet<ShardId>,
) -> Plan {
    Plan {
        start: wanted
            .iter()
            .filter(|id| !running.contains(id) && !stopping.contains(id))
            .copied()
            .collect(),
        stop: running.difference(wanted).copied().collect(),
    }
}

/// The shards `assignment` gives `member`.
pub fn wanted(assignment: &ShardAssignment, member: &str) -> HashSet<ShardId> {
    assignment
        .shards_of(member)
        .into_iter()
        .map(|shard| ShardId::new(shard, assignment.total_shards))
        .collect()
}

/// Runs this member's shards until `shutdown` resolves or a shard closes fatally.
pub async fn run(
    host: Arc<ShardHost>,
    client: async_nats::Client,
    pool: &str,
    member: &str,
    assigned: Assigned,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let leases = LeaseStore::open(client.clone(), pool, member).await?;
    let assignments = open_bucket(
        &jetstream::new(client),
        kv::Config {
            bucket: ASSIGNMENT_BUCKET.into(),
            description: "arrakis: which gateway member runs which shards, per pool".into(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    let (assignment_tx, mut assignment_rx) = watch::channel(ShardAssignment::default());
    let watcher = tokio::spawn(watch_assignment(
        assignments,
        assignment_key(pool),
        assignment_tx,
    ));

    let mut owners = Owners::default();
    let mut fatal = None;
    tokio::pin!(shutdown);
    loop {
        let wanted = wanted(&assignment_rx.borrow_and_update(), member);
        *assigned.write().unwrap_or_else(|p| p.into_inner()) =
            wanted.iter().map(|id| id.number()).collect();
        let plan = plan(&wanted, &owners.running(), &owners.stopping());
        for id in plan.stop {
            tracing::info!(shard = id.number(), "shard moved away; releasing it");
            owners.stop(id);
        }
        for id in plan.start {
            tracing::info!(
                shard = id.number(),
                total = id.total(),
                "shard assigned here; acquiring it"
            );
            owners.start(id, host.clone(), leases.clone());
        }
        tokio::select! {
            () = &mut shutdown => break,
            changed = assignment_rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some((_, result)) = owners.next_finished() => {
                if let Err(error) = result {
                    fatal = Some(error);
                    break;
                }
            }
        }
    }
    watcher.abort();
    owners.stop_all();
    while let Some((_, result)) = owners.next_finished().await {
        if let Err(error) = result {
            fatal.get_or_insert(error);
        }
    }
    match fatal {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// The owner tasks of this process, by shard.
#[derive(Default)]
struct Owners {
    tasks: JoinSet<(ShardId, Result<(), ShardError>)>,
    /// Each owner's stop switch; `None` once it was told to stop.
    stops: HashMap<ShardId, Option<watch::Sender<bool>>>,
}

impl Owners {
    fn running(&self) -> HashSet<ShardId> {
        self.stops
            .iter()
            .filter(|(_, stop)| stop.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn stopping(&self) -> HashSet<ShardId> {
        self.stops
            .iter()
            .filter(|(_, stop)| stop.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    fn start(&mut self, id: ShardId, host: Arc<ShardHost>, leases: LeaseStore) {
        let (stop_tx, stop_rx) = watch::channel(false);
        self.stops.insert(id, Some(stop_tx));
        self.tasks
            .spawn(async move { (id, own_shard(&host, &leases, id, stop_rx).await) });
    }

    fn stop(&mut self, id: ShardId) {
        if let Some(stop) = self.stops.get_mut(&id).and_then(Option::take) {
            let _ = stop.send(true);
        }
    }

    fn stop_all(&mut self) {
        let ids: Vec<ShardId> = self.stops.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }

    async fn next_finished(&mut self) -> Option<(ShardId, Result<(), ShardError>)> {
        let (id, result) = match self.tasks.join_next().await? {
            Ok(finished) => finished,
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        };
        self.stops.remove(&id);
        Some((id, result))
    }
}

/// Owns one shard until told to stop: lease, run, release; again if the lease is lost meanwhile.
async fn own_shard(
    host: &ShardHost,
    leases: &LeaseStore,
    id: ShardId,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ShardError> {
    let number = id.number();
    loop {
        let Some(lease) = acquire(leases, id, &mut stop).await else {
            return Ok(());
        };
        tracing::info!(shard = number, "lease taken");
        let (keeper, mut fenced) = LeaseKeeper::spawn(leases.clone(), lease);
        let stopped = {
            let mut stop = stop.clone();
            async move {
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => {}
                    _ = fenced.wait_for(|fenced| *fenced) => {}
                }
            }
        };
        let result = host.run(id, stopped).await;
        if let Some(lease) = keeper.finish().await {
            leases.release(lease).await;
            tracing::info!(shard = number, "lease released");
        }
        match result {
            Err(error @ ShardError::Fatal { .. }) => return Err(error),
            Err(error) => {
                tracing::warn!(shard = number, %error, "retrying the shard");
                tokio::time::sleep(ACQUIRE_RETRY).await;
            }
            Ok(()) => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
        tracing::warn!(
            shard = number,
            "lease lost while running; closed the shard and taking it again"
        );
    }
}

/// Waits for `id`'s lease; `None` if told to stop first.
async fn acquire(
    leases: &LeaseStore,
    id: ShardId,
    stop: &mut watch::Receiver<bool>,
) -> Option<Lease> {
    let mut waiting_logged = false;
    loop {
        if *stop.borrow() {
            return None;
        }
        match leases.try_acquire(id).await {
            Ok(Some(lease)) => return Some(lease),
            Ok(None) if !waiting_logged => {
                tracing::info!(
                    shard = id.number(),
                    "another member holds the lease; waiting for it to let go"
                );
                waiting_logged = true;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(
                shard = id.number(),
                error = format!("{error:#}"),
                "could not take the lease"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(ACQUIRE_RETRY) => {}
            _ = stop.wait_for(|stop| *stop) => return None,
        }
    }
}

/// Renews a lease in the background; raises `fenced` when the shard must stop because the lease
/// is lost or could not be renewed in time.
struct LeaseKeeper {
    finish: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<Lease>>,
}

impl LeaseKeeper {
    fn spawn(leases: LeaseStore, mut lease: Lease) -> (Self, watch::Receiver<bool>) {
        let (fenced_tx, fenced_rx) = watch::channel(false);
        let (finish, mut finished) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut next_renewal = Instant::now() + RENEW_EVERY;
            loop {
                tokio::select! {
                    _ = &mut finished => return Some(lease),
                    () = tokio::time::sleep_until(next_renewal) => {}
                }
                let outcome =
                    tokio::time::timeout_at(lease.fence_deadline(), leases.renew(&mut lease)).await;
                match outcome {
                    Ok(Renewal::Renewed) => next_renewal = Instant::now() + RENEW_EVERY,
                    Ok(Renewal::Lost) => {
                        let _ = fenced_tx.send(true);
                        return None;
                    }
                    Ok(Renewal::Failed) | Err(_) if Instant::now() >= lease.fence_deadline() => {
                        // The lease may expire any moment: stop the shard before someone else starts it.
                        let _ = fenced_tx.send(true);
                        let _ = finished.await;
                        return Some(lease);
                    }
                    Ok(Renewal::Failed) | Err(_) => next_renewal = Instant::now() + RENEW_RETRY,
                }
            }
        });
        (LeaseKeeper { finish, task }, fenced_rx)
    }

    /// Stops renewing; the lease if it is still held.
    async fn finish(self) -> Option<Lease> {
        let _ = self.finish.send(());
        self.task.await.ok().flatten()
    }
}

/// Follows the pool's assignment key; a value that does not parse or validate is logged and
/// ignored, keeping the last good one, so a bad write never drops shards.
async fn watch_assignment(kv: kv::Store, key: String, assignment: watch::Sender<ShardAssignment>) {
    loop {
        match follow(&kv, &key, &assignment).await {
            Ok(()) => tracing::warn!("the assignment watch ended; watching again"),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "the assignment watch failed; watching again"
            ),
        }
        tokio::time::sleep(REWATCH_AFTER).await;
    }
}

async fn follow(
    kv: &kv::Store,
    key: &str,
    assignment: &watch::Sender<ShardAssignment>,
) -> anyhow::Result<()> {
    let mut entries = kv
        .watch_with_history(key)
        .await
        .context("watching the assignment")?;
    while let Some(entry) = entries.next().await {
        let entry = entry.context("reading the assignment")?;
        let next = match entry.operation {
            kv::Operation::Put => match parse(&entry.value) {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(
                        revision = entry.revision,
                        error = format!("{error:#}"),
                        "ignoring an invalid shard assignment; keeping the last good one"
                    );
                    continue;
                }
            },
            // Deleting the assignment (the pool is gone) releases every shard.
            kv::Operation::Delete | kv::Operation::Purge => ShardAssignment::default(),
        };
        tracing::info!(
            generation = next.generation,
            total = next.total_shards,
            "assignment changed"
        );
        assignment.send_replace(next);
    }
    Ok(())
}

fn parse(value: &[u8]) -> anyhow::Result<ShardAssignment> {
    let assignment: ShardAssignment =
        serde_json::from_slice(value).context("the assignment is not ShardAssignment JSON")?;
    assignment.validate()?;
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(total: u32, shards: &[u32]) -> HashSet<ShardId> {
        shards.iter().map(|&s| ShardId::new(s, total)).collect()
    }

    #[test]
    fn starts_new_shards_and_stops_moved_ones() {
        let p = plan(&ids(4, &[1, 2, 3]), &ids(4, &[0, 1]), &HashSet::new());
        assert_eq!(p.start, ids(4, &[2, 3]));
        assert_eq!(p.stop, ids(4, &[0]));
    }

    #[test]
    fn a_shard_still_releasing_is_not_started_again() {
        let p = plan(&ids(4, &[0]), &HashSet::new(), &ids(4, &[0]));
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_new_total_replaces_every_shard() {
        let p = plan(&ids(8, &[0, 1]), &ids(4, &[0, 1]), &HashSet::new());
        assert_eq!(p.start, ids(8, &[0, 1]));
        assert_eq!(p.stop, ids(4, &[0, 1]));
    }

    #[test]
    fn bad_assignments_are_refused_with_the_reason() {
        let error =
            parse(br#"{"generation":1,"total_shards":2,"members":{"a":[0],"b":[0]}}"#).unwrap_err();
        assert!(
            format!("{error:#}").contains("shard 0 is given to both"),
            "{error:#}"
        );
        assert!(parse(b"not json").is_err());
        let good = parse(br#"{"generation":2,"total_shards":2,"members":{"a":[1]}}"#).unwrap();
        assert_eq!(wanted(&good, "a"), ids(2, &[1]));
        assert_eq!(wanted(&good, "b"), HashSet::new());
    }
}
