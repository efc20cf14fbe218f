//! glibc's search rules (ld.so 2.36 `_dl_map_object`): RPATH of the loader
//! chain, LD_LIBRARY_PATH, RUNPATH, `/etc/ld.so.cache`, the system
//! directories, each with its hwcaps subdirectories (docs/elf.md).

use super::*;

impl Walk<'_, '_> {
    pub(super) fn search_glibc(
        &mut self,
        loader: usize,
        name: &[u8],
    ) -> Result<Box<Candidate>, Failure> {
        let mut other_class = false;
        macro_rules! attempt {
            ($e:expr) => {
                match $e {
                    Ok(c) => return Ok(c),
                    Err(Failure::NotFound { other_class: o }) => other_class |= o,
                    Err(f) => return Err(f),
                }
            };
        }
        if self.objects[loader].elf.runpath.is_none() {
            let mut did_main = false;
            let mut cur = Some(loader);
            while let Some(i) = cur {
                if !self.state[i].rpath.is_empty() {
                    let dirs = self.state[i].rpath.clone();
                    attempt!(self.open_path(name, &dirs, FoundBy::Rpath(i)));
                    did_main |= i == 0;
                }
                cur = self.state[i].loader;
            }
            if !did_main && !self.state[0].rpath.is_empty() {
                let dirs = self.state[0].rpath.clone();
                attempt!(self.open_path(name, &dirs, FoundBy::Rpath(0)));
            }
        }
        if !self.ld_library_path.is_empty() {
            let dirs = self.ld_library_path.clone();
            attempt!(self.open_path(name, &dirs, FoundBy::LdLibraryPath));
        }
        if !self.state[loader].runpath.is_empty() {
            let dirs = self.state[loader].runpath.clone();
            attempt!(self.open_path(name, &dirs, FoundBy::Runpath));
        }
        let nodeflib = self.objects[loader].elf.nodeflib();
        if let Some(cached) = self.cache_lookup(name) {
            let in_system = self
                .system_dirs()
                .iter()
                .any(|d| cached.starts_with(d.as_bytes()));
            if !(nodeflib && in_system) {
                match self.try_path(&cached, FoundBy::LdCache) {
                    Try::Hit(c) => return Ok(c),
                    Try::Skip { other_class: o } => other_class |= o,
                    Try::Miss => {}
                    Try::Fatal(f) => return Err(f),
                }
            }
        }
        if !nodeflib {
            let dirs: Vec<Vec<u8>> = self
                .system_dirs()
                .iter()
                .map(|d| d.as_bytes().to_vec())
                .collect();
            attempt!(self.open_path(name, &dirs, FoundBy::DefaultDirs));
        }
        Err(Failure::NotFound { other_class })
    }

    pub(super) fn system_dirs(&self) -> &[String] {
        match &self.rules {
            Rules::Glibc { build, .. } => &build.system_dirs,
            _ => &[],
        }
    }

    pub(super) fn cache_lookup(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let Rules::Glibc {
            cache,
            build,
            cpu,
            flags,
            ..
        } = &mut self.rules
        else {
            return None;
        };
        if cache.is_none() {
            let (r, c) = self.res.ld_cache();
            *cache = r.map(|r| (r, c));
        }
        let (_, Some(c)) = cache.as_ref()? else {
            return None;
        };
        let hwcaps: &[String] = if build.has_glibc_hwcaps() {
            &cpu.hwcaps
        } else {
            &[]
        };
        let legacy = build.has_legacy_hwcaps().then(|| Legacy {
            hwcap: cpu.legacy_hwcap_bits,
            platform: Legacy::x86_platform_bit(&cpu.platform),
        });
        let q = Query {
            flags: *flags,
            hwcaps,
            isa_level: cpu.isa_level,
            legacy,
        };
        c.lookup(name, &q).map(<[u8]>::to_vec)
    }

    /// glibc `open_path`: each directory, each hwcaps subdirectory in it.
    pub(super) fn open_path(
        &mut self,
        name: &[u8],
        dirs: &[Vec<u8>],
        found_by: FoundBy,
    ) -> Result<Box<Candidate>, Failure> {
        let subdirs = match &self.rules {
            Rules::Glibc { subdirs, .. } => subdirs.clone(),
            _ => vec![String::new()],
        };
        let mut other_class = false;
        for dir in dirs {
            for sub in &subdirs {
                let mut d = dir.clone();
                d.extend_from_slice(sub.as_bytes());
                if !self.dir_exists(&d) {
                    continue;
                }
                d.extend_from_slice(name);
                match self.try_path(&d, found_by) {
                    Try::Hit(c) => return Ok(c),
                    Try::Skip { other_class: o } => other_class |= o,
                    Try::Miss => {}
                    Try::Fatal(f) => return Err(f),
                }
            }
        }
        Err(Failure::NotFound { other_class })
    }
}
