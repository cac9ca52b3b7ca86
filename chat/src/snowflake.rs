//! Snowflake IDs: 42 bits of milliseconds since the Confab epoch, 10 bits of worker id and 12
//! bits of sequence. They sort by creation time, so message history pages by id.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// A snowflake id. Serialized as a decimal string: JavaScript numbers lose precision past 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Snowflake(pub i64);

impl Snowflake {
    pub fn get(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch at which this id was made.
    pub fn timestamp_ms(self) -> u64 {
        ((self.0 as u64) >> 22) + EPOCH_MS
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Snowflake {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: u64 = s.parse()?;
        // Ids are positive i64s; anything larger cannot exist.
        i64::try_from(v)
            .map(Snowflake)
            .map_err(|_| "x".parse::<u64>().unwrap_err())
    }
}

impl Serialize for Snowflake {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Str(&'a str),
            String(String),
            Num(u64),
        }
        let parse = |s: &str| s.parse::<Snowflake>().map_err(serde::de::Error::custom);
        match Raw::deserialize(d)? {
            Raw::Str(s) => parse(s),
            Raw::String(s) => parse(&s),
            Raw::Num(n) => i64::try_from(n)
                .map(Snowflake)
                .map_err(|_| serde::de::Error::custom("id out of range")),
        }
    }
}

impl utoipa::PartialSchema for Snowflake {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Snowflake id as a decimal string"))
            .examples([serde_json::json!("123456789012345678")])
            .into()
    }
}
impl utoipa::ToSchema for Snowflake {}

/// Makes unique, time-ordered ids. A mutex is fine here: ids are made per request, not per packet.
pub struct SnowflakeGenerator {
    /// Changes only when a lost worker lease is replaced (`workers`).
    worker: std::sync::atomic::AtomicU64,
    state: Mutex<(u64, u64)>, // (last ms, sequence)
}

impl SnowflakeGenerator {
    pub fn new(worker_id: u16) -> Self {
        Self {
            worker: u64::from(worker_id & 0x3ff).into(),
            state: Mutex::new((0, 0)),
        }
    }

    /// Makes ids as worker `worker_id` from now on.
    pub fn set_worker(&self, worker_id: u16) {
        self.worker.store(
            u64::from(worker_id & 0x3ff),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn worker(&self) -> u16 {
        self.worker.load(std::sync::atomic::Ordering::Relaxed) as u16
    }

    pub fn next(&self) -> Snowflake {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = now_ms();
        if now < st.0 {
            // Clock went backwards: keep counting from the last timestamp so ids stay ordered.
            now = st.0;
        }
        if now == st.0 {
            st.1 = (st.1 + 1) & 0xfff;
            if st.1 == 0 {
                // 4096 ids in one millisecond: borrow the next millisecond.
                now += 1;
            }
        } else {
            st.1 = 0;
        }
        st.0 = now;
        let worker = self.worker.load(std::sync::atomic::Ordering::Relaxed);
        let id = ((now - EPOCH_MS) << 22) | (worker << 12) | st.1;
        Snowflake(id as i64)
    }
}

fn now_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(EPOCH_MS);
    ms.max(EPOCH_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_increasing() {
        let g = SnowflakeGenerator::new(3);
        let mut last = g.next();
        for _ in 0..20_000 {
            let id = g.next();
            assert!(id > last, "{id} <= {last}");
            last = id;
        }
        assert_eq!((last.0 >> 12) & 0x3ff, 3);
    }

    #[test]
    fn serializes_as_string_and_parses_both_forms() {
        let id = Snowflake(1234567890123456789);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"1234567890123456789\""
        );
        let a: Snowflake = serde_json::from_str("\"42\"").unwrap();
        let b: Snowflake = serde_json::from_str("42").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<Snowflake>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Snowflake>("\"99999999999999999999\"").is_err());
        assert!(serde_json::from_str::<Snowflake>("\"abc\"").is_err());
    }
}
