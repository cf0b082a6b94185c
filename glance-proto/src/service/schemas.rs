//! `GET /v2/schemas/…`: documents that rarely change, from the central when it answers,
//! else the last copy.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use image_cache_core::upstream::UpstreamError;
use serde_json::Value;

use super::{json_response, Caller, EdgeService, Result};
use crate::body::Body;
use crate::error::GlanceError;

/// The last copy of each document, by path.
#[derive(Debug, Default)]
pub(super) struct Documents(Mutex<HashMap<String, Bytes>>);

impl Documents {
    fn keep(&self, path: &str, body: Bytes) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), body);
    }

    fn last(&self, path: &str) -> Option<Bytes> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
    }
}

impl EdgeService {
    pub(super) async fn schema(&self, parts: &Parts, caller: &Caller) -> Result<Response<Body>> {
        let path = parts.uri.path();
        let fetched = self
            .inner
            .central
            .document(path, &crate::client::identity(caller))
            .await;
        let body = match (fetched, self.inner.documents.last(path)) {
            (Ok(body), _) => {
                self.inner.documents.keep(path, body.clone());
                body
            }
            (Err(_), Some(last)) => last,
            (Err(e), None) => {
                return Err(GlanceError::from_upstream(
                    &e,
                    "this document is not cached at this edge",
                ))
            }
        };
        let doc: Value = serde_json::from_slice(&body).map_err(|e| {
            GlanceError::from(UpstreamError::invalid("the document is not JSON", e))
        })?;
        Ok(json_response(StatusCode::OK, &doc, false))
    }
}
