//! The image reader on an archive: the input is a tar holding index.json /
//! manifest.json, manifests, configs and layer blobs (docker-archive or OCI
//! archive). Any input must give an image or an error, never a panic, a
//! hang or a write outside the unpack root.
#![no_main]

use std::io::Write;

use jail::image::read::{self, ImageSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("image.tar");
    let mut f = std::fs::File::create(&archive).expect("archive file");
    f.write_all(data).expect("write archive");
    drop(f);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let _ = read::unpack(&ImageSource::Archive(archive), &out);
});
