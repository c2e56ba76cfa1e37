//! What a feed store holds, read back whole: each publisher's index (feeds
//! and path records) and the keys released for its paths. Memory grows with
//! the index: the tests use it to check a store end to end; the commands
//! find a path by lookup instead ([`crate::lookup`]).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use tracing::warn;

use crate::format::identity::Identity;
use crate::format::record::{FeedDecl, FeedRole, ListingRecord, PathRecord, Record};
use crate::format::segment::PathKey;
use crate::format::storepath::StorePath;
use crate::io::{FeedIo, FeedIoError};
use crate::store::{Feed, FeedStore, StoreError};

/// One publisher's index, as far as the local copy goes.
#[derive(Debug, Clone)]
pub struct PublisherIndex {
    pub identity: Identity,
    /// Feed declarations by id.
    pub feeds: HashMap<u32, FeedDecl>,
    /// Path records with their block number in the index feed.
    pub paths: HashMap<StorePath, (u64, PathRecord)>,
    /// Listing records of paths, each checked against its path's record.
    pub listings: HashMap<StorePath, ListingRecord>,
    /// Where the publisher says its web seed is hosted (its latest
    /// [`Record::WebSeeds`]).
    pub web_seeds: Vec<String>,
    /// Index blocks read so far.
    pub len: u64,
}

impl PublisherIndex {
    /// An empty index for `identity`.
    pub fn new(identity: Identity) -> Self {
        PublisherIndex {
            identity,
            feeds: HashMap::new(),
            paths: HashMap::new(),
            listings: HashMap::new(),
            web_seeds: Vec::new(),
            len: 0,
        }
    }

    /// Reads the index feed from where this copy stopped to its end.
    /// Malformed or unknown records are logged and skipped, never fatal: one
    /// bad record must not hide the rest of a publisher's paths.
    pub async fn catch_up<F: FeedIo>(&mut self, feed: &mut F) -> Result<(), FeedIoError> {
        while self.len < feed.length() {
            let seq = self.len;
            match feed.read_record(seq).await {
                Ok(record) => self.apply(seq, record),
                Err(FeedIoError::Record { source, .. }) => {
                    warn!(seq, %source, "malformed index record skipped");
                }
                Err(e) => return Err(e),
            }
            self.len = seq + 1;
        }
        Ok(())
    }

    /// Takes in index record `seq` (records are applied in order).
    pub fn apply(&mut self, seq: u64, record: Record) {
        match record {
            Record::Feed(decl) => {
                self.feeds.insert(decl.id, decl);
            }
            Record::Path(p) => {
                if self.feeds.contains_key(&p.data_feed) {
                    self.paths.insert(p.store_path.clone(), (seq, *p));
                } else {
                    warn!(seq, path = %p.store_path, "index record names an undeclared data feed; skipped");
                }
            }
            Record::WebSeeds(w) => self.web_seeds = w.urls,
            Record::Listing(l) => match self.paths.get(&l.store_path) {
                Some((path_seq, p)) if l.layout(p, *path_seq).is_some() => {
                    self.listings.insert(l.store_path.clone(), l);
                }
                _ => {
                    warn!(seq, path = %l.store_path, "listing record does not fit its path's record; skipped")
                }
            },
            Record::Header(_)
            | Record::Unknown(_)
            | Record::Key(_)
            | Record::SetEntry(_)
            | Record::SetChannel(_)
            | Record::RunPage(_)
            | Record::Manifest(_)
            | Record::Generations(_) => {}
        }
        self.len = self.len.max(seq + 1);
    }

    /// The declared feed with `role` named `name`.
    pub fn feed_named(&self, role: FeedRole, name: &str) -> Option<&FeedDecl> {
        self.feeds
            .values()
            .find(|d| d.role == role && d.name == name)
    }
}

/// Why a path could not be located or unlocked.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not published by any publisher in this data directory")]
    UnknownPath(StorePath),
    #[error(
        "no key has been released for {0} (publish with key release, or run `hypernar release`)"
    )]
    NoKey(StorePath),
    #[error("data feed {feed} of {path} is not in this data directory")]
    NoDataFeed { path: StorePath, feed: String },
    #[error("publisher {publisher}: {source}")]
    Lookup {
        publisher: String,
        #[source]
        source: crate::lookup::LookupError,
    },
}

/// Everything a feed store holds, by publisher.
#[derive(Debug)]
pub struct Catalog {
    store: FeedStore,
    publishers: HashMap<[u8; 32], PublisherIndex>,
    /// Released keys by (publisher, path), already checked against the index.
    keys: HashMap<([u8; 32], StorePath), PathKey>,
}

impl Catalog {
    /// Reads every feed header in `store`, each publisher's index, and every
    /// key feed's releases.
    pub async fn load(store: FeedStore) -> Result<Self, StoreError> {
        let mut indexes = Vec::new();
        let mut key_feeds = Vec::new();
        for key in store.list()? {
            let Some(mut feed) = store.open_existing(&key).await? else {
                continue;
            };
            let header = match feed.header().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(feed = feed.name(), %e, "feed without a usable header (a sparse replica?) not listed");
                    continue;
                }
            };
            match header.role {
                FeedRole::Index if header.publisher == key.to_bytes() => indexes.push(feed),
                FeedRole::Keys => key_feeds.push((header.publisher, feed)),
                _ => {}
            }
        }
        let mut publishers = HashMap::new();
        for mut feed in indexes {
            let Ok(identity) = Identity::from_bytes(&feed.public_key().to_bytes()) else {
                continue;
            };
            let mut index = PublisherIndex::new(identity);
            index.catch_up(&mut feed).await.map_err(|e| match e {
                FeedIoError::Store(e) => e,
                FeedIoError::Record {
                    feed,
                    index,
                    source,
                } => StoreError::Record {
                    feed,
                    index,
                    source,
                },
                other => StoreError::FeedIo(Box::new(other)),
            })?;
            publishers.insert(identity.to_bytes(), index);
        }
        let mut catalog = Catalog {
            store,
            publishers,
            keys: HashMap::new(),
        };
        for (publisher, mut feed) in key_feeds {
            catalog.read_key_feed(publisher, &mut feed).await?;
        }
        Ok(catalog)
    }

    async fn read_key_feed(
        &mut self,
        publisher: [u8; 32],
        feed: &mut Feed,
    ) -> Result<(), StoreError> {
        let Some(index) = self.publishers.get(&publisher) else {
            return Ok(());
        };
        for seq in 1..feed.len() {
            let release = match feed.record(seq).await {
                Ok(Record::Key(k)) => k,
                Ok(_) => continue,
                Err(StoreError::Record { source, .. }) => {
                    warn!(feed = feed.name(), seq, %source, "malformed key record skipped");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let key = PathKey(release.key);
            match index.paths.get(&release.store_path) {
                // A key feed is not trusted: a released key counts only if it
                // matches the commitment in the publisher-signed index.
                Some((_, rec)) if rec.key_check == key.check() => {
                    self.keys.insert((publisher, release.store_path), key);
                }
                Some(_) => warn!(
                    feed = feed.name(),
                    path = %release.store_path,
                    "released key does not match the index commitment; ignored"
                ),
                None => {}
            }
        }
        Ok(())
    }

    /// The publishers in the store.
    pub fn publishers(&self) -> impl Iterator<Item = &PublisherIndex> {
        self.publishers.values()
    }

    /// Finds a published path.
    pub fn find(&self, path: &StorePath) -> Result<(&PublisherIndex, &PathRecord), CatalogError> {
        self.publishers
            .values()
            .find_map(|p| p.paths.get(path).map(|(_, r)| (p, r)))
            .ok_or_else(|| CatalogError::UnknownPath(path.clone()))
    }

    /// The released key of a path.
    pub fn key(&self, publisher: &Identity, path: &StorePath) -> Option<&PathKey> {
        self.keys.get(&(publisher.to_bytes(), path.clone()))
    }

    /// Opens the data feed that holds `record`.
    pub async fn data_feed(
        &self,
        publisher: &PublisherIndex,
        record: &PathRecord,
    ) -> Result<Feed, CatalogError> {
        let decl = &publisher.feeds[&record.data_feed];
        let key =
            VerifyingKey::from_bytes(&decl.public_key).map_err(|_| CatalogError::NoDataFeed {
                path: record.store_path.clone(),
                feed: hex::encode(decl.public_key),
            })?;
        self.store
            .open_existing(&key)
            .await?
            .ok_or_else(|| CatalogError::NoDataFeed {
                path: record.store_path.clone(),
                feed: hex::encode(decl.public_key),
            })
    }
}
