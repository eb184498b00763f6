//! Per-key exponential backoff with upstream `flowcontrol.Backoff` semantics: the delay starts at
//! `initial`, doubles up to `max`, and an entry idle for more than 2×`max` starts over (so a
//! container that ran for 10 minutes is restarted right away again).

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Duration,
}

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, entries: HashMap::new() }
    }

    /// Container restarts: 10 s doubling to 5 min.
    pub fn crash_loop() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300))
    }

    fn expired(&self, e: &Entry, event_time: Duration) -> bool {
        event_time.saturating_sub(e.last_update) > self.max * 2
    }

    /// Records one more failure at `now` (upstream `Next(id, eventTime)`).
    pub fn next(&mut self, key: &str, event_time: Duration, now: Duration) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, event_time) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(key.to_string(), Entry { backoff, last_update: now });
    }

    /// When the key is still backing off for an event at `event_time`, how long is left
    /// (upstream `IsInBackOffSince`).
    pub fn remaining_since(&self, key: &str, event_time: Duration, now: Duration) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(e, event_time) {
            return None;
        }
        let elapsed = now.saturating_sub(event_time);
        (elapsed < e.backoff).then(|| e.backoff - elapsed)
    }

    /// How long is left of the delay that started at the key's last failure (upstream
    /// `IsInBackOffSinceUpdate`).
    pub fn remaining_since_update(&self, key: &str, now: Duration) -> Option<Duration> {
        let e = self.entries.get(key)?;
        let elapsed = now.saturating_sub(e.last_update);
        (elapsed < e.backoff).then(|| e.backoff - elapsed)
    }

    /// The current delay of a key (for messages).
    pub fn get(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Drops keys whose prefix matches (a pod's keys when it goes away).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }

    /// Drops entries idle for more than 2×max (upstream `GC`).
    pub fn gc(&mut self, now: Duration) {
        let horizon = self.max * 2;
        self.entries.retain(|_, e| now.saturating_sub(e.last_update) <= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_up_to_max_and_resets_after_idle() {
        let mut b = Backoff::crash_loop();
        let mut t = S(1000);
        let mut seen = vec![];
        for _ in 0..7 {
            b.next("k", t, t);
            seen.push(b.get("k").unwrap_or_default().as_secs());
            t += S(1);
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300]);
        // 10 minutes and a bit without a failure: starts over.
        let later = t + S(601);
        b.next("k", later, later);
        assert_eq!(b.get("k"), Some(S(10)));
    }

    #[test]
    fn in_backoff_until_delay_after_event() {
        let mut b = Backoff::crash_loop();
        assert_eq!(b.remaining_since("k", S(100), S(100)), None, "no entry: not backing off");
        b.next("k", S(100), S(100));
        assert_eq!(b.remaining_since("k", S(105), S(106)), Some(S(9)));
        assert_eq!(b.remaining_since("k", S(105), S(115)), None);
    }

    #[test]
    fn gc_and_forget() {
        let mut b = Backoff::crash_loop();
        b.next("pod1_a", S(0), S(0));
        b.next("pod2_a", S(0), S(700));
        b.gc(S(700));
        assert!(b.get("pod1_a").is_none());
        b.forget_prefix("pod2");
        assert!(b.get("pod2_a").is_none());
    }
}
