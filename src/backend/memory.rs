//! An in-memory store for unit tests, with fault injection: it can be told to fail on the Nth
//! mutating call, to prove that batches roll back.

use super::{Backend, BackendError, BackendKind, Entry, Item, matches_filter};
use crate::protocol::Attributes;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A `Backend` held in a map. Not for production use: secrets vanish with the process.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    items: Mutex<BTreeMap<(String, String), Item>>,
    mutations: AtomicUsize,
    fail_on: AtomicUsize,
}

impl MemoryStore {
    /// An empty store.
    pub(crate) fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes exactly the `n`th mutating call (set or delete) from now fail (1-based); the calls
    /// after it, restores included, succeed. `0` disables the fault.
    pub(crate) fn fail_on_mutation(&self, n: usize) {
        self.mutations.store(0, Ordering::SeqCst);
        self.fail_on.store(n, Ordering::SeqCst);
    }

    /// Every (service, target) → item, for assertions.
    pub(crate) fn snapshot(&self) -> BTreeMap<(String, String), Item> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Item>> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mutation(&self) -> Result<(), BackendError> {
        let n = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_on.load(Ordering::SeqCst) == n {
            return Err(BackendError::Unavailable(format!(
                "injected failure on mutation {n}"
            )));
        }
        Ok(())
    }
}

impl Backend for MemoryStore {
    fn kind(&self) -> BackendKind {
        BackendKind::File
    }

    fn describe(&self) -> String {
        "in-memory store".into()
    }

    fn get(&self, service: &str, target: &str) -> Result<Option<Item>, BackendError> {
        Ok(self
            .lock()
            .get(&(service.to_string(), target.to_string()))
            .cloned())
    }

    fn set(&self, service: &str, target: &str, item: &Item) -> Result<(), BackendError> {
        self.mutation()?;
        self.lock()
            .insert((service.to_string(), target.to_string()), item.clone());
        Ok(())
    }

    fn delete(&self, service: &str, target: &str) -> Result<bool, BackendError> {
        self.mutation()?;
        Ok(self
            .lock()
            .remove(&(service.to_string(), target.to_string()))
            .is_some())
    }

    fn services(&self) -> Result<Vec<String>, BackendError> {
        let mut s: Vec<String> = self.lock().keys().map(|(s, _)| s.clone()).collect();
        s.dedup();
        Ok(s)
    }

    fn list(
        &self,
        service: &str,
        prefix: &str,
        filter: &Attributes,
    ) -> Result<Vec<Entry>, BackendError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((s, t), item)| {
                s == service && t.starts_with(prefix) && matches_filter(&item.attributes, filter)
            })
            .map(|((_, t), item)| Entry {
                target: t.clone(),
                attributes: item.attributes.clone(),
            })
            .collect())
    }
}
