//! Built-in handlers: guild and member events keep community and member-profile state (seed S-5
//! EventNatsConsumer), and the commands whose data lives in that state answer from it.

use super::{Handled, Request};
use crate::state::{Change, MemberProfile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    GuildJoin,
    GuildLeave,
    MemberJoin,
    MemberLeave,
    MemberUpdate,
    Profile,
    Badges,
    Directory,
    Leaderboard,
}

/// How many members the directory and the leaderboard list.
const LISTED: usize = 10;

impl Builtin {
    pub const ALL: [Builtin; 9] = [
        Builtin::GuildJoin,
        Builtin::GuildLeave,
        Builtin::MemberJoin,
        Builtin::MemberLeave,
        Builtin::MemberUpdate,
        Builtin::Profile,
        Builtin::Badges,
        Builtin::Directory,
        Builtin::Leaderboard,
    ];

    pub fn route_key(self) -> &'static str {
        match self {
            Builtin::GuildJoin => "guild.join",
            Builtin::GuildLeave => "guild.leave",
            Builtin::MemberJoin => "member.join",
            Builtin::MemberLeave => "member.leave",
            Builtin::MemberUpdate => "member.update",
            Builtin::Profile => "command.profile",
            Builtin::Badges => "command.badges",
            Builtin::Directory => "command.directory",
            Builtin::Leaderboard => "command.leaderboard",
        }
    }

    pub fn for_key(key: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.route_key() == key)
    }

    pub async fn handle(self, request: &Request<'_>) -> Handled {
        match self.run(request).await {
            Ok(handled) => handled,
            // State lives in NATS: failing to reach it is worth a retry.
            Err(error) => Handled::retry(format!("{}: {error:#}", self.route_key())),
        }
    }

    async fn run(self, request: &Request<'_>) -> anyhow::Result<Handled> {
        let event = request.event;
        let state = request.state;
        let data = &event.data;
        let Some(guild) = event.guild_id.as_deref() else {
            return Ok(Handled::fail(format!(
                "{}: the event has no guild_id",
                self.route_key()
            )));
        };
        let text = |field: &str| data[field].as_str().map(str::to_owned);
        match self {
            Builtin::GuildJoin => {
                let name = text("name");
                let members = data["member_count"].as_u64();
                state
                    .update_community(guild, &event.event_id, |c| {
                        c.active = true;
                        c.name = name.clone().or(c.name.take());
                        c.member_count = members.or(c.member_count);
                        c.joined_ms = Some(event.timestamp);
                    })
                    .await?;
                Ok(Handled::done())
            }
            Builtin::GuildLeave => {
                state
                    .update_community(guild, &event.event_id, |c| {
                        c.active = false;
                        c.left_ms = Some(event.timestamp);
                    })
                    .await?;
                Ok(Handled::done())
            }
            Builtin::MemberJoin | Builtin::MemberLeave | Builtin::MemberUpdate => {
                let Some(user) = event.user_id.as_deref() else {
                    return Ok(Handled::fail(format!(
                        "{}: the event has no user",
                        self.route_key()
                    )));
                };
                let username = data["user"]["username"].as_str().map(str::to_owned);
                let roles: Option<Vec<String>> = data["roles"].as_array().map(|roles| {
                    roles
                        .iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                });
                let joined_at = text("joined_at");
                let change = state
                    .update_member(guild, user, &event.event_id, |p| {
                        p.activity += 1;
                        p.username = username.clone().or(p.username.take());
                        if let Some(roles) = &roles {
                            p.roles = roles.clone();
                        }
                        match self {
                            Builtin::MemberJoin => {
                                p.active = true;
                                p.joined_at = joined_at.clone().or(p.joined_at.take());
                            }
                            Builtin::MemberLeave => p.active = false,
                            _ => {}
                        }
                    })
                    .await?;
                if change == Change::AlreadyApplied {
                    tracing::debug!(event_id = event.event_id, "member event already applied");
                }
                Ok(Handled::done())
            }
            Builtin::Profile | Builtin::Badges => {
                let Some(user) = request.interaction.and_then(|i| i.user_id.as_deref()) else {
                    return Ok(Handled::fail("the interaction has no user"));
                };
                let Some(profile) = state.member(guild, user).await? else {
                    return Ok(Handled::reply(
                        "No profile yet: it starts when you join the server.",
                    ));
                };
                Ok(Handled::reply(if self == Builtin::Profile {
                    profile_text(&profile)
                } else if profile.badges.is_empty() {
                    "No badges yet.".to_owned()
                } else {
                    format!("Badges: {}", profile.badges.join(", "))
                }))
            }
            Builtin::Directory => {
                let mut members: Vec<MemberProfile> = state
                    .members_of(guild)
                    .await?
                    .into_iter()
                    .filter(|m| m.active)
                    .collect();
                members.sort_by(|a, b| a.username.cmp(&b.username));
                Ok(Handled::reply(listing("Members", &members, |m| {
                    m.username.clone().unwrap_or_else(|| m.user_id.clone())
                })))
            }
            Builtin::Leaderboard => {
                let mut members = state.members_of(guild).await?;
                members.sort_by(|a, b| b.activity.cmp(&a.activity).then(a.user_id.cmp(&b.user_id)));
                Ok(Handled::reply(listing("Leaderboard", &members, |m| {
                    format!(
                        "{} ({})",
                        m.username.clone().unwrap_or_else(|| m.user_id.clone()),
                        m.activity
                    )
                })))
            }
        }
    }
}

fn profile_text(profile: &MemberProfile) -> String {
    let name = profile.username.as_deref().unwrap_or(&profile.user_id);
    let since = profile.joined_at.as_deref().unwrap_or("unknown");
    format!(
        "**{name}** — member since {since}, {} role(s), {} badge(s), activity {}",
        profile.roles.len(),
        profile.badges.len(),
        profile.activity
    )
}

fn listing(
    title: &str,
    members: &[MemberProfile],
    line: impl Fn(&MemberProfile) -> String,
) -> String {
    if members.is_empty() {
        return format!("{title}: nobody yet.");
    }
    let lines: Vec<String> = members
        .iter()
        .take(LISTED)
        .enumerate()
        .map(|(i, m)| format!("{}. {}", i + 1, line(m)))
        .collect();
    format!("{title}:\n{}", lines.join("\n"))
}
