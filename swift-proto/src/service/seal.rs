//! Sessions as other proxies read them: sealed with a key derived from the token.
//!
//! A shared [`SessionStore`](federation_core::sessions::SessionStore) keeps, per
//! session, the SHA-256 of `"stackfed-session-id\0" + token` and a blob sealed with
//! ChaCha20-Poly1305 under the SHA-256 of `"stackfed-session-key\0" + token`, bound to
//! the hash (associated data). The token itself (128 random bits) is never stored, so
//! whoever reads the store learns neither the tokens nor the users' keys inside the
//! blobs; any proxy that is handed the token can open its session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use federation_core::attrs::now_ms;
use federation_core::sessions::TokenHash;
use federation_core::ClusterId;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::{ClusterToken, Credentials};

const NONCE_LEN: usize = 12;

/// The store's key for a token.
pub(crate) fn token_hash(token: &str) -> TokenHash {
    Sha256::new()
        .chain_update(b"stackfed-session-id\0")
        .chain_update(token.as_bytes())
        .finalize()
        .into()
}

fn sealing_key(token: &str) -> Key {
    let digest: [u8; 32] = Sha256::new()
        .chain_update(b"stackfed-session-key\0")
        .chain_update(token.as_bytes())
        .finalize()
        .into();
    Key::from(digest)
}

#[derive(Serialize, Deserialize)]
struct SealedToken {
    token: String,
    storage_path: String,
    expires_at_ms: u64,
}

/// What a sealed session holds.
#[derive(Serialize, Deserialize)]
struct Contents {
    user: String,
    key: String,
    storage_path: String,
    expires_at_ms: u64,
    tokens: HashMap<String, SealedToken>,
}

/// A session opened from the store.
pub(crate) struct Opened {
    pub(crate) credentials: Credentials,
    pub(crate) storage_path: String,
    pub(crate) expires: Instant,
    pub(crate) tokens: HashMap<ClusterId, ClusterToken>,
}

fn wall_ms(at: Instant) -> u64 {
    let left = at.saturating_duration_since(Instant::now());
    now_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

fn instant(at_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

/// Seals a session for `token`; `None` only if no randomness is available.
pub(crate) fn seal(
    token: &str,
    credentials: &Credentials,
    storage_path: &str,
    expires: Instant,
    tokens: &HashMap<ClusterId, ClusterToken>,
) -> Option<(Vec<u8>, u64)> {
    let expires_at_ms = wall_ms(expires);
    let contents = Contents {
        user: credentials.user.clone(),
        key: credentials.key.clone(),
        storage_path: storage_path.to_owned(),
        expires_at_ms,
        tokens: tokens
            .iter()
            .filter_map(|(id, t)| {
                Some((
                    id.as_str().to_owned(),
                    SealedToken {
                        token: t.token.to_str().ok()?.to_owned(),
                        storage_path: t.storage_path.clone(),
                        expires_at_ms: wall_ms(t.expires),
                    },
                ))
            })
            .collect(),
    };
    let plain = serde_json::to_vec(&contents).ok()?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).ok()?;
    let aad = token_hash(token);
    let sealed = ChaCha20Poly1305::new(&sealing_key(token))
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Some((out, expires_at_ms))
}

/// Opens what [`seal`] made for `token`; `None` when it was not sealed for this token
/// or was altered.
pub(crate) fn open(token: &str, blob: &[u8]) -> Option<Opened> {
    let nonce: [u8; NONCE_LEN] = blob.get(..NONCE_LEN)?.try_into().ok()?;
    let aad = token_hash(token);
    let plain = ChaCha20Poly1305::new(&sealing_key(token))
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: blob.get(NONCE_LEN..)?,
                aad: &aad,
            },
        )
        .ok()?;
    let c: Contents = serde_json::from_slice(&plain).ok()?;
    let tokens = c
        .tokens
        .into_iter()
        .filter_map(|(id, t)| {
            Some((
                ClusterId::new(id).ok()?,
                ClusterToken {
                    token: HeaderValue::from_str(&t.token).ok()?,
                    storage_path: t.storage_path,
                    expires: instant(t.expires_at_ms),
                },
            ))
        })
        .collect();
    Some(Opened {
        credentials: Credentials {
            user: c.user,
            key: c.key,
        },
        storage_path: c.storage_path,
        expires: instant(c.expires_at_ms),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn creds() -> Credentials {
        Credentials {
            user: "test:tester".into(),
            key: "testing-secret-key".into(),
        }
    }

    #[test]
    fn round_trip_and_nothing_in_clear() {
        let mut tokens = HashMap::new();
        tokens.insert(
            ClusterId::new("east").unwrap(),
            ClusterToken {
                token: HeaderValue::from_static("AUTH_tkcluster"),
                storage_path: "/v1/AUTH_test".into(),
                expires: Instant::now() + Duration::from_secs(600),
            },
        );
        let expires = Instant::now() + Duration::from_secs(3600);
        let (blob, at) = seal("AUTH_tkabc", &creds(), "/v1/AUTH_test", expires, &tokens).unwrap();
        assert!(at > now_ms() + 3_590_000);
        let text = String::from_utf8_lossy(&blob);
        for secret in [
            "testing-secret-key",
            "AUTH_tkcluster",
            "test:tester",
            "AUTH_tkabc",
        ] {
            assert!(!text.contains(secret), "{secret} in clear");
        }
        let opened = open("AUTH_tkabc", &blob).unwrap();
        assert_eq!(opened.credentials.key, "testing-secret-key");
        assert_eq!(opened.storage_path, "/v1/AUTH_test");
        assert_eq!(opened.tokens.len(), 1);
        assert!(opened.expires > Instant::now() + Duration::from_secs(3590));
        assert!(
            open("AUTH_tkabd", &blob).is_none(),
            "another token cannot open it"
        );
        assert_ne!(
            token_hash("AUTH_tkabc").as_slice(),
            sealing_key("AUTH_tkabc").as_slice()
        );
    }

    proptest! {
        /// Any alteration or garbage is refused, never a panic.
        #[test]
        fn tampered_blobs_are_refused(flip in 0usize..200, garbage in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (mut blob, _) = seal("AUTH_tkx", &creds(), "/v1/AUTH_test", Instant::now(), &HashMap::new()).unwrap();
            let i = flip % blob.len();
            blob[i] ^= 1;
            prop_assert!(open("AUTH_tkx", &blob).is_none());
            prop_assert!(open("AUTH_tkx", &garbage).is_none());
        }
    }
}
