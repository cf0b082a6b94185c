//! `GET /v2/schemas/…`: documents that rarely change, from the central when it answers,
//! else the last copy.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
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
            .fetch(path, &crate::client::identity(caller))
            .await;
        let body = match fetched {
            Ok((s, _, b)) if s.is_success() || s == StatusCode::MULTIPLE_CHOICES => {
                self.inner.documents.keep(path, b.clone());
                Some(b)
            }
            _ => self.inner.documents.last(path),
        }
        .ok_or_else(|| {
            GlanceError::unavailable(
                "The central image service is unreachable and this document is not cached",
            )
        })?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| GlanceError::unavailable("bad document from the central"))?;
        Ok(json_response(StatusCode::OK, &doc, false))
    }
}
