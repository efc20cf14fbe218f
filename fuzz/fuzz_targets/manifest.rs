//! The `--manifest` parser (YAML and JSON) on arbitrary bytes.
#![no_main]

use jail::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::parse(data, true);
    let _ = Manifest::parse(data, false);
});
