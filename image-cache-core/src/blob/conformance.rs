//! The conformance suite every [`BlobStore`] must pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::TryStreamExt;

use super::{BlobError, BlobStore};
use crate::id::ImageId;
use crate::upstream::ByteRange;

fn id(n: u8) -> ImageId {
    ImageId::parse(&format!("{n:08x}-1111-4000-8000-000000000000")).unwrap()
}

async fn read<S: BlobStore + ?Sized>(s: &S, i: &ImageId, r: Option<ByteRange>) -> Option<Vec<u8>> {
    let b = s.open(i, r).await.unwrap()?;
    let chunks: Vec<Bytes> = b.stream.try_collect().await.unwrap();
    Some(chunks.concat())
}

/// Runs every check on an empty store.
pub async fn run_all<S: BlobStore + ?Sized>(store: &S) {
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    // Invisible until committed; the tap sees what is written so far.
    let mut w = store.create(&id(1)).await.unwrap();
    let tap = w.tap();
    assert!(tap.read_at(0, 10).await.unwrap().is_empty());
    w.write(Bytes::copy_from_slice(&data[..1000]))
        .await
        .unwrap();
    assert!(store.open(&id(1), None).await.unwrap().is_none());
    assert_eq!(tap.read_at(10, 5).await.unwrap(), &data[10..15]);
    assert_eq!(tap.read_at(990, 100).await.unwrap(), &data[990..1000]);
    w.write(Bytes::copy_from_slice(&data[1000..]))
        .await
        .unwrap();
    w.commit().await.unwrap();
    assert_eq!(
        tap.read_at(599_990, 100).await.unwrap(),
        &data[599_990..],
        "a tap outlives the commit"
    );
    assert_eq!(read(store, &id(1), None).await.unwrap(), data);
    let r = ByteRange {
        first: 5,
        last: 300_004,
    };
    assert_eq!(
        read(store, &id(1), Some(r)).await.unwrap(),
        &data[5..300_005]
    );
    let last = ByteRange {
        first: 599_999,
        last: 599_999,
    };
    assert_eq!(
        read(store, &id(1), Some(last)).await.unwrap(),
        &data[599_999..]
    );
    let past = ByteRange {
        first: 10,
        last: 600_000,
    };
    assert!(matches!(
        store.open(&id(1), Some(past)).await,
        Err(BlobError::BadRange { .. })
    ));
    assert_eq!(store.list().await.unwrap(), vec![(id(1), 600_000)]);
    // Aborted writes leave nothing; neither does a quarantined one.
    for q in [false, true] {
        let mut w = store.create(&id(2)).await.unwrap();
        w.write(Bytes::from_static(b"bad")).await.unwrap();
        w.abort(q).await.unwrap();
        assert!(store.open(&id(2), None).await.unwrap().is_none());
    }
    // An empty blob is a blob.
    let w = store.create(&id(3)).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read(store, &id(3), None).await.unwrap(), Vec::<u8>::new());
    store.remove(&id(1)).await.unwrap();
    store.remove(&id(1)).await.unwrap();
    store.remove(&id(3)).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.clear_incomplete().await.unwrap(), 0);
}
