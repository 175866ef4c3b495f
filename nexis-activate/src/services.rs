//! PLACEHOLDER in the lead's worktree until the services helper's module lands.
use std::collections::BTreeMap;
use std::path::Path;

use nexis_config::Service;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceEntry {
    pub hash: String,
    pub enable: bool,
    pub depends: Vec<String>,
    pub hard: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("service")]
pub struct ServiceError;

pub fn write_services(
    _dir: &Path,
    _services: &BTreeMap<String, Service>,
    _subst: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, ServiceEntry>, ServiceError> {
    Ok(BTreeMap::new())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePlan {
    pub stop: Vec<String>,
    pub restart: Vec<String>,
    pub start: Vec<String>,
    pub unchanged: Vec<String>,
}

pub fn plan(
    _old: &BTreeMap<String, ServiceEntry>,
    _new: &BTreeMap<String, ServiceEntry>,
) -> ServicePlan {
    ServicePlan::default()
}
