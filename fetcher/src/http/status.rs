//! The status page (`GET /`): what a person running a node wants to see at
//! a glance. A snapshot is taken, then rendered by a pure function.

use std::fmt::Write as _;

pub use crate::node::evict::{disk_usage, DiskUsage, Usage, DISK_USAGE_TTL};
use crate::node::PeerInfo;
use hypernar_swarm::metrics::{AnswerLabel, Metrics, PEER, UPSTREAM};

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub peers: Vec<PeerInfo>,
    /// Identity, paths listed, keys released.
    pub publishers: Vec<(String, usize, usize)>,
    pub upstreams: Vec<String>,
    pub proxy: bool,
    pub web_seeds: Vec<String>,
    pub from_web_seeds: u64,
    pub served: u64,
    pub from_peers: u64,
    pub from_upstream: u64,
    pub uploaded: u64,
    pub narinfo_hits: u64,
    pub narinfo_proxied: u64,
    pub narinfo_misses: u64,
    pub fallbacks: u64,
    pub verification_failures: u64,
    pub disk_bytes: u64,
    /// `--max-size`, if the disk is bounded.
    pub max_size: Option<u64>,
    pub data_dir: String,
    /// Safe-path sets followed.
    pub sets: Vec<crate::sets::SetSummary>,
    /// Channels followed (`--set ID/NAME`, `--pin ID/NAME`).
    pub channels: Vec<crate::channels::ChannelSummary>,
    /// Channel followers running inside this node.
    pub following: Vec<(String, crate::following::FollowStatus)>,
    /// What this node keeps of what it pulls through: its identity and how
    /// many paths it lists.
    pub kept: Option<(String, usize)>,
    /// Groups this node is a member of, and the members met.
    pub groups: Vec<crate::groups::GroupStatus>,
    /// Paths pinned now (the closure of pinned sets' paths).
    pub pinned: usize,
    /// `--share`, and `--share-exclude` patterns.
    pub share: hypernar_swarm::share::ShareMode,
    pub share_exclude: Vec<String>,
    /// Disk use per publisher and set.
    pub usage: Usage,
}

impl Snapshot {
    /// Reads the node's state now.
    pub fn take(sources: &crate::sources::Sources, (disk_bytes, usage): (u64, Usage)) -> Self {
        let node = sources.node();
        let upstreams = sources.upstreams();
        let m: &Metrics = node.metrics();
        let answer = |a| m.narinfo.get_or_create(&AnswerLabel { answer: a }).get();
        Snapshot {
            peers: node.peers(),
            publishers: node
                .publishers()
                .summary()
                .into_iter()
                .map(|(id, p, k)| (id.to_string(), p, k))
                .collect(),
            upstreams: upstreams.bases().to_vec(),
            proxy: upstreams.proxies(),
            web_seeds: sources
                .web_seeds()
                .all()
                .iter()
                .map(|w| w.base().to_owned())
                .collect(),
            from_web_seeds: Metrics::total(&m.received, &hypernar_swarm::metrics::WEB_SEED),
            served: m.served.get(),
            from_peers: Metrics::total(&m.received, &PEER),
            from_upstream: Metrics::total(&m.received, &UPSTREAM),
            uploaded: m.uploaded.get(),
            narinfo_hits: answer("hit"),
            narinfo_proxied: answer("proxied"),
            narinfo_misses: answer("miss"),
            fallbacks: Metrics::total(&m.fallbacks, &UPSTREAM),
            verification_failures: Metrics::total(&m.verification_failures, &PEER)
                + Metrics::total(&m.verification_failures, &UPSTREAM)
                + Metrics::total(&m.verification_failures, &hypernar_swarm::metrics::WEB_SEED),
            disk_bytes,
            max_size: node.max_size(),
            sets: node.sets().summary(),
            channels: node.channels().summary(),
            following: node.following().all(),
            kept: node.kept_identity().map(|id| {
                let n = node
                    .publishers()
                    .summary()
                    .into_iter()
                    .find(|(p, _, _)| *p == id)
                    .map_or(0, |(_, paths, _)| paths);
                (id.to_string(), n)
            }),
            groups: node.groups().status(),
            pinned: node.pinned().len(),
            share: node.share().mode(),
            share_exclude: node.share_exclude_patterns(),
            usage,
            data_dir: node
                .feeds_dir()
                .parent()
                .unwrap_or(node.feeds_dir())
                .display()
                .to_string(),
        }
    }
}

/// What follows the disk use: the bound, if any.
fn bound(max_size: Option<u64>) -> String {
    max_size.map_or_else(
        || " (unbounded)".to_owned(),
        |m| format!(" of at most {} (--max-size)", human(m)),
    )
}

/// `hypernar status`: the node's state as text, one fact per line.
pub fn render_text(s: &Snapshot, usage: &Usage, pinned: &[String]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "hypernar serve on {}: running", s.data_dir);
    let _ = writeln!(
        t,
        "on disk: {}{} · sharing: {}{} · from peers {} · from web seeds {} · from upstream {} · uploaded {}",
        human(s.disk_bytes),
        bound(s.max_size),
        s.share,
        excluded(&s.share_exclude),
        human(s.from_peers),
        human(s.from_web_seeds),
        human(s.from_upstream),
        human(s.uploaded)
    );
    if let Some((id, n)) = &s.kept {
        let _ = writeln!(
            t,
            "keeping pulled-through paths as node {id}: {n} kept, {}",
            readable_by(&s.groups)
        );
    }
    if !s.groups.is_empty() {
        let _ = writeln!(t, "groups: {}", s.groups.len());
        for g in &s.groups {
            let _ = writeln!(t, "  {}  {}", g.id, group_line(g));
            for m in &g.members {
                let _ = writeln!(t, "    member {}", m.node);
            }
        }
    }
    let _ = writeln!(t, "peers: {}", s.peers.len());
    for p in &s.peers {
        let _ = writeln!(
            t,
            "  {}  {}  received {}  uploaded {}",
            p.addr.map_or_else(|| "?".to_owned(), |a| a.to_string()),
            if p.dialled { "dialled" } else { "accepted" },
            human(p.received),
            human(p.uploaded)
        );
    }
    let _ = writeln!(t, "publishers: {}", s.publishers.len());
    for (id, paths, keys) in &s.publishers {
        let bytes = usage
            .publishers
            .iter()
            .find(|(u, _)| u == id)
            .map_or(0, |(_, b)| *b);
        let _ = writeln!(
            t,
            "  {id}  {paths} paths, {keys} keys released, {} on disk",
            human(bytes)
        );
    }
    let _ = writeln!(t, "sets: {}", s.sets.len());
    for set in &s.sets {
        let id = set.id.to_string();
        let (covered, bytes) = usage
            .sets
            .iter()
            .find(|(u, _, _)| *u == id)
            .map_or((0, 0), |(_, c, b)| (*c, *b));
        let _ = writeln!(
            t,
            "  {id}  {}, {} paths listed, {covered} covered with their closures, {} held",
            if set.pinned { "pinned" } else { "followed" },
            set.entries,
            human(bytes)
        );
    }
    let _ = writeln!(t, "channels: {}", s.channels.len());
    for c in &s.channels {
        let _ = writeln!(t, "  {}  {}", c.channel, channel_line(c));
    }
    if !s.following.is_empty() {
        let _ = writeln!(t, "following: {}", s.following.len());
        let (now, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
        for (name, f) in &s.following {
            let _ = writeln!(t, "  {name}  {}", f.line(now, wall));
        }
    }
    let _ = writeln!(t, "pinned paths: {}", pinned.len());
    for p in pinned {
        let _ = writeln!(t, "  {p}");
    }
    t
}

/// `hypernar status --json`: the same facts as [`render_text`] for
/// scripts, one JSON object. Its keys are an interface: new ones may be
/// added; renaming or dropping one is a change the README's release notes
/// must name.
pub fn render_json(s: &Snapshot, usage: &Usage, pinned: &[String]) -> String {
    use serde_json::json;
    let publisher_bytes = |id: &str| {
        usage
            .publishers
            .iter()
            .find(|(u, _)| u == id)
            .map_or(0, |(_, b)| *b)
    };
    let set_usage = |id: &str| {
        usage
            .sets
            .iter()
            .find(|(u, _, _)| u == id)
            .map_or((0, 0), |(_, c, b)| (*c, *b))
    };
    let now = std::time::Instant::now();
    let v = json!({
        "running": true,
        "data_dir": s.data_dir,
        "disk": { "bytes": s.disk_bytes, "max_size": s.max_size },
        "share": { "mode": s.share.to_string(), "exclude": s.share_exclude },
        "bytes": {
            "from_peers": s.from_peers,
            "from_web_seeds": s.from_web_seeds,
            "from_upstream": s.from_upstream,
            "uploaded": s.uploaded,
            "served": s.served,
        },
        "narinfo": {
            "hits": s.narinfo_hits,
            "proxied": s.narinfo_proxied,
            "misses": s.narinfo_misses,
        },
        "fallbacks": s.fallbacks,
        "verification_failures": s.verification_failures,
        "upstreams": s.upstreams,
        "pull_through": s.proxy,
        "web_seeds": s.web_seeds,
        "kept": s.kept.as_ref().map(|(id, n)| json!({
            "identity": id,
            "paths": n,
            "groups": s.groups.iter().filter(|g| g.offers).map(|g| g.id.to_string()).collect::<Vec<_>>(),
        })),
        "groups": s.groups.iter().map(|g| json!({
            "id": g.id.to_string(),
            "offers": g.offers,
            "members": g.members.iter().map(|m| json!({
                "identity": m.node.to_string(),
                "since_ms": m.since_ms,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "peers": s.peers.iter().map(|p| json!({
            "addr": p.addr.map(|a| a.to_string()),
            "dialled": p.dialled,
            "received": p.received,
            "uploaded": p.uploaded,
        })).collect::<Vec<_>>(),
        "publishers": s.publishers.iter().map(|(id, paths, keys)| json!({
            "identity": id,
            "paths": paths,
            "keys_released": keys,
            "disk_bytes": publisher_bytes(id),
        })).collect::<Vec<_>>(),
        "sets": s.sets.iter().map(|set| {
            let id = set.id.to_string();
            let (covered, bytes) = set_usage(&id);
            json!({
                "id": id,
                "pinned": set.pinned,
                "entries": set.entries,
                "covered": covered,
                "held_bytes": bytes,
            })
        }).collect::<Vec<_>>(),
        "channels": s.channels.iter().map(|c| json!({
            "channel": c.channel.to_string(),
            "pinned": c.pinned,
            "release": c.generation.as_ref().map(|g| g.release.clone()),
            "covered": c.covered,
        })).collect::<Vec<_>>(),
        "following": s.following.iter().map(|(name, f)| json!({
            "name": name,
            "url": f.url,
            "phase": f.phase.to_string(),
            "target": f.target,
            "committed": f.committed.as_ref().map(|(r, at)| json!({ "release": r, "at": at })),
            "paths": {
                "planned": f.paths.planned,
                "published": f.paths.published,
                "already": f.paths.already,
                "failed": f.paths.failed,
            },
            "bytes_done": f.bytes_done,
            "bytes_planned": f.bytes_planned,
            "bytes_per_second": f.rate(now),
        })).collect::<Vec<_>>(),
        "pinned_paths": pinned,
    });
    v.to_string()
}

/// `--share-exclude`, as said after the share mode.
fn excluded(patterns: &[String]) -> String {
    if patterns.is_empty() {
        String::new()
    } else {
        format!(" except names matching {}", patterns.join(", "))
    }
}

/// Who can read what this node keeps.
fn readable_by(groups: &[crate::groups::GroupStatus]) -> String {
    let offered: Vec<String> = groups
        .iter()
        .filter(|g| g.offers)
        .map(|g| g.id.to_string())
        .collect();
    if offered.is_empty() {
        "readable by every node that trusts it".to_owned()
    } else {
        format!("readable by the members of group {}", offered.join(", "))
    }
}

/// A group: what this node offers it, and how many members it met.
fn group_line(g: &crate::groups::GroupStatus) -> String {
    format!(
        "{}; {} member{} met (their paths served only when a trusted key signed them)",
        if g.offers {
            "this node offers it what it keeps"
        } else {
            "this node reads it and offers nothing (it keeps nothing)"
        },
        g.members.len(),
        if g.members.len() == 1 { "" } else { "s" }
    )
}

/// What a followed channel is at: its newest generation, or that none is
/// read yet.
fn channel_line(c: &crate::channels::ChannelSummary) -> String {
    let kept = match c.pinned {
        Some(true) => "pinned",
        Some(false) => "followed",
        None => "followed for a set",
    };
    match &c.generation {
        None => format!("{kept}, no generation read yet"),
        Some(g) => format!(
            "{kept}, release {} (git {}), {} of its {} paths known here, {} missing upstream, committed {}",
            g.release,
            g.git_revision.as_deref().unwrap_or("-"),
            c.covered,
            g.closure,
            g.missing,
            hypernar_feed::format::generation::http_date(g.committed_at)
        ),
    }
}

/// `1.5 MiB`.
fn human(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page. `base` is the URL Nix should use (for the nix.conf lines).
pub fn render(s: &Snapshot, base: &str) -> String {
    let mut h = String::new();
    let total_in = s.from_peers + s.from_upstream + s.from_web_seeds;
    let share = |n: u64| {
        if total_in == 0 {
            "—".to_owned()
        } else {
            format!("{:.0} %", 100.0 * n as f64 / total_in as f64)
        }
    };
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>hypernar</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1d232a; }}
h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
h2 {{ font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #d5dbe1; padding-bottom: .2rem; }}
.sub {{ color: #5a6570; margin-top: 0; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .8rem; }}
.card {{ background: #f3f6f9; border-radius: .5rem; padding: .7rem .9rem; }}
.card b {{ display: block; font-size: 1.35rem; }}
.card span {{ color: #5a6570; font-size: .85rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e6eaee; }}
td.n, th.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
code, pre {{ font-family: ui-monospace, monospace; font-size: .85rem; }}
pre {{ background: #f3f6f9; padding: .7rem; border-radius: .4rem; overflow-x: auto; }}
.empty {{ color: #5a6570; font-style: italic; }}
</style></head><body>
<h1>hypernar</h1>
<p class="sub">Peer-to-peer binary cache for Nix · data in <code>{dir}</code> · <span id="disk">{disk} on disk{bound}</span></p>
<div class="cards">
<div class="card" id="served"><b>{served}</b><span>sent to Nix</span></div>
<div class="card" id="from-peers"><b>{peers_in}</b><span>from peers ({peers_share})</span></div>
<div class="card" id="from-web-seeds"><b>{web_in}</b><span>from web seeds ({web_share})</span></div>
<div class="card" id="from-upstream"><b>{up_in}</b><span>from upstream ({up_share})</span></div>
<div class="card" id="uploaded"><b>{uploaded}</b><span>uploaded to peers</span></div>
<div class="card"><b>{hits} / {proxied} / {misses}</b><span>narinfos: swarm / upstream / not here</span></div>
<div class="card"><b>{fallbacks} · {failures}</b><span>fallbacks · verification failures</span></div>
</div>
"#,
        dir = esc(&s.data_dir),
        disk = human(s.disk_bytes),
        bound = bound(s.max_size),
        served = human(s.served),
        peers_in = human(s.from_peers),
        peers_share = share(s.from_peers),
        web_in = human(s.from_web_seeds),
        web_share = share(s.from_web_seeds),
        up_in = human(s.from_upstream),
        up_share = share(s.from_upstream),
        uploaded = human(s.uploaded),
        hits = s.narinfo_hits,
        proxied = s.narinfo_proxied,
        misses = s.narinfo_misses,
        fallbacks = s.fallbacks,
        failures = s.verification_failures,
    );
    let _ = writeln!(
        h,
        "<p id=\"share\">Sharing with peers (<code>--share {}</code>): {}{}.</p>",
        s.share,
        match s.share {
            hypernar_swarm::share::ShareMode::All => "everything fetched is announced and served",
            hypernar_swarm::share::ShareMode::Sets => "only paths that followed sets cover are announced and served",
            hypernar_swarm::share::ShareMode::None => "nothing fetched is announced or served, and this node does not announce itself on the DHT",
        },
        match (s.share, s.share_exclude.is_empty()) {
            (hypernar_swarm::share::ShareMode::None, _) | (_, true) => String::new(),
            _ => esc(&format!(
                ", but never a path whose name matches {} (--share-exclude)",
                s.share_exclude.join(", ")
            )),
        }
    );
    let _ = writeln!(h, "<h2>Peers ({})</h2>", s.peers.len());
    if s.peers.is_empty() {
        h.push_str("<p class=\"empty\">No peer connected.</p>\n");
    } else {
        h.push_str("<table id=\"peers\"><tr><th>address</th><th>direction</th><th class=\"n\">received</th><th class=\"n\">uploaded</th></tr>\n");
        for p in &s.peers {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                p.addr.map_or_else(|| "?".to_owned(), |a| a.to_string()),
                if p.dialled { "dialled" } else { "accepted" },
                human(p.received),
                human(p.uploaded)
            );
        }
        h.push_str("</table>\n");
    }
    if let Some((id, n)) = &s.kept {
        let _ = writeln!(
            h,
            "<p id=\"kept\">Keeping pulled-through paths as node <code>{}</code>: {n} kept, {}.</p>",
            esc(id),
            esc(&readable_by(&s.groups))
        );
    }
    if !s.groups.is_empty() {
        let _ = writeln!(h, "<h2>Groups ({})</h2>", s.groups.len());
        h.push_str(
            "<table id=\"groups\"><tr><th>group</th><th>this node</th><th>members met</th></tr>\n",
        );
        for g in &s.groups {
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| format!("<code>{}</code>", esc(&m.node.to_string())))
                .collect();
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                g.id,
                if g.offers {
                    "offers what it keeps"
                } else {
                    "reads only"
                },
                if members.is_empty() {
                    "none yet".to_owned()
                } else {
                    members.join("<br>")
                }
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(h, "<h2>Trusted publishers ({})</h2>", s.publishers.len());
    if s.publishers.is_empty() {
        h.push_str("<p class=\"empty\">None: start with <code>--trust hypernar1:…</code>.</p>\n");
    } else {
        h.push_str("<table id=\"publishers\"><tr><th>identity</th><th class=\"n\">paths</th><th class=\"n\">keys released</th><th class=\"n\">on disk</th></tr>\n");
        for (id, paths, keys) in &s.publishers {
            let bytes = s
                .usage
                .publishers
                .iter()
                .find(|(u, _)| u == id)
                .map_or(0, |(_, b)| *b);
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td class=\"n\">{paths}</td><td class=\"n\">{keys}</td><td class=\"n\">{}</td></tr>",
                esc(id),
                human(bytes)
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(h, "<h2>Safe-path sets ({})</h2>", s.sets.len());
    if s.sets.is_empty() {
        h.push_str("<p class=\"empty\">None (<code>--set</code>, <code>--pin hypernar-set1:…</code>).</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<table id=\"sets\"><tr><th>set</th><th>kept</th><th class=\"n\">paths</th><th class=\"n\">covered</th><th class=\"n\">held here</th></tr>"
        );
        for set in &s.sets {
            let id = set.id.to_string();
            let (covered, bytes) = s
                .usage
                .sets
                .iter()
                .find(|(u, _, _)| *u == id)
                .map_or((0, 0), |(_, c, b)| (*c, *b));
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{covered}</td><td class=\"n\">{}</td></tr>",
                esc(&id),
                if set.pinned { "pinned" } else { "followed" },
                set.entries,
                human(bytes)
            );
        }
        h.push_str("</table>\n");
        let _ = writeln!(
            h,
            "<p id=\"pinned\">{} paths pinned (the closure of the pinned sets' paths).</p>",
            s.pinned
        );
    }
    let _ = writeln!(h, "<h2>Channels ({})</h2>", s.channels.len());
    if s.channels.is_empty() {
        h.push_str("<p class=\"empty\">None (<code>--set hypernar1:…/NAME</code>, <code>--pin hypernar1:…/NAME</code>).</p>\n");
    } else {
        h.push_str("<table id=\"channels\"><tr><th>channel</th><th>release</th></tr>\n");
        for c in &s.channels {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(&c.channel.to_string()),
                esc(&channel_line(c))
            );
        }
        h.push_str("</table>\n");
    }
    if !s.following.is_empty() {
        let _ = writeln!(h, "<h2>Following ({})</h2>", s.following.len());
        h.push_str("<table id=\"following\"><tr><th>channel</th><th>follower</th></tr>\n");
        let (now, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
        for (name, f) in &s.following {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(name),
                esc(&f.line(now, wall))
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Web seeds</h2>\n");
    if s.web_seeds.is_empty() {
        h.push_str("<p class=\"empty\">None (<code>--web-seed URL</code>).</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<p>{}</p>",
            s.web_seeds
                .iter()
                .map(|u| format!("<code>{}</code>", esc(u)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    h.push_str("<h2>Upstream</h2>\n");
    if s.upstreams.is_empty() {
        h.push_str("<p class=\"empty\">None: a path the swarm cannot deliver fails.</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<p>{} ({})</p>",
            s.upstreams
                .iter()
                .map(|u| format!("<code>{}</code>", esc(u)))
                .collect::<Vec<_>>()
                .join(", "),
            if s.proxy {
                "fallback and pull-through"
            } else {
                "fallback only"
            }
        );
    }
    let _ = write!(
        h,
        "<h2>Use it</h2>\n<p>In <code>nix.conf</code>, with the key that signed the original cache:</p>\n\
         <pre>substituters = {base} https://cache.nixos.org\ntrusted-public-keys = &lt;the original cache's key&gt;</pre>\n\
         <p><a href=\"/metrics\">Metrics</a> (Prometheus text)</p>\n</body></html>\n",
        base = esc(base)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_what_it_was_given_and_escapes_it() {
        let s = Snapshot {
            peers: vec![PeerInfo {
                addr: Some("10.0.0.5:7469".parse().unwrap()),
                dialled: true,
                received: 3 << 20,
                uploaded: 0,
            }],
            publishers: vec![("hypernar1:<script>".into(), 12, 11)],
            upstreams: vec!["https://cache.nixos.org".into()],
            proxy: true,
            served: 5 << 20,
            from_peers: 3 << 20,
            from_upstream: 1 << 20,
            sets: vec![crate::sets::SetSummary {
                id: hypernar_feed::format::identity::SetId(
                    ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key(),
                ),
                pinned: true,
                entries: 7,
            }],
            pinned: 9,
            disk_bytes: 3 << 30,
            max_size: Some(20 << 30),
            ..Snapshot::default()
        };
        let page = render(&s, "http://127.0.0.1:7470");
        assert!(page.contains("10.0.0.5:7469"));
        assert!(page.contains("hypernar1:&lt;script&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("75 %"), "share from peers");
        assert!(page.contains("fallback and pull-through"));
        assert!(page.contains("substituters = http://127.0.0.1:7470"));
        assert!(page.contains("hypernar-set1:") && page.contains("pinned"));
        assert!(page.contains("9 paths pinned"));
        assert!(page.contains("--share all"));
        assert!(page.contains("3.00 GiB on disk of at most 20.00 GiB (--max-size)"));
        let none = render(
            &Snapshot {
                share: hypernar_swarm::share::ShareMode::None,
                ..Snapshot::default()
            },
            "http://x",
        );
        assert!(none.contains("--share none") && none.contains("nothing fetched is announced"));
        let usage = Usage {
            publishers: vec![("hypernar1:<script>".into(), 3 << 20)],
            sets: vec![(s.sets[0].id.to_string(), 4, 1 << 20)],
        };
        let text = render_text(&s, &usage, &["/nix/store/x".into()]);
        assert!(
            text.contains("12 paths, 11 keys released, 3.00 MiB on disk"),
            "{text}"
        );
        assert!(
            text.contains("pinned, 7 paths listed, 4 covered with their closures, 1.00 MiB held"),
            "{text}"
        );
        assert!(text.contains("pinned paths: 1\n  /nix/store/x"), "{text}");
        assert!(
            text.contains("on disk: 3.00 GiB of at most 20.00 GiB (--max-size)"),
            "{text}"
        );
        let empty = render(&Snapshot::default(), "http://x");
        assert!(empty.contains("No peer connected."));
        assert!(empty.contains("on disk (unbounded)"));
        assert!(empty.contains("None: a path the swarm cannot deliver fails."));
    }
}
