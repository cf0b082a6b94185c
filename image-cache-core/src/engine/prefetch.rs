//! Prefetch: a queue of images to cache (by id, or every image a listing filter
//! matches), worked off by `prefetch_concurrency` workers that run on the cache's
//! [`Spawner`](super::Spawner), so they stop when their owner shuts down.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use super::data::Admitted;
use super::{ImageCache, Inner};
use crate::error::CacheError;
use crate::id::ImageId;
use crate::list::{ListQuery, MAX_LIMIT};
use crate::record::ImageStatus;
use crate::upstream::RequestContext;

/// Images waiting for a prefetch worker, in arrival order, each at most once.
#[derive(Debug, Default)]
pub(crate) struct PrefetchQueue {
    waiting: Mutex<Waiting>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Waiting {
    order: VecDeque<(ImageId, RequestContext)>,
    ids: BTreeSet<ImageId>,
}

impl PrefetchQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `id` unless it is already waiting; returns whether it was added.
    fn push(&self, id: &ImageId, ctx: &RequestContext) -> bool {
        let mut w = self.lock();
        if !w.ids.insert(id.clone()) {
            return false;
        }
        w.order.push_back((id.clone(), ctx.clone()));
        drop(w);
        self.arrived.notify_one();
        true
    }

    fn pop(&self) -> Option<(ImageId, RequestContext)> {
        let mut w = self.lock();
        let next = w.order.pop_front()?;
        w.ids.remove(&next.0);
        Some(next)
    }

    /// The next image to prefetch, waiting for one.
    async fn next(&self) -> (ImageId, RequestContext) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(next) = self.pop() {
                return next;
            }
            arrived.await;
        }
    }

    fn ids(&self) -> Vec<ImageId> {
        self.lock().ids.iter().cloned().collect()
    }

    fn clear(&self) -> usize {
        let mut w = self.lock();
        let n = w.ids.len();
        w.ids.clear();
        w.order.clear();
        n
    }
}

impl ImageCache {
    /// Starts the prefetch workers on the spawner. A worker holds the cache weakly: it
    /// ends with the next job after the last handle to the cache is gone, or when the
    /// spawner's owner stops it.
    pub(crate) fn start_prefetch_workers(&self) {
        for _ in 0..self.inner.config.prefetch_concurrency.max(1) {
            let queue = self.inner.prefetch.clone();
            let cache: Weak<Inner> = Arc::downgrade(&self.inner);
            self.inner.spawner.spawn(
                "prefetch worker",
                Box::pin(async move {
                    loop {
                        let (id, ctx) = queue.next().await;
                        let Some(inner) = cache.upgrade() else { return };
                        ImageCache { inner }.prefetch(&id, &ctx).await;
                    }
                }),
            );
        }
    }

    /// Queues an image for caching (Glance's `PUT /v2/cache/{id}`, prefetch): fetched by
    /// a prefetch worker, at most `prefetch_concurrency` at a time, subject to the budget.
    pub fn queue(&self, id: &ImageId, ctx: &RequestContext) {
        self.inner.prefetch.push(id, ctx);
        metrics::gauge!("stackfed_cache_prefetch_queued").set(self.queued().len() as f64);
    }

    /// Images queued for caching whose fill has not started.
    pub fn queued(&self) -> Vec<ImageId> {
        self.inner.prefetch.ids()
    }

    /// Empties the queue; returns how many were dropped.
    pub fn clear_queue(&self) -> usize {
        self.inner.prefetch.clear()
    }

    /// Queues every image matching `filters` (property equality; `visibility` too): the
    /// upstream's listing, page after page, or — when it gives no answer — the cached
    /// records (the same read-through as [`list`](Self::list)). Returns what was queued.
    pub async fn prefetch_matching(
        &self,
        filters: &[(String, String)],
        ctx: &RequestContext,
    ) -> Result<Vec<ImageId>, CacheError> {
        let mut query = ListQuery::default();
        for (k, v) in filters {
            if k == "visibility" {
                query.visibility = Some(v.clone());
            } else {
                query.filters.push((k.clone(), v.clone()));
            }
        }
        query.limit = MAX_LIMIT;
        let mut ids = Vec::new();
        let mut online = true;
        loop {
            let page = self.list(&query, ctx).await?;
            online &= !page.stale;
            let more = page.value.more;
            let last = page.value.images.last().map(|r| r.id.clone());
            ids.extend(page.value.images.into_iter().map(|r| r.id));
            match last {
                // (A marker that does not move would page forever.)
                Some(last) if more && query.marker.as_ref() != Some(&last) => {
                    query.marker = Some(last);
                }
                _ => break,
            }
        }
        for id in &ids {
            self.queue(id, ctx);
        }
        tracing::info!(count = ids.len(), ?filters, online, "prefetch queued");
        Ok(ids)
    }

    /// One prefetch: metadata, admission, and the fill awaited; the outcome is logged.
    async fn prefetch(&self, id: &ImageId, ctx: &RequestContext) {
        tracing::info!(image = %id, "prefetch started");
        let outcome = async {
            let record = self.image(id, ctx).await?.value;
            if record.status != ImageStatus::Active {
                return Ok(false);
            }
            match self.admit(&record, ctx).await? {
                Admitted::Fill(slot) => slot.wait().await.map(|()| true),
                Admitted::Cached => Ok(true),
                Admitted::Bypass => Ok(false),
            }
        }
        .await;
        let label = match &outcome {
            Ok(true) => "cached",
            Ok(false) => "not-cacheable",
            Err(_) => "failed",
        };
        metrics::counter!("stackfed_cache_prefetches_total", "outcome" => label).increment(1);
        metrics::gauge!("stackfed_cache_prefetch_queued").set(self.queued().len() as f64);
        match outcome {
            Ok(true) => tracing::info!(image = %id, "prefetch done: cached"),
            Ok(false) => tracing::info!(image = %id, "prefetch done: not cacheable"),
            Err(e) => {
                tracing::warn!(image = %id, error = %e, source = %e.origin(), "prefetch failed")
            }
        }
    }
}
