//! Where rule groups live: one rule file per tenant and namespace, in a local directory or in
//! the object store, and the alert state of each group beside the chunks.
//!
//! ```text
//! local:   {ruler.storage.local.directory}/{tenant}/{namespace}.yaml
//! object:  {tenant}/ruler/rules/{namespace}.yaml            (the object store of `storage:`)
//! state:   {tenant}/ruler/state/{namespace}/{group}.json    (always the object store)
//! ```
//!
//! Names are encoded into one path segment each ([`encode_name`]). Local files ending in `.yml`
//! are read too, and hidden entries (a ConfigMap mount's `..data`) are skipped, so a directory
//! of mounted ConfigMaps is a valid rules store.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use super::RulerError;
use super::rules::{RuleFile, RuleGroup, decode_name, encode_name, parse_file};
use crate::storage::{ObjectStore, StorageError};

/// How rule files are laid out in their store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `{tenant}/{namespace}.yaml` in a directory of its own.
    Local,
    /// `{tenant}/ruler/rules/{namespace}.yaml` in the shared object store.
    Object,
}

/// The rules of every tenant, and the alert state of their groups.
#[derive(Debug)]
pub struct RuleStore {
    rules: Arc<dyn ObjectStore>,
    layout: Layout,
    /// Alert state of the groups (`{tenant}/ruler/state/...`).
    state: Arc<dyn ObjectStore>,
    /// Serializes read-modify-write of rule files by the API of this process.
    writes: Mutex<()>,
}

/// A rule file that could not be read, reported instead of stopping the others.
#[derive(Debug, Clone)]
pub struct BadFile {
    pub key: String,
    pub error: String,
}

/// Every tenant's namespaces, as [`RuleStore::load_all`] found them.
pub type AllRules = BTreeMap<String, BTreeMap<String, RuleFile>>;

impl RuleStore {
    pub fn new(rules: Arc<dyn ObjectStore>, layout: Layout, state: Arc<dyn ObjectStore>) -> Self {
        Self { rules, layout, state, writes: Mutex::new(()) }
    }

    fn tenant_prefix(&self, tenant: &str) -> String {
        match self.layout {
            Layout::Local => format!("{tenant}/"),
            Layout::Object => format!("{tenant}/ruler/rules/"),
        }
    }

    fn namespace_key(&self, tenant: &str, namespace: &str) -> String {
        format!("{}{}.yaml", self.tenant_prefix(tenant), encode_name(namespace))
    }

    /// The namespace a key under the tenant prefix names, if it is a rule file.
    fn namespace_of(&self, tenant: &str, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&self.tenant_prefix(tenant))?;
        if rest.contains('/') || rest.starts_with('.') {
            return None;
        }
        let stem = rest.strip_suffix(".yaml").or_else(|| rest.strip_suffix(".yml"))?;
        decode_name(stem)
    }

    /// The tenants that have rule files.
    pub async fn tenants(&self) -> Result<Vec<String>, StorageError> {
        let prefixes = self.rules.list_prefixes("").await?;
        Ok(prefixes
            .into_iter()
            .filter_map(|p| p.strip_suffix('/').map(str::to_string))
            .filter(|t| !t.starts_with('.') && crate::validation::validate_tenant_id(t).is_ok())
            .collect())
    }

    /// The namespaces of `tenant`, and the files that could not be read.
    pub async fn namespaces(&self, tenant: &str) -> Result<(BTreeMap<String, RuleFile>, Vec<BadFile>), StorageError> {
        let mut out = BTreeMap::new();
        let mut bad = Vec::new();
        for meta in self.rules.list(&self.tenant_prefix(tenant)).await? {
            let Some(ns) = self.namespace_of(tenant, &meta.key) else { continue };
            let data = match self.rules.get(&meta.key).await {
                Ok(d) => d,
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match std::str::from_utf8(&data).map_err(|e| e.to_string()).and_then(|t| parse_file(t).map_err(|e| e.0)) {
                Ok(file) if !file.groups.is_empty() => {
                    out.insert(ns, file);
                }
                Ok(_) => {}
                Err(error) => bad.push(BadFile { key: meta.key.clone(), error }),
            }
        }
        Ok((out, bad))
    }

    /// Every tenant's rules; unreadable files are logged and left out.
    pub async fn load_all(&self) -> Result<AllRules, StorageError> {
        let mut all = BTreeMap::new();
        for tenant in self.tenants().await? {
            let (namespaces, bad) = self.namespaces(&tenant).await?;
            for b in bad {
                tracing::warn!(tenant = %tenant, key = %b.key, err = %b.error, "skipping invalid rule file");
            }
            if !namespaces.is_empty() {
                all.insert(tenant, namespaces);
            }
        }
        Ok(all)
    }

    async fn read_namespace(&self, tenant: &str, namespace: &str) -> Result<RuleFile, RulerError> {
        match self.rules.get(&self.namespace_key(tenant, namespace)).await {
            Ok(data) => {
                let text = String::from_utf8_lossy(&data);
                parse_file(&text).map_err(|e| RulerError::Storage(format!("stored rule file is invalid: {e}")))
            }
            Err(StorageError::NotFound { .. }) => Ok(RuleFile::default()),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_namespace(&self, tenant: &str, namespace: &str, file: &RuleFile) -> Result<(), RulerError> {
        let key = self.namespace_key(tenant, namespace);
        if file.groups.is_empty() {
            return Ok(self.rules.delete(&key).await?);
        }
        let text = serde_norway::to_string(file).map_err(|e| RulerError::Storage(e.to_string()))?;
        Ok(self.rules.put(&key, Bytes::from(text)).await?)
    }

    /// Adds `group` to the namespace, replacing the group of the same name.
    pub async fn put_group(&self, tenant: &str, namespace: &str, group: RuleGroup) -> Result<(), RulerError> {
        let _w = self.writes.lock().await;
        let mut file = self.read_namespace(tenant, namespace).await?;
        match file.groups.iter_mut().find(|g| g.name == group.name) {
            Some(g) => *g = group,
            None => file.groups.push(group),
        }
        self.write_namespace(tenant, namespace, &file).await
    }

    /// Removes one group; [`RulerError::NotFound`] if it does not exist.
    pub async fn delete_group(&self, tenant: &str, namespace: &str, group: &str) -> Result<(), RulerError> {
        let _w = self.writes.lock().await;
        let mut file = self.read_namespace(tenant, namespace).await?;
        let before = file.groups.len();
        file.groups.retain(|g| g.name != group);
        if file.groups.len() == before {
            return Err(RulerError::NotFound("group does not exist".into()));
        }
        self.write_namespace(tenant, namespace, &file).await
    }

    /// Removes a whole namespace; [`RulerError::NotFound`] if it has no groups.
    pub async fn delete_namespace(&self, tenant: &str, namespace: &str) -> Result<(), RulerError> {
        let _w = self.writes.lock().await;
        let key = self.namespace_key(tenant, namespace);
        if self.rules.head(&key).await?.is_none() {
            return Err(RulerError::NotFound("namespace does not exist".into()));
        }
        Ok(self.rules.delete(&key).await?)
    }

    fn state_key(tenant: &str, namespace: &str, group: &str) -> String {
        format!("{tenant}/ruler/state/{}/{}.json", encode_name(namespace), encode_name(group))
    }

    /// The saved alert state of a group, if any.
    pub async fn load_state(&self, tenant: &str, namespace: &str, group: &str) -> Result<Option<Bytes>, StorageError> {
        match self.state.get(&Self::state_key(tenant, namespace, group)).await {
            Ok(b) => Ok(Some(b)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves the alert state of a group (empty: removes it).
    pub async fn save_state(
        &self,
        tenant: &str,
        namespace: &str,
        group: &str,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let key = Self::state_key(tenant, namespace, group);
        if data.is_empty() { self.state.delete(&key).await } else { self.state.put(&key, data).await }
    }
}
