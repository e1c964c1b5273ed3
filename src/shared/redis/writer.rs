//! The task journal's Redis writer: the same operations as the embedded journal's (a create awaited,
//! later changes written behind, in batches), applied as one pipeline per batch, plus the indexes the
//! other replicas read: the owner's list, the owner's unfinished set, and this replica's running set.
//! Every record write is fenced (`PUT_SCRIPT`): one refused tells `RedisStore::settle`.

use std::sync::mpsc;

use crate::shared::redis::{
    ALL_TASKS, EXPIRING, PUT_SCRIPT, RedisStore, UNCLAIMED, active_key, fence_key, owner_key, running_key, task_key,
};
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
    let put = redis::Script::new(PUT_SCRIPT);
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
            // Loaded with every batch: a restarted Redis has forgotten it, and a pipeline does not retry.
            pipe.load_script(&put).ignore();
            // Each record write, in the pipeline's order.
            let mut puts: Vec<&str> = Vec::new();
            for op in ops {
                match op {
                    Op::Put(id, bytes, meta, _) => {
                        let flag = |b: bool| if b { "1" } else { "0" };
                        pipe.invoke_script(
                            put.key(task_key(id))
                                .key(fence_key(id))
                                .key(active_key(&meta.owner))
                                .key(UNCLAIMED)
                                .key(&running)
                                .key(owner_key(&meta.owner))
                                .key(ALL_TASKS)
                                .key(EXPIRING)
                                .arg(shared.epoch(id))
                                .arg(bytes.as_slice())
                                .arg(flag(meta.terminal))
                                .arg(flag(meta.pending))
                                .arg(flag(meta.owed))
                                .arg(ttl)
                                .arg(id.as_str())
                                .arg(meta.created_ms)
                                .arg(meta.owner.as_str())
                                .arg(shared.replica.as_str()),
                        );
                        puts.push(id);
                    }
                    Op::Remove(id, _) => {
                        shared.forget(id);
                        pipe.del(task_key(id)).ignore();
                        pipe.del(fence_key(id)).ignore();
                        pipe.zrem(ALL_TASKS, id).ignore();
                        pipe.zrem(UNCLAIMED, id).ignore();
                        pipe.srem(&running, id).ignore();
                    }
                    Op::Synced(_) => {}
                }
            }
            if puts.is_empty() && !ops.iter().any(|op| matches!(op, Op::Remove(..))) {
                return Ok(()); // only `Synced`: nothing to send
            }
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), pipe.query_async::<Vec<i64>>(c)).await;
            match r {
                Ok(Ok(written)) => {
                    for (id, written) in puts.into_iter().zip(written) {
                        shared.settle(id, written == 1);
                    }
                    Ok(())
                }
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
