//! The info family: `/info` merged from every cluster's (cached for a minute), with a
//! `federation` section whose cluster states and usage are always current. The
//! clusters' storage policies also feed placement (a container asking for a policy goes
//! to a cluster that offers it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::ClusterId;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;
use stackfed_http::{empty, full, Body};

use super::{Call, FederationService, Result};
use crate::error::SwiftError;

/// How long a merged `/info` (and the clusters' storage policies) is reused.
const INFO_TTL: Duration = Duration::from_secs(60);

/// Storage policy names offered by each cluster.
pub(super) type PoliciesByCluster = BTreeMap<ClusterId, Vec<String>>;

/// The merged `/info` and each cluster's policies, shared: every object PUT reads the
/// constraints, so a hit hands out references rather than copies.
pub(super) type Info = (Arc<Value>, Arc<PoliciesByCluster>);

/// The merged `/info`, when it was fetched, and each cluster's policies.
#[derive(Debug, Default)]
pub(super) struct InfoCache(Mutex<Option<(Instant, Info)>>);

impl FederationService {
    /// The merged `/info` and each cluster's storage policies.
    pub(super) async fn info(&self) -> Info {
        let cache = &self.inner.info.0;
        if let Some((at, info)) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if at.elapsed() < INFO_TTL {
                return info.clone();
            }
        }
        let clusters = self.inner.locator.registry().snapshot();
        let calls = clusters.iter().map(|c| async move {
            let cluster = self.inner.clusters.get(c.id())?;
            match cluster.info().await {
                Ok(v) => Some((c.id().clone(), v)),
                Err(e) => {
                    tracing::debug!(error = %e, "no /info");
                    None
                }
            }
        });
        let infos: Vec<(ClusterId, Value)> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        let policies: PoliciesByCluster = infos
            .iter()
            .map(|(id, v)| (id.clone(), crate::info::policy_names(v)))
            .collect();
        let federation = serde_json::json!({
            "clusters": clusters.iter().map(|c| serde_json::json!({
                "id": c.id().as_str(),
                "state": c.state.to_string(),
                "labels": c.spec.labels,
                "storage_policies": policies.get(c.id()),
            })).collect::<Vec<_>>(),
            "placement_policy": self.inner.locator.policy().name(),
            "attribute_prefix": "X-Container-Attr-",
        });
        let mut merged = crate::info::merge(
            &infos.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            federation,
        );
        super::bulk::advertise(&mut merged);
        if infos.len() == clusters.len() {
            let info = (Arc::new(merged), Arc::new(policies));
            *cache.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((Instant::now(), info.clone()));
            return info;
        }
        (Arc::new(merged), Arc::new(policies))
    }

    pub(super) async fn info_request(&self, call: &Call) -> Result<Response<Body>> {
        let method = &call.parts.method;
        if method != Method::GET && method != Method::HEAD {
            return Err(SwiftError::status(StatusCode::METHOD_NOT_ALLOWED));
        }
        // This answer is edited below: a copy of the shared document.
        let mut info = Value::clone(&self.info().await.0);
        // The capabilities may be cached; the clusters' states and usage are always current.
        let snapshot = self.inner.locator.registry().snapshot();
        if let Some(list) = info
            .pointer_mut("/federation/clusters")
            .and_then(Value::as_array_mut)
        {
            for entry in list {
                let id = entry.get("id").and_then(Value::as_str).map(str::to_owned);
                if let Some(c) = snapshot
                    .iter()
                    .find(|c| Some(c.id().as_str()) == id.as_deref())
                {
                    entry["state"] = Value::String(c.state.to_string());
                    entry["capacity_bytes"] = Value::from(c.spec.capacity_bytes);
                    entry["used_bytes"] = Value::from(c.used_bytes);
                }
            }
        }
        let body = info.to_string();
        let len = body.len();
        let mut resp = Response::new(if method == Method::HEAD {
            empty()
        } else {
            full(body)
        });
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        Ok(resp)
    }
}
