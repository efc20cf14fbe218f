//! The human form of a report: the summary first (counts, packages,
//! findings by kind), then the findings, the packages, a table of every
//! path, the comparison and the notes.

use std::io::{self, Write};

use serde::Serialize;

use super::{Comparison, FileReport, Report, SourceKind};
use crate::paths::encode;
use crate::resolve::FileType;

/// Write `report` for people.
pub fn write_text(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &r.summary;
    let mut how = vec![kind_name(r.subject.kind).to_string()];
    match (&r.subject.manifest, r.subject.reasons_known) {
        (Some(m), true) if r.subject.kind != SourceKind::Manifest => {
            how.push(format!("reasons from {}", m.display()))
        }
        (_, false) => how.push("reasons unknown".into()),
        _ => {}
    }
    if let Some(p) = &r.subject.packages_from {
        how.push(format!("packages from {p}"));
    }
    writeln!(out, "jail report: {} ({})", r.subject.name, how.join("; "))?;
    writeln!(
        out,
        "  {} paths: {} files, {} directories, {} symlinks{}; {} of files",
        s.paths,
        s.files,
        s.dirs,
        s.symlinks,
        if s.other > 0 {
            format!(", {} other", s.other)
        } else {
            String::new()
        },
        bytes(s.bytes)
    )?;
    if let Some(c) = &r.config {
        let argv = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map_or("(none)".to_string(), |v| format!("{v:?}"))
        };
        writeln!(
            out,
            "  config: User {}; Entrypoint {}; Cmd {}",
            c.user.as_deref().unwrap_or("(unset: root)"),
            argv(&c.entrypoint),
            argv(&c.cmd)
        )?;
        if !c.env.is_empty() {
            writeln!(out, "  env: {}", c.env.join(" "))?;
        }
        if !c.exposed_ports.is_empty() {
            writeln!(out, "  exposed ports: {}", c.exposed_ports.join(" "))?;
        }
    }
    match r.package_line() {
        Some(line) => writeln!(out, "  packages: {line}")?,
        None => writeln!(
            out,
            "  packages: unknown (no dpkg database; pass --dpkg-root DIR)"
        )?,
    }
    if r.findings.is_empty() {
        writeln!(out, "  findings: none")?;
    } else {
        let sev: Vec<String> = s
            .severities
            .iter()
            .map(|(k, n)| format!("{n} {}", kebab(k)))
            .collect();
        let kinds: Vec<String> = s
            .findings
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect();
        writeln!(out, "  findings: {} ({})", sev.join(", "), kinds.join(", "))?;
    }

    if !r.findings.is_empty() {
        writeln!(out, "\nfindings")?;
        let rows: Vec<Vec<String>> = r
            .findings
            .iter()
            .map(|f| {
                vec![
                    kebab(&f.severity),
                    f.kind.as_str().to_string(),
                    encode(&f.path),
                    f.detail.clone(),
                ]
            })
            .collect();
        table(out, &["SEVERITY", "KIND", "PATH", "DETAIL"], &rows)?;
    }

    if !r.packages.is_empty() {
        writeln!(out, "\npackages")?;
        let rows: Vec<Vec<String>> = r
            .packages
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.version.clone().unwrap_or_else(|| "?".into()),
                    p.files.to_string(),
                ]
            })
            .collect();
        table(out, &["PACKAGE", "VERSION", "FILES"], &rows)?;
    }

    writeln!(out, "\nfiles")?;
    let rows: Vec<Vec<String>> = r.files.iter().map(file_row).collect();
    table(
        out,
        &[
            "MODE", "OWNER", "SIZE", "SHA256", "PACKAGE", "REASONS", "FLAGS", "PATH",
        ],
        &rows,
    )?;

    if let Some(c) = &r.against {
        comparison(out, c)?;
    }
    if !r.notes.is_empty() {
        writeln!(out, "\nnotes")?;
        for n in &r.notes {
            writeln!(out, "  - {n}")?;
        }
    }
    Ok(())
}

fn comparison(out: &mut dyn Write, c: &Comparison) -> io::Result<()> {
    writeln!(
        out,
        "\nagainst {} ({})",
        c.original.name,
        kind_name(c.original.kind)
    )?;
    let p = &c.paths;
    writeln!(
        out,
        "  paths: kept {} of {}, removed {}, added {}; {} → {} of files",
        p.kept,
        p.original,
        p.removed,
        p.added,
        bytes(c.bytes[0]),
        bytes(c.bytes[1])
    )?;
    for (k, ch) in &c.kinds {
        if ch.original == 0 && ch.added.is_empty() {
            continue;
        }
        writeln!(
            out,
            "  {}: removed {} of {}{}; kept {}{}{}",
            k.as_str(),
            ch.removed.len(),
            ch.original,
            listing(&ch.removed),
            ch.kept.len(),
            listing(&ch.kept),
            if ch.added.is_empty() {
                String::new()
            } else {
                format!("; added {}{}", ch.added.len(), listing(&ch.added))
            }
        )?;
    }
    match &c.packages {
        Some(ch) => writeln!(
            out,
            "  packages: kept {} of {}{}; removed {}{}",
            ch.kept.len(),
            ch.original,
            listing(&ch.kept),
            ch.removed.len(),
            listing(&ch.removed)
        )?,
        None => writeln!(out, "  packages: unknown (no dpkg database)")?,
    }
    Ok(())
}

/// ` (a, b, c, … 12 more)`, or nothing for an empty list.
fn listing(items: &[String]) -> String {
    const SHOW: usize = 8;
    if items.is_empty() {
        return String::new();
    }
    let mut s = items
        .iter()
        .take(SHOW)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOW {
        s.push_str(&format!(", … {} more", items.len() - SHOW));
    }
    format!(" ({s})")
}

fn file_row(f: &FileReport) -> Vec<String> {
    let mut path = encode(&f.path);
    if let Some(t) = &f.target {
        path.push_str(" -> ");
        path.push_str(&encode(t));
    }
    let package = match f.packages.as_slice() {
        [] => "-".to_string(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    };
    let reasons = match &f.reasons {
        None => "?".to_string(),
        Some(r) => r.iter().map(kebab).collect::<Vec<_>>().join(","),
    };
    let flags = if f.flags.is_empty() {
        "-".to_string()
    } else {
        f.flags
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        ls_mode(f.file_type, &f.mode),
        format!("{}:{}", f.uid, f.gid),
        if f.file_type == FileType::File {
            f.size.to_string()
        } else {
            "-".into()
        },
        f.sha256
            .as_ref()
            .map(|d| d.hex()[..12].to_string())
            .unwrap_or_else(|| "-".into()),
        package,
        reasons,
        flags,
        path,
    ]
}

/// `-rwsr-xr-x` from the type and the octal mode.
fn ls_mode(t: FileType, mode: &str) -> String {
    let m = u32::from_str_radix(mode, 8).unwrap_or(0);
    let mut s = String::with_capacity(10);
    s.push(match t {
        FileType::File => '-',
        FileType::Dir => 'd',
        FileType::Symlink => 'l',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
    });
    let special = [(0o4000, 's'), (0o2000, 's'), (0o1000, 't')];
    for (i, (bit, ch)) in special.iter().enumerate() {
        let shift = 6 - 3 * i;
        let (r, w, x) = (
            m >> shift & 4 != 0,
            m >> shift & 2 != 0,
            m >> shift & 1 != 0,
        );
        s.push(if r { 'r' } else { '-' });
        s.push(if w { 'w' } else { '-' });
        s.push(match (m & bit != 0, x) {
            (true, true) => *ch,
            (true, false) => ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Image => "image",
        SourceKind::Tree => "tree",
        SourceKind::Manifest => "manifest",
    }
}

/// The serde (kebab-case) name of a unit variant.
fn kebab<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// Columns padded to their widest cell; the last one is not padded.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            s.push(' ');
            s.push_str(c);
            if i < last {
                s.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Severity};
    use super::*;

    #[test]
    fn modes_and_sizes_read_like_ls() {
        assert_eq!(ls_mode(FileType::File, "4755"), "-rwsr-xr-x");
        assert_eq!(ls_mode(FileType::Dir, "1777"), "drwxrwxrwt");
        assert_eq!(ls_mode(FileType::File, "2644"), "-rw-r-Sr--");
        assert_eq!(ls_mode(FileType::Symlink, "0777"), "lrwxrwxrwx");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(10 * 1024 * 1024 + 1), "10.0 MiB");
        assert_eq!(
            listing(&(0..10).map(|i| i.to_string()).collect::<Vec<_>>()),
            " (0, 1, 2, 3, 4, 5, 6, 7, … 2 more)"
        );
    }

    #[test]
    fn severity_and_kind_names() {
        assert_eq!(kebab(&Severity::High), "high");
        assert_eq!(
            kebab(&Kind::WorldWritableDir),
            Kind::WorldWritableDir.as_str()
        );
    }
}
