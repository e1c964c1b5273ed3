//! The shared store on Redis (`store.url = "redis://…"`, Redis 7+ or Valkey): task
//! records and each owner's index (any replica reads any task), idempotency keys, request rates and
//! unfinished-task counts per key, and which replica runs which task. A replica that stops
//! heart-beating loses its unfinished tasks to the others, which resume or fail them exactly as a
//! restart does (`app::duties::recover`). The embedded journal stays the default for one machine.
//!
//! Keys (`g2a:` prefix):
//! - tasks: `t:<id>` record · `f:<id>` its fencing epoch (see below) · `o:<owner>` zset of ids by
//!   creation · `expiring` zset of finished tasks by when their record expires (swept from the
//!   indexes then) · `all` zset of every id (the console) · `queue` zset of unstarted ids (any replica takes
//!   the oldest) · `a:<owner>` zset of unfinished ids and slot reservations · `r:<replica>` set of the
//!   ids it runs;
//! - replicas: `alive:<replica>` heartbeat (expires after the lease) · `replicas` set · `reports` hash
//!   of each replica's latest report (the console's cluster view) · `lead:<role>` the replica holding a
//!   role (`refresh`: the quota refreshes);
//! - per key: `i:<owner>:<sha256(key)>` idempotency · `rl:<owner>` token bucket;
//! - console: `tokbook` hash of console-made sso tokens (id → value, proxy, note, switch) · `keys` hash of console-made API keys · `usage` set of usage rows · `u:<day>|<key>`
//!   hash of one row's counts · `tokstate` hash of each token's latest state;
//! - channels: `cancel` · `claimed` · `keys` · `tokens` · `inflight` · `tokbook` (`News` once heard).
//!
//! Fencing: every claim of a task (from the queue, from a silent replica, or an operator's re-delivery)
//! raises its epoch `f:<id>`, and every write of its record is a compare-and-set on the epoch the
//! writer holds (`PUT_SCRIPT`). A replica that was paused past its lease (not dead) wakes up holding
//! an old epoch: its writes are refused, it drops its copy, and it sends no callback; the task ends
//! once, as its new runner says.

pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::owner::KeyId;
use crate::shared::news::{BookNews, InFlight, News, TokenNews};
use crate::shared::totals::Totals;
use crate::tasks::idempotency::{Claim, WINDOW};
use crate::tasks::journal::TaskRecord;
use crate::upstream::tokens::{ExportedToken, TokenEvent};

pub const PREFIX: &str = "g2a:";

pub fn task_key(id: &str) -> String {
    format!("{PREFIX}t:{id}")
}
/// A task's fencing hash: `e` its epoch, raised by every claim and compared by every write, and `r` the
/// replica that claimed it last (a replica never fences itself: its own writes in flight while it
/// claims a task again, as when its idle worker takes a task it created from the shared queue, pass).
pub fn fence_key(id: &str) -> String {
    format!("{PREFIX}f:{id}")
}
pub fn owner_key(owner: &str) -> String {
    format!("{PREFIX}o:{owner}")
}
/// Every task, by creation (the console's list across replicas).
pub const ALL_TASKS: &str = "g2a:all";
/// Tasks not started yet, oldest first: the queue every replica takes work from.
pub const UNCLAIMED: &str = "g2a:queue";
/// A replica claimed a task (`"<replica> <id>"`): the one that accepted it drops its queued copy.
pub const CLAIMED_CHANNEL: &str = "g2a:claimed";
pub fn active_key(owner: &str) -> String {
    format!("{PREFIX}a:{owner}")
}
pub fn running_key(replica: &str) -> String {
    format!("{PREFIX}r:{replica}")
}
fn alive_key(replica: &str) -> String {
    format!("{PREFIX}alive:{replica}")
}
const REPLICAS: &str = "g2a:replicas";
pub const CANCEL_CHANNEL: &str = "g2a:cancel";
/// Token changes (`TokenEvent`s) one replica saw, for the others.
pub const TOKENS_CHANNEL: &str = "g2a:tokens";
/// Console-made API keys: id → record.
const KEYS: &str = "g2a:keys";
/// A key was changed (rotated, revoked): replicas drop their cached copy.
pub const KEYS_CHANNEL: &str = "g2a:keys";
/// Every usage row (`<day>|<key>`) that has counts in `u:<day>|<key>`.
const USAGE_INDEX: &str = "g2a:usage";
/// Each replica's requests in flight per token (`InFlight`), every half second while it has some.
pub const INFLIGHT_CHANNEL: &str = "g2a:inflight";

/// Each replica's latest report (`ReplicaReport`): replica → JSON.
const REPORTS: &str = "g2a:reports";

/// Console-made sso tokens: token id → `ExportedToken` (the value itself: the book is what a
/// replica that starts later reads its tokens from).
const TOKEN_BOOK: &str = "g2a:tokbook";
/// Tokens put into the book or taken out (`BookNews`).
pub const BOOK_CHANNEL: &str = "g2a:tokbook";

/// The latest rest of each token and product, for replicas that start later.
const TOKEN_STATE: &str = "g2a:tokstate";

/// A token bucket in one round trip, timed by the Redis clock so replicas' clocks do not matter.
const RATE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't'))
local last = tonumber(redis.call('HGET', KEYS[1], 'l'))
if tokens == nil or last == nil then tokens = burst; last = now end
tokens = math.min(burst, tokens + math.max(0, now - last) / 1000 * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.max(1, math.ceil((1 - tokens) / rate)) end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"#;

/// One unfinished-task slot of a key, if it has one free: tasks count forever (`+inf`) until they
/// finish, reservations until they lapse.
const RESERVE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + 30000, ARGV[2])
return 1
"#;

/// Claims a queued task for this replica, once: it leaves the queue for this replica's running set
/// and its epoch rises. A task already in that set (taken over from a dead replica, or ended here
/// before it ran: cancelled while queued) is this replica's too, at the epoch it has (0 when never
/// claimed). Returns `{1, epoch}`, or `{0, 0}` when another replica has it.
const CLAIM_TASK_SCRIPT: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[3], 'r', ARGV[2])
  return {1, redis.call('HINCRBY', KEYS[3], 'e', 1)}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {1, tonumber(redis.call('HGET', KEYS[3], 'e') or '0')}
end
return {0, 0}
"#;

/// Claims the oldest queued task for this replica, if there is one: `{id, epoch}`.
const STEAL_SCRIPT: &str = r#"
local ids = redis.call('ZRANGE', KEYS[1], 0, 0)
if #ids == 0 then return false end
redis.call('ZREM', KEYS[1], ids[1])
redis.call('SADD', KEYS[2], ids[1])
redis.call('HSET', ARGV[1] .. ids[1], 'r', ARGV[2])
return {ids[1], redis.call('HINCRBY', ARGV[1] .. ids[1], 'e', 1)}
"#;

/// Moves a silent replica's unfinished tasks to the caller, once: the replica's heartbeat is gone.
/// Each task's epoch rises, so the silent replica, should it wake, can no longer write it. Returns
/// `{id, epoch, id, epoch, …}`.
const CLAIM_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local ids = redis.call('SMEMBERS', KEYS[2])
local out = {}
for _, id in ipairs(ids) do
  redis.call('SADD', KEYS[4], id)
  table.insert(out, id)
  redis.call('HSET', ARGV[2] .. id, 'r', ARGV[3])
  table.insert(out, redis.call('HINCRBY', ARGV[2] .. id, 'e', 1))
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return out
"#;

/// Takes expired records' ids out of their owner's index and the list of every task (a TTL drops
/// the record, not the index entries): up to ARGV[2] entries of `expiring` that are due. KEYS:
/// expiring, every task. ARGV: key prefix, limit. Returns how many entries were due.
const SWEEP_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local owner, id = string.match(m, '^(.*)\n([^\n]*)$')
  if id and redis.call('EXISTS', ARGV[1] .. 't:' .. id) == 0 then
    redis.call('ZREM', ARGV[1] .. 'o:' .. owner, id)
    redis.call('ZREM', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
"#;

/// Finished tasks by when their record expires (`"<owner>\n<id>"`), for `SWEEP_SCRIPT`.
pub const EXPIRING: &str = "g2a:expiring";

/// One replica holds a role (`lead:<role>`) until it stops renewing it.
const LEAD_SCRIPT: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Takes a task in for this replica whatever its state (an operator re-delivers the callback of a
/// task another replica ran): the epoch rises and the task joins this replica's running set.
const TAKE_SCRIPT: &str = r#"
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'r', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'e', 1)
"#;

/// One record write, if the writer still holds the task: the epoch in `f:<id>` must be the writer's
/// (0 = never claimed: the replica that created it), or the writer must be the replica that claimed it
/// last. A finished record expires after the TTL, and
/// `expiring` says when, so `SWEEP_SCRIPT` can take its id out of the indexes then. KEYS: record,
/// epoch, unfinished set, shared queue, running set, owner index, every task, expiring. ARGV: epoch,
/// record, terminal, pending, owed, TTL (ms), id, created (ms), owner. Returns 1 when written, 0 when
/// refused.
pub const PUT_SCRIPT: &str = r#"
local holder = redis.call('HGET', KEYS[2], 'r')
if tonumber(redis.call('HGET', KEYS[2], 'e') or '0') ~= tonumber(ARGV[1]) and holder ~= ARGV[10] then return 0 end
local id = ARGV[7]
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[6])
  redis.call('ZREM', KEYS[3], id)
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[8], now + tonumber(ARGV[6]), ARGV[9] .. '\n' .. id)
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[3], '+inf', id)
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[4], ARGV[8], id)
else
  redis.call('ZREM', KEYS[4], id)
  if ARGV[3] == '1' and ARGV[5] == '0' then
    redis.call('SREM', KEYS[5], id)
  else
    redis.call('SADD', KEYS[5], id)
  end
end
redis.call('ZADD', KEYS[6], ARGV[8], id)
redis.call('ZADD', KEYS[7], ARGV[8], id)
return 1
"#;

pub struct RedisStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// This process: a fresh id per start, so a restarted replica's old tasks are claimed like any
    /// dead replica's.
    pub replica: String,
    /// How long a replica may stay silent before its tasks are claimed.
    pub lease: Duration,
    /// How long a finished task's record lives (`tasks.ttl_secs`).
    pub task_ttl: Duration,
    /// The epoch this replica holds for each task it claimed (a task it only created holds 0), until
    /// its store lets the task go.
    fences: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Tasks whose record write was refused: another replica took them over.
    lost: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn err(e: redis::RedisError) -> String {
    format!("redis: {e}")
}

impl RedisStore {
    /// Parses the URL (`redis://`, `rediss://` for TLS; auth in the URL); connects on first use.
    pub fn open(url: &str, lease: Duration, task_ttl: Duration) -> Result<Self, String> {
        crate::install_crypto_provider();
        let client = redis::Client::open(url).map_err(|e| format!("store.url: {e}"))?;
        let replica = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Ok(Self {
            client,
            conn: OnceCell::new(),
            replica,
            lease,
            task_ttl,
            fences: Default::default(),
            lost: Default::default(),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection (it reconnects by itself after a failure).
    async fn conn(&self) -> Result<ConnectionManager, String> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        self.conn
            .get_or_try_init(|| async {
                ConnectionManager::new_with_config(self.client.clone(), cfg).await.map_err(err)
            })
            .await
            .cloned()
    }

    pub async fn ping(&self) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await.map(|_| ()).map_err(err)
    }

    pub async fn load(&self, id: &str) -> Result<Option<TaskRecord>, String> {
        let mut c = self.conn().await?;
        let raw: Option<Vec<u8>> = c.get(task_key(id)).await.map_err(err)?;
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The task a record holds (its job left out), or `None` when there is no record.
    pub async fn task(&self, id: &str) -> Result<Option<crate::tasks::Task>, String> {
        match self.load(id).await? {
            Some(record) => record.into_task().map(|(t, _)| Some(t)).map_err(|e| format!("task {id}: {e}")),
            None => Ok(None),
        }
    }

    /// `owner`'s records, newest first (oldest first when asked), starting after `after`, for as long as
    /// `keep` wants more. Index entries whose record is gone (expired, deleted) are dropped on the way.
    pub async fn list(
        &self,
        owner: &KeyId,
        oldest_first: bool,
        after: Option<&str>,
        keep: impl FnMut(TaskRecord) -> bool,
    ) -> Result<(), String> {
        self.walk(&owner_key(&owner.0), oldest_first, after, keep).await
    }

    /// `list` over every owner's tasks, newest first (the console).
    pub async fn list_all(&self, after: Option<&str>, keep: impl FnMut(TaskRecord) -> bool) -> Result<(), String> {
        self.walk(ALL_TASKS, false, after, keep).await
    }

    async fn walk(
        &self,
        index: &str,
        oldest_first: bool,
        after: Option<&str>,
        mut keep: impl FnMut(TaskRecord) -> bool,
    ) -> Result<(), String> {
        let mut c = self.conn().await?;
        let index = index.to_owned();
        let ids: Vec<String> = if oldest_first {
            c.zrange(&index, 0, -1).await.map_err(err)?
        } else {
            c.zrevrange(&index, 0, -1).await.map_err(err)?
        };
        // An unknown or empty cursor starts from the top, as the in-process store does.
        let start = after.and_then(|a| ids.iter().position(|i| i == a)).map_or(0, |p| p + 1);
        for chunk in ids[start..].chunks(100) {
            let keys: Vec<String> = chunk.iter().map(|i| task_key(i)).collect();
            let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await.map_err(err)?;
            for (id, raw) in chunk.iter().zip(raws) {
                match raw.and_then(|b| serde_json::from_slice::<TaskRecord>(&b).ok()) {
                    Some(r) => {
                        if !keep(r) {
                            return Ok(());
                        }
                    }
                    None => {
                        let _: Result<(), _> = c.zrem(&index, id).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets a finished task everywhere.
    pub async fn delete(&self, id: &str, owner: &KeyId) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::pipe()
            .del(task_key(id))
            .ignore()
            .del(fence_key(id))
            .ignore()
            .zrem(owner_key(&owner.0), id)
            .ignore()
            .zrem(ALL_TASKS, id)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(err)
    }

    /// One request from `key`'s bucket: `Ok(Ok(()))`, or `Ok(Err(seconds to wait))`.
    pub async fn rate(&self, key: &KeyId, rate: f64, burst: f64) -> Result<Result<(), u64>, String> {
        let mut c = self.conn().await?;
        let wait: u64 = redis::Script::new(RATE_SCRIPT)
            .key(format!("{PREFIX}rl:{}", key.0))
            .arg(rate)
            .arg(burst)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(if wait == 0 { Ok(()) } else { Err(wait) })
    }

    /// Reserves one of `owner`'s `max` unfinished-task slots, atomically across replicas: the
    /// reservation's name, or `None` when all are taken. It lapses by itself after 30 s.
    pub async fn reserve_slot(&self, owner: &KeyId, max: usize) -> Result<Option<String>, String> {
        let mut c = self.conn().await?;
        let hold = format!("hold:{}", uuid::Uuid::new_v4().simple());
        let won: bool = redis::Script::new(RESERVE_SCRIPT)
            .key(active_key(&owner.0))
            .arg(max)
            .arg(&hold)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(won.then_some(hold))
    }

    /// Gives a reservation back (the task it was for now counts by itself).
    pub async fn release_slot(&self, owner: &KeyId, hold: &str) -> Result<(), String> {
        let mut c = self.conn().await?;
        c.zrem(active_key(&owner.0), hold).await.map_err(err)
    }

    fn idem_key(owner: &KeyId, key: &str) -> String {
        use sha2::Digest;
        format!("{PREFIX}i:{}:{}", owner.0, hex::encode(sha2::Sha256::digest(key.as_bytes())))
    }

    fn read_claim(raw: Option<String>, body: &[u8; 32]) -> Claim {
        match raw.as_deref().and_then(|v| v.split_once(' ')) {
            Some((hash, task)) if hash == hex::encode(body) => Claim::Existing(Arc::from(task)),
            Some(_) => Claim::Conflict,
            None => Claim::New,
        }
    }

    pub async fn idem_check(&self, owner: &KeyId, key: &str, body: &[u8; 32]) -> Result<Claim, String> {
        let mut c = self.conn().await?;
        let raw: Option<String> = c.get(Self::idem_key(owner, key)).await.map_err(err)?;
        Ok(Self::read_claim(raw, body))
    }

    /// Binds the key to `task` unless another request (on any replica) did first.
    pub async fn idem_bind(&self, owner: &KeyId, key: &str, body: [u8; 32], task: &str) -> Result<Claim, String> {
        let mut c = self.conn().await?;
        let k = Self::idem_key(owner, key);
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(format!("{} {task}", hex::encode(body)))
            .arg("NX")
            .arg("PX")
            .arg(WINDOW.as_millis() as u64)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        if set.is_some() {
            return Ok(Claim::New);
        }
        let raw: Option<String> = c.get(&k).await.map_err(err)?;
        Ok(Self::read_claim(raw, &body))
    }

    /// Says this replica is alive (for `lease`).
    pub async fn heartbeat(&self) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::pipe()
            .cmd("SET")
            .arg(alive_key(&self.replica))
            .arg(1)
            .arg("PX")
            .arg(self.lease.as_millis() as u64)
            .ignore()
            .sadd(REPLICAS, &self.replica)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(err)
    }

    /// Takes over the unfinished tasks of every replica whose heartbeat stopped; returns their records.
    pub async fn claim_orphans(&self) -> Result<Vec<TaskRecord>, String> {
        let mut c = self.conn().await?;
        let replicas: Vec<String> = c.smembers(REPLICAS).await.map_err(err)?;
        let mut records = Vec::new();
        for dead in replicas.into_iter().filter(|r| *r != self.replica) {
            let claimed: Vec<(String, u64)> = redis::Script::new(CLAIM_SCRIPT)
                .key(alive_key(&dead))
                .key(running_key(&dead))
                .key(REPLICAS)
                .key(running_key(&self.replica))
                .arg(&dead)
                .arg(fence_key(""))
                .arg(&self.replica)
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            if !claimed.is_empty() {
                tracing::warn!(replica = %dead, tasks = claimed.len(), "a replica stopped; its unfinished tasks are taken over");
            }
            for (id, epoch) in claimed {
                self.hold(&id, epoch);
                if let Some(r) = self.load(&id).await? {
                    records.push(r);
                }
            }
        }
        Ok(records)
    }

    /// Tells the other replicas what an upstream answer did to a token, and keeps rests for late joiners.
    pub async fn publish_token(&self, event: TokenEvent) -> Result<(), String> {
        use TokenEvent;
        let field = match &event {
            TokenEvent::Product { token, product, .. } => Some(format!("{token}:{product}")),
            TokenEvent::Cooling { token, .. } => Some(format!("{token}:cooling")),
            TokenEvent::Plan { token, .. } => Some(format!("{token}:plan")),
            // Not kept: a token brought back by an operator must not stay dead for new replicas.
            TokenEvent::Expired { .. } | TokenEvent::Flagged { .. } => None,
        };
        let news =
            serde_json::to_string(&TokenNews { replica: self.replica.clone(), event }).map_err(|e| e.to_string())?;
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.publish(TOKENS_CHANNEL, &news).ignore();
        if let Some(field) = field {
            pipe.hset(TOKEN_STATE, field, &news).ignore();
        }
        pipe.query_async::<()>(&mut c).await.map_err(err)
    }

    /// Every token rest other replicas recorded.
    pub async fn token_states(&self) -> Result<Vec<TokenEvent>, String> {
        let mut c = self.conn().await?;
        let all: std::collections::HashMap<String, String> = c.hgetall(TOKEN_STATE).await.map_err(err)?;
        Ok(all.values().filter_map(|v| serde_json::from_str::<TokenNews>(v).ok()).map(|n| n.event).collect())
    }

    /// Adds usage counts (`"<YYYY-MM-DD>|<key id>"` → what to add) to the shared totals.
    pub async fn usage_add(&self, rows: &[(String, Totals)]) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        for (row, t) in rows {
            let k = format!("{PREFIX}u:{row}");
            for (field, n) in Totals::NAMES.into_iter().zip(t.values()) {
                if n > 0 {
                    pipe.hincr(&k, field, n).ignore();
                }
            }
            pipe.sadd(USAGE_INDEX, row).ignore();
        }
        pipe.query_async::<()>(&mut c).await.map_err(err)
    }

    /// Every usage row of every replica (`"<YYYY-MM-DD>|<key id>"`, totals).
    pub async fn usage_rows(&self) -> Result<Vec<(String, Totals)>, String> {
        let mut c = self.conn().await?;
        let rows: Vec<String> = c.smembers(USAGE_INDEX).await.map_err(err)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for row in &rows {
            pipe.hgetall(format!("{PREFIX}u:{row}"));
        }
        let all: Vec<std::collections::HashMap<String, u64>> = pipe.query_async(&mut c).await.map_err(err)?;
        Ok(rows
            .into_iter()
            .zip(all)
            .map(|(row, h)| {
                let t = Totals::from_values(Totals::NAMES.map(|f| h.get(f).copied().unwrap_or(0)));
                (row, t)
            })
            .collect())
    }

    /// A console key's record (its digest, never the key).
    pub async fn key_record(&self, id: &str) -> Result<Option<String>, String> {
        let mut c = self.conn().await?;
        c.hget(KEYS, id).await.map_err(err)
    }

    pub async fn key_records(&self) -> Result<Vec<String>, String> {
        let mut c = self.conn().await?;
        let all: std::collections::HashMap<String, String> = c.hgetall(KEYS).await.map_err(err)?;
        Ok(all.into_values().collect())
    }

    /// Stores a key's record and tells the other replicas to read it again.
    pub async fn put_key_record(&self, id: &str, json: &str) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::pipe()
            .hset(KEYS, id, json)
            .ignore()
            .publish(KEYS_CHANNEL, id)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(err)
    }

    /// Claims task `id` to run it here: true once, for one replica (the others then skip it).
    pub async fn claim_task(&self, id: &str) -> Result<bool, String> {
        let mut c = self.conn().await?;
        let (won, epoch): (u8, u64) = redis::Script::new(CLAIM_TASK_SCRIPT)
            .key(UNCLAIMED)
            .key(running_key(&self.replica))
            .key(fence_key(id))
            .arg(id)
            .arg(&self.replica)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        if won == 0 {
            return Ok(false);
        }
        self.hold(id, epoch);
        self.announce_claim(&mut c, id).await;
        Ok(true)
    }

    /// Takes task `id` in for this replica, whichever replica held it (see `TAKE_SCRIPT`).
    pub async fn take_over(&self, id: &str) -> Result<(), String> {
        let mut c = self.conn().await?;
        let epoch: u64 = redis::Script::new(TAKE_SCRIPT)
            .key(fence_key(id))
            .key(running_key(&self.replica))
            .arg(id)
            .arg(&self.replica)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        self.hold(id, epoch);
        Ok(())
    }

    fn hold(&self, id: &str, epoch: u64) {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.fences.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), epoch);
    }

    /// The epoch this replica writes task `id` with (0: it never claimed it).
    pub fn epoch(&self, id: &str) -> u64 {
        self.fences.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied().unwrap_or(0)
    }

    /// What became of a write of task `id`: refused (`written` false: another replica holds it now,
    /// and this one's epoch is of no more use). A written task keeps its epoch while this replica
    /// holds it (a console re-delivery writes it again); `forget` drops it with the task.
    pub fn settle(&self, id: &str, written: bool) {
        if !written {
            tracing::warn!(task = %id, "another replica took this task over (this one was silent past its lease): its writes here are refused");
            let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
            // Read (and removed) by `holds`; a bound in case nothing ever asks.
            if lost.len() >= 65_536 {
                lost.clear();
            }
            lost.insert(id.to_owned());
            drop(lost);
            self.forget(id);
        }
    }

    /// Drops the epoch of a task this replica no longer holds (removed from its store).
    pub fn forget(&self, id: &str) {
        self.fences.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Whether this replica still holds task `id`: none of its writes was refused, and no other
    /// replica has claimed it since (the epoch in the store is still the one this replica holds).
    /// A task this replica never claimed and never lost is its own. An unreachable store answers
    /// `Err`.
    pub async fn holds(&self, id: &str) -> Result<bool, String> {
        if self.lost.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            return Ok(false);
        }
        let Some(mine) = self.fences.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied() else {
            return Ok(true);
        };
        let mut c = self.conn().await?;
        let now: Option<u64> = c.hget(fence_key(id), "e").await.map_err(err)?;
        Ok(now.unwrap_or(0) == mine)
    }

    /// Tells the other replicas this one claimed `id`, so the one that accepted it drops its queued
    /// copy. Best effort: that copy's own claim fails anyway.
    async fn announce_claim(&self, c: &mut ConnectionManager, id: &str) {
        let _: Result<(), _> = c.publish(CLAIMED_CHANNEL, format!("{} {id}", self.replica)).await;
    }

    /// Claims the oldest task waiting in the shared queue, for a worker with nothing to do.
    pub async fn steal(&self) -> Result<Option<TaskRecord>, String> {
        let mut c = self.conn().await?;
        let won: Option<(String, u64)> = redis::Script::new(STEAL_SCRIPT)
            .key(UNCLAIMED)
            .key(running_key(&self.replica))
            .arg(fence_key(""))
            .arg(&self.replica)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        let Some((id, epoch)) = won else { return Ok(None) };
        self.hold(&id, epoch);
        self.announce_claim(&mut c, &id).await;
        self.load(&id).await
    }

    pub async fn publish_in_flight(&self, counts: std::collections::HashMap<String, u32>) -> Result<(), String> {
        let msg =
            serde_json::to_string(&InFlight { replica: self.replica.clone(), counts }).map_err(|e| e.to_string())?;
        let mut c = self.conn().await?;
        c.publish::<_, _, ()>(INFLIGHT_CHANNEL, msg).await.map_err(err)
    }

    /// Asks whichever replica runs `id` to cancel it, saying why (`"<id>\n<why>"` on the channel).
    pub async fn publish_cancel(&self, id: &str, why: &str) -> Result<(), String> {
        let mut c = self.conn().await?;
        c.publish::<_, _, ()>(CANCEL_CHANNEL, format!("{id}\n{why}")).await.map_err(err)
    }

    /// Takes the ids of records that expired out of the indexes (see `SWEEP_SCRIPT`); returns how
    /// many were due.
    pub async fn sweep(&self) -> Result<usize, String> {
        const LIMIT: usize = 1000;
        let mut c = self.conn().await?;
        let mut swept = 0;
        // A few batches at most per call: a backlog is worked off over the next calls.
        for _ in 0..10 {
            let due: usize = redis::Script::new(SWEEP_SCRIPT)
                .key(EXPIRING)
                .key(ALL_TASKS)
                .arg(PREFIX)
                .arg(LIMIT)
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            swept += due;
            if due < LIMIT {
                break;
            }
        }
        Ok(swept)
    }

    /// Whether this replica holds `role` for the next `lasts` (see `LEAD_SCRIPT`).
    pub async fn lead(&self, role: &str, lasts: Duration) -> Result<bool, String> {
        let mut c = self.conn().await?;
        redis::Script::new(LEAD_SCRIPT)
            .key(format!("{PREFIX}lead:{role}"))
            .arg(&self.replica)
            .arg(lasts.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await
            .map_err(err)
    }

    /// Says what this replica is up to.
    pub async fn report(&self, report: &crate::shared::report::ReplicaReport) -> Result<(), String> {
        let json = serde_json::to_string(report).map_err(|e| e.to_string())?;
        let mut c = self.conn().await?;
        c.hset(REPORTS, &self.replica, json).await.map_err(err)
    }

    /// Every live replica's latest report, this one's included; stale ones are dropped on the way.
    pub async fn reports(&self) -> Result<Vec<crate::shared::report::ReplicaReport>, String> {
        use crate::shared::report::{LASTS, ReplicaReport};
        let mut c = self.conn().await?;
        let all: std::collections::HashMap<String, String> = c.hgetall(REPORTS).await.map_err(err)?;
        let since = crate::clock::now_ms().saturating_sub(LASTS.as_millis() as u64);
        let mut live = Vec::new();
        for (replica, json) in all {
            match serde_json::from_str::<ReplicaReport>(&json) {
                Ok(r) if r.figures.at >= since => live.push(r),
                _ => {
                    let _: Result<(), _> = c.hdel(REPORTS, &replica).await;
                }
            }
        }
        live.sort_by(|a, b| a.replica.cmp(&b.replica));
        Ok(live)
    }

    /// Every console-made token the book keeps.
    pub async fn token_book(&self) -> Result<Vec<ExportedToken>, String> {
        let mut c = self.conn().await?;
        let all: std::collections::HashMap<String, String> = c.hgetall(TOKEN_BOOK).await.map_err(err)?;
        Ok(all.values().filter_map(|v| serde_json::from_str(v).ok()).collect())
    }

    /// Keeps console-made tokens in the book and tells the other replicas (one message for a batch).
    pub async fn put_tokens(&self, tokens: Vec<ExportedToken>) -> Result<(), String> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for t in &tokens {
            let id = crate::upstream::tokens::token_id(&t.token);
            pipe.hset(TOKEN_BOOK, id, serde_json::to_string(t).map_err(|e| e.to_string())?).ignore();
        }
        let news = BookNews { replica: self.replica.clone(), put: tokens, removed: Vec::new() };
        pipe.publish(BOOK_CHANNEL, serde_json::to_string(&news).map_err(|e| e.to_string())?).ignore();
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await.map_err(err)
    }

    /// Takes tokens out of the book and tells the other replicas to take them out of their pools.
    pub async fn remove_tokens(&self, ids: Vec<String>) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.hdel(TOKEN_BOOK, &ids).ignore();
        let news = BookNews { replica: self.replica.clone(), put: Vec::new(), removed: ids };
        pipe.publish(BOOK_CHANNEL, serde_json::to_string(&news).map_err(|e| e.to_string())?).ignore();
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await.map_err(err)
    }

    /// Other replicas' news until `stop`, subscribing again a second after a lost connection.
    pub async fn listen(&self, stop: CancellationToken, mut on: impl FnMut(News)) {
        use futures_util::StreamExt;
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    let channels =
                        [CANCEL_CHANNEL, TOKENS_CHANNEL, KEYS_CHANNEL, CLAIMED_CHANNEL, INFLIGHT_CHANNEL, BOOK_CHANNEL];
                    if let Err(e) = pubsub.subscribe(&channels).await {
                        tracing::warn!("cannot subscribe to other replicas' news: {e}");
                    } else {
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                msg = messages.next() => match msg {
                                    Some(m) => if let Some(news) = self.news(&m) { on(news) },
                                    None => break,
                                },
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot listen for other replicas' news: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One message of another replica, read; this replica's own words and unreadable ones are `None`.
    fn news(&self, m: &redis::Msg) -> Option<News> {
        let payload = m.get_payload::<String>().ok()?;
        match m.get_channel_name() {
            KEYS_CHANNEL => Some(News::KeyChanged(payload)),
            INFLIGHT_CHANNEL => {
                let n = serde_json::from_str::<InFlight>(&payload).ok()?;
                (n.replica != self.replica).then_some(News::InFlight { replica: n.replica, counts: n.counts })
            }
            CLAIMED_CHANNEL => {
                let (replica, id) = payload.split_once(' ')?;
                (replica != self.replica).then(|| News::Claimed(id.to_owned()))
            }
            BOOK_CHANNEL => {
                let n = serde_json::from_str::<BookNews>(&payload).ok()?;
                (n.replica != self.replica).then_some(News::Book { put: n.put, removed: n.removed })
            }
            CANCEL_CHANNEL => {
                let (id, why) = payload.split_once('\n').unwrap_or((payload.as_str(), "cancelled by the client"));
                Some(News::Cancel { id: id.to_owned(), why: why.to_owned() })
            }
            _ => match serde_json::from_str::<TokenNews>(&payload) {
                Ok(n) if n.replica != self.replica => Some(News::Token(n.event)),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!("unreadable token news: {e}");
                    None
                }
            },
        }
    }
}
