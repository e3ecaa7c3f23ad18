//! The in-memory backend: a sorted map behind a lock, gone when the process ends. For tests
//! and throwaway runs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, BackendError, KeyPage, PAGE_KEYS, next_count};

/// Keys and values in this process's memory.
#[derive(Debug, Default)]
pub struct Memory {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

#[async_trait::async_trait]
impl Backend for Memory {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.map
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.map.lock().unwrap().remove(key);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        Ok(self.map.lock().unwrap().contains_key(key))
    }

    async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, BackendError> {
        // The cursor is a position in key order: keys added behind it are seen, keys
        // removed before it shift what follows, as a store's listing may.
        let start = cursor.unwrap_or(0) as usize;
        let map = self.map.lock().unwrap();
        let keys: Vec<String> = map.keys().skip(start).take(PAGE_KEYS).cloned().collect();
        let next = start + keys.len();
        let cursor = (next < map.len()).then_some(next as u64);
        Ok(KeyPage { keys, cursor })
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64, BackendError> {
        let mut map = self.map.lock().unwrap();
        let next = next_count(map.get(key).map(Vec::as_slice), delta)?;
        map.insert(key.to_string(), next.to_string().into_bytes());
        Ok(next)
    }

    async fn swap_if(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, BackendError> {
        let mut map = self.map.lock().unwrap();
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        map.insert(key.to_string(), value.to_vec());
        Ok(true)
    }
}
