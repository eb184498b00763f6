//! Object storage: one map of all objects, ONE global resourceVersion counter (like etcd's
//! revision), and a bounded history of change events that watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::object::set_meta;

/// Where an object lives: storage name (see `Resource::storage`), namespace ("" for cluster
/// scope), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjKey {
    pub storage: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(storage: &'static str, namespace: &str, name: &str) -> Self {
        Self { storage, namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as the watch cache keeps it: the new object and the one it replaced, so that
/// selector transitions can be computed per watcher.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub key: ObjKey,
    pub kind: EventType,
    pub object: Value,
    pub prev: Option<Value>,
}

/// Why a watch cannot start at the resourceVersion it asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooOld {
    pub requested: u64,
    /// The oldest resourceVersion a watch may still start from (upstream's `oldest-1`).
    pub floor: u64,
}

pub(crate) struct Store {
    objects: BTreeMap<ObjKey, Value>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    floor: u64,
    limit: usize,
    notify: watch::Sender<u64>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Self {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            floor: 0,
            limit: history_limit.max(1),
            notify: watch::Sender::new(0),
        }
    }

    /// The current global resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Woken with the new resourceVersion after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn get(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one storage, in one namespace or (None) all, in key order.
    pub fn list<'a>(&'a self, storage: &'static str, namespace: Option<&'a str>) -> impl Iterator<Item = &'a Value> {
        self.objects
            .iter()
            .filter(move |(k, _)| k.storage == storage && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v)
    }

    /// Every key, for sweeps (garbage collection, namespace deletion).
    pub fn keys(&self) -> Vec<ObjKey> {
        self.objects.keys().cloned().collect()
    }

    /// Stores a new object or replaces one, stamping the next resourceVersion; returns the
    /// object as stored.
    pub fn put(&mut self, key: ObjKey, mut obj: Value) -> Value {
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", Some(json!(self.rv.to_string())));
        let prev = self.objects.insert(key.clone(), obj.clone());
        let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
        self.record(key, kind, obj.clone(), prev);
        obj
    }

    /// Removes an object; the DELETED event carries it with the deletion's resourceVersion.
    pub fn remove(&mut self, key: &ObjKey) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", Some(json!(self.rv.to_string())));
        self.record(key.clone(), EventType::Deleted, obj.clone(), None);
        Some(obj)
    }

    fn record(&mut self, key: ObjKey, kind: EventType, object: Value, prev: Option<Value>) {
        self.history.push_back(Arc::new(Event { rv: self.rv, key, kind, object, prev }));
        while self.history.len() > self.limit {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    /// Events after `rv`, or [`TooOld`] when the history no longer reaches back that far.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, TooOld> {
        if rv < self.floor {
            return Err(TooOld { requested: rv, floor: self.floor });
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.iter().skip(start).cloned().collect())
    }

    /// Forgets all history, like an etcd compaction: watches must start from now.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjKey {
        ObjKey::new("pods", "default", name)
    }

    #[test]
    fn one_counter_and_ordered_history() {
        let mut s = Store::new(3);
        let a = s.put(key("a"), json!({"metadata": {"name": "a"}}));
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        s.put(key("a"), json!({"metadata": {"name": "a"}, "x": 1}));
        let gone = s.remove(&key("a")).unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "3");
        assert!(s.get(&key("a")).is_none());
        let ev = s.events_since(1).unwrap();
        assert_eq!(ev.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventType::Modified, EventType::Deleted]);
        assert!(ev[0].prev.is_some());
        // A fourth event pushes the first out: watching from before it is too old.
        s.put(key("b"), json!({}));
        assert_eq!(s.events_since(0).err(), Some(TooOld { requested: 0, floor: 1 }));
        assert_eq!(s.events_since(1).unwrap().len(), 3);
        s.compact();
        assert!(s.events_since(3).is_err());
        assert!(s.events_since(4).unwrap().is_empty());
    }
}
