//! `NatsStream`: a JetStream stream, declared in Kubernetes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GoDuration, NATS_NAME_PATTERN, NatsConnection, SUBJECT_PATTERN};

/// A JetStream stream. Fields the server cannot change in place are immutable here too.
// Repeated printcolumn keys are separate columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arrakis.dev",
    version = "v1alpha1",
    kind = "NatsStream",
    namespaced,
    status = "NatsStreamStatus",
    shortname = "nstr",
    category = "arrakis",
    doc = "A JetStream stream managed by Arrakis.",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Storage", type_ = "string", json_path = ".spec.storage"),
    printcolumn(name = "Retention", type_ = "string", json_path = ".spec.retention"),
    printcolumn(
        name = "Messages",
        type_ = "integer",
        json_path = ".status.state.messages"
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
    validation = Rule::new("(self.retention == 'WorkQueue') == (oldSelf.retention == 'WorkQueue')")
        .message("retention cannot change to or from WorkQueue on an existing stream: create a new NatsStream instead")
        .field_path(".retention"),
    validation = Rule::new("!(has(oldSelf.denyDelete) && oldSelf.denyDelete) || (has(self.denyDelete) && self.denyDelete)")
        .message("denyDelete cannot be turned off once set: JetStream refuses it; create a new stream to allow deletes")
        .field_path(".denyDelete"),
    validation = Rule::new("!(has(oldSelf.denyPurge) && oldSelf.denyPurge) || (has(self.denyPurge) && self.denyPurge)")
        .message("denyPurge cannot be turned off once set: JetStream refuses it; create a new stream to allow purges")
        .field_path(".denyPurge"),
    validation = Rule::new("!has(self.duplicateWindow) || !has(self.maxAge) || duration(self.maxAge) == duration('0s') || duration(self.duplicateWindow) <= duration(self.maxAge)")
        .message("duplicateWindow must not be longer than maxAge: shorten duplicateWindow or raise maxAge")
        .field_path(".duplicateWindow"),
    validation = Rule::new("!has(self.discardNewPerSubject) || !self.discardNewPerSubject || (self.discard == 'New' && has(self.maxMsgsPerSubject) && self.maxMsgsPerSubject > 0)")
        .message("discardNewPerSubject needs discard: New and a positive maxMsgsPerSubject")
        .field_path(".discardNewPerSubject"),
)]
pub struct NatsStreamSpec {
    /// The stream's name in JetStream, e.g. COMMANDS. Immutable.
    #[schemars(length(min = 1, max = 255), regex(pattern = NATS_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("name is immutable: a stream cannot be renamed; create a new NatsStream"))]
    pub name: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Subjects the stream captures, e.g. `commands.>`.
    #[schemars(
        length(min = 1, max = 256),
        inner(regex(pattern = SUBJECT_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub subjects: Vec<String>,

    /// File or Memory. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable: JetStream cannot move a stream between File and Memory; create a new NatsStream"))]
    pub storage: Storage,

    /// Limits, Interest or WorkQueue. Changing to or from WorkQueue is not possible in place.
    #[serde(default)]
    pub retention: Retention,

    /// Oldest message kept, e.g. `60s`, `5m`, `168h`. Unset or `0` keeps messages forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<GoDuration>,

    /// Bytes kept; -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_bytes: Option<i64>,

    /// Messages kept; -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_msgs: Option<i64>,

    /// Largest message accepted, in bytes; -1 for the server's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_msg_size: Option<i32>,

    /// Messages kept per subject; -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_msgs_per_subject: Option<i64>,

    /// Consumers allowed; -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_consumers: Option<i32>,

    /// What to do when a limit is hit: drop Old messages, or refuse New ones.
    #[serde(default)]
    pub discard: Discard,

    /// With discard New, apply the refusal per subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_new_per_subject: Option<bool>,

    /// Window in which a repeated Nats-Msg-Id is dropped. Server default 2m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window: Option<GoDuration>,

    /// Copies of the stream in a NATS cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i32>,

    /// Refuse message deletion through the API. Cannot be turned off once on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_delete: Option<bool>,

    /// Refuse purges through the API. Cannot be turned off once on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_purge: Option<bool>,

    /// Allow a Nats-Rollup header to purge older messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_rollup: Option<bool>,

    /// Serve direct gets from any replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_direct: Option<bool>,

    /// On-disk compression for File storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,

    /// Do not acknowledge publishes (faster, but publishers cannot know a message was stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_ack: Option<bool>,

    /// How to reach NATS. Omit to use the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<NatsConnection>,

    /// What happens to the JetStream stream when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Storage {
    #[default]
    File,
    Memory,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    WorkQueue,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Discard {
    #[default]
    Old,
    New,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Compression {
    None,
    S2,
}

/// `Delete` removes the JetStream object with the resource; `Retain` leaves it on the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsStreamStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The live state read back from JetStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StreamState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamState {
    pub messages: i64,
    pub bytes: i64,
    pub first_sequence: i64,
    pub last_sequence: i64,
    pub consumer_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_jetstreams() {
        let spec: NatsStreamSpec = serde_yaml::from_str("name: S\nsubjects: [s.>]").expect("valid");
        assert_eq!(spec.storage, Storage::File);
        assert_eq!(spec.retention, Retention::Limits);
        assert_eq!(spec.discard, Discard::Old);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
    }

    #[test]
    fn unset_options_are_not_written_back() {
        let spec: NatsStreamSpec = serde_yaml::from_str("name: S\nsubjects: [s.>]").expect("valid");
        let json = serde_json::to_value(&spec).expect("serialises");
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "deletionPolicy",
                "discard",
                "name",
                "retention",
                "storage",
                "subjects"
            ]
        );
    }
}
