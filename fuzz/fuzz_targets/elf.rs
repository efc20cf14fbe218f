//! The ELF parser on arbitrary file contents.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::tempfile().expect("temp file");
    f.write_all(data).expect("write");
    let meta = f.metadata().expect("metadata");
    if let Ok(jail::elf::Parsed::Elf(e)) = jail::elf::file::parse(&f, &meta) {
        let _ = e.nodeflib();
        let _ = e.is_pie_flagged();
    }
});
