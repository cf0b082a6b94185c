//! The account family: every cluster holds a part of the account. GET fans out and
//! merges the listings, HEAD sums the usage counters, POST reaches every cluster.

use async_trait::async_trait;
use bytes::Bytes;
use federation_core::listing::{
    merge_page, ListingError, ListingQuery, ListingSource, SourceError,
};
use federation_core::{AccountName, ClusterId, ClusterStatus};
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use stackfed_http::headers::copy_end_to_end;
use stackfed_http::{empty, full, Body};

use super::{Call, Caller, FederationService, Result};
use crate::cluster::{SwiftCluster, MAX_COLLECTED_BODY};
use crate::error::SwiftError;
use crate::headers::sum_usage;
use crate::listing::{self, AccountEntry, ListingFormat};

/// One cluster's whole answer to a fanned-out request.
type Answer = (ClusterStatus, http::response::Parts, Bytes);

impl FederationService {
    pub(super) async fn account_request(
        &self,
        call: Call,
        account: &AccountName,
    ) -> Result<Response<Body>> {
        match call.parts.method {
            Method::GET => self.account_get(&call, account).await,
            Method::HEAD => self.account_head(&call).await,
            Method::POST => self.account_post(&call).await,
            // OPTIONS (CORS), PUT/DELETE (reseller admins) and methods Swift does not
            // know: a cluster answers them as Swift does (200 with `Allow`, 403, 405).
            _ => self.unheld(call).await,
        }
    }

    /// The clusters an account-wide request goes to (phase 3), and the offline ones
    /// left out. An offline cluster is a 503 unless `partial_ok` and the service
    /// answers partial listings.
    fn account_targets(&self, partial_ok: bool) -> Result<(Vec<ClusterStatus>, Vec<ClusterId>)> {
        let (up, down) = self.reachable();
        let allowed = down.is_empty() || (partial_ok && self.inner.partial_listings);
        if !allowed {
            return Err(SwiftError::unavailable(format!(
                "cluster(s) {} offline: the account cannot be answered completely",
                down.iter()
                    .map(ClusterId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok((up, down))
    }

    /// Sends a bodiless request to every target cluster at once and reads the answers
    /// whole.
    async fn fan_out(
        &self,
        call: &Call,
        method: Method,
        partial_ok: bool,
    ) -> Result<(Vec<Answer>, Vec<ClusterId>)> {
        let (clusters, down) = self.account_targets(partial_ok)?;
        let pq = call.path_and_query();
        let calls = clusters.iter().map(|c| {
            let method = method.clone();
            async move {
                let cluster = self.cluster(c.id())?;
                let mut req = Self::cluster_request(&call.parts, pq, empty());
                req.method = method;
                let (p, b) = cluster
                    .collect(req, call.caller.auth(), MAX_COLLECTED_BODY)
                    .await?;
                Ok::<_, SwiftError>((c.clone(), p, b))
            }
        });
        let answers = futures::future::join_all(calls)
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        Ok((answers, down))
    }

    async fn account_head(&self, call: &Call) -> Result<Response<Body>> {
        let (answers, down) = self.fan_out(call, Method::HEAD, true).await?;
        if let Some(fail) = first_failure(&answers) {
            return Ok(fail);
        }
        let mut headers = answers
            .first()
            .map(|(_, p, _)| p.headers.clone())
            .unwrap_or_default();
        sum_usage(&mut headers, answers.iter().map(|(_, p, _)| &p.headers));
        let mut resp = Response::new(empty());
        *resp.status_mut() = answers
            .first()
            .map_or(StatusCode::NO_CONTENT, |(_, p, _)| p.status);
        copy_end_to_end(&headers, resp.headers_mut());
        mark_partial(&mut resp, &down);
        Ok(resp)
    }

    async fn account_post(&self, call: &Call) -> Result<Response<Body>> {
        let (answers, _) = self.fan_out(call, Method::POST, false).await?;
        if let Some(fail) = first_failure(&answers) {
            return Ok(fail);
        }
        let mut resp = Response::new(empty());
        if let Some((_, p, _)) = answers.first() {
            *resp.status_mut() = p.status;
            copy_end_to_end(&p.headers, resp.headers_mut());
        }
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        Ok(resp)
    }

    async fn account_get(&self, call: &Call, account: &AccountName) -> Result<Response<Body>> {
        let parts = &call.parts;
        let (query, format) = listing::parse_query(parts.uri.query())?;
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let fmt = ListingFormat::negotiate(format.as_deref(), accept)?;
        let (clusters, down) = self.account_targets(true)?;
        let mut sources = Vec::with_capacity(clusters.len());
        for c in &clusters {
            sources.push(ClusterSource {
                cluster: self.cluster(c.id())?,
                account,
                caller: &call.caller,
                parts,
                headers: None,
            });
        }
        let page = match merge_page(&mut sources, &query).await {
            Ok(page) => page,
            Err(ListingError::Source { source, .. }) => {
                return match source.downcast::<FailedAnswer>() {
                    Ok(answer) => Ok(answer.into_response()),
                    Err(other) => match other.downcast::<SwiftError>() {
                        Ok(e) => Err(*e),
                        Err(other) => Err(SwiftError::unavailable(other.to_string())),
                    },
                };
            }
            Err(e) => return Err(SwiftError::precondition_failed(e.to_string())),
        };
        let all: Vec<&HeaderMap> = sources.iter().filter_map(|s| s.headers.as_ref()).collect();
        let mut headers = all.first().map(|h| (*h).clone()).unwrap_or_default();
        sum_usage(&mut headers, all.iter().copied());
        drop(sources);
        let body = listing::encode(fmt, account.as_str(), &page);
        let mut resp = Response::new(match &body {
            Some(b) => full(b.clone()),
            None => empty(),
        });
        *resp.status_mut() = if body.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        };
        copy_end_to_end(&headers, resp.headers_mut());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(fmt.content_type()),
        );
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(body.as_ref().map_or(0, Vec::len)),
        );
        if format.is_none() {
            h.insert(header::VARY, HeaderValue::from_static("Accept"));
        } else {
            h.remove(header::VARY);
        }
        mark_partial(&mut resp, &down);
        Ok(resp)
    }
}

/// The first failure among fanned-out answers, passed on as the cluster said it.
fn first_failure(answers: &[Answer]) -> Option<Response<Body>> {
    answers
        .iter()
        .find(|(_, p, _)| !p.status.is_success())
        .map(|(_, p, b)| {
            FailedAnswer {
                status: p.status,
                headers: p.headers.clone(),
                body: b.clone(),
            }
            .into_response()
        })
}

/// Names the clusters an account answer left out (partial listings only).
fn mark_partial(resp: &mut Response<Body>, down: &[ClusterId]) {
    if down.is_empty() {
        return;
    }
    let names = down
        .iter()
        .map(ClusterId::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(v) = HeaderValue::from_str(&names) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-federation-partial"), v);
    }
}

/// A cluster's non-success answer during a listing, passed on to the client.
#[derive(Debug)]
struct FailedAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl FailedAnswer {
    fn into_response(self) -> Response<Body> {
        let mut r = Response::new(full(self.body));
        *r.status_mut() = self.status;
        copy_end_to_end(&self.headers, r.headers_mut());
        r
    }
}

impl std::fmt::Display for FailedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster answered {}", self.status)
    }
}

impl std::error::Error for FailedAnswer {}

/// One cluster's account listing as a merge source.
struct ClusterSource<'a> {
    cluster: &'a SwiftCluster,
    account: &'a AccountName,
    caller: &'a Caller,
    parts: &'a Parts,
    /// The headers of the cluster's answer (usage counters, metadata).
    headers: Option<HeaderMap>,
}

#[async_trait]
impl ListingSource for ClusterSource<'_> {
    type Item = listing::ContainerInfo;

    async fn fetch(&mut self, query: &ListingQuery) -> Result<Vec<AccountEntry>, SourceError> {
        let mut headers = FederationService::cluster_request(self.parts, "", empty()).headers;
        // The proxy asks for JSON (the query says so) and answers in the client's format.
        headers.remove(header::ACCEPT);
        let (p, b) = self
            .cluster
            .account_page(
                self.account,
                &listing::backend_query(query),
                headers,
                self.caller.auth(),
            )
            .await
            .map_err(SwiftError::from)?;
        if !p.status.is_success() {
            return Err(Box::new(FailedAnswer {
                status: p.status,
                headers: p.headers,
                body: b,
            }));
        }
        let entries = if p.status == StatusCode::NO_CONTENT || b.is_empty() {
            Vec::new()
        } else {
            listing::decode_json(&b)?
        };
        self.headers = Some(p.headers);
        Ok(entries)
    }
}
