//! Writing output files without harming anything: atomic replacement of regular files
//! only, through symlinks, and never over an input or another output.
//!
//! Every file the tool writes (weights, checkpoints, plots, safetensors) goes through
//! [`write_atomic`]: the bytes go to a temporary file beside the target, which is then
//! renamed over it, so that an interrupted run never leaves half a file. As `cp` and
//! `rsync` do, a symlink is followed and its target replaced (the link stays), and a path
//! that names a device, a FIFO, a socket or a folder is refused with a message, never
//! replaced by a regular file. [`check_outputs`] runs before any long work: it refuses
//! outputs that are the same file as an input or as each other (by identity, so `./a`,
//! `a` and a link to `a` are one file) and folders that cannot be written.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What a path names, for messages: `None` for a regular file.
fn special_kind(meta: &fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// The file that a write of `path` replaces: `path` itself, or the end of its chain of
/// symlinks (which may not exist yet). Anything but a regular file is an error.
pub fn output_target(path: &Path) -> Result<PathBuf> {
    let mut target = path.to_owned();
    // A chain of links longer than this is a loop, as the kernel's limit (40) has it.
    for _ in 0..40 {
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&target)
                    .with_context(|| format!("cannot read the symlink {}", target.display()))?;
                target = match target.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            Ok(meta) => {
                if let Some(kind) = special_kind(&meta) {
                    bail!(
                        "{} is {kind}; microgpt writes only regular files and would not replace it: give the path of a file",
                        path.display()
                    );
                }
                return Ok(target);
            }
            // A new file; whether its folder takes it is for the write to find out.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(target);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        }
    }
    bail!("{} is a loop of symlinks", path.display())
}

/// The folder a file goes in.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes a file atomically: to a temporary file beside its target, then renamed over
/// it, so an interrupted run never leaves half a file. The target is found by
/// [`output_target`]; an existing file keeps its permissions, a new one is 0644.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = output_target(path)?;
    let dir = folder_of(&target);
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Temporary files are private (0600); the result should be an ordinary file.
        let mode = fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder
        .prefix(".microgpt-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(&target)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Who a path is, whether or not it exists: the device and inode of an existing file,
/// else the canonical folder and the name.
#[derive(PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    Name(PathBuf),
}

/// The identity of `target`, a path whose symlinks [`output_target`] has resolved.
fn identity(target: &Path) -> Result<Identity> {
    match fs::metadata(target) {
        #[cfg(unix)]
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            Ok(Identity::Inode(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        Ok(_) => Ok(Identity::Name(fs::canonicalize(target)?)),
        Err(_) => {
            let dir = fs::canonicalize(folder_of(target))
                .with_context(|| format!("the folder of {} does not exist", target.display()))?;
            Ok(Identity::Name(
                dir.join(target.file_name().unwrap_or_default()),
            ))
        }
    }
}

/// Checks, before any long work, that every output can be written where it is asked
/// for: it is a regular file or a new one, its folder exists and takes a new file, and
/// it is not the same file as an input or another output. Each entry is a role (such
/// as `--out`) and a path.
pub fn check_outputs(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<()> {
    let mut seen: Vec<(&str, &Path, Identity)> = Vec::new();
    for &(role, path) in inputs {
        // An input may be anything readable; only its links are resolved.
        let target = output_target(path).unwrap_or_else(|_| path.to_owned());
        seen.push((role, path, identity(&target)?));
    }
    for &(role, path) in outputs {
        let target = output_target(path).map_err(|e| anyhow::anyhow!("{role} {e:#}"))?;
        let dir = folder_of(&target);
        tempfile::tempfile_in(dir).with_context(|| {
            format!(
                "{role} {}: cannot write in the folder {}",
                path.display(),
                dir.display()
            )
        })?;
        let id = identity(&target)?;
        if let Some((other, other_path, _)) = seen.iter().find(|(_, _, i)| *i == id) {
            bail!(
                "{role} {} is the same file as {other} {}; writing it would destroy that one: give another path",
                path.display(),
                other_path.display()
            );
        }
        seen.push((role, path, id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (file, link) = (dir.path().join("real.bin"), dir.path().join("link.bin"));
        fs::write(&file, b"old").unwrap();
        std::os::unix::fs::symlink("real.bin", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&file).unwrap(), b"new");
        // A dangling link makes its target.
        let dangling = dir.path().join("dangling.bin");
        std::os::unix::fs::symlink("made.bin", &dangling).unwrap();
        write_atomic(&dangling, b"x").unwrap();
        assert_eq!(fs::read(dir.path().join("made.bin")).unwrap(), b"x");
    }

    #[test]
    fn permissions_of_an_existing_file_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.bin");
        write_atomic(&file, b"a").unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&file, b"b").unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn the_same_file_by_another_name_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("data.txt"), "ann\n").unwrap();
        std::os::unix::fs::symlink("data.txt", d.join("alias.txt")).unwrap();
        let data = d.join("data.txt");
        let via_dot = d.join(".").join("data.txt");
        for out in [&data, &via_dot, &d.join("alias.txt")] {
            let err = check_outputs(&[("--data", &data)], &[("--out", out)]).unwrap_err();
            assert!(
                format!("{err:#}").contains("is the same file as --data"),
                "{err:#}"
            );
        }
        // Two new files that are one.
        let (a, b) = (d.join("new.bin"), d.join("./new.bin"));
        let err = check_outputs(&[], &[("--out", &a), ("--plot", &b)]).unwrap_err();
        assert!(format!("{err:#}").contains("--plot"), "{err:#}");
        check_outputs(
            &[("--data", &data)],
            &[("--out", &a), ("--plot", &d.join("p.svg"))],
        )
        .unwrap();
    }
}
