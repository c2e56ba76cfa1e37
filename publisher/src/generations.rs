//! Committing a channel's release as a **generation** (docs/protocol.md,
//! "Generations"; the format is `feed/src/format/generation.rs`).
//!
//! A follower's `generations` feed is created, given its header and
//! declared in the index at its first commit; a publisher that follows no
//! channel has none. A commit appends the closure's table (its run pages,
//! in batches) and then the [`Generations`] record naming the newest
//! generation of every channel, the committed one replaced. That record is
//! the commit: until it is appended, peers and the follower itself still
//! see the previous release as the channel's newest.
//!
//! **Crash safety.** Killed before the declaration: the feed holds at most
//! its header, undeclared, and the next commit declares it (its header is
//! found there). Killed between the pages and the record: the feed ends
//! with pages nobody points at; the next open appends the last record
//! again (so the last block is always a record, as peers read it), and the
//! follower, which takes what is committed from that record, ingests the
//! release again — finding every path published and publishing nothing —
//! and commits it then.

use hypernar_feed::format::generation::{Generation, Generations};
use hypernar_feed::format::identity::GENERATIONS_FEED;
use hypernar_feed::format::record::{FeedDecl, FeedHeader, FeedRole, Record};
use hypernar_feed::format::run::RunEntry;
use hypernar_feed::io::{ensure_header, FeedIo, FeedOpener};
use tracing::{info, warn};

use crate::error::PublishError;
use crate::publisher::{fault_point, Publisher};
use crate::runs;

/// The generations feed, once declared, and its last record.
pub(crate) struct GenerationsFeed<F> {
    pub feed: F,
    pub last: Generations,
}

/// The last `Generations` record of `feed` (reading back over the pages of
/// a commit cut short), appended again if pages follow it; the empty
/// record if there is none.
pub(crate) async fn last_record<F: FeedIo>(feed: &mut F) -> Result<Generations, PublishError> {
    let len = feed.length();
    let mut at = len;
    while at > 1 {
        at -= 1;
        match feed.read_record(at).await? {
            Record::Generations(g) => {
                if at + 1 != len {
                    warn!(
                        dead = len - at - 1,
                        "the generations feed ends with the table of a commit cut short; \
                         appending its last record again"
                    );
                    feed.write(vec![Record::Generations(g.clone()).encode()])
                        .await?;
                }
                return Ok(*g);
            }
            Record::RunPage(_) => {}
            other => {
                return Err(PublishError::Inconsistent(format!(
                    "block {at} of the generations feed is {}",
                    other.kind_name()
                )))
            }
        }
    }
    Ok(Generations::default())
}

impl<O: FeedOpener> Publisher<O> {
    /// Opens the generations feed if the index declares it.
    pub(crate) async fn open_generations(&mut self) -> Result<(), PublishError> {
        let Some(decl) = self
            .index
            .feed_named(FeedRole::Generations, GENERATIONS_FEED)
            .cloned()
        else {
            return Ok(());
        };
        let mut feed = self
            .opener
            .writable(&self.secret.feed_signing_key(GENERATIONS_FEED))
            .await?;
        if feed.public_key().to_bytes() != decl.public_key {
            return Err(PublishError::Inconsistent(
                "the index declares its generations feed with another key than this publisher's"
                    .into(),
            ));
        }
        let last = last_record(&mut feed).await?;
        self.generations = Some(GenerationsFeed { feed, last });
        Ok(())
    }

    /// The newest generation of every channel committed (empty before the
    /// first commit).
    pub fn generations(&self) -> Generations {
        self.generations
            .as_ref()
            .map(|g| g.last.clone())
            .unwrap_or_default()
    }

    /// Commits `generation` (its `table` and `closure` are set here) with
    /// the closure `entries` (where each of its paths is in this
    /// publisher's index and key feed). Returns it as committed.
    pub async fn commit_generation(
        &mut self,
        mut generation: Generation,
        entries: Vec<RunEntry>,
    ) -> Result<Generation, PublishError> {
        if self.generations.is_none() {
            self.declare_generations().await?;
        }
        let to = self.index_feed.length();
        if let Some(e) = entries.iter().find(|e| e.index_seq >= to) {
            return Err(PublishError::Inconsistent(format!(
                "a closure entry points at index block {}, past the index's {to}",
                e.index_seq
            )));
        }
        let g = self.generations.as_mut().expect("declared above");
        let first_block = g.feed.length();
        let (table, pages) = runs::encode_run(entries, first_block, 0, to);
        generation.table = table;
        generation.closure = table.entries;
        let next = g.last.with(generation.clone());
        next.check(first_block + table.pages()).map_err(|e| {
            PublishError::Inconsistent(format!("the generation to commit is refused: {e}"))
        })?;
        for batch in runs::batches(pages) {
            g.feed.write(batch).await?;
        }
        fault_point("generation-pages");
        g.feed
            .write(vec![Record::Generations(Box::new(next.clone())).encode()])
            .await?;
        g.last = next;
        info!(
            channel = %generation.channel,
            release = %generation.release,
            closure = generation.closure,
            pages = table.pages(),
            "generation committed"
        );
        Ok(generation)
    }

    /// Creates the generations feed and declares it in the index.
    async fn declare_generations(&mut self) -> Result<(), PublishError> {
        let mut feed = self
            .opener
            .writable(&self.secret.feed_signing_key(GENERATIONS_FEED))
            .await?;
        let me = self.index.identity.to_bytes();
        ensure_header(
            &mut feed,
            FeedHeader::new(FeedRole::Generations, me, GENERATIONS_FEED),
        )
        .await?;
        fault_point("generations-created");
        let id = self.index.feeds.keys().max().map_or(0, |m| m + 1);
        let decl = FeedDecl {
            id,
            role: FeedRole::Generations,
            name: GENERATIONS_FEED.to_owned(),
            public_key: feed.public_key().to_bytes(),
        };
        self.index_feed
            .write(vec![Record::Feed(decl).encode()])
            .await?;
        self.index.catch_up(&mut self.index_feed).await?;
        // Created by a run killed before it declared it: its header only.
        let last = last_record(&mut feed).await?;
        self.generations = Some(GenerationsFeed { feed, last });
        Ok(())
    }
}
