//! Discord REST for interactions (twilight-http: rate-limit aware): defer, reply by editing the
//! original response, follow up on failure, answer autocomplete.

use std::time::Duration;

use twilight_http::Client;
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_model::application::command::{CommandOptionChoice, CommandOptionChoiceValue};
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};
use twilight_model::id::Id;

use crate::event::{Interaction, InteractionKind};

/// Discord: "Interaction has already been acknowledged."
const ALREADY_ACKNOWLEDGED: u64 = 40060;
/// Discord: "Unknown interaction" (its 3 s or 15 min are over, or it never existed).
const UNKNOWN_INTERACTION: u64 = 10062;

#[derive(Clone)]
pub struct Discord {
    client: std::sync::Arc<Client>,
}

/// How a defer went.
#[derive(Debug, PartialEq, Eq)]
pub enum Deferral {
    Deferred,
    /// An earlier delivery of the same event deferred it already.
    AlreadyDeferred,
    /// Too late: Discord no longer accepts a response; the user saw "interaction failed".
    Expired,
}

impl Discord {
    /// `api_host` points the client at another host over plain HTTP (fake-discord in tests).
    pub fn new(token: Option<String>, api_host: Option<String>) -> Self {
        let mut builder = Client::builder().timeout(Duration::from_secs(10));
        if let Some(token) = token {
            builder = builder.token(token);
        }
        if let Some(host) = api_host {
            builder = builder.proxy(host, true).ratelimiter(None);
        }
        Discord {
            client: std::sync::Arc::new(builder.build()),
        }
    }

    /// The interaction endpoints of `interaction`'s application.
    fn of(&self, interaction: &Interaction) -> twilight_http::client::InteractionClient<'_> {
        self.client.interaction(Id::new(interaction.application_id))
    }

    pub async fn defer(&self, interaction: &Interaction) -> Result<Deferral, twilight_http::Error> {
        let kind = match interaction.kind {
            InteractionKind::Button | InteractionKind::Select => {
                InteractionResponseType::DeferredUpdateMessage
            }
            _ => InteractionResponseType::DeferredChannelMessageWithSource,
        };
        let response = InteractionResponse { kind, data: None };
        match self
            .of(interaction)
            .create_response(Id::new(interaction.id), &interaction.token, &response)
            .await
        {
            Ok(_) => Ok(Deferral::Deferred),
            Err(error) => match discord_code(&error) {
                Some(ALREADY_ACKNOWLEDGED) => Ok(Deferral::AlreadyDeferred),
                Some(UNKNOWN_INTERACTION) => Ok(Deferral::Expired),
                _ => Err(error),
            },
        }
    }

    /// Replaces the deferred "thinking…" with `content`.
    pub async fn reply(
        &self,
        interaction: &Interaction,
        content: &str,
    ) -> Result<(), twilight_http::Error> {
        self.of(interaction)
            .update_response(&interaction.token)
            .content(Some(content))
            .await
            .map(drop)
    }

    /// A new message after the response: how failures reach the user.
    pub async fn followup(
        &self,
        interaction: &Interaction,
        content: &str,
    ) -> Result<(), twilight_http::Error> {
        self.of(interaction)
            .create_followup(&interaction.token)
            .content(content)
            .await
            .map(drop)
    }

    /// Answers an autocomplete with one choice per line of `lines` (Discord allows 25).
    pub async fn autocomplete(
        &self,
        interaction: &Interaction,
        lines: &str,
    ) -> Result<(), twilight_http::Error> {
        let choices = lines
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(25)
            .map(|line| CommandOptionChoice {
                name: line.to_owned(),
                name_localizations: None,
                value: CommandOptionChoiceValue::String(line.to_owned()),
            })
            .collect();
        let response = InteractionResponse {
            kind: InteractionResponseType::ApplicationCommandAutocompleteResult,
            data: Some(InteractionResponseData {
                choices: Some(choices),
                ..Default::default()
            }),
        };
        self.of(interaction)
            .create_response(Id::new(interaction.id), &interaction.token, &response)
            .await
            .map(drop)
    }
}

fn discord_code(error: &twilight_http::Error) -> Option<u64> {
    match error.kind() {
        ErrorType::Response {
            error: ApiError::General(general),
            ..
        } => Some(general.code),
        _ => None,
    }
}
