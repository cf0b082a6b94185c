//! What the cache knows about an image.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::ImageId;

/// An image's lifecycle state, as Glance names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    /// Has data and may be downloaded.
    Active,
    /// Known but without data yet.
    Queued,
    /// Data being uploaded.
    Saving,
    /// Data being imported.
    Importing,
    /// Data staged by an import.
    Uploading,
    /// Data exists but an admin made it unavailable.
    Deactivated,
    /// Upload failed.
    Killed,
    /// Deleted.
    Deleted,
    /// Deleted, data not yet scrubbed.
    PendingDelete,
    /// A status this version does not know.
    Other(String),
}

impl ImageStatus {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Queued => "queued",
            Self::Saving => "saving",
            Self::Importing => "importing",
            Self::Uploading => "uploading",
            Self::Deactivated => "deactivated",
            Self::Killed => "killed",
            Self::Deleted => "deleted",
            Self::PendingDelete => "pending_delete",
            Self::Other(s) => s,
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "queued" => Self::Queued,
            "saving" => Self::Saving,
            "importing" => Self::Importing,
            "uploading" => Self::Uploading,
            "deactivated" => Self::Deactivated,
            "killed" => Self::Killed,
            "deleted" => Self::Deleted,
            "pending_delete" => Self::PendingDelete,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ImageStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ImageStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// Who may see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Everybody.
    Public,
    /// Its owner (and admins).
    Private,
    /// Its owner and the projects it is shared with.
    Shared,
    /// Everybody who asks for it, but not listed by default.
    Community,
}

impl Visibility {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Shared => "shared",
            Self::Community => "community",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Self::Public,
            "private" => Self::Private,
            "shared" => Self::Shared,
            "community" => Self::Community,
            _ => return None,
        })
    }
}

/// One image's metadata.
///
/// The fields the cache reasons about are typed; everything else the upstream says about
/// the image (name, formats, tags, custom properties, …) is kept verbatim in
/// `properties`, so the edge can answer with exactly what the central said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageRecord {
    /// The id (validated; never used as a path).
    pub id: ImageId,
    /// Lifecycle state.
    pub status: ImageStatus,
    /// Size of the data in bytes, once known.
    pub size: Option<u64>,
    /// MD5 of the data (hex), Glance's legacy `checksum`.
    pub checksum: Option<String>,
    /// The multihash algorithm (`sha512`, …).
    pub os_hash_algo: Option<String>,
    /// The multihash value (hex).
    pub os_hash_value: Option<String>,
    /// Who may see it.
    pub visibility: Visibility,
    /// The owning project.
    pub owner: Option<String>,
    /// Creation time as the upstream wrote it (ISO 8601).
    pub created_at: String,
    /// Last update as the upstream wrote it (ISO 8601).
    pub updated_at: String,
    /// Projects the image is shared with that accepted it (Glance's image members with
    /// status `accepted`); they may see a `shared` image. Empty until learned.
    #[serde(default)]
    pub members: Vec<String>,
    /// Everything else, verbatim.
    pub properties: BTreeMap<String, Value>,
}

impl ImageRecord {
    /// A minimal active record (for tests and examples).
    pub fn new(id: ImageId, visibility: Visibility) -> Self {
        Self {
            id,
            status: ImageStatus::Active,
            size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            visibility,
            owner: None,
            created_at: String::new(),
            updated_at: String::new(),
            members: Vec::new(),
            properties: BTreeMap::new(),
        }
    }

    /// The value of a field by its wire name, typed fields included (for filters and
    /// sorting).
    pub fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "id" => Value::String(self.id.as_str().to_owned()),
            "status" => Value::String(self.status.as_str().to_owned()),
            "size" => self.size.map(Value::from)?,
            "checksum" => Value::String(self.checksum.clone()?),
            "os_hash_algo" => Value::String(self.os_hash_algo.clone()?),
            "os_hash_value" => Value::String(self.os_hash_value.clone()?),
            "visibility" => Value::String(self.visibility.as_str().to_owned()),
            "owner" => Value::String(self.owner.clone()?),
            "created_at" => Value::String(self.created_at.clone()),
            "updated_at" => Value::String(self.updated_at.clone()),
            other => self.properties.get(other)?.clone(),
        })
    }
}
