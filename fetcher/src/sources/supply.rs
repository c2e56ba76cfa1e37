//! Suppliers: what brings verified blocks of one feed into its local
//! replica. The peers (through the feed's hub, which spreads a want over
//! every peer that has the blocks) and the web seeds (whose blocks the hub
//! verifies as it would a peer's proof) are the two kinds; the hedge
//! combines them, and a fake of each is all a test of the readers needs.

use std::sync::Arc;

use futures::future::BoxFuture;
use hypernar_feed::store::StoreError;

use super::webseed::{WebSeedError, WebSeeds};
use hypernar_swarm::hub::{HubHandle, SwarmError};
use hypernar_swarm::metrics::Metrics;

/// Why a supplier could not bring blocks, or the replica read one.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    /// The replica does not know the feed that far: no peer told it a
    /// longer signed length (a web seed may).
    #[error("the blocks are past the feed's known length ({length})")]
    PastEnd { length: u64 },
    /// The block is not stored here (it was dropped between being brought
    /// and being read: evicted): bring it again.
    #[error("block {index} is not stored here")]
    NotHere { index: u64 },
    /// The swarm failed (the local feed, its storage, a closed hub).
    #[error(transparent)]
    Swarm(SwarmError),
    /// No web seed gave the blocks.
    #[error(transparent)]
    WebSeed(#[from] WebSeedError),
}

impl From<SwarmError> for SupplyError {
    fn from(e: SwarmError) -> Self {
        match e {
            SwarmError::PastEnd { length, .. } => SupplyError::PastEnd { length },
            e => SupplyError::Swarm(e),
        }
    }
}

/// Brings verified blocks of one feed into its local replica.
pub trait Supplier: Send + Sync + 'static {
    /// Brings blocks `start..end` here, each verified against the feed's
    /// signed tree. Resolves once they are all stored (by this supplier or
    /// another), or with why they cannot be; dropping it withdraws the ask.
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>>;

    /// Whether anyone is there to ask now (a peer has the feed open, a web
    /// seed is usable). An absent supplier may still bring blocks stored
    /// here already.
    fn present(&self) -> bool;
}

/// The local copy of a feed, read once blocks are brought.
pub trait Replica: Send + Sync + 'static {
    /// Block `index`, verified when it was stored.
    fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>>;
}

impl<T: Supplier + ?Sized> Supplier for Arc<T> {
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
        (**self).bring(start, end)
    }

    fn present(&self) -> bool {
        (**self).present()
    }
}

impl<T: Replica + ?Sized> Replica for Arc<T> {
    fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>> {
        (**self).read(index)
    }
}

/// The peers of one feed, through its hub (which also holds the replica).
#[derive(Debug, Clone)]
pub struct Peers(pub HubHandle);

impl Supplier for Peers {
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
        let hub = self.0.clone();
        Box::pin(async move { Ok(hub.want(start, end).await?) })
    }

    fn present(&self) -> bool {
        self.0.state().borrow().peers > 0
    }
}

impl Replica for Peers {
    fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>> {
        let hub = self.0.clone();
        Box::pin(async move {
            match hub.get(index).await {
                Err(SwarmError::Store { source, .. })
                    if matches!(*source, StoreError::MissingBlock { .. }) =>
                {
                    Err(SupplyError::NotHere { index })
                }
                r => Ok(r?),
            }
        })
    }
}

/// The web seeds, for one feed: their blocks handed to its hub as proofs.
#[derive(Debug, Clone)]
pub struct Web {
    pub seeds: Arc<WebSeeds>,
    pub hub: HubHandle,
    pub key: [u8; 32],
    pub metrics: Arc<Metrics>,
}

impl Supplier for Web {
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
        let me = self.clone();
        Box::pin(async move {
            match me
                .seeds
                .fetch(&me.hub, &me.key, start, end, &me.metrics)
                .await
            {
                Ok(_) => Ok(()),
                // The web seed's signed copy ends before `start`: past the
                // feed's end as far as anyone here can know.
                Err(WebSeedError::Short(length)) => Err(SupplyError::PastEnd { length }),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn present(&self) -> bool {
        !self.seeds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! One contract, run against every supplier: the peers over a real hub
    //! (its feed in a temporary directory, no peer, no socket), the web
    //! seeds over a real web-seed copy served on loopback by a small range
    //! server, and the fake the hedge and reader tests use.

    use super::*;
    use crate::sources::hedge::tests::{Behaviour, Fake, FakeFeed};
    use std::time::Duration;

    /// What a supplier and its replica must do: a range it holds (stored
    /// here, or on the web seed) is brought at once and read back as
    /// stored; a range past the feed's known length is `PastEnd` (which
    /// tells the hedge to ask the web seed at once), not a wait until the
    /// deadline.
    async fn conformance(
        supplier: &dyn Supplier,
        replica: &dyn Replica,
        stored: std::ops::Range<u64>,
        blocks: &[Vec<u8>],
        past_end: u64,
    ) {
        let quick = Duration::from_secs(2);
        tokio::time::timeout(quick, supplier.bring(stored.start, stored.end))
            .await
            .expect("stored blocks are brought at once")
            .expect("stored blocks are brought");
        for (i, want) in stored.clone().zip(blocks) {
            let got = replica.read(i).await.expect("a stored block reads back");
            assert_eq!(&got, want, "block {i}");
        }
        let r = tokio::time::timeout(quick, supplier.bring(past_end, past_end + 1))
            .await
            .expect("past the end is said, not waited for");
        assert!(
            matches!(r, Err(SupplyError::PastEnd { .. })),
            "past the end: {r:?}"
        );
    }

    /// A hub on `feed` with no peer and no socket, and what stops it (the
    /// hub cancelled, its thread joined).
    fn hub_of(
        feed: hypernar_feed::Feed,
        store: &hypernar_feed::store::FeedStore,
    ) -> (HubHandle, impl std::future::Future<Output = ()>) {
        let cancel = tokio_util::sync::CancellationToken::new();
        let (hub, thread) = hypernar_swarm::hub::spawn(
            feed,
            store.clone(),
            false,
            Arc::new(|_, _| {}),
            cancel.clone(),
            Default::default(),
            hypernar_swarm::hub::Serving {
                share: Arc::new(hypernar_swarm::share::Share::new(Default::default())),
                remake: Default::default(),
            },
        );
        let stop = async move {
            cancel.cancel();
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        };
        (hub, stop)
    }

    #[tokio::test]
    async fn the_peers_over_a_real_hub() {
        let tmp = tempfile::tempdir().unwrap();
        let store = hypernar_feed::store::FeedStore::open(tmp.path()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let feed = store.open_writable(&key).await.unwrap();
        let (hub, stop) = hub_of(feed, &store);
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        hub.append(blocks.clone()).await.unwrap();
        let peers = Peers(hub);
        assert!(!peers.present(), "no peer has the feed open");
        conformance(&peers, &peers, 0..4, &blocks, 4).await;
        drop(peers);
        stop.await;
    }

    /// Serves the files under `root` over HTTP/1.1 on loopback, with one
    /// `Range: bytes=a-b` honoured as a static server (nginx) does.
    async fn range_server(root: std::path::PathBuf) -> (String, tokio::task::JoinHandle<()>) {
        use http_body_util::Full;
        use hyper::{Request, Response, StatusCode};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let answer = move |req: Request<hyper::body::Incoming>| {
            let file = root.join(req.uri().path().trim_start_matches('/'));
            let reply = |status, body: Vec<u8>| {
                let mut r = Response::new(Full::new(bytes::Bytes::from(body)));
                *r.status_mut() = status;
                r
            };
            let Ok(body) = std::fs::read(&file) else {
                return reply(StatusCode::NOT_FOUND, vec![]);
            };
            let range = req
                .headers()
                .get(hyper::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match range {
                Some((a, b)) if a <= b && a < body.len() => {
                    let b = b.min(body.len() - 1);
                    let mut r = reply(StatusCode::PARTIAL_CONTENT, body[a..=b].to_vec());
                    let value = format!("bytes {a}-{b}/{}", body.len());
                    r.headers_mut()
                        .insert(hyper::header::CONTENT_RANGE, value.parse().unwrap());
                    r
                }
                Some(_) => reply(StatusCode::RANGE_NOT_SATISFIABLE, vec![]),
                None => reply(StatusCode::OK, body),
            }
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let r = answer(req);
                        async move { Ok::<_, std::convert::Infallible>(r) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        (base, task)
    }

    #[tokio::test]
    async fn the_web_seeds_over_a_real_copy_on_loopback() {
        use super::super::webseed::WebSeeds;
        let tmp = tempfile::tempdir().unwrap();
        // The publisher's feed, and its web-seed copy.
        let origin = hypernar_feed::store::FeedStore::open(&tmp.path().join("origin")).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let mut feed = origin.open_writable(&key).await.unwrap();
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 300 + usize::from(i)]).collect();
        feed.append_batch(&blocks).await.unwrap();
        let root = tmp.path().join("seed");
        hypernar_feed::webseed::sync(&mut feed, &root)
            .await
            .unwrap()
            .expect("a head");
        let (base, server) = range_server(root).await;
        // A fresh replica of it, which knows nothing but the key.
        let store = hypernar_feed::store::FeedStore::open(&tmp.path().join("user")).unwrap();
        let replica = store.open_replica(&key.verifying_key()).await.unwrap();
        let (hub, stop) = hub_of(replica, &store);
        let web = Web {
            seeds: Arc::new(WebSeeds::new(&[base], false).unwrap()),
            hub: hub.clone(),
            key: key.verifying_key().to_bytes(),
            metrics: Arc::new(Metrics::default()),
        };
        assert!(web.present());
        conformance(&web, &Peers(hub.clone()), 0..4, &blocks, 4).await;
        drop((web, hub));
        server.abort();
        stop.await;
    }

    #[tokio::test]
    async fn the_fake() {
        let feed = Arc::new(FakeFeed::default());
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
        for (i, b) in blocks.iter().enumerate() {
            feed.content.lock().unwrap().insert(i as u64, b.clone());
        }
        feed.store(0..4);
        let fake = Fake::new(&feed, Behaviour::PastEnd);
        conformance(&fake, &feed, 0..4, &blocks, 4).await;
    }
}
