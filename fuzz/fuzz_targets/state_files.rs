//! The state files a node reads from its data directory at start:
//! `DATA/recent` (when each path was last used) and `DATA/dht-peers`
//! (peers and DHT nodes it learned). A crash, a full disk or a hand edit
//! can leave anything there: each parse must stay within its bounds, and
//! what it keeps must survive its own render and parse unchanged.
#![no_main]
use hypernar_fetcher::dht::Saved;
use hypernar_fetcher::recent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if sel % 2 == 0 {
        let mut used = recent::parse(&text);
        assert!(used.len() <= recent::MAX_ENTRIES);
        let mut again = recent::parse(&recent::render(&used));
        used.sort();
        again.sort();
        assert_eq!(used, again);
    } else {
        let saved = Saved::parse(&text);
        assert_eq!(Saved::parse(&saved.render()), saved);
    }
});
