//! Metadata read-through: one image (show) and listings, from the cache while fresh,
//! else from the upstream (recorded), else — when the upstream gives no answer — what
//! the cache holds, under the one [serve-stale rule](super::stale).

use std::sync::Arc;

use super::stale::ServeStale;
use super::{dur_ms, now_ms, Served};
use crate::blob::BlobStore;
use crate::error::CacheError;
use crate::id::ImageId;
use crate::list::{ListQuery, Page};
use crate::meta::{MetadataStore, RecentRecords, RecordVersion, StoredVersion};
use crate::record::ImageRecord;
use crate::upstream::{RequestContext, Upstream, UpstreamError};

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct ReadThrough {
    upstream: Arc<dyn Upstream>,
    meta: Arc<RecentRecords>,
    blobs: Arc<dyn BlobStore>,
    freshness_ms: u64,
    stale: ServeStale,
}

impl ReadThrough {
    pub(crate) fn new(
        upstream: Arc<dyn Upstream>,
        meta: Arc<RecentRecords>,
        blobs: Arc<dyn BlobStore>,
        freshness: std::time::Duration,
        stale: ServeStale,
    ) -> Self {
        Self {
            upstream,
            meta,
            blobs,
            freshness_ms: dur_ms(freshness),
            stale,
        }
    }

    /// One image's metadata: from the cache while fresh (and the caller may see it on
    /// cached metadata alone), else from the upstream (recorded); when the upstream gives
    /// no answer, the cached copy if the serve-stale rule allows it. A version read from
    /// the cache is the one every request shares (see [`RecentRecords`]).
    pub(crate) async fn image(
        &self,
        id: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Served<Arc<RecordVersion>>, CacheError> {
        // A store that cannot be read must not keep the central's answer from the
        // caller: it is asked as if nothing were cached.
        let (cached, unreadable) = match self.meta.get_version(id).await {
            Ok(c) => (c, None),
            Err(e) => {
                tracing::warn!(image = %id, error = %e, "could not read the cached image");
                (None, Some(e))
            }
        };
        let now = now_ms();
        if let Some(c) = &cached {
            if now.saturating_sub(c.fetched_at_ms) < self.freshness_ms
                && ctx.may_see(c.version.record())
            {
                return Ok(Served::fresh(c.version.clone()));
            }
        }
        match self.upstream.get(id, ctx).await {
            Ok(Some(record)) if ctx.enforce_locally && !ctx.may_see(&record) => {
                // The upstream answered someone who sees more than the caller: recorded
                // for those who may see it, refused to this caller.
                if unreadable.is_none() {
                    if let Err(e) = self.meta.put(&record, now).await {
                        tracing::warn!(image = %id, error = %e, "could not record the image");
                    }
                }
                Err(CacheError::NotFound(id.clone()))
            }
            Ok(Some(mut record)) => {
                // Only the owner sees a shared image's whole member list; a member sees
                // itself, and others (admins included) may see none: merge their
                // partial views into what is known.
                let authoritative = record.owner.is_some() && record.owner == ctx.project_id;
                if !authoritative {
                    if let Some(c) = &cached {
                        let mut members: Vec<String> = c
                            .version
                            .record()
                            .members
                            .iter()
                            .filter(|m| Some(m.as_str()) != ctx.project_id.as_deref())
                            .cloned()
                            .collect();
                        members.extend(record.members.iter().cloned());
                        members.sort();
                        members.dedup();
                        record.members = members;
                    }
                }
                // The central answered: a store that cannot keep it is logged, not
                // the caller's failure (as for listings).
                if unreadable.is_none() {
                    match self.meta.put_version(&record, now).await {
                        Ok(kept) => return Ok(Served::fresh(kept.version)),
                        Err(e) => {
                            tracing::warn!(image = %id, error = %e, "could not record the image")
                        }
                    }
                }
                Ok(Served::fresh(Arc::new(RecordVersion::new(record))))
            }
            Ok(None) => {
                // For an admin, "not found" means deleted; for others it may only mean
                // "not yours", which must not evict it for everybody.
                if ctx.is_admin {
                    if let Err(e) = self.forget(id).await {
                        tracing::warn!(image = %id, error = %e, "could not forget a deleted image");
                    }
                } else if unreadable.is_none() {
                    self.unlearn(cached.as_ref(), ctx, true).await;
                }
                Err(CacheError::NotFound(id.clone()))
            }
            Err(UpstreamError::Refused {
                status: 403 | 404, ..
            }) => {
                if !ctx.is_admin && unreadable.is_none() {
                    self.unlearn(cached.as_ref(), ctx, false).await;
                }
                Err(CacheError::NotFound(id.clone()))
            }
            Err(e) if !self.stale.applies(&e) => Err(e.into()),
            Err(e) => match cached {
                // Not visible on cached metadata alone: as if it did not exist.
                Some(c) if !ctx.may_see(c.version.record()) => {
                    Err(CacheError::NotFound(id.clone()))
                }
                Some(c) if self.stale.servable_at(c.fetched_at_ms, now) => {
                    Ok(Served::stale(c.version))
                }
                // Without the central, the unreadable store is why there is no answer.
                _ => Err(unreadable.map_or_else(|| e.into(), CacheError::from)),
            },
        }
    }

    /// The central refused a caller an image that the cached record lets it see: what the
    /// cache learned no longer holds for this caller. Its membership of a shared image is
    /// dropped (the other members and the owner keep theirs, fresh as they were); any
    /// other reason (a public or community image made private, an owner's image gone)
    /// must be confirmed by the central again before the record is served to anyone —
    /// only when the central said "not found" (`not_found`): a refusal (403, e.g. a token
    /// without a project) says nothing about the image, and must not let any caller
    /// take it from the others offline.
    async fn unlearn(&self, cached: Option<&StoredVersion>, ctx: &RequestContext, not_found: bool) {
        let Some(c) = cached.filter(|c| ctx.may_see(c.version.record())) else {
            return;
        };
        let mut record = c.version.record().clone();
        let member = ctx.project_id.as_deref().filter(|p| {
            record.visibility == crate::record::Visibility::Shared
                && record.owner.as_deref() != Some(*p)
                && record.members.iter().any(|m| m == p)
        });
        let fetched_at_ms = match member {
            Some(p) => {
                record.members.retain(|m| m != p);
                c.fetched_at_ms
            }
            None if not_found => 0,
            None => return,
        };
        if let Err(e) = self.meta.put(&record, fetched_at_ms).await {
            tracing::warn!(image = %record.id, error = %e, "could not record a refusal");
        }
    }

    /// One page of the listing: the upstream's (its records recorded), or — when it gives
    /// no answer — the cached records the caller may see and the serve-stale rule allows,
    /// with the query's filters, sort, marker and limit.
    pub(crate) async fn list(
        &self,
        query: &ListQuery,
        ctx: &RequestContext,
    ) -> Result<Served<Page>, CacheError> {
        match self.upstream.list(query, ctx).await {
            Ok(mut page) => {
                if let Err(e) = self.record_seen(&page.images).await {
                    tracing::warn!(error = %e, "could not record listed images");
                }
                if ctx.enforce_locally {
                    page.images = self.visible(std::mem::take(&mut page.images), ctx).await;
                }
                Ok(Served::fresh(page))
            }
            Err(e) if !self.stale.applies(&e) => Err(e.into()),
            Err(e) => {
                tracing::debug!(error = %e, "listing from the cache");
                let now = now_ms();
                let records = self
                    .meta
                    .list()
                    .await?
                    .into_iter()
                    .filter(|s| self.stale.servable(s, now) && ctx.may_see(&s.record))
                    .map(|s| s.record)
                    .collect();
                Ok(Served::stale(query.apply(records)?))
            }
        }
    }

    /// The records of a listing the upstream gave someone who sees more than the caller
    /// that the caller may see. Listings carry no members: a shared image of another
    /// project is checked against its known accepted members, learned from the upstream
    /// (one show, with its members) when none are known yet.
    async fn visible(&self, records: Vec<ImageRecord>, ctx: &RequestContext) -> Vec<ImageRecord> {
        let mut kept = Vec::with_capacity(records.len());
        for mut r in records {
            let foreign_shared = r.visibility == crate::record::Visibility::Shared
                && !ctx.is_admin
                && r.owner.is_some()
                && r.owner != ctx.project_id;
            if foreign_shared {
                r.members = match self.meta.get(&r.id).await {
                    Ok(Some(c)) if !c.record.members.is_empty() => c.record.members,
                    _ => match self.upstream.get(&r.id, ctx).await {
                        Ok(Some(fresh)) => {
                            if let Err(e) = self.meta.put(&fresh, now_ms()).await {
                                tracing::warn!(image = %r.id, error = %e, "could not record the image");
                            }
                            fresh.members
                        }
                        _ => Vec::new(),
                    },
                };
            }
            if ctx.may_see(&r) {
                kept.push(r);
            }
        }
        kept
    }

    /// Records images the upstream listed. Listings carry no member lists: what is known
    /// is kept.
    pub(crate) async fn record_seen(&self, records: &[ImageRecord]) -> Result<(), CacheError> {
        let now = now_ms();
        for r in records {
            let mut r = r.clone();
            if r.members.is_empty() {
                if let Some(c) = self.meta.get(&r.id).await? {
                    r.members = c.record.members;
                }
            }
            self.meta.put(&r, now).await?;
        }
        Ok(())
    }

    /// Forgets an image entirely (metadata and data).
    pub(crate) async fn forget(&self, id: &ImageId) -> Result<(), CacheError> {
        self.meta.remove(id).await?;
        self.blobs
            .remove(id)
            .await
            .map_err(CacheError::blob("removing a deleted image's data"))
    }

    /// Marks an image's metadata as needing confirmation before it is served fresh again,
    /// without `member` among the projects known to have accepted it (when given: a
    /// write changed that membership).
    pub(crate) async fn expire(
        &self,
        id: &ImageId,
        member: Option<&str>,
    ) -> Result<(), CacheError> {
        if let Some(mut s) = self.meta.get(id).await? {
            if let Some(m) = member {
                s.record.members.retain(|k| k != m);
            }
            self.meta.put(&s.record, 0).await?;
        }
        Ok(())
    }
}
