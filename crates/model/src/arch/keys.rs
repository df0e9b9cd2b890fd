//! config.json as a JSON object with typed getters: a key that is absent or `null` reads as
//! `None`, and one of the wrong type is an error naming it.

use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

pub struct ConfigKeys(Map<String, Value>);

impl ConfigKeys {
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text).map(Self)
    }

    /// Whether the key is there at all, `null` included.
    pub fn present(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn typed<'a, T>(&'a self, key: &str, what: &str, read: impl Fn(&'a Value) -> Option<T>) -> Result<Option<T>> {
        self.get(key)
            .map(|v| read(v).ok_or_else(|| ModelError::UnsupportedConfig(format!("{key} must be {what}, not {v}"))))
            .transpose()
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "true or false", Value::as_bool)
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number", Value::as_f64)
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a non-negative integer", |v| v.as_u64().and_then(|n| usize::try_from(n).ok()))
    }

    /// A list of strings; empty when absent.
    pub fn string_list(&self, key: &str) -> Result<Vec<String>> {
        Ok(self
            .typed(key, "a list of strings", |v| {
                v.as_array()?.iter().map(|s| s.as_str().map(str::to_string)).collect::<Option<Vec<_>>>()
            })?
            .unwrap_or_default())
    }

    /// Refuses a key whose value would change the math in a way armorm does not implement.
    pub fn refuse_if(&self, key: &str, refused: impl Fn(&Value) -> bool, why: &str) -> Result<()> {
        match self.get(key) {
            Some(v) if refused(v) => Err(ModelError::UnsupportedConfig(format!("{key} = {v}: {why}"))),
            _ => Ok(()),
        }
    }
}
