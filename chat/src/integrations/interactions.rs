//! Interactions: a member invoking a command, the bot's answer, and its deadlines.

use super::*;

/// One option value as the member gave it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptionValue {
    pub name: String,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// What a bot receives in `INTERACTION_CREATE`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Interaction {
    #[schema(value_type = String)]
    pub id: Snowflake,
    /// Answer with `POST /interactions/{id}/{token}/callback`. Valid 15 minutes.
    pub token: String,
    #[serde(rename = "type")]
    /// 2: an application command (as Discord).
    pub kind: u8,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    /// The member who used the command.
    pub user: User,
    pub data: InteractionData,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InteractionData {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub name: String,
    pub options: Vec<OptionValue>,
}

/// How a bot answered, and what the caller then shows.
pub enum Answered {
    /// A message in the channel.
    Message(Box<Message>),
    /// "Thinking…": a follow-up comes later.
    Deferred,
}

/// One step of answering an interaction.
pub enum AnswerStep<'a> {
    /// The first answer, as a message.
    Message(&'a str),
    /// The first answer: "thinking", a follow-up comes.
    Defer,
    /// The message after deferring.
    FollowUp(&'a str),
}

/// An interaction the deadline found unanswered.
pub struct Expired {
    pub id: Snowflake,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub command: String,
    pub deferred: bool,
}

fn check_option_value(
    o: &CommandOption,
    value: &serde_json::Value,
    v: &mut Validator,
) -> Option<(Option<UserId>, Option<ChannelId>)> {
    let field = format!("options.{}", o.name);
    let id = |s: Option<&str>| s.and_then(|s| s.parse::<Snowflake>().ok());
    match o.kind {
        OptionKind::String => {
            let ok = value
                .as_str()
                .is_some_and(|s| (1..=1000).contains(&s.chars().count()) && !s.contains('\0'));
            v.check(ok, &field, "must be text of 1-1000 characters");
            ok.then_some((None, None))
        }
        OptionKind::Integer => {
            let ok = value.is_i64();
            v.check(ok, &field, "must be an integer");
            ok.then_some((None, None))
        }
        OptionKind::Boolean => {
            let ok = value.is_boolean();
            v.check(ok, &field, "must be true or false");
            ok.then_some((None, None))
        }
        OptionKind::User => {
            let u = id(value.as_str());
            v.check(u.is_some(), &field, "must be a user id");
            u.map(|u| (Some(UserId::new(u)), None))
        }
        OptionKind::Channel => {
            let c = id(value.as_str());
            v.check(c.is_some(), &field, "must be a channel id");
            c.map(|c| (None, Some(ChannelId::new(c))))
        }
    }
}

impl Chat {
    /// A member uses a command in a channel where they may send messages: the options are
    /// checked against the command, and the interaction is stored as pending. The caller sends
    /// it to the bot and starts the deadline.
    pub async fn create_interaction(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        command_id: Snowflake,
        options: Vec<OptionValue>,
    ) -> ChatResult<Interaction> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        let Some(server_id) = channel.server_id else {
            return Err(ChatError::field(
                "channel_id",
                "commands are used in server text channels",
            ));
        };
        if channel.kind != ChannelKind::Text {
            return Err(ChatError::field(
                "channel_id",
                "commands are used in server text channels",
            ));
        }
        if !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden("you may not send messages here"));
        }
        let command: Command = sqlx::query_as(q!(
            "SELECT {COMMAND_COLUMNS} FROM app_commands WHERE id = $1 AND server_id = $2"
        ))
        .bind(command_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("command"))?;
        let mut v = Validator::default();
        let mut users = Vec::new();
        let mut channels = Vec::new();
        for given in &options {
            match command.options.0.iter().find(|o| o.name == given.name) {
                None => {
                    v.check(
                        false,
                        "options",
                        "names an option the command does not have",
                    );
                }
                Some(o) => {
                    if let Some((u, c)) = check_option_value(o, &given.value, &mut v) {
                        users.extend(u);
                        channels.extend(c);
                    }
                }
            }
        }
        for o in command.options.0.iter().filter(|o| o.required) {
            v.check(
                options.iter().any(|g| g.name == o.name),
                &format!("options.{}", o.name),
                "is required",
            );
        }
        let mut names: Vec<&str> = options.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        v.check(names.len() == before, "options", "each option at most once");
        v.finish()?;
        // Users and channels must be of this server: a command is no way to learn about others.
        for u in users {
            if self.member_access(server_id, u).await?.is_none() {
                return Err(ChatError::field(
                    "options",
                    "names a user who is not a member",
                ));
            }
        }
        for c in channels {
            let in_server: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1 AND server_id = $2)",
            )
            .bind(c)
            .bind(server_id)
            .fetch_one(&self.pool)
            .await?;
            if !in_server || self.channel_access(c, user_id).await.is_err() {
                return Err(ChatError::field(
                    "options",
                    "names a channel you cannot see",
                ));
            }
        }
        // The bot must still be in the server to be asked.
        if self
            .member_access(server_id, command.bot_id)
            .await?
            .is_none()
        {
            return Err(ChatError::NotFound("command"));
        }
        let id: Snowflake = self.next_id();
        let token = new_token();
        sqlx::query(
            "INSERT INTO interactions (id, token_hash, command_id, bot_id, server_id, channel_id, user_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(hash_token(&token))
        .bind(command.id)
        .bind(command.bot_id)
        .bind(server_id)
        .bind(channel_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        let user = self.user(user_id).await?;
        Ok(Interaction {
            id,
            token,
            kind: 2,
            server_id,
            channel_id,
            user,
            data: InteractionData {
                id: command.id,
                name: command.name,
                options,
            },
        })
    }

    /// The calling bot answers an interaction: only the interaction's bot, with its token,
    /// once per step and within its deadline (3 s for the first answer, 15 min for the
    /// follow-up after deferring).
    pub async fn answer_interaction(
        &self,
        bot_id: UserId,
        id: Snowflake,
        token: &str,
        step: AnswerStep<'_>,
    ) -> ChatResult<Answered> {
        let (from, to, window, content) = match step {
            AnswerStep::Message(c) => ("pending", "answered", FIRST_RESPONSE, Some(c)),
            AnswerStep::Defer => ("pending", "deferred", FIRST_RESPONSE, None),
            AnswerStep::FollowUp(c) => ("deferred", "answered", FOLLOW_UP, Some(c)),
        };
        if let Some(c) = content {
            check_content(c)?;
        }
        // One compare-and-set decides between this answer and the deadline.
        let row: Option<ChannelId> = sqlx::query_scalar(
            "UPDATE interactions SET state = $5
             WHERE id = $1 AND token_hash = $2 AND bot_id = $3 AND state = $4
               AND created_at > now() - make_interval(secs => $6)
             RETURNING channel_id",
        )
        .bind(id)
        .bind(hash_token(token))
        .bind(bot_id)
        .bind(from)
        .bind(to)
        .bind(window.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let Some(channel_id) = row else {
            let known: Option<String> = sqlx::query_scalar(
                "SELECT state FROM interactions WHERE id = $1 AND token_hash = $2 AND bot_id = $3",
            )
            .bind(id)
            .bind(hash_token(token))
            .bind(bot_id)
            .fetch_optional(&self.pool)
            .await?;
            return Err(match known.as_deref() {
                None => ChatError::NotFound("interaction"),
                Some("answered") => {
                    ChatError::Conflict("this interaction was already answered".into())
                }
                Some("deferred") if from == "pending" => {
                    ChatError::Conflict("this interaction was deferred: send the follow-up".into())
                }
                Some("pending") => ChatError::Conflict(
                    "this interaction was not deferred: answer it with the callback".into(),
                ),
                Some(_) => {
                    ChatError::Conflict("the interaction's response deadline has passed".into())
                }
            });
        };
        let Some(content) = content else {
            return Ok(Answered::Deferred);
        };
        // The answer is the bot's message in the channel; answering needs no SEND_MESSAGES
        // (the member who used the command had it), as on Discord.
        let message_id: MessageId = self.next_id();
        sqlx::query(
            "INSERT INTO messages (id, channel_id, author_id, content) VALUES ($1, $2, $3, $4)",
        )
        .bind(message_id)
        .bind(channel_id)
        .bind(bot_id)
        .bind(content)
        .execute(&self.pool)
        .await?;
        Ok(Answered::Message(Box::new(
            self.message_by_id(message_id).await?,
        )))
    }

    /// The bot a command belongs to.
    pub async fn command_bot(&self, command_id: Snowflake) -> ChatResult<Option<UserId>> {
        Ok(
            sqlx::query_scalar("SELECT bot_id FROM app_commands WHERE id = $1")
                .bind(command_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Marks the interaction failed if it is still in `state` ("pending" after the first
    /// deadline, "deferred" after the follow-up one); returns it if so.
    pub async fn expire_interaction(
        &self,
        id: Snowflake,
        state: &str,
    ) -> ChatResult<Option<Expired>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            server_id: ServerId,
            channel_id: ChannelId,
            user_id: UserId,
            command: Option<String>,
        }
        let row: Option<Row> = sqlx::query_as(
            "UPDATE interactions i SET state = 'failed'
             WHERE i.id = $1 AND i.state = $2
             RETURNING i.server_id, i.channel_id, i.user_id,
                       (SELECT name FROM app_commands c WHERE c.id = i.command_id) AS command",
        )
        .bind(id)
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Expired {
            id,
            server_id: r.server_id,
            channel_id: r.channel_id,
            user_id: r.user_id,
            command: r.command.unwrap_or_default(),
            deferred: state == "deferred",
        }))
    }

    /// Forgets interactions older than a day (their tokens can no longer be used anyway).
    pub async fn prune_interactions(&self) -> ChatResult<u64> {
        Ok(
            sqlx::query("DELETE FROM interactions WHERE created_at < now() - interval '1 day'")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
