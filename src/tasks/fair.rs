//! The places of accepted tasks waiting for a worker, shared fairly between API keys: each key has a
//! lane of its own, workers take from the lanes in turn, and one key holds at most `per_key` of the
//! `capacity` places. A key that fills its share is refused (429) while the others still get in, and
//! their tasks run next rather than after the whole backlog of the first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::owner::KeyId;

pub struct FairQueue<T> {
    lanes: Mutex<Lanes<T>>,
    ready: Notify,
    capacity: usize,
    per_key: usize,
}

struct Lanes<T> {
    queued: HashMap<KeyId, VecDeque<T>>,
    /// Keys with something queued, in the order they are served.
    turn: VecDeque<KeyId>,
    /// Places taken (queued, or reserved by a create in progress), in all and per key.
    taken: usize,
    taken_by: HashMap<KeyId, usize>,
}

/// Why a place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every place is taken.
    Queue,
    /// This key holds its whole share.
    Key,
}

impl<T> FairQueue<T> {
    /// `per_key` = 0: half the places.
    pub fn new(capacity: usize, per_key: usize) -> Self {
        let capacity = capacity.max(1);
        let per_key = if per_key == 0 { capacity.div_ceil(2) } else { per_key.min(capacity) };
        Self {
            lanes: Mutex::new(Lanes {
                queued: HashMap::new(),
                turn: VecDeque::new(),
                taken: 0,
                taken_by: HashMap::new(),
            }),
            ready: Notify::new(),
            capacity,
            per_key,
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes<T>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one of `key`'s tasks, or why there is none.
    pub fn reserve(self: &Arc<Self>, key: &KeyId) -> Result<Place<T>, Full> {
        let mut lanes = self.lanes();
        if lanes.taken >= self.capacity {
            return Err(Full::Queue);
        }
        let mine = lanes.taken_by.entry(key.clone()).or_default();
        if *mine >= self.per_key {
            return Err(Full::Key);
        }
        *mine += 1;
        lanes.taken += 1;
        Ok(Place { queue: self.clone(), key: Some(key.clone()) })
    }

    /// Queues a task accepted before a restart: it had its place then, so it gets one now even past
    /// the capacity.
    pub fn push_recovered(&self, key: KeyId, item: T) {
        let mut lanes = self.lanes();
        lanes.taken += 1;
        *lanes.taken_by.entry(key.clone()).or_default() += 1;
        lanes.enqueue(key, item);
        drop(lanes);
        self.ready.notify_one();
    }

    /// The next task, from the next key in turn; waits while there is none.
    pub async fn pop(&self) -> T {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push between the look and the wait is not missed.
            notified.as_mut().enable();
            if let Some(item) = self.lanes().dequeue() {
                return item;
            }
            notified.await;
        }
    }

    /// Places taken.
    pub fn len(&self) -> usize {
        self.lanes().taken
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn release(&self, key: &KeyId) {
        self.lanes().release(key);
    }
}

impl<T> Lanes<T> {
    fn enqueue(&mut self, key: KeyId, item: T) {
        let lane = self.queued.entry(key.clone()).or_default();
        if lane.is_empty() {
            self.turn.push_back(key);
        }
        lane.push_back(item);
    }

    fn dequeue(&mut self) -> Option<T> {
        let key = self.turn.pop_front()?;
        let lane = self.queued.get_mut(&key)?;
        let item = lane.pop_front()?;
        if lane.is_empty() {
            self.queued.remove(&key);
        } else {
            self.turn.push_back(key.clone());
        }
        self.release(&key);
        Some(item)
    }

    fn release(&mut self, key: &KeyId) {
        self.taken = self.taken.saturating_sub(1);
        if let Some(n) = self.taken_by.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.taken_by.remove(key);
            }
        }
    }
}

/// A place reserved for one task; given back unless the task is sent into it.
pub struct Place<T> {
    queue: Arc<FairQueue<T>>,
    key: Option<KeyId>,
}

impl<T> Place<T> {
    pub fn send(mut self, item: T) {
        if let Some(key) = self.key.take() {
            self.queue.lanes().enqueue(key, item);
            self.queue.ready.notify_one();
        }
    }
}

impl<T> Drop for Place<T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.queue.release(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> KeyId {
        KeyId(Arc::from(s))
    }

    #[tokio::test]
    async fn keys_take_turns_and_one_cannot_take_every_place() {
        let q = Arc::new(FairQueue::new(6, 0));
        for i in 0..3 {
            q.reserve(&key("a")).unwrap().send(format!("a{i}"));
        }
        assert_eq!(q.reserve(&key("a")).err(), Some(Full::Key), "half the places at most");
        q.reserve(&key("b")).unwrap().send("b0".to_string());
        q.reserve(&key("b")).unwrap().send("b1".to_string());
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(q.pop().await);
        }
        assert_eq!(order, ["a0", "b0", "a1", "b1", "a2"]);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn an_unused_place_is_given_back_and_recovered_tasks_always_fit() {
        let q = Arc::new(FairQueue::new(2, 2));
        let p = q.reserve(&key("a")).unwrap();
        let _p2 = q.reserve(&key("b")).unwrap();
        assert_eq!(q.reserve(&key("c")).err(), Some(Full::Queue));
        drop(p);
        assert!(q.reserve(&key("c")).is_ok());
        q.push_recovered(key("d"), 7);
        assert_eq!(q.pop().await, 7);
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_for_a_new_task() {
        let q = Arc::new(FairQueue::new(4, 0));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.reserve(&key("a")).unwrap().send(1);
        assert_eq!(tokio::time::timeout(std::time::Duration::from_secs(2), waiter).await.unwrap().unwrap(), 1);
    }
}
