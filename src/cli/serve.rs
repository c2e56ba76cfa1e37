//! `hypernar serve`.

use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::format::identity::{parse_feed_key_text, Identity, SetId};
use hypernar_fetcher::channels::{ChannelRef, Followable};
use hypernar_fetcher::http::host::HostPolicy;
use hypernar_fetcher::http::{self, Allow, HttpConfig, HttpLimits, DEFAULT_HTTP_PORT};
use hypernar_fetcher::node::{Limits, Node, NodeConfig};
use hypernar_fetcher::sources::upstream::{Upstreams, DEFAULT_UPSTREAM};
use hypernar_fetcher::sources::webseed::WebSeeds;
use hypernar_fetcher::sources::Sources;

use super::common::DataDir;

/// Port `hypernar serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7469;

/// Seed feeds to peers, replicate trusted publishers, and serve Nix.
///
/// Seeds every feed in the data directory (a publisher's own feeds, and the
/// blocks this node has fetched) to every peer that knows a feed's key.
/// For each --trust publisher it replicates the index and key feeds eagerly
/// and live, and data feeds on demand (all of them with --mirror).
///
/// Nix substitutes from it through the binary-cache HTTP API, by default at
/// http://127.0.0.1:7470: add that URL to `substituters` in nix.conf, and
/// the publisher's original Nix signing key to `trusted-public-keys`. Runs
/// until interrupted.
///
/// Examples:
///   hypernar serve --data /srv/hypernar --http none           (a publisher's seed)
///   hypernar serve --trust hypernar1:… --peer seed.example.org:7469
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Publisher identity to replicate (repeatable)
    #[arg(long, value_name = "ID", env = "HYPERNAR_TRUST", value_delimiter = ',')]
    trust: Vec<Identity>,
    /// Address to accept peers on
    #[arg(long, value_name = "ADDR", default_value_t = format!("0.0.0.0:{DEFAULT_PORT}"))]
    listen: String,
    /// Peer to connect to and keep connected (HOST:PORT, repeatable)
    #[arg(long, value_name = "HOST:PORT")]
    peer: Vec<String>,
    /// Replicate every block of every trusted feed, to serve others
    #[arg(long)]
    mirror: bool,
    /// Replicate this feed in full, by its token (hypernar-feed1:…, repeatable):
    /// an audience's key feed, or a data feed to mirror blind (without its keys)
    #[arg(long, value_name = "TOKEN")]
    feed: Vec<String>,
    /// Address of the binary-cache HTTP API for Nix, or `none`. Anything but
    /// loopback needs --http-allow: whoever reaches the port can read every
    /// path this node can decrypt
    #[arg(long, value_name = "ADDR|none", default_value_t = default_http())]
    pub(super) http: String,
    /// Clients allowed to use the HTTP API besides loopback (CIDR, repeatable)
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    http_allow: Vec<ipnet::IpNet>,
    /// A host name Nix may use in the substituter URL (repeatable). Besides
    /// these, the API answers only IP addresses and `localhost`: a request
    /// naming any other host gets 421, so a web page cannot read the API
    /// by pointing a name of its own at this machine (DNS rebinding)
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    http_host: Vec<String>,
    /// Upstream binary cache, asked in order (repeatable), or `none`: for a
    /// listed path whose blocks do not arrive within --peer-deadline, and
    /// (unless --no-proxy) for paths no trusted publisher lists
    #[arg(long, value_name = "URL|none", default_value = DEFAULT_UPSTREAM)]
    upstream: Vec<String>,
    /// Web seed: a static copy of a publisher's feeds (`publish --web-seed`)
    /// on any HTTP server, asked for blocks that peers do not deliver within
    /// a second (repeatable, asked in order). Web seeds that trusted
    /// publishers record in their index (`publish --web-seed-url`) are
    /// asked after these; `none` uses no web seed at all
    #[arg(long, value_name = "URL|none")]
    web_seed: Vec<String>,
    /// Do not pass requests for paths no trusted publisher lists on to the
    /// upstreams: answer them "not here"
    #[arg(long)]
    no_proxy: bool,
    /// Seconds a block of a NAR being sent to Nix may take before the rest
    /// of that NAR comes from upstream (on the mount: before the read
    /// fails with EIO)
    #[arg(long, value_name = "SECS", default_value_t = HttpLimits::default().block_deadline.as_secs())]
    peer_deadline: u64,
    /// Most HTTP connections open at once; more are closed on arrival
    #[arg(long, value_name = "N", default_value_t = HttpLimits::default().max_connections)]
    http_max_connections: usize,
    /// Seconds a client has to send a request's head; also how long an idle
    /// keep-alive HTTP connection stays open
    #[arg(long, value_name = "SECS", default_value_t = HttpLimits::default().head_timeout.as_secs())]
    http_head_timeout: u64,
    /// Seconds a client may read nothing of a response before its
    /// connection is closed (a stalled reader holds a connection slot and,
    /// for a pulled-through NAR, an upstream download)
    #[arg(long, value_name = "SECS", default_value_t = HttpLimits::default().write_idle.as_secs())]
    http_idle_timeout: u64,
    /// Most peer connections accepted at once; more are closed on arrival
    /// (connections this node dials do not count)
    #[arg(long, value_name = "N", env = "HYPERNAR_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Also mount a read-only view of the binary cache on DIR (FUSE):
    /// nix-cache-info, <hash>.narinfo and nar/ for every path whose key
    /// this node holds, decrypted as they are read (nothing decrypted is
    /// written to disk). Nix reads it as `file://DIR`
    #[arg(long, value_name = "DIR")]
    pub(super) mount: Option<std::path::PathBuf>,
    /// Let root read the mount too: what a nix-daemon (which reads as
    /// root) needs. A non-root user needs `user_allow_other` in
    /// /etc/fuse.conf
    #[arg(long, conflicts_with = "mount_allow_other")]
    mount_allow_root: bool,
    /// Let every local user read the mount, and so every path this node can
    /// decrypt (private audiences' too); --mount-allow-root is enough for
    /// a nix-daemon
    #[arg(long)]
    mount_allow_other: bool,
    /// MiB of decrypted segments the mount keeps in memory
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    mount_cache: usize,
    /// Do not announce this node on the local network nor look for other
    /// hypernar nodes there (mDNS). Announcing says only that a node runs
    /// at this address and port; it is off anyway when --listen is a
    /// loopback address
    #[arg(long)]
    no_mdns: bool,
    /// Do not announce this node on the BitTorrent Mainline DHT nor look
    /// for peers there. Announcing tells whoever knows a feed's key that
    /// this address holds it (docs/threat-model.md)
    #[arg(long)]
    no_dht: bool,
    /// DHT node to join the Mainline DHT through (HOST:PORT, repeatable);
    /// by default the well-known routers, plus the DHT nodes this data
    /// directory saved last time
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "HYPERNAR_DHT_BOOTSTRAP",
        value_delimiter = ','
    )]
    dht_bootstrap: Vec<String>,
    /// Also dial peers the DHT names in private, loopback and link-local
    /// ranges (a DHT run on one site, or on one machine). By default only
    /// public addresses found on the DHT are dialled: anyone can announce
    /// any address there, and this node would dial it
    #[arg(long)]
    dht_allow_local: bool,
    /// Safe-path set to follow (hypernar-set1:…), or a publisher's
    /// channel (hypernar1:…/NAME: the newest release its `hypernar follow`
    /// committed; the publisher is trusted too). Repeatable; with
    /// --require-set, only what they cover is served
    #[arg(long = "set", value_name = "SET_ID|ID/CHANNEL", value_delimiter = ',')]
    sets: Vec<Followable>,
    /// A set or channel to follow and pin (repeatable): the closure of every
    /// path in a set, or every path of the channel's newest release, is
    /// fetched ahead (as paths are added, as releases are committed) and
    /// kept; a release's paths the next one drops become evictable
    #[arg(long, value_name = "SET_ID|ID/CHANNEL", value_delimiter = ',')]
    pin: Vec<Followable>,
    /// Serve Nix only paths that a followed set (--set, --pin) vouches for
    /// or that are in the closure of one, or in a followed channel's newest
    /// release; other paths of trusted publishers answer 404 (the
    /// upstream, if any, is still asked)
    #[arg(long)]
    require_set: bool,
    /// What to announce and serve to peers of what this node fetched: all
    /// (every fetcher a seeder), sets (only paths that followed sets
    /// cover), or none (fetch only: announce nothing, serve nothing, stay
    /// off the DHT's announcements). Announcements tell anyone who can open
    /// a feed which store paths this machine has (docs/threat-model.md).
    /// A publisher's own feeds are always served
    #[arg(long, value_name = "all|sets|none", default_value = "all")]
    share: hypernar_fetcher::share::ShareMode,
    /// Never announce or serve to peers a path whose name (the part after
    /// the hash, e.g. firefox-133.0) matches GLOB (`*`, `?`, `[…]`;
    /// repeatable), nor keep it from the upstream: peers cannot learn this
    /// machine has it. With it, only paths the node knows the record of
    /// are shared at all (a path whose record it no longer holds is not)
    #[arg(long = "share-exclude", value_name = "GLOB", value_parser = parse_glob)]
    share_exclude: Vec<glob::Pattern>,
    /// Keep the fetched blocks under SIZE on disk (e.g. 20G, 500M): past
    /// it, the blocks of the least recently used paths are dropped (to be
    /// fetched again if asked for). Pinned sets' paths, this node's own
    /// feeds and paths being sent are never dropped: leave room for the
    /// largest paths fetched at once. Unbounded if not given
    #[arg(long, value_name = "SIZE", value_parser = hypernar_fetcher::node::evict::parse_size)]
    max_size: Option<u64>,
    /// Do not keep what is pulled through from the upstreams. By default a
    /// pulled-through path whose narinfo a --trusted-public-key signed is
    /// also published into this node's own feeds (key DATA/node.key, made
    /// on first start) and served from there, to Nix and to every peer
    /// that trusts this node's identity: whoever knows that identity (or
    /// finds it on the DHT under it) learns which such paths this machine
    /// fetched. Unsigned and locally built paths are never kept
    #[arg(long)]
    no_keep: bool,
    /// Keep the blocks of kept paths even once the Nix store holds them.
    /// By default a kept path valid in the Nix store (--nix-store) with the
    /// NAR hash its record names has its blocks dropped: they are made
    /// again from the store when a peer or Nix asks (sealed as before and
    /// checked against this node's signed feed; a path changed or
    /// collected from the store is no longer offered), so seeding costs no
    /// second copy on disk
    #[arg(long)]
    keep_blocks: bool,
    /// The Nix store kept paths are checked against and made again from:
    /// `/` for this machine's /nix/store, or the root of a chroot store
    /// (what `nix --store DIR` takes)
    #[arg(long, value_name = "DIR", default_value = "/")]
    nix_store: std::path::PathBuf,
    /// Seconds between checks of the kept paths against the Nix store
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    store_check_every: u64,
    /// Be a member of a group (repeatable): its secret (hypernar-group1:…,
    /// from `hypernar group new`) or a file holding it. Members find each
    /// other on the LAN and the DHT and fetch from each other what each
    /// pulled through; this node's kept paths' keys go to its groups only
    /// (not to everyone who knows its identity), and another member's path
    /// is served to Nix only if a --trusted-public-key signed it, its NAR
    /// checked whole before a byte is sent. Members learn this node's
    /// identity, hence which signed paths it pulled through
    #[arg(
        long = "group",
        value_name = "SECRET|FILE",
        env = "HYPERNAR_GROUP",
        value_delimiter = ','
    )]
    groups: Vec<String>,
    /// A key whose signature a pulled-through narinfo must carry to be
    /// kept, and a group member's path to be served, as in nix.conf's
    /// trusted-public-keys (repeatable) [default: cache.nixos.org-1]
    #[arg(long = "trusted-public-key", value_name = "NAME:BASE64")]
    trusted_keys: Vec<hypernar_feed::format::nixkey::NixPublicKey>,
    /// Most peer connections accepted at once from one IP address
    #[arg(long, value_name = "N", env = "HYPERNAR_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_per_ip)]
    max_connections_per_ip: usize,
}

fn parse_glob(s: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(s).map_err(|e| format!("{s:?} is not a glob pattern: {e}"))
}

/// The HTTP API's address unless told otherwise.
pub fn default_http() -> String {
    format!("127.0.0.1:{DEFAULT_HTTP_PORT}")
}

fn sets_of(all: &[Followable]) -> Vec<SetId> {
    all.iter()
        .filter_map(|f| match f {
            Followable::Set(s) => Some(*s),
            Followable::Channel(_) => None,
        })
        .collect()
}

fn channels_of(all: &[Followable]) -> Vec<ChannelRef> {
    all.iter()
        .filter_map(|f| match f {
            Followable::Channel(c) => Some(c.clone()),
            Followable::Set(_) => None,
        })
        .collect()
}

/// Prints a status line; a closed stdout must not stop a long-running node.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Catch SIGTERM and SIGINT before anything is mounted or bound: one that
    // comes while the node starts is held and ends it cleanly once started,
    // never by the default action, which would leave the FUSE mount stale.
    let shutdown = ShutdownSignal::install()?;
    let feeds = args
        .feed
        .iter()
        .map(|t| parse_feed_key_text(t).with_context(|| format!("{t:?} is not a key feed token")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data_dir = args.data.path()?;
    let http_addr: Option<std::net::SocketAddr> = match args.http.as_str() {
        "none" => None,
        a => Some(a.parse().with_context(|| {
            format!(
                "--http {a:?}: expected an address such as 127.0.0.1:{DEFAULT_HTTP_PORT}, or none"
            )
        })?),
    };
    let allow = Allow(args.http_allow.clone());
    let upstreams: Vec<String> = args
        .upstream
        .iter()
        .filter(|u| u.as_str() != "none")
        .cloned()
        .collect();
    let upstreams =
        std::sync::Arc::new(Upstreams::new(upstreams, !args.no_proxy).context("--upstream")?);
    let web_seeds = std::sync::Arc::new(
        WebSeeds::new(
            &args
                .web_seed
                .iter()
                .filter(|u| u.as_str() != "none")
                .cloned()
                .collect::<Vec<_>>(),
            !args.web_seed.iter().any(|u| u == "none"),
        )
        .context("--web-seed")?,
    );
    // Bind before starting the node, so a refused address fails at once.
    let http_listener = match http_addr {
        Some(a) => Some(http::bind(a, &allow).await?),
        None => None,
    };
    // What is pulled through is kept in the node's own feeds (--no-keep).
    let keeping = !args.no_keep && upstreams.proxies();
    let node_secret = if keeping {
        hypernar_feed::private::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        Some(super::keep::node_key(&data_dir)?)
    } else {
        None
    };
    let trusted = if args.trusted_keys.is_empty() {
        vec![hypernar_feed::format::nixkey::CACHE_NIXOS_ORG_1
            .parse()
            .expect("the built-in key parses")]
    } else {
        args.trusted_keys.clone()
    };
    let group_secrets = args
        .groups
        .iter()
        .map(|g| super::group::parse_group(g))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The audience key feed of each group, where this node's kept paths'
    // keys go (a node that keeps nothing offers nothing).
    let mut audiences = Vec::new();
    let memberships = group_secrets
        .iter()
        .map(|g| {
            let card = node_secret.as_ref().map(|secret| {
                let name = hypernar_publisher::audience_feed_name(&g.audience())
                    .expect("a group's audience name is valid");
                let keys = secret.feed_signing_key(&name).verifying_key();
                audiences.push((g.audience(), keys));
                let card = hypernar_feed::format::group::GroupCard {
                    node: secret.identity(),
                    keys,
                };
                let signer = secret.feed_signing_key(hypernar_feed::format::identity::INDEX_FEED);
                (card, signer)
            });
            hypernar_fetcher::groups::Membership {
                secret: g.clone(),
                card,
            }
        })
        .collect::<Vec<_>>();
    let mut trust = args.trust.clone();
    let mut held_own = false;
    if let Some(secret) = &node_secret {
        // Its own index, once it keeps anything, is served like any.
        let id = secret.identity();
        let held = data_dir
            .join("feeds")
            .join(
                id.to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            )
            .exists();
        if held && !trust.contains(&id) {
            trust.push(id);
        }
        held_own = held;
    }
    let node = Node::start(NodeConfig {
        limits: Limits {
            max_connections: args.max_connections,
            max_per_ip: args.max_connections_per_ip,
        },
        data_dir: data_dir.clone(),
        peers: args.peer.clone(),
        trust,
        feeds,
        mirror: args.mirror,
        sets: sets_of(&args.sets),
        pins: sets_of(&args.pin),
        channels: channels_of(&args.sets),
        pinned_channels: channels_of(&args.pin),
        require_set: args.require_set,
        share: args.share,
        share_exclude: args.share_exclude.clone(),
        max_size: args.max_size,
        groups: memberships,
        vouch_keys: trusted.clone(),
    })
    .await
    .with_context(|| format!("starting a node on {}", data_dir.display()))?;
    let mut keep_line = None;
    if let Some(secret) = node_secret {
        let names: Vec<String> = trusted.iter().map(|k| k.name().to_owned()).collect();
        let id = secret.identity();
        if held_own {
            for (_, keys) in &audiences {
                node.follow_key_feed(id, keys).await?;
            }
        }
        let to = if audiences.is_empty() {
            "readable by every peer that trusts this identity".to_owned()
        } else {
            format!(
                "readable by its groups {}",
                group_secrets
                    .iter()
                    .map(|g| g.id().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if !args.keep_blocks {
            super::remake::Remaker::start(
                &node,
                &secret,
                args.nix_store.clone(),
                std::time::Duration::from_secs(args.store_check_every),
            );
        }
        let keeper =
            super::keep::Keeper::start(&node, &data_dir, secret, trusted.clone(), audiences)?;
        upstreams.set_keep(keeper);
        keep_line = Some(format!(
            "keeping pulled-through paths signed by {} as node {id}, {to} (--no-keep turns it off)",
            names.join(", ")
        ));
    }
    let sources = Sources::new(&node, web_seeds, upstreams.clone());
    node.spawn(sources.clone().follow(node.shutdown_token()));
    node.spawn(hypernar_fetcher::pins::run(
        sources.clone(),
        node.shutdown_token(),
    ));
    let addr = node.listen_on(&args.listen).await?;
    let control = super::control::server::bind(&data_dir)?;
    node.spawn(super::control::server::run(
        control,
        data_dir.clone(),
        sources.clone(),
        node.shutdown_token(),
    ));
    say(&format!(
        "hypernar serve: listening on {addr}, data in {}",
        data_dir.display()
    ));
    // Peers on the LAN: only when they could reach this node.
    if !args.no_mdns && !addr.ip().is_loopback() {
        match hypernar_fetcher::mdns::start(addr.port()) {
            Ok(m) => {
                node.spawn(m.run(node.swarm().clone(), node.shutdown_token()));
                say("hypernar serve: looking for peers on the local network (mDNS; --no-mdns turns it off)");
            }
            Err(e) => {
                tracing::warn!(
                    "mDNS is unavailable, so no peers on the local network will be found: {e}"
                );
            }
        }
    }
    if let Some(listener) = http_listener {
        let at = listener.local_addr()?;
        let proxy = upstreams.proxies();
        let bases = upstreams.bases().join(", ");
        let api = http::run(
            sources.clone(),
            listener,
            HttpConfig {
                allow,
                hosts: HostPolicy::new(&args.http_host),
                limits: HttpLimits {
                    max_connections: args.http_max_connections,
                    head_timeout: std::time::Duration::from_secs(args.http_head_timeout.max(1)),
                    block_deadline: std::time::Duration::from_secs(args.peer_deadline.max(1)),
                    write_idle: std::time::Duration::from_secs(args.http_idle_timeout.max(1)),
                    ..HttpLimits::default()
                },
            },
            node.shutdown_token(),
        );
        node.spawn(api);
        say(&format!(
            "hypernar serve: binary cache for Nix at http://{at}"
        ));
        match (bases.is_empty(), proxy) {
            (true, _) => say("upstream: none (a path the swarm cannot deliver fails)"),
            (false, true) => say(&format!("upstream: {bases} (fallback and pull-through)")),
            (false, false) => say(&format!("upstream: {bases} (fallback only)")),
        }
        if let Some(line) = &keep_line {
            say(line);
        }
    }
    let mounted = match &args.mount {
        Some(at) => {
            let source = hypernar_fetcher::mount::MountBacking::new(
                &sources,
                tokio::runtime::Handle::current(),
                std::time::Duration::from_secs(args.peer_deadline.max(1)),
            );
            let opts = hypernar_fuse_store::Options {
                access: if args.mount_allow_other {
                    hypernar_fuse_store::Access::Everyone
                } else if args.mount_allow_root {
                    hypernar_fuse_store::Access::RootAndOwner
                } else {
                    hypernar_fuse_store::Access::Owner
                },
                cache_bytes: args.mount_cache.saturating_mul(1 << 20),
                ..Default::default()
            };
            let at = std::path::absolute(at)?;
            let m = hypernar_fuse_store::mount(source, &at, &opts)?;
            say(&format!(
                "hypernar serve: binary cache view mounted at {} (Nix: file://{})",
                at.display(),
                at.display()
            ));
            Some(m)
        }
        None => None,
    };
    // Peers anywhere, met under the topics of the feeds this node follows.
    if !args.no_dht {
        let config = hypernar_fetcher::dht::DhtConfig {
            bootstrap: args.dht_bootstrap.clone(),
            port: addr.port(),
            state: data_dir.join("dht-peers"),
            allow_local: args.dht_allow_local,
        };
        node.spawn(hypernar_fetcher::dht::run(
            node.swarm().clone(),
            config,
            node.shutdown_token(),
        ));
        say("hypernar serve: looking for peers on the Mainline DHT (--no-dht turns it off)");
    }
    for id in &args.trust {
        say(&format!("trusting {id}"));
    }
    for id in &args.pin {
        say(&format!("pinning {id}"));
    }
    for id in &args.sets {
        say(&format!("following {id}"));
    }
    if args.require_set {
        say("serving only paths in followed sets (--require-set)");
    }
    match args.share {
        hypernar_fetcher::share::ShareMode::All => {}
        hypernar_fetcher::share::ShareMode::Sets => {
            say("sharing with peers only what followed sets cover (--share sets)")
        }
        hypernar_fetcher::share::ShareMode::None => {
            say("sharing nothing with peers (--share none)")
        }
    }
    shutdown.recv().await;
    say("hypernar serve: shutting down");
    // Unmount first: reads in flight end (at worst at the deadline) while
    // the node still answers them.
    drop(mounted);
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM and SIGINT, caught from the moment of `install`; a signal that
/// arrives before `recv` is awaited is kept, not lost.
struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
