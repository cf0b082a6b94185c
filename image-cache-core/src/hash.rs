//! Verifying image data against the checksums its metadata promises.

use md5::{Digest, Md5};

/// A running hash of one algorithm Glance uses for `os_hash_algo`.
enum Multi {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// Hashes data as it streams by and says at the end whether it matches the image's
/// `checksum` (MD5) and `os_hash_value` (with `os_hash_algo`).
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
    /// A verifier for the given expectations (hex values, any case).
    pub fn new(
        checksum: Option<&str>,
        os_hash_algo: Option<&str>,
        os_hash_value: Option<&str>,
    ) -> Result<Self, VerifyError> {
        let multi = match (os_hash_algo, os_hash_value) {
            (Some(algo), Some(value)) => {
                let h = match algo.to_ascii_lowercase().as_str() {
                    "sha1" => Multi::Sha1(sha1::Sha1::new()),
                    "sha256" => Multi::Sha256(sha2::Sha256::new()),
                    "sha384" => Multi::Sha384(sha2::Sha384::new()),
                    "sha512" => Multi::Sha512(sha2::Sha512::new()),
                    other => return Err(VerifyError::UnsupportedAlgorithm(other.to_owned())),
                };
                Some((h, value.to_ascii_lowercase()))
            }
            _ => None,
        };
        let md5 = checksum.map(|c| (Md5::new(), c.to_ascii_lowercase()));
        if md5.is_none() && multi.is_none() {
            return Err(VerifyError::NothingToVerify);
        }
        Ok(Self {
            md5,
            multi,
            bytes: 0,
        })
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
    /// can run on separate threads; either is `None` when the metadata does not promise
    /// that hash. Both must pass.
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

    const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";
    const SHA512_ABC: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    #[test]
    fn verifies_md5_and_multihash() {
        let mut v = Verifier::new(Some(MD5_ABC), Some("sha512"), Some(SHA512_ABC)).unwrap();
        v.update(b"a");
        v.update(b"bc");
        assert_eq!(v.finish(Some(3)), Ok(()));
        let mut v = Verifier::new(Some(MD5_ABC), Some("sha512"), Some(SHA512_ABC)).unwrap();
        v.update(b"abd");
        assert!(
            matches!(v.finish(None), Err(VerifyError::Mismatch { algorithm, .. }) if algorithm == "sha512")
        );
        // MD5 alone is checked too (a forged multihash cannot hide a bad md5).
        let mut v = Verifier::new(
            Some("00000000000000000000000000000000"),
            Some("sha512"),
            Some(SHA512_ABC),
        )
        .unwrap();
        v.update(b"abc");
        assert!(
            matches!(v.finish(None), Err(VerifyError::Mismatch { algorithm, .. }) if algorithm == "md5")
        );
        let mut v = Verifier::new(Some(MD5_ABC), None, None).unwrap();
        v.update(b"abc");
        assert!(matches!(v.finish(Some(4)), Err(VerifyError::Size { .. })));
        assert!(matches!(
            Verifier::new(None, None, None),
            Err(VerifyError::NothingToVerify)
        ));
        assert!(matches!(
            Verifier::new(None, Some("crc32"), Some("x")),
            Err(VerifyError::UnsupportedAlgorithm(_))
        ));
    }
}
