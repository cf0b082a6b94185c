//! Long operator jobs (rebalances, drains) saved in the attribute store with a lease.
//!
//! A job is a record of the migrations' journal account named by its id, its state
//! in one attribute (`@rebalance`, `@drain`) next to the lease's owner and expiry. The
//! proxy that runs it keeps its state in memory (what the admin API shows) and saves
//! it by compare-and-set whenever it renews the lease (a third of the lease) and when
//! it ends (the lease then expires at once). A proxy killed mid-job leaves the lease
//! to expire; the resume loop of any proxy with `[migration]` (the same one restarted
//! included) claims it by compare-and-set on the record as read — of two proxies
//! claiming it, one wins — and runs it again from its saved state; a save that finds
//! another owner's unexpired lease stops the job here.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use federation_core::attrs::{now_ms, Attributes, ContainerRecord, NewContainer, StoreError};
use federation_core::{ClusterId, ContainerName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{lease_ms, Inner, Migrations, MoveError};

/// A job as saved: its own fields and the lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Leased<T> {
    #[serde(flatten)]
    pub(super) job: T,
    /// The proxy instance holding the lease.
    pub(super) owner: String,
    /// When the lease ends, milliseconds since the Unix epoch.
    pub(super) lease_until_ms: u64,
}

/// A kind of saved job.
pub(super) trait Job: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The attribute of the journal-account record that holds it.
    const ATTRIBUTE: &'static str;
    /// Its name in logs.
    const KIND: &'static str;
    /// What the admin API shows of it (kept in memory where it runs).
    type Shown: Clone + Send + 'static;
    /// Its shown state.
    fn shown(&self) -> &Self::Shown;
    /// Its shown state, to update.
    fn shown_mut(&mut self) -> &mut Self::Shown;
    /// Whether it still runs (`running`), as shown.
    fn running(shown: &Self::Shown) -> bool;
    /// The table of those this proxy runs (or ran), by id.
    fn table(inner: &Inner) -> &Mutex<HashMap<String, Self::Shown>>;
}

impl<T: Job> Leased<T> {
    /// The job saved in a record, if any.
    pub(super) fn of(rec: &ContainerRecord) -> Option<Self> {
        serde_json::from_str(rec.attributes.get(T::ATTRIBUTE)?).ok()
    }

    /// The record's attributes with this saved in place of what it held.
    fn onto(&self, mut attrs: Attributes) -> Attributes {
        attrs.insert(
            T::ATTRIBUTE.into(),
            serde_json::to_string(self).unwrap_or_default(),
        );
        attrs
    }

    /// Whether a proxy may claim it at `now`: running, and its lease expired.
    pub(super) fn claimable(&self, now: u64) -> bool {
        T::running(self.job.shown()) && self.lease_until_ms < now
    }
}

impl Migrations {
    /// This proxy's shown state of a job it runs (or ran).
    pub(super) fn memory<T: Job>(&self, id: &str) -> Option<T::Shown> {
        T::table(&self.inner)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Changes this proxy's shown state of a job (nothing if it does not run it).
    pub(super) fn update_memory<T: Job>(&self, id: &str, f: impl FnOnce(&mut T::Shown)) {
        if let Some(s) = T::table(&self.inner)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            f(s);
        }
    }

    fn remember<T: Job>(&self, id: &str, shown: T::Shown) {
        T::table(&self.inner)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), shown);
    }

    /// The cluster a new record of the journal account names (the first configured:
    /// the record is the store's alone, no container exists for it).
    pub(super) fn journal_home(&self) -> Result<ClusterId, MoveError> {
        self.inner
            .locator
            .registry()
            .snapshot()
            .first()
            .map(|s| s.id().clone())
            .ok_or_else(|| MoveError::Fatal("no clusters".into()))
    }

    /// Saves a new job, leased to this proxy, and remembers its shown state.
    pub(super) async fn create_job<T: Job>(&self, id: &str, job: T) -> Result<(), MoveError> {
        let name = ContainerName::new(id).map_err(|e| MoveError::Fatal(e.to_string()))?;
        let home = self.journal_home()?;
        let shown = job.shown().clone();
        let saved = Leased {
            job,
            owner: self.inner.owner.clone(),
            lease_until_ms: now_ms() + lease_ms(&self.inner.config),
        };
        self.inner
            .locator
            .store()
            .create_if_absent(
                NewContainer::new(Self::journal_account(), name, home)
                    .attributes(saved.onto(Attributes::new())),
            )
            .await?;
        self.remember::<T>(id, shown);
        Ok(())
    }

    /// Writes this proxy's shown state of a job to the store (compare-and-set) and
    /// renews its lease (`last`: ends it now); refused when another proxy holds it.
    pub(super) async fn save_job<T: Job>(&self, id: &str, last: bool) -> Result<(), MoveError> {
        let name = ContainerName::new(id).map_err(|e| MoveError::Fatal(e.to_string()))?;
        let store = self.inner.locator.store();
        let Some(state) = self.memory::<T>(id) else {
            return Err(MoveError::LeaseLost("not running here".into()));
        };
        for _ in 0..16 {
            let rec = store
                .get(&Self::journal_account(), &name)
                .await?
                .ok_or_else(|| MoveError::LeaseLost(format!("{} record gone", T::KIND)))?;
            let mut saved = Leased::<T>::of(&rec)
                .ok_or_else(|| MoveError::Fatal(format!("unreadable {} record", T::KIND)))?;
            if saved.owner != self.inner.owner && saved.lease_until_ms >= now_ms() {
                return Err(MoveError::LeaseLost(format!("held by {}", saved.owner)));
            }
            *saved.job.shown_mut() = state.clone();
            saved.owner.clone_from(&self.inner.owner);
            saved.lease_until_ms = if last {
                now_ms()
            } else {
                now_ms() + lease_ms(&self.inner.config)
            };
            match store
                .update_attributes(
                    &Self::journal_account(),
                    &name,
                    rec.version,
                    saved.onto(rec.attributes.clone()),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MoveError::Store(format!(
            "{} record kept changing",
            T::KIND
        )))
    }

    /// Runs `work` on the background while renewing (and saving) the job every third
    /// of the lease; losing the lease stops it. When `work` ends (having set the final
    /// state in memory), the job is saved once more with its lease ended.
    pub(super) fn run_leased<T: Job>(
        &self,
        id: String,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let this = self.clone();
        self.inner.background.spawn(T::KIND, async move {
            let renew_every = this.inner.config.lease / 3;
            let renew = async {
                loop {
                    tokio::time::sleep(renew_every).await;
                    if let Err(e) = this.save_job::<T>(&id, false).await {
                        if matches!(e, MoveError::LeaseLost(_)) {
                            return e;
                        }
                        tracing::warn!(%id, kind = T::KIND, error = %e, "could not save; retrying");
                    }
                }
            };
            tokio::select! {
                () = work => {}
                lost = renew => {
                    tracing::info!(%id, kind = T::KIND, error = %lost, "left to another proxy");
                    // What it shows is the holder's (as saved) from now on.
                    T::table(&this.inner)
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    return;
                }
            }
            for _ in 0..8 {
                match this.save_job::<T>(&id, true).await {
                    Ok(()) | Err(MoveError::LeaseLost(_)) => break,
                    Err(e) => {
                        tracing::warn!(%id, kind = T::KIND, error = %e, "could not save a finished job; retrying");
                        tokio::time::sleep(renew_every).await;
                    }
                }
            }
        });
    }

    /// The saved jobs of a kind.
    pub(super) async fn saved_jobs<T: Job>(
        &self,
    ) -> Result<Vec<(ContainerRecord, Leased<T>)>, MoveError> {
        Ok(self
            .journal_records()
            .await?
            .into_iter()
            .filter_map(|r| Leased::of(&r).map(|s| (r, s)))
            .collect())
    }

    /// Claims, by compare-and-set, the saved running jobs among `records` (the journal
    /// account's) whose lease expired and that do not run here; each claimed one is
    /// remembered as saved. The caller runs them.
    pub(super) async fn claim_expired<T: Job>(
        &self,
        records: &[ContainerRecord],
    ) -> Result<Vec<(String, T)>, MoveError> {
        let now = now_ms();
        let mut claimed = Vec::new();
        for (rec, saved) in records
            .iter()
            .filter_map(|r| Leased::<T>::of(r).map(|s| (r, s)))
        {
            let id = rec.container.as_str().to_owned();
            if !saved.claimable(now) || self.memory::<T>(&id).is_some_and(|s| T::running(&s)) {
                continue;
            }
            let mut ours = saved.clone();
            ours.owner.clone_from(&self.inner.owner);
            ours.lease_until_ms = now + lease_ms(&self.inner.config);
            match self
                .inner
                .locator
                .store()
                .update_attributes(
                    &Self::journal_account(),
                    &rec.container,
                    rec.version,
                    ours.onto(rec.attributes.clone()),
                )
                .await
            {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => continue, // another proxy took it
                Err(e) => return Err(e.into()),
            }
            tracing::info!(%id, kind = T::KIND, previous_owner = %saved.owner, "resuming");
            self.remember::<T>(&id, saved.job.shown().clone());
            claimed.push((id, saved.job));
        }
        Ok(claimed)
    }

    /// A job's shown state: this proxy's, else as saved (run or finished by another
    /// proxy, or before a restart).
    pub(super) async fn job<T: Job>(&self, id: &str) -> Result<Option<T::Shown>, MoveError> {
        if let Some(r) = self.memory::<T>(id) {
            return Ok(Some(r));
        }
        let Ok(name) = ContainerName::new(id) else {
            return Ok(None);
        };
        let rec = self
            .inner
            .locator
            .store()
            .get(&Self::journal_account(), &name)
            .await?;
        Ok(rec
            .as_ref()
            .and_then(Leased::<T>::of)
            .map(|s| s.job.shown().clone()))
    }

    /// Every job of a kind: as saved, with this proxy's newer state of those it runs.
    pub(super) async fn jobs<T: Job>(&self) -> Result<Vec<T::Shown>, MoveError> {
        let mut all: BTreeMap<String, T::Shown> = self
            .saved_jobs::<T>()
            .await?
            .into_iter()
            .map(|(r, s)| (r.container.as_str().to_owned(), s.job.shown().clone()))
            .collect();
        for (id, s) in T::table(&self.inner)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            all.insert(id.clone(), s.clone());
        }
        Ok(all.into_values().collect())
    }
}
