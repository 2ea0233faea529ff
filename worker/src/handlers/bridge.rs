//! The HTTP bridge: POSTs the seed's legacy payload (`toDiscordEventPayload`) to a handler service
//! in any language, so existing handlers keep working unchanged (seed AD-S6.1).
//!
//! The service answers:
//! - 2xx: done. A JSON body `{"content": "..."}` becomes the interaction's reply;
//! - 408, 425, 429, 5xx, a timeout or no connection: retryable;
//! - any other 4xx: terminal (the request itself is wrong; retrying cannot help).
//!
//! The error kept with the message quotes the status and the start of the body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request as HttpRequest, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::{Handled, Request};
use crate::event::LegacyPayload;

pub struct Bridge {
    name: String,
    url: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Deserialize)]
struct BridgeReply {
    content: Option<String>,
}

/// How much of an error body is kept.
const BODY_EXCERPT: usize = 300;

impl Bridge {
    pub fn new(name: &str, url: &str, timeout: Duration) -> Self {
        Bridge {
            name: name.to_owned(),
            url: url.to_owned(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn handle(&self, request: &Request<'_>) -> Handled {
        let payload = LegacyPayload::from_event(request.event, request.interaction);
        let body = serde_json::to_vec(&payload).expect("legacy payloads serialise");
        let http = HttpRequest::post(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-arrakis-event-id", payload.event_id.as_str())
            .body(Full::new(Bytes::from(body)))
            .expect("validated URL");
        let sent = async {
            let response = self.client.request(http).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => Handled::retry(format!(
                "bridge {}: no answer from {} within {:?}",
                self.name, self.url, self.timeout
            )),
            Ok(Err(error)) => Handled::retry(format!(
                "bridge {}: could not reach {}: {error}",
                self.name, self.url
            )),
            Ok(Ok((status, body))) => self.classify(status, &body),
        }
    }

    fn classify(&self, status: StatusCode, body: &[u8]) -> Handled {
        if status.is_success() {
            let reply = serde_json::from_slice::<BridgeReply>(body)
                .ok()
                .and_then(|r| r.content);
            return Handled {
                outcome: crate::outcome::Outcome::Done,
                reply,
            };
        }
        let excerpt: String = String::from_utf8_lossy(body)
            .chars()
            .take(BODY_EXCERPT)
            .collect();
        let error = format!(
            "bridge {}: {} answered {status}: {excerpt}",
            self.name, self.url
        );
        if retryable(status) {
            Handled::retry(error)
        } else {
            Handled::fail(error)
        }
    }
}

/// Statuses worth trying again.
pub fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for code in [500, 502, 503, 504, 408, 425, 429] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
