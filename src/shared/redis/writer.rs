//! The task journal's Redis writer: the same operations as the embedded journal's (a create awaited,
//! later changes written behind, in batches), applied as one pipeline per batch, plus the indexes the
//! other replicas read: the owner's list, the owner's unfinished set, and this replica's running set.

use std::sync::mpsc;

use crate::shared::redis::{ALL_TASKS, RedisStore, UNCLAIMED, active_key, owner_key, running_key, task_key};
use crate::tasks::journal::{Batching, Health, Op};

const BATCH: usize = 1024;

/// Runs on the journal's own thread (see `Journal::spawn`) with a small runtime of its own. What a
/// failed pipeline carried is dropped, not kept (see `Batching::keep_failed`).
pub fn run(shared: &RedisStore, rx: mpsc::Receiver<Op>, health: &Health) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the redis journal writer: {e}");
            return;
        }
    };
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let batching = Batching { max: BATCH, keep_failed: false };
    crate::tasks::journal::write_batches(rx, batching, health, |ops| {
        let result = rt.block_on(async {
            if conn.is_none() {
                let c = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    shared.client().get_multiplexed_async_connection(),
                )
                .await
                .map_err(|_| "redis: connect timed out".to_string())?
                .map_err(|e| format!("redis: {e}"))?;
                conn = Some(c);
            }
            let Some(c) = conn.as_mut() else { return Err("redis: no connection".to_string()) };
            let mut pipe = redis::pipe();
            let running = running_key(&shared.replica);
            let ttl = shared.task_ttl.as_millis().max(1000) as u64;
            for op in ops {
                match op {
                    Op::Put(id, bytes, meta, _) => {
                        let t = task_key(id);
                        if meta.terminal {
                            pipe.cmd("SET").arg(&t).arg(bytes.as_slice()).arg("PX").arg(ttl).ignore();
                            pipe.zrem(active_key(&meta.owner), id).ignore();
                        } else {
                            pipe.set(&t, bytes.as_slice()).ignore();
                            pipe.zadd(active_key(&meta.owner), id, "+inf").ignore();
                        }
                        // A task not started yet waits in the shared queue for whichever replica claims
                        // it (`Shared::claim`). One started, or finished with a callback owed, is in its
                        // runner's set, so a replica that takes over also delivers what it still owed.
                        if meta.pending {
                            pipe.zadd(UNCLAIMED, id, meta.created_ms).ignore();
                        } else {
                            pipe.zrem(UNCLAIMED, id).ignore();
                            if meta.terminal && !meta.owed {
                                pipe.srem(&running, id).ignore();
                            } else {
                                pipe.sadd(&running, id).ignore();
                            }
                        }
                        pipe.zadd(owner_key(&meta.owner), id, meta.created_ms).ignore();
                        pipe.zadd(ALL_TASKS, id, meta.created_ms).ignore();
                    }
                    Op::Remove(id, _) => {
                        pipe.del(task_key(id)).ignore();
                        pipe.zrem(ALL_TASKS, id).ignore();
                        pipe.zrem(UNCLAIMED, id).ignore();
                        pipe.srem(&running, id).ignore();
                    }
                    Op::Synced(_) => {}
                }
            }
            if pipe.is_empty() {
                return Ok(()); // only `Synced`: nothing to send
            }
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), pipe.query_async::<()>(c)).await;
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("redis: {e}")),
                Err(_) => Err("redis: write timed out".to_string()),
            }
        });
        if result.is_err() {
            conn = None; // connect again for the next batch
        }
        result
    });
}
