//! Slash commands that bots register per server, and their options.

use super::*;

/// The type of a command option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    String,
    Integer,
    Boolean,
    /// A member of the server (the value is a user id).
    User,
    /// A channel of the server (the value is a channel id).
    Channel,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandOption {
    /// 1-32 lowercase letters, digits, '_' or '-'.
    pub name: String,
    /// 1-100 characters.
    pub description: String,
    #[serde(rename = "type")]
    pub kind: OptionKind,
    #[serde(default)]
    pub required: bool,
}

/// A slash command a bot registered in a server.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Command {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub bot_id: UserId,
    pub server_id: ServerId,
    pub name: String,
    pub description: String,
    #[schema(value_type = Vec<CommandOption>)]
    pub options: sqlx::types::Json<Vec<CommandOption>>,
}

/// A command as a bot registers it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub options: Vec<CommandOption>,
}

pub(super) const COMMAND_COLUMNS: &str = "id, bot_id, server_id, name, description, options";

fn valid_command_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_command(c: &NewCommand) -> ChatResult<()> {
    let mut v = Validator::default();
    v.check(
        valid_command_name(&c.name),
        "name",
        "must be 1-32 lowercase letters, digits, '_' or '-'",
    );
    let desc = |d: &str| (1..=100).contains(&d.chars().count()) && !d.chars().any(char::is_control);
    v.check(
        desc(&c.description),
        "description",
        "must be 1-100 characters",
    );
    v.check(
        c.options.len() <= MAX_OPTIONS,
        "options",
        "at most 25 options",
    );
    for o in &c.options {
        v.check(
            valid_command_name(&o.name),
            "options",
            "each option name must be 1-32 lowercase letters, digits, '_' or '-'",
        );
        v.check(
            desc(&o.description),
            "options",
            "each option description must be 1-100 characters",
        );
    }
    let mut names: Vec<&str> = c.options.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    v.check(
        names.len() == c.options.len(),
        "options",
        "option names must differ",
    );
    // Required options first, as Discord asks: the composer fills them in order.
    let first_optional = c.options.iter().position(|o| !o.required);
    v.check(
        first_optional.is_none_or(|i| c.options[i..].iter().all(|o| !o.required)),
        "options",
        "required options come before optional ones",
    );
    v.finish()
}

impl Chat {
    /// The bot's server, or Forbidden for a user that is not a bot.
    async fn bot_server(&self, bot_id: UserId) -> ChatResult<ServerId> {
        sqlx::query_scalar("SELECT server_id FROM bots WHERE user_id = $1")
            .bind(bot_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ChatError::Forbidden("only bots register commands"))
    }

    /// Registers (or replaces, by name) a command of the calling bot in its server.
    pub async fn upsert_command(
        &self,
        bot_id: UserId,
        server_id: ServerId,
        c: &NewCommand,
    ) -> ChatResult<(Command, bool)> {
        if self.bot_server(bot_id).await? != server_id {
            return Err(ChatError::NotFound("server"));
        }
        check_command(c)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let existing: Option<(Snowflake, UserId)> = sqlx::query_as(
            "SELECT id, bot_id FROM app_commands WHERE server_id = $1 AND name = $2",
        )
        .bind(server_id)
        .bind(&c.name)
        .fetch_optional(&mut *tx)
        .await?;
        let command: Command = match existing {
            Some((_, owner)) if owner != bot_id => {
                return Err(ChatError::Conflict(
                    "another bot has a command of that name here".into(),
                ))
            }
            Some((id, _)) => {
                sqlx::query_as(q!("UPDATE app_commands SET description = $2, options = $3
                     WHERE id = $1 RETURNING {COMMAND_COLUMNS}"))
                .bind(id)
                .bind(&c.description)
                .bind(sqlx::types::Json(&c.options))
                .fetch_one(&mut *tx)
                .await?
            }
            None => {
                let count: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM app_commands WHERE server_id = $1")
                        .bind(server_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if count >= MAX_COMMANDS_PER_SERVER {
                    return Err(ChatError::Conflict(format!(
                        "a server has at most {MAX_COMMANDS_PER_SERVER} commands"
                    )));
                }
                sqlx::query_as(q!("INSERT INTO app_commands
                         (id, bot_id, server_id, name, description, options)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COMMAND_COLUMNS}"))
                .bind(self.next_id::<Snowflake>())
                .bind(bot_id)
                .bind(server_id)
                .bind(&c.name)
                .bind(&c.description)
                .bind(sqlx::types::Json(&c.options))
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok((command, existing.is_none()))
    }

    /// Deletes one of the calling bot's commands.
    pub async fn delete_command(
        &self,
        bot_id: UserId,
        server_id: ServerId,
        command_id: Snowflake,
    ) -> ChatResult<()> {
        let done = sqlx::query(
            "DELETE FROM app_commands WHERE id = $1 AND server_id = $2 AND bot_id = $3",
        )
        .bind(command_id)
        .bind(server_id)
        .bind(bot_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ChatError::NotFound("command"));
        }
        Ok(())
    }

    /// A server's commands, by name (any member).
    pub async fn commands(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Command>> {
        self.server_permissions(server_id, user_id).await?;
        Ok(sqlx::query_as(q!(
            "SELECT {COMMAND_COLUMNS} FROM app_commands WHERE server_id = $1 ORDER BY name"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
