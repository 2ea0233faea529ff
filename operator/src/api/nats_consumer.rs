//! `NatsConsumer`: a durable JetStream pull consumer and, optionally, the workers that drain it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GoDuration, NATS_NAME_PATTERN, NatsConnection, PodOverrides, SUBJECT_PATTERN};

/// A durable pull consumer on a stream declared by a `NatsStream` in the same namespace.
// Repeated printcolumn keys are separate columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arrakis.dev",
    version = "v1alpha1",
    kind = "NatsConsumer",
    namespaced,
    status = "NatsConsumerStatus",
    shortname = "ncon",
    category = "arrakis",
    doc = "A durable JetStream pull consumer, optionally with a worker Deployment that consumes it.",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.streamRef.name"),
    printcolumn(name = "Durable", type_ = "string", json_path = ".spec.durableName"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.numPending"),
    printcolumn(
        name = "Ack Pending",
        type_ = "integer",
        json_path = ".status.numAckPending"
    ),
    printcolumn(
        name = "Workers",
        type_ = "integer",
        json_path = ".status.workerReadyReplicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.backoff) || !has(self.maxDeliver) || self.maxDeliver == -1 || size(self.backoff) < self.maxDeliver")
        .message("backoff has as many steps as maxDeliver allows deliveries or more: set maxDeliver above the number of backoff steps, or shorten backoff")
        .field_path(".backoff"),
    validation = Rule::new("(self.deliverPolicy == 'ByStartSequence') == has(self.optStartSeq)")
        .message("optStartSeq goes with deliverPolicy ByStartSequence: set both or neither")
        .field_path(".optStartSeq"),
    validation = Rule::new("(self.deliverPolicy == 'ByStartTime') == has(self.optStartTime)")
        .message("optStartTime goes with deliverPolicy ByStartTime: set both or neither")
        .field_path(".optStartTime"),
    validation = Rule::new("!has(self.worker) || self.ackPolicy == 'Explicit'")
        .message("a worker acknowledges each message: set ackPolicy to Explicit, or remove the worker section")
        .field_path(".ackPolicy"),
    validation = Rule::new("!has(self.optStartSeq) || (has(oldSelf.optStartSeq) && self.optStartSeq == oldSelf.optStartSeq)")
        .message("optStartSeq is immutable: JetStream cannot move an existing consumer's start; create a new consumer")
        .field_path(".optStartSeq"),
    validation = Rule::new("!has(self.optStartTime) || (has(oldSelf.optStartTime) && self.optStartTime == oldSelf.optStartTime)")
        .message("optStartTime is immutable: JetStream cannot move an existing consumer's start; create a new consumer")
        .field_path(".optStartTime"),
)]
pub struct NatsConsumerSpec {
    /// The NatsStream resource (in this namespace) whose stream this consumer reads. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("streamRef is immutable: a consumer cannot move to another stream; create a new NatsConsumer"))]
    pub stream_ref: StreamRef,

    /// The consumer's durable name, e.g. command-worker. Immutable.
    #[schemars(length(min = 1, max = 255), regex(pattern = NATS_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("durableName is immutable: JetStream cannot rename a consumer; create a new NatsConsumer"))]
    pub durable_name: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Only deliver messages on these subjects. Empty means every subject of the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(regex(pattern = SUBJECT_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub filter_subjects: Vec<String>,

    /// Explicit (ack each message), All (an ack covers earlier ones) or None. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("ackPolicy is immutable: JetStream cannot change it on an existing consumer; create a new NatsConsumer"))]
    pub ack_policy: AckPolicy,

    /// How long the server waits for an ack before redelivering, e.g. `30s`. Server default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait: Option<GoDuration>,

    /// Deliveries before a message is given up on (and dead-lettered by the worker); -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == -1 || self >= 1").message("maxDeliver must be -1 (no limit) or at least 1"))]
    pub max_deliver: Option<i64>,

    /// Messages delivered but not yet acked before the server pauses delivery. Server default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_ack_pending: Option<i64>,

    /// Redelivery delays after each failed delivery, e.g. [5s, 30s, 2m].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub backoff: Option<Vec<GoDuration>>,

    /// Where a new consumer starts. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("deliverPolicy is immutable: JetStream cannot change where an existing consumer starts; create a new NatsConsumer"))]
    pub deliver_policy: DeliverPolicy,

    /// Start sequence, with deliverPolicy ByStartSequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub opt_start_seq: Option<i64>,

    /// Start time (RFC 3339), with deliverPolicy ByStartTime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub opt_start_time: Option<String>,

    /// Instant, or Original to replay at the rate messages were stored. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replayPolicy is immutable: create a new NatsConsumer"))]
    pub replay_policy: ReplayPolicy,

    /// Largest batch one pull may request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_request_batch: Option<i64>,

    /// Deliver only headers (payload size in Nats-Msg-Size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_only: Option<bool>,

    /// Consumer replicas in a NATS cluster; 0 inherits the stream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas: Option<i32>,

    /// How to reach NATS. Omit to use the referenced NatsStream's connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<NatsConnection>,

    /// A Deployment of arrakis-worker consuming this consumer. Omit to run consumers elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSpec>,

    /// What happens to the JetStream consumer when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: super::nats_stream::DeletionPolicy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamRef {
    /// Name of a NatsStream resource in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AckPolicy {
    #[default]
    Explicit,
    All,
    None,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliverPolicy {
    #[default]
    All,
    Last,
    New,
    ByStartSequence,
    ByStartTime,
    LastPerSubject,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
}

/// The worker Deployment that drains this consumer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))")
        .message("set either replicas or autoscaling, not both")
)]
pub struct WorkerSpec {
    /// Fixed number of worker pods. Default 1 when autoscaling is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Scale workers on consumer lag (num pending + num ack pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<WorkerAutoscaling>,

    /// Messages one worker handles at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub concurrency: Option<i32>,

    /// Handler routes. Exactly one of configMapRef or inline, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<HandlerConfig>,

    /// Image, resources, env and scheduling of the worker pods. Image defaults to arrakis-worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
        .field_path(".minReplicas")
)]
pub struct WorkerAutoscaling {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Lag one worker is expected to carry; replicas = ceil(lag / targetLagPerReplica).
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: i64,
    /// Wait after a scale-down before the next one, e.g. `5m`. Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_cooldown: Option<GoDuration>,
}

fn default_min_replicas() -> i32 {
    1
}

/// Where the worker's handler routing (YAML) comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.configMapRef) != has(self.inline)")
        .message("handlers needs exactly one of configMapRef or inline")
)]
pub struct HandlerConfig {
    /// A ConfigMap key holding the routes file. Default key `handlers.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// The routes file inline, as YAML text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub inline: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsConsumerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Messages not yet delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_pending: Option<i64>,
    /// Messages delivered and not yet acked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_ack_pending: Option<i64>,
    /// Messages currently being redelivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_redelivered: Option<i64>,
    /// Pull requests waiting at the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_waiting: Option<i64>,
    /// Worker pods wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_replicas: Option<i32>,
    /// Worker pods ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_ready_replicas: Option<i32>,
}

impl NatsConsumerStatus {
    /// Lag as KEDA and the autoscaler count it: not yet delivered plus not yet acked.
    pub fn lag(&self) -> Option<i64> {
        Some(self.num_pending? + self.num_ack_pending?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_safe_work_consumer() {
        let spec: NatsConsumerSpec =
            serde_yaml::from_str("streamRef: {name: commands}\ndurableName: command-worker")
                .expect("valid");
        assert_eq!(spec.ack_policy, AckPolicy::Explicit);
        assert_eq!(spec.deliver_policy, DeliverPolicy::All);
        assert_eq!(spec.replay_policy, ReplayPolicy::Instant);
        assert!(spec.worker.is_none());
    }

    #[test]
    fn lag_needs_both_counts() {
        let mut status = NatsConsumerStatus {
            num_pending: Some(7),
            ..Default::default()
        };
        assert_eq!(status.lag(), None);
        status.num_ack_pending = Some(3);
        assert_eq!(status.lag(), Some(10));
    }
}
