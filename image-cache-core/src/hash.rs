//! Verifying image data against the checksums its metadata promises.
//!
//! Which ones: by default the strongest the image names, as python-glanceclient (Glance's
//! own client, `glanceclient/v2/images.py` `Controller.data`) decides — `os_hash_value`
//! with `os_hash_algo` when the image has a multihash of an algorithm this build knows,
//! else the MD5 `checksum`. [`VerifyPolicy::All`] checks both.

use md5::{Digest, Md5};

/// Which of the checksums an image's metadata promises are verified (configuration
/// `verify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VerifyPolicy {
    /// The strongest the image names (glanceclient's rule): its multihash
    /// (`os_hash_value`, `os_hash_algo`) when it has one of a known algorithm, else its
    /// MD5 `checksum`. One hash over the data.
    #[default]
    Strongest,
    /// Every checksum the image names that this build can compute: the MD5 `checksum`
    /// and the multihash. Two hashes over the data.
    All,
}

/// A running hash of one algorithm Glance uses for `os_hash_algo`.
enum Multi {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Multi {
    /// The hash for an `os_hash_algo` (any case), if this build knows it.
    fn new(algo: &str) -> Option<Self> {
        Some(match algo.to_ascii_lowercase().as_str() {
            "sha1" => Multi::Sha1(sha1::Sha1::new()),
            "sha256" => Multi::Sha256(sha2::Sha256::new()),
            "sha384" => Multi::Sha384(sha2::Sha384::new()),
            "sha512" => Multi::Sha512(sha2::Sha512::new()),
            _ => return None,
        })
    }
}

/// Hashes data as it streams by and says at the end whether it matches the checksums
/// chosen by a [`VerifyPolicy`] among the image's `checksum` (MD5) and `os_hash_value`
/// (with `os_hash_algo`).
pub struct Verifier {
    md5: Option<(Md5, String)>,
    multi: Option<(Multi, String)>,
    bytes: u64,
}

/// Why data failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The metadata names a hash algorithm this build does not know.
    #[error("unsupported hash algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The metadata promises no checksum at all: nothing can be verified.
    #[error("the image has no checksum to verify against")]
    NothingToVerify,
    /// A checksum does not match.
    #[error("{algorithm} mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// `md5`, `sha512`, …
        algorithm: String,
        /// What the metadata says.
        expected: String,
        /// What the data hashes to.
        actual: String,
    },
    /// The size does not match.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    Size {
        /// What the metadata says.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Verifier {
    /// A verifier for the given expectations (hex values, any case), checking what
    /// `policy` chooses among them. A multihash counts only with both `os_hash_algo` and
    /// `os_hash_value`; one of an algorithm this build does not know is skipped for the
    /// MD5 `checksum` under either policy (glanceclient's `allow_md5_fallback`), and is
    /// an error only when there is no `checksum` to fall back on.
    pub fn new(
        checksum: Option<&str>,
        os_hash_algo: Option<&str>,
        os_hash_value: Option<&str>,
        policy: VerifyPolicy,
    ) -> Result<Self, VerifyError> {
        let mut unsupported = None;
        let multi = match (os_hash_algo, os_hash_value) {
            (Some(algo), Some(value)) => match Multi::new(algo) {
                Some(h) => Some((h, value.to_ascii_lowercase())),
                None => {
                    unsupported = Some(algo.to_ascii_lowercase());
                    None
                }
            },
            _ => None,
        };
        let md5 = match (policy, &multi) {
            // The multihash alone, as glanceclient (`check_md5sum = False`).
            (VerifyPolicy::Strongest, Some(_)) => None,
            _ => checksum.map(|c| (Md5::new(), c.to_ascii_lowercase())),
        };
        if md5.is_none() && multi.is_none() {
            return Err(match unsupported {
                Some(algo) => VerifyError::UnsupportedAlgorithm(algo),
                None => VerifyError::NothingToVerify,
            });
        }
        Ok(Self {
            md5,
            multi,
            bytes: 0,
        })
    }

    /// The algorithms checked (`md5`, `sha512`, …), for logs and tests.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let multi = self.multi.as_ref().map(|(h, _)| match h {
            Multi::Sha1(_) => "sha1",
            Multi::Sha256(_) => "sha256",
            Multi::Sha384(_) => "sha384",
            Multi::Sha512(_) => "sha512",
        });
        self.md5
            .as_ref()
            .map(|_| "md5")
            .into_iter()
            .chain(multi)
            .collect()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some((h, _)) = &mut self.md5 {
            h.update(data);
        }
        match &mut self.multi {
            Some((Multi::Sha1(h), _)) => h.update(data),
            Some((Multi::Sha256(h), _)) => h.update(data),
            Some((Multi::Sha384(h), _)) => h.update(data),
            Some((Multi::Sha512(h), _)) => h.update(data),
            None => {}
        }
    }

    /// Splits into a verifier of the MD5 `checksum` and one of the multihash, so the two
    /// can run on separate threads; either is `None` when that hash is not checked (the
    /// policy did not choose it, or the metadata does not promise it). Both must pass.
    pub fn split(self) -> (Option<Verifier>, Option<Verifier>) {
        let md5 = self.md5.map(|m| Verifier {
            md5: Some(m),
            multi: None,
            bytes: self.bytes,
        });
        let multi = self.multi.map(|m| Verifier {
            md5: None,
            multi: Some(m),
            bytes: self.bytes,
        });
        (md5, multi)
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Checks everything promised (and the size, if given).
    pub fn finish(self, size: Option<u64>) -> Result<(), VerifyError> {
        if let Some(expected) = size {
            if expected != self.bytes {
                return Err(VerifyError::Size {
                    expected,
                    actual: self.bytes,
                });
            }
        }
        if let Some((algo_name, actual, expected)) = self.multi.map(|(h, want)| {
            let (name, got) = match h {
                Multi::Sha1(h) => ("sha1", hex(&h.finalize())),
                Multi::Sha256(h) => ("sha256", hex(&h.finalize())),
                Multi::Sha384(h) => ("sha384", hex(&h.finalize())),
                Multi::Sha512(h) => ("sha512", hex(&h.finalize())),
            };
            (name, got, want)
        }) {
            if actual != expected {
                return Err(VerifyError::Mismatch {
                    algorithm: algo_name.to_owned(),
                    expected,
                    actual,
                });
            }
        }
        if let Some((h, expected)) = self.md5 {
            let actual = hex(&h.finalize());
            if actual != expected {
                return Err(VerifyError::Mismatch {
                    algorithm: "md5".to_owned(),
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";
    const SHA512_ABC: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const WRONG_MD5: &str = "00000000000000000000000000000000";
    const POLICIES: [VerifyPolicy; 2] = [VerifyPolicy::Strongest, VerifyPolicy::All];

    fn check(
        checksum: Option<&str>,
        algo: Option<&str>,
        value: Option<&str>,
        policy: VerifyPolicy,
        data: &[u8],
    ) -> Result<(), VerifyError> {
        let mut v = Verifier::new(checksum, algo, value, policy)?;
        v.update(data);
        v.finish(None)
    }

    fn mismatch_of(r: Result<(), VerifyError>) -> Option<String> {
        match r {
            Err(VerifyError::Mismatch { algorithm, .. }) => Some(algorithm),
            _ => None,
        }
    }

    #[test]
    fn verifies_md5_and_multihash() {
        for policy in POLICIES {
            let mut v =
                Verifier::new(Some(MD5_ABC), Some("sha512"), Some(SHA512_ABC), policy).unwrap();
            v.update(b"a");
            v.update(b"bc");
            assert_eq!(v.finish(Some(3)), Ok(()));
            let mut v = Verifier::new(Some(MD5_ABC), None, None, policy).unwrap();
            v.update(b"abc");
            assert!(matches!(v.finish(Some(4)), Err(VerifyError::Size { .. })));
            assert!(matches!(
                Verifier::new(None, None, None, policy),
                Err(VerifyError::NothingToVerify)
            ));
            assert!(matches!(
                Verifier::new(None, Some("crc32"), Some("x"), policy),
                Err(VerifyError::UnsupportedAlgorithm(_))
            ));
        }
    }

    #[test]
    fn a_multihash_mismatch_always_fails() {
        for policy in POLICIES {
            let r = check(
                Some(MD5_ABC),
                Some("sha512"),
                Some(SHA512_ABC),
                policy,
                b"abd",
            );
            assert_eq!(mismatch_of(r).as_deref(), Some("sha512"), "{policy:?}");
            // The data matches the MD5 but not the multihash: still refused.
            let forged = "0".repeat(128);
            let r = check(Some(MD5_ABC), Some("SHA512"), Some(&forged), policy, b"abc");
            assert_eq!(mismatch_of(r).as_deref(), Some("sha512"), "{policy:?}");
        }
    }

    #[test]
    fn an_md5_mismatch_under_a_matching_multihash_fails_only_under_all() {
        // glanceclient checks the multihash alone when the image has one.
        let strongest = check(
            Some(WRONG_MD5),
            Some("sha512"),
            Some(SHA512_ABC),
            VerifyPolicy::Strongest,
            b"abc",
        );
        assert_eq!(strongest, Ok(()));
        let all = check(
            Some(WRONG_MD5),
            Some("sha512"),
            Some(SHA512_ABC),
            VerifyPolicy::All,
            b"abc",
        );
        assert_eq!(mismatch_of(all).as_deref(), Some("md5"));
        let v = Verifier::new(
            Some(MD5_ABC),
            Some("sha512"),
            Some(SHA512_ABC),
            VerifyPolicy::Strongest,
        )
        .unwrap();
        assert_eq!(v.algorithms(), ["sha512"]);
        let v = Verifier::new(
            Some(MD5_ABC),
            Some("sha512"),
            Some(SHA512_ABC),
            VerifyPolicy::All,
        )
        .unwrap();
        assert_eq!(v.algorithms(), ["md5", "sha512"]);
    }

    #[test]
    fn md5_is_checked_without_a_usable_multihash() {
        for policy in POLICIES {
            // No multihash, half of one, or one of an unknown algorithm: the MD5 decides.
            for (algo, value) in [
                (None, None),
                (Some("sha512"), None),
                (None, Some(SHA512_ABC)),
                (Some("sha3_512"), Some("ab")),
            ] {
                let v = Verifier::new(Some(MD5_ABC), algo, value, policy).unwrap();
                assert_eq!(v.algorithms(), ["md5"]);
                assert_eq!(check(Some(MD5_ABC), algo, value, policy, b"abc"), Ok(()));
                let r = check(Some(WRONG_MD5), algo, value, policy, b"abc");
                assert_eq!(
                    mismatch_of(r).as_deref(),
                    Some("md5"),
                    "{policy:?} {algo:?}"
                );
            }
        }
    }

    #[test]
    fn policy_from_configuration() {
        #[derive(serde::Deserialize)]
        struct C {
            #[serde(default)]
            verify: VerifyPolicy,
        }
        let parse = |s: &str| serde_json::from_str::<C>(s).map(|c| c.verify);
        assert_eq!(parse("{}").unwrap(), VerifyPolicy::Strongest);
        assert_eq!(
            parse(r#"{"verify":"strongest"}"#).unwrap(),
            VerifyPolicy::Strongest
        );
        assert_eq!(parse(r#"{"verify":"all"}"#).unwrap(), VerifyPolicy::All);
        assert!(parse(r#"{"verify":"none"}"#).is_err());
    }

    /// What the metadata says of one hash.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Promise {
        Absent,
        Right,
        Wrong,
        /// (multihash only) an algorithm this build does not know.
        Unknown,
    }

    fn promise() -> impl Strategy<Value = Promise> {
        prop_oneof![
            Just(Promise::Absent),
            Just(Promise::Right),
            Just(Promise::Wrong)
        ]
    }

    /// The rule, written out: which hashes are checked, then the first mismatch (the
    /// multihash is reported before the MD5).
    fn model(
        md5: Promise,
        multi: Promise,
        sha: &'static str,
        policy: VerifyPolicy,
    ) -> Result<(), String> {
        let usable = matches!(multi, Promise::Right | Promise::Wrong);
        let check_md5 = md5 != Promise::Absent && (policy == VerifyPolicy::All || !usable);
        if !check_md5 && !usable {
            return Err(if multi == Promise::Unknown {
                "unsupported".into()
            } else {
                "nothing".into()
            });
        }
        if usable && multi == Promise::Wrong {
            return Err(sha.into());
        }
        if check_md5 && md5 == Promise::Wrong {
            return Err("md5".into());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn follows_the_rule(
            md5 in promise(),
            multi in prop_oneof![promise(), Just(Promise::Unknown)],
            sha256 in any::<bool>(),
            all in any::<bool>(),
            split in 0usize..=3,
        ) {
            let policy = if all { VerifyPolicy::All } else { VerifyPolicy::Strongest };
            let (sha, right) = if sha256 { ("sha256", SHA256_ABC) } else { ("sha512", SHA512_ABC) };
            let wrong_sha = "f".repeat(right.len());
            let checksum = match md5 {
                Promise::Absent => None,
                Promise::Right => Some(MD5_ABC),
                _ => Some(WRONG_MD5),
            };
            let (algo, value) = match multi {
                Promise::Absent => (None, None),
                Promise::Right => (Some(sha), Some(right)),
                Promise::Wrong => (Some(sha), Some(wrong_sha.as_str())),
                Promise::Unknown => (Some("blake2b"), Some(right)),
            };
            let whole = Verifier::new(checksum, algo, value, policy).and_then(|mut v| {
                v.update(&b"abc"[..split]);
                v.update(&b"abc"[split..]);
                v.finish(Some(3))
            });
            // Split for two threads (as a fill hashes): the same verdict.
            let parts = Verifier::new(checksum, algo, value, policy).and_then(|v| {
                let (a, b) = v.split();
                let mut verdict = Ok(());
                for mut part in [a, b].into_iter().flatten() {
                    part.update(b"abc");
                    if verdict.is_ok() {
                        verdict = part.finish(Some(3));
                    }
                }
                verdict
            });
            prop_assert_eq!(parts.is_ok(), whole.is_ok());
            let got = whole;
            let got = got.map_err(|e| match e {
                VerifyError::Mismatch { algorithm, .. } => algorithm,
                VerifyError::UnsupportedAlgorithm(_) => "unsupported".into(),
                VerifyError::NothingToVerify => "nothing".into(),
                other => other.to_string(),
            });
            prop_assert_eq!(got, model(md5, multi, sha, policy));
        }
    }
}
