//! Types shared by the three custom resources: NATS connection settings, Secret references,
//! durations, pod overrides.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, TopologySpreadConstraint,
};
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A NATS subject or wildcard filter: dot-separated tokens, `*` for one token, `>` only last.
pub const SUBJECT_PATTERN: &str = r"^(\*|[^.*>\s]+)(\.(\*|[^.*>\s]+))*(\.>)?$|^>$";

/// JetStream stream and consumer names: no dots, wildcards, whitespace or path separators.
pub const NATS_NAME_PATTERN: &str = r"^[A-Za-z0-9_-]+$";

/// What the API server accepts for a [`GoDuration`]; the CEL `duration()` function reads the same syntax.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$";

/// A Go-style duration (`30s`, `5m`, `1h30m`, `168h`), the format NATS and Kubernetes use.
/// Kept as text so the object round-trips exactly as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

/// Units accepted by [`GoDuration`], longest suffix first so `ms` is not read as `m`.
const DURATION_UNITS: [(&str, f64); 6] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: use a number with a unit (ns, us, ms, s, m, h), for example 30s, 5m or 1h30m"
)]
pub struct DurationError {
    input: String,
}

impl GoDuration {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Parses the text the way Go's `time.ParseDuration` does for non-negative values.
    pub fn to_std(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a non-negative Go duration such as `1h30m`, `250ms` or `0`.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let error = || DurationError {
        input: input.to_owned(),
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = input;
    let mut seconds = 0f64;
    if rest.is_empty() {
        return Err(error());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(error)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| error())?;
        rest = &rest[number_len..];
        let (unit, scale) = DURATION_UNITS
            .iter()
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(error)?;
        rest = &rest[unit.len()..];
        seconds += number * scale;
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| error())
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 30s, 5m or 1h30m (units: ns, us, ms, s, m, h)."
        })
    }
}

/// A key in a Secret in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret. Each field that takes a SecretKeyRef documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// TLS material for the NATS connection, from a Secret of type `kubernetes.io/tls` or `Opaque`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsTls {
    /// Name of the Secret holding the CA and, for mutual TLS, the client certificate and key.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the CA bundle in the Secret. Default `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<String>,
    /// Key of the client certificate; omit both certKey and keyKey for server-only TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_key: Option<String>,
    /// Key of the client private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_key: Option<String>,
}

/// How to reach NATS. Credentials are only ever read from Secrets, never written into specs or status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tls) || !has(self.tls.certKey) == !has(self.tls.keyKey)")
    .message("tls.certKey and tls.keyKey go together: set both for mutual TLS, or neither"))]
pub struct NatsConnection {
    /// NATS server URLs, for example `nats://nats.nats.svc:4222`. Omit to use the operator's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(regex(pattern = r"^(nats|tls|ws|wss)://[^\s/]+(:[0-9]{1,5})?/?$"))
    )]
    pub servers: Vec<String>,
    /// A NATS credentials file (JWT and NKey seed) in a Secret. Default key `nats.creds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// TLS settings; `tls://` servers imply TLS even without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NatsTls>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// What users commonly change on the pods the operator creates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Container image. Defaults to the image matching the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the main container. They cannot override the ones the operator sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Added to the pods' labels; the operator's own labels win on conflict.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", 0.0),
            ("60s", 60.0),
            ("5m", 300.0),
            ("168h", 604_800.0),
            ("1h30m", 5_400.0),
            ("250ms", 0.25),
            ("1.5s", 1.5),
            ("2m30s", 150.0),
            ("10us", 0.000_01),
        ];
        for (text, seconds) in cases {
            let parsed = parse_go_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                (parsed.as_secs_f64() - seconds).abs() < 1e-9,
                "{text} parsed as {parsed:?}"
            );
        }
    }

    #[test]
    fn rejects_malformed_durations_with_a_hint() {
        for text in ["", "5", "m", "5 m", "-5s", "5d", "1h30", "s5"] {
            let error = parse_go_duration(text).expect_err(text);
            assert!(error.to_string().contains("for example 30s"), "{error}");
        }
    }

    #[test]
    fn duration_pattern_agrees_with_the_parser() {
        // The pattern is RE2/ECMA; these inputs exercise only syntax both share.
        let re = regex_lite::Regex::new(DURATION_PATTERN).expect("pattern compiles");
        for text in ["0", "60s", "1h30m", "1.5s", "250ms", "5", "5d", "", "1h30"] {
            assert_eq!(
                re.is_match(text),
                parse_go_duration(text).is_ok(),
                "pattern and parser disagree on {text:?}"
            );
        }
    }

    #[test]
    fn subject_pattern_accepts_only_valid_subjects() {
        let re = regex_lite::Regex::new(SUBJECT_PATTERN).expect("pattern compiles");
        for ok in [
            "commands.>",
            "events.member.*",
            ">",
            "a.*.c",
            "commands.interaction",
        ] {
            assert!(re.is_match(ok), "{ok} should be valid");
        }
        for bad in [
            "",
            "commands.",
            ".a",
            "a..b",
            "a.>.b",
            "a b",
            "a.b>",
            "events.>.x",
        ] {
            assert!(!re.is_match(bad), "{bad} should be invalid");
        }
    }
}
