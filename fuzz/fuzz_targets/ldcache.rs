//! The ld.so.cache parser and its lookups on arbitrary bytes.
#![no_main]

use jail::elf::ldcache::{Flags, Legacy, Query};
use jail::elf::LdCache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(cache) = LdCache::parse(data.to_vec()) else {
        return;
    };
    let _ = cache.format();
    let _ = cache.hwcaps_subdirs();
    let entries = cache.entries();
    let hwcaps: Vec<String> = vec!["x86-64-v3".into(), "x86-64-v2".into()];
    for legacy in [
        None,
        Some(Legacy {
            hwcap: u64::MAX,
            platform: Some(1 << 48),
        }),
    ] {
        let q = Query {
            flags: Flags::for_machine(true, 62),
            hwcaps: &hwcaps,
            isa_level: 3,
            legacy,
        };
        for e in entries.iter().take(64) {
            let _ = cache.lookup(&e.key, &q);
            let _ = e.hwcaps_index();
        }
        let _ = cache.lookup(b"libc.so.6", &q);
    }
});
