//! The id of each event, used as its `event_id` and as JetStream's `Nats-Msg-Id`.
//!
//! Guarantees, within the stream's duplicate window:
//! - a dispatch replayed after a resume gets the id it had the first time (same session and seq),
//!   so JetStream drops the replay;
//! - a legitimate repeat (the same payload sent again, say a role toggled on, off and on) arrives
//!   with a new seq, so it keeps a distinct id and is not dropped;
//! - events with an identity of their own (an interaction's id; a member join's guild, user and
//!   join time) get an id from it, so the same event seen by a second shard set (resharding) is
//!   also dropped.
//!
//! Not guaranteed: other event types seen by two shard sets at once get two ids (issue #5 hands
//! shards over so that the sets do not overlap for them).

use arrakis_contract::PayloadIds;

/// The id for dispatch `event_type` with payload ids `ids`, received as `seq` on `session_id` by
/// shard `shard` of `total`.
pub fn message_id(
    event_type: &str,
    ids: &PayloadIds<'_>,
    shard: u32,
    total: u32,
    session_id: &str,
    seq: u64,
) -> String {
    // Joined by hand: this runs for every event, and `format!` costs more than the copying.
    let joined = |parts: &[&str]| {
        let mut id = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|part| id.push_str(part));
        id
    };
    let natural = match event_type {
        "INTERACTION_CREATE" => ids.id.as_deref().map(|id| joined(&["interaction:", id])),
        "GUILD_MEMBER_ADD" => match (
            ids.guild_id.as_deref(),
            ids.user(),
            ids.joined_at.as_deref(),
        ) {
            (Some(guild), Some(user), Some(joined_at)) => {
                Some(joined(&["member.join:", guild, ":", user, ":", joined_at]))
            }
            _ => None,
        },
        _ => None,
    };
    natural.unwrap_or_else(|| format!("shard:{shard}/{total}:{session_id}:{seq}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn message_id(
        event_type: &str,
        data: &serde_json::Value,
        shard: u32,
        total: u32,
        session: &str,
        seq: u64,
    ) -> String {
        let ids = PayloadIds::deserialize(data).expect("payload ids");
        super::message_id(event_type, &ids, shard, total, session, seq)
    }

    #[test]
    fn replays_keep_their_id_and_repeats_do_not() {
        let toggle = json!({"guild_id": "1", "user": {"id": "2"}, "roles": ["3"]});
        let first = message_id("GUILD_MEMBER_UPDATE", &toggle, 0, 4, "s1", 10);
        let replay = message_id("GUILD_MEMBER_UPDATE", &toggle, 0, 4, "s1", 10);
        let repeat = message_id("GUILD_MEMBER_UPDATE", &toggle, 0, 4, "s1", 12);
        assert_eq!(first, replay);
        assert_ne!(
            first, repeat,
            "the same payload later in the stream is a new event"
        );
    }

    #[test]
    fn natural_ids_survive_a_second_shard_set() {
        let interaction = json!({"id": "99", "type": 2});
        assert_eq!(
            message_id("INTERACTION_CREATE", &interaction, 0, 4, "old", 5),
            message_id("INTERACTION_CREATE", &interaction, 3, 8, "new", 77)
        );
        let join =
            json!({"guild_id": "1", "user": {"id": "2"}, "joined_at": "2026-11-23T10:00:00+00:00"});
        assert_eq!(
            message_id("GUILD_MEMBER_ADD", &join, 0, 4, "old", 5),
            message_id("GUILD_MEMBER_ADD", &join, 1, 8, "new", 9)
        );
        let rejoin =
            json!({"guild_id": "1", "user": {"id": "2"}, "joined_at": "2026-11-23T10:05:00+00:00"});
        assert_ne!(
            message_id("GUILD_MEMBER_ADD", &join, 0, 4, "s", 5),
            message_id("GUILD_MEMBER_ADD", &rejoin, 0, 4, "s", 6)
        );
    }

    #[test]
    fn incomplete_payloads_fall_back_to_the_sequence() {
        assert_eq!(
            message_id("INTERACTION_CREATE", &json!({}), 2, 4, "s", 7),
            "shard:2/4:s:7"
        );
    }
}
