//! Blobs as files: `incomplete/` while written, fsync, then renamed into `images/`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{check_range, BlobError, BlobRead, BlobStore, BlobTap, BlobWriter};
use crate::id::ImageId;
use crate::upstream::ByteRange;

const READ_CHUNK: usize = 256 * 1024;

/// Bytes a writer lets the kernel hold dirty before it starts their writeback: each time
/// that many more were written, a `fdatasync` runs in the background while the writer
/// goes on (one at a time), so the commit's `fsync` finds at most about this much left
/// to write instead of the whole blob (512 MiB took 0.4 s at the end, holding the
/// image's last byte back that long).
const WRITEBACK_EVERY: u64 = 32 << 20;

/// A blob store in a directory:
///
/// - `images/{id}`: committed, verified blobs (the file name is the validated id);
/// - `incomplete/{id}.{n}`: blobs being written; cleared at start;
/// - `quarantine/{id}.{n}`: blobs that failed verification, never served.
///
/// A commit fsyncs the file, renames it into `images/` and fsyncs the directory, so after
/// a crash a blob is either wholly there or not at all.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    counter: Arc<AtomicU64>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::Io)
}

impl FsBlobStore {
    /// Opens (creating) the directory layout under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for d in ["images", "incomplete", "quarantine"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(Self {
            root,
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn image_path(&self, id: &ImageId) -> PathBuf {
        self.root.join("images").join(id.as_str())
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn create(&self, id: &ImageId) -> Result<Box<dyn BlobWriter>, BlobError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("incomplete").join(format!(
            "{}.{}.{n}",
            id.as_str(),
            std::process::id()
        ));
        let path = tmp.clone();
        let file = blocking(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
        })
        .await?;
        Ok(Box::new(FsWriter {
            file: Arc::new(file),
            tmp,
            dest: self.image_path(id),
            quarantine: self.root.join("quarantine").join(format!(
                "{}.{}.{n}",
                id.as_str(),
                std::process::id()
            )),
            written: Arc::new(AtomicU64::new(0)),
            writeback: None,
            written_back: 0,
        }))
    }

    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>, BlobError> {
        let path = self.image_path(id);
        let opened = blocking(move || match File::open(path) {
            Ok(f) => {
                let size = f.metadata()?.len();
                Ok(Some((f, size)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        let Some((file, size)) = opened else {
            return Ok(None);
        };
        let (start, len) = check_range(range, size)?;
        // Each piece is read on the blocking pool straight into the buffer that goes out
        // (`read_at`), not through `tokio::fs::File`, which reads into a buffer of its
        // own and copies from it: one copy of every served byte less.
        let stream = futures::stream::unfold(
            (Some(file), start, len),
            |(file, offset, left)| async move {
                let file = file.filter(|_| left > 0)?;
                let want = usize::try_from(left).unwrap_or(READ_CHUNK).min(READ_CHUNK);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = BytesMut::zeroed(want);
                    let n = file.read_at(&mut buf, offset);
                    (file, buf, n)
                })
                .await;
                match read {
                    Ok((_, _, Ok(0))) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "blob shrank",
                        )),
                        (None, offset, 0),
                    )),
                    Ok((file, mut buf, Ok(n))) => {
                        buf.truncate(n);
                        Some((
                            Ok(buf.freeze()),
                            (Some(file), offset + n as u64, left - n as u64),
                        ))
                    }
                    Ok((_, _, Err(e))) => Some((Err(e), (None, offset, 0))),
                    Err(e) => Some((Err(std::io::Error::other(e)), (None, offset, 0))),
                }
            },
        );
        Ok(Some(BlobRead {
            size,
            stream: Box::pin(stream),
        }))
    }

    async fn remove(&self, id: &ImageId) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.image_path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> Result<Vec<(ImageId, u64)>, BlobError> {
        let dir = self.root.join("images");
        blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name();
                // Anything that is not a valid id is not ours to serve.
                if let Some(id) = name.to_str().and_then(ImageId::parse) {
                    out.push((id, entry.metadata()?.len()));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn clear_incomplete(&self) -> Result<usize, BlobError> {
        let dir = self.root.join("incomplete");
        blocking(move || {
            let mut n = 0;
            for entry in std::fs::read_dir(dir)? {
                std::fs::remove_file(entry?.path())?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }
}

struct FsWriter {
    file: Arc<File>,
    tmp: PathBuf,
    dest: PathBuf,
    quarantine: PathBuf,
    written: Arc<AtomicU64>,
    /// The background `fdatasync` running, if any (see [`WRITEBACK_EVERY`]); the
    /// commit waits for it, so its outcome is never lost.
    writeback: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Bytes written when the last background `fdatasync` started.
    written_back: u64,
}

impl FsWriter {
    /// Starts a background `fdatasync` when [`WRITEBACK_EVERY`] more bytes were written
    /// since the last one started and none is running; reports the outcome of one that
    /// ended (a disk that cannot write back fails the blob now, not at the commit).
    async fn start_writeback(&mut self, written: u64) -> Result<(), BlobError> {
        if written - self.written_back < WRITEBACK_EVERY {
            return Ok(());
        }
        if let Some(running) = &self.writeback {
            if !running.is_finished() {
                return Ok(());
            }
        }
        self.finish_writeback().await?;
        let file = self.file.clone();
        self.written_back = written;
        self.writeback = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        Ok(())
    }

    /// Waits for the background `fdatasync`, if one runs.
    async fn finish_writeback(&mut self) -> Result<(), BlobError> {
        match self.writeback.take() {
            None => Ok(()),
            Some(handle) => handle
                .await
                .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
                .map_err(BlobError::Io),
        }
    }
}

struct FsTap {
    file: Arc<File>,
    written: Arc<AtomicU64>,
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        let file = self.file.clone();
        let at = self.written.load(Ordering::Acquire);
        let len = data.len() as u64;
        blocking(move || file.write_all_at(&data, at)).await?;
        self.written.store(at + len, Ordering::Release);
        self.start_writeback(at + len).await
    }

    fn tap(&self) -> Arc<dyn BlobTap> {
        Arc::new(FsTap {
            file: self.file.clone(),
            written: self.written.clone(),
        })
    }

    async fn commit(mut self: Box<Self>) -> Result<(), BlobError> {
        self.finish_writeback().await?;
        let Self {
            file, tmp, dest, ..
        } = *self;
        blocking(move || {
            file.sync_all()?;
            std::fs::rename(&tmp, &dest)?;
            if let Some(dir) = dest.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    async fn abort(mut self: Box<Self>, quarantine: bool) -> Result<(), BlobError> {
        // The blob is dropped whatever the background writeback says; it ends first.
        let _ = self.finish_writeback().await;
        let Self {
            tmp, quarantine: q, ..
        } = *self;
        blocking(move || {
            if quarantine {
                std::fs::rename(&tmp, &q)
            } else {
                std::fs::remove_file(&tmp)
            }
        })
        .await
    }
}

#[async_trait]
impl BlobTap for FsTap {
    async fn read_at(&self, offset: u64, max: usize) -> Result<Bytes, BlobError> {
        let written = self.written.load(Ordering::Acquire);
        if offset >= written {
            return Ok(Bytes::new());
        }
        let n = usize::try_from(written - offset).unwrap_or(max).min(max);
        let file = self.file.clone();
        blocking(move || {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run_all(&FsBlobStore::open(dir.path()).unwrap()).await;
    }

    /// A blob cut short on disk after it was opened (someone else truncated the file)
    /// ends its stream with an error after the bytes still there: never a short answer
    /// taken for a whole one, never a hang. Ranges read the right bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_cut_short_after_opening_ends_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let id = ImageId::parse("11111111-2222-3333-4444-777777777777").unwrap();
        let data: Vec<u8> = (0..(READ_CHUNK * 3) as u32)
            .map(|n| (n % 253) as u8)
            .collect();
        let mut w = store.create(&id).await.unwrap();
        w.write(Bytes::from(data.clone())).await.unwrap();
        w.commit().await.unwrap();

        let range = ByteRange {
            first: 1000,
            last: 300000,
        };
        let read = store.open(&id, Some(range)).await.unwrap().unwrap();
        let mut got = Vec::new();
        let mut stream = read.stream;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, &data[1000..=300000]);

        let read = store.open(&id, None).await.unwrap().unwrap();
        assert_eq!(read.size, data.len() as u64);
        std::fs::OpenOptions::new()
            .write(true)
            .open(store.image_path(&id))
            .unwrap()
            .set_len(READ_CHUNK as u64 + 10)
            .unwrap();
        let mut stream = read.stream;
        let mut got = 0usize;
        let mut failed = None;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            match chunk {
                Ok(b) => got += b.len(),
                Err(e) => failed = Some(e),
            }
        }
        assert_eq!(got, READ_CHUNK + 10);
        assert_eq!(
            failed.map(|e| e.kind()),
            Some(std::io::ErrorKind::UnexpectedEof)
        );
    }

    /// A blob longer than [`WRITEBACK_EVERY`] (background writebacks started while it
    /// is written) commits whole and reads back byte for byte; one aborted after a
    /// writeback started leaves nothing behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writeback_during_the_write_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let id = ImageId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let piece = |n: u64| Bytes::from(vec![(n % 251) as u8; 1 << 20]);
        let pieces = WRITEBACK_EVERY / (1 << 20) * 2 + 3;
        let mut w = store.create(&id).await.unwrap();
        for n in 0..pieces {
            w.write(piece(n)).await.unwrap();
        }
        w.commit().await.unwrap();
        let read = store.open(&id, None).await.unwrap().unwrap();
        assert_eq!(read.size, pieces << 20);
        let mut at = 0u64;
        let mut stream = read.stream;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            for b in chunk.unwrap() {
                assert_eq!(b, ((at >> 20) % 251) as u8, "byte {at}");
                at += 1;
            }
        }
        assert_eq!(at, pieces << 20);

        let other = ImageId::parse("11111111-2222-3333-4444-666666666666").unwrap();
        let mut w = store.create(&other).await.unwrap();
        for n in 0..(WRITEBACK_EVERY >> 20) + 1 {
            w.write(piece(n)).await.unwrap();
        }
        w.abort(false).await.unwrap();
        assert!(store.open(&other, None).await.unwrap().is_none());
        assert_eq!(store.clear_incomplete().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_crash_leaves_nothing_servable() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let id = ImageId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let mut w = store.create(&id).await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        // Simulate a crash: the writer is dropped without commit or abort.
        std::mem::forget(w);
        let store = FsBlobStore::open(dir.path()).unwrap();
        assert!(store.open(&id, None).await.unwrap().is_none());
        assert_eq!(store.clear_incomplete().await.unwrap(), 1);
        assert!(store.list().await.unwrap().is_empty());
        // Stray files that are not ids are never listed.
        std::fs::write(dir.path().join("images").join("..evil"), b"x").unwrap();
        assert!(store.list().await.unwrap().is_empty());
    }
}
