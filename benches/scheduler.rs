//! What one scheduling pass costs as a path grows: a hub lists the blocks
//! to ask for (`hub::wants::collect` over every want) and settles its
//! wants (`Want::advance`) on every 100 ms tick and every stored block.
//!
//!   cargo bench --bench scheduler
//!
//! A fetch is simulated half done on paths of 1 000 to 80 000 blocks
//! (80 000 blocks of 256 KiB = 20 GiB): the first half stored, blocks
//! stored out of order in the 1 024 after that, 64 in flight, and the
//! wants a reader holds (the whole path, four read-ahead windows, one
//! block). The same pass as the code did it before issue 7 (walk every
//! block of every want) is measured in the same run. The figure to read is
//! the ratio of the 80 000-block pass to the 10 000-block pass: 1 means the
//! cost does not grow with the path. (Under 1 024 wanted blocks a pass has
//! less to list, so the 1 000-block path is cheaper either way.)

#![allow(clippy::print_stdout)]

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use hypernar_fetcher::hub::wants::{collect, Want};
use hypernar_fetcher::hub::SCHEDULE_WINDOW;

struct Fetch {
    stored: Vec<bool>,
    in_flight: HashSet<u64>,
    wants: Vec<Want>,
}

fn half_done(n: u64) -> Fetch {
    let half = n / 2;
    let mut stored = vec![false; n as usize];
    for s in stored.iter_mut().take(half as usize) {
        *s = true;
    }
    // Rarest first stores blocks ahead of the cursor too.
    for i in (half..(half + 1024).min(n)).step_by(3) {
        stored[i as usize] = true;
    }
    let in_flight: HashSet<u64> = (half + 1..n).step_by(5).take(64).collect();
    let mut wants = vec![Want::new(0, n)];
    for k in 0..4 {
        let s = (half + k * 256).min(n);
        wants.push(Want::new(s, (s + 256).min(n)));
    }
    wants.push(Want::new(half, half + 1));
    Fetch {
        stored,
        in_flight,
        wants,
    }
}

/// One pass as the hub does it now: settle each want from its cursor, then
/// list at most SCHEDULE_WINDOW blocks from each.
fn pass_now(f: &mut Fetch) -> usize {
    let n = f.stored.len() as u64;
    let stored = &f.stored;
    let has = |i: u64| stored[i as usize];
    let asked = |i: u64| f.in_flight.contains(&i);
    let mut done = 0;
    for w in &mut f.wants {
        done += w.advance(has) as usize;
    }
    let mut set = BTreeSet::new();
    for w in &f.wants {
        collect(w, n, has, asked, SCHEDULE_WINDOW, &mut set);
    }
    done + set.into_iter().take(SCHEDULE_WINDOW).count()
}

/// The same pass as before issue 7: every block of every want.
fn pass_before(f: &Fetch) -> usize {
    let stored = &f.stored;
    let has = |i: u64| stored[i as usize];
    let mut done = 0;
    for w in &f.wants {
        done += (w.start..w.end).all(has) as usize;
    }
    let mut set = BTreeSet::new();
    for w in &f.wants {
        for i in w.start..w.end {
            if !has(i) && !f.in_flight.contains(&i) {
                set.insert(i);
            }
        }
    }
    done + set.into_iter().take(SCHEDULE_WINDOW).count()
}

/// Microseconds per pass, the best of five rounds of `reps` passes.
fn per_pass(reps: u32, mut pass: impl FnMut() -> usize) -> f64 {
    let mut best = f64::MAX;
    let mut sink = 0;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            sink += pass();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
    }
    std::hint::black_box(sink);
    best
}

fn main() {
    println!("blocks    now µs/pass   before µs/pass");
    let mut now_by_size = Vec::new();
    let mut before_by_size = Vec::new();
    for n in [1_000u64, 10_000, 80_000] {
        let mut f = half_done(n);
        // The cursors settle on the first pass; later passes are the steady state.
        pass_now(&mut f);
        let now = per_pass(200, || pass_now(&mut f));
        let fresh = half_done(n);
        let before = per_pass(20, || pass_before(&fresh));
        println!("{n:>6}   {now:>12.1}   {before:>14.1}");
        now_by_size.push(now);
        before_by_size.push(before);
    }
    // Below SCHEDULE_WINDOW wanted blocks a pass lists fewer: compare the
    // sizes past it.
    println!(
        "80 000 / 10 000 blocks: now {:.2}x, before {:.1}x (target: about 1, independent of path size)",
        now_by_size[2] / now_by_size[1],
        before_by_size[2] / before_by_size[1]
    );
}
