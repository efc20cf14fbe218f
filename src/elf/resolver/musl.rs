//! musl's search rules (`ldso/dynlink.c` `load_library`): the reserved
//! libc names, LD_LIBRARY_PATH, the `DT_RUNPATH`/`DT_RPATH` of the loader
//! chain (only `$ORIGIN` expanded), then `/etc/ld-musl-ARCH.path` or the
//! default path (docs/elf.md).

use super::*;

pub(super) const MUSL_DEFAULT_PATH: &[u8] = b"/lib:/usr/local/lib:/usr/lib";
pub(super) const MUSL_RESERVED: [&[u8]; 7] = [
    b"c.",
    b"pthread.",
    b"rt.",
    b"m.",
    b"dl.",
    b"util.",
    b"xnet.",
];

impl Walk<'_, '_> {
    pub(super) fn map_object_musl(
        &mut self,
        loader: Option<usize>,
        name: &[u8],
    ) -> Result<usize, Failure> {
        let Rules::Musl { interp_name, .. } = &self.rules else {
            return Err(Failure::NotFound { other_class: false });
        };
        if name.is_empty() {
            return Err(Failure::NotFound { other_class: false });
        }
        let reserved =
            name.starts_with(b"lib") && MUSL_RESERVED.iter().any(|r| name[3..].starts_with(r));
        if reserved || name == interp_name.as_slice() {
            return self.interp.ok_or(Failure::NotFound { other_class: false });
        }
        let found = if name.contains(&b'/') {
            match self.try_path(name, FoundBy::Path) {
                Try::Hit(c) => c,
                Try::Fatal(f) => return Err(f),
                _ => return Err(Failure::NotFound { other_class: false }),
            }
        } else {
            if let Some(&i) = self.names.get(name) {
                return Ok(i);
            }
            if name.len() > 255 {
                return Err(Failure::NotFound { other_class: false });
            }
            self.search_musl(loader, name)?
        };
        self.add_found(*found, loader, name)
    }

    pub(super) fn search_musl(
        &mut self,
        loader: Option<usize>,
        name: &[u8],
    ) -> Result<Box<Candidate>, Failure> {
        if let Some(p) = self.musl_env_path.clone() {
            if let Some(c) = self.musl_path_open(name, &p, FoundBy::LdLibraryPath)? {
                return Ok(c);
            }
        }
        let mut cur = loader;
        while let Some(i) = cur {
            if let Some(rp) = self.musl_rpath(i) {
                if let Some(c) = self.musl_path_open(name, &rp, FoundBy::Rpath(i))? {
                    return Ok(c);
                }
            }
            cur = self.state[i].loader;
        }
        let sys = self.musl_sys_path();
        match self.musl_path_open(name, &sys, FoundBy::DefaultDirs)? {
            Some(c) => Ok(c),
            None => Err(Failure::NotFound { other_class: false }),
        }
    }

    /// musl `fixup_rpath`: `DT_RUNPATH` or else `DT_RPATH`, with only
    /// `$ORIGIN` expanded; any other `$` voids it, as does secure mode for
    /// the main program.
    pub(super) fn musl_rpath(&self, idx: usize) -> Option<Vec<u8>> {
        let elf = &self.objects[idx].elf;
        let orig = elf.runpath.as_ref().or(elf.rpath.as_ref())?.as_bytes();
        if !orig.contains(&b'$') {
            return Some(orig.to_vec());
        }
        let mut rest = orig;
        while let Some(p) = rest.iter().position(|&c| c == b'$') {
            let t = &rest[p..];
            if !(t.starts_with(b"$ORIGIN") || t.starts_with(b"${ORIGIN}")) {
                return None;
            }
            rest = &t[1..];
        }
        if idx == 0 && self.secure {
            return None;
        }
        let origin = self.state[idx].origin.clone().unwrap_or_default();
        let mut out = Vec::new();
        let mut s = orig;
        while let Some(p) = s.iter().position(|&c| c == b'$') {
            out.extend_from_slice(&s[..p]);
            out.extend_from_slice(&origin);
            let skip = if s.get(p + 1) == Some(&b'{') { 9 } else { 7 };
            s = &s[p + skip..];
        }
        out.extend_from_slice(s);
        Some(out)
    }

    /// musl's system path: `PREFIX/etc/ld-musl-ARCH.path`, where PREFIX is
    /// the interpreter's path minus its last two components, else the
    /// built-in default.
    pub(super) fn musl_sys_path(&mut self) -> Vec<u8> {
        let Rules::Musl {
            sys_path,
            interp_name,
            arch,
        } = &self.rules
        else {
            return Vec::new();
        };
        if let Some(p) = sys_path {
            return p.clone();
        }
        let prefix: &[u8] = if interp_name.first() == Some(&b'/') {
            let slashes: Vec<usize> = interp_name
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == b'/')
                .map(|(i, _)| i)
                .collect();
            let z = if slashes.len() >= 2 {
                slashes[slashes.len() - 2]
            } else {
                0
            };
            &interp_name[..z]
        } else {
            b""
        };
        let mut file = prefix.to_vec();
        file.extend_from_slice(format!("/etc/ld-musl-{arch}.path").as_bytes());
        let r = self
            .res
            .root
            .resolve(Path::new(OsStr::from_bytes(&file)), Follow::Yes);
        let path = match r.outcome {
            Ok(FileType::File) => match std::fs::read(self.res.root.host_path(&r.path)) {
                Ok(text) => {
                    self.record_links(&r.links);
                    self.loader_files.push(r.path.clone());
                    text
                }
                Err(_) => Vec::new(),
            },
            Err(crate::resolve::Missing::NotFound) => MUSL_DEFAULT_PATH.to_vec(),
            _ => Vec::new(),
        };
        if let Rules::Musl { sys_path, .. } = &mut self.rules {
            *sys_path = Some(path.clone());
        }
        path
    }

    /// musl `path_open`: elements separated by `:` or newlines; an empty
    /// element ends the search.
    pub(super) fn musl_path_open(
        &mut self,
        name: &[u8],
        path: &[u8],
        found_by: FoundBy,
    ) -> Result<Option<Box<Candidate>>, Failure> {
        let mut s = path;
        loop {
            let skip = s.iter().take_while(|c| **c == b':' || **c == b'\n').count();
            s = &s[skip..];
            let l = s.iter().take_while(|c| **c != b':' && **c != b'\n').count();
            if l == 0 {
                return Ok(None);
            }
            let mut cand = s[..l].to_vec();
            cand.push(b'/');
            cand.extend_from_slice(name);
            match self.try_path(&cand, found_by) {
                Try::Hit(c) => return Ok(Some(c)),
                Try::Fatal(f) => return Err(f),
                _ => {}
            }
            s = &s[l..];
        }
    }
}

/// `ARCH` of a musl interpreter name `…/ld-musl-ARCH.so.1`.
pub(super) fn musl_arch(interp: &[u8]) -> Option<String> {
    let base = interp.rsplit(|c| *c == b'/').next()?;
    let rest = base.strip_prefix(b"ld-musl-")?;
    let end = rest.windows(3).position(|w| w == b".so")?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn musl_arch_from_interpreter() {
        assert_eq!(
            musl_arch(b"/lib/ld-musl-x86_64.so.1").as_deref(),
            Some("x86_64")
        );
        assert_eq!(
            musl_arch(b"/lib/ld-musl-aarch64.so.1").as_deref(),
            Some("aarch64")
        );
        assert_eq!(musl_arch(b"/lib64/ld-linux-x86-64.so.2"), None);
    }
}
