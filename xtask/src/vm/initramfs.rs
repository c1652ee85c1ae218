//! A `newc` cpio archive, the format the kernel unpacks as its initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst), written
//! directly: no `cpio` tool, no root for device nodes, and no compression
//! (the kernel takes an uncompressed archive, and gzip would cost more time
//! than the few megabytes it saves).
use std::{
    collections::BTreeSet,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// What an entry holds.
enum Body {
    Dir,
    File { source: PathBuf, mode: u32 },
    Bytes { data: Vec<u8>, mode: u32 },
    CharDevice { major: u32, minor: u32 },
}

/// The archive's entries, by path inside the guest (no leading `/`).
#[derive(Default)]
pub struct Initramfs {
    entries: Vec<(String, Body)>,
    dirs: BTreeSet<String>,
}

impl Initramfs {
    /// An empty directory (parents are added for every entry anyway).
    pub fn dir(&mut self, path: &str) {
        self.parents(path);
        if self.dirs.insert(path.to_owned()) {
            self.entries.push((path.to_owned(), Body::Dir));
        }
    }

    /// A copy of the host file `source`, executable or not.
    pub fn file(&mut self, path: &str, source: &Path, executable: bool) {
        self.parents(path);
        let mode = if executable { 0o755 } else { 0o644 };
        self.entries.push((path.to_owned(), Body::File { source: source.to_owned(), mode }));
    }

    /// A file with the given contents.
    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, executable: bool) {
        self.parents(path);
        let mode = if executable { 0o755 } else { 0o644 };
        self.entries.push((path.to_owned(), Body::Bytes { data: data.into(), mode }));
    }

    /// A character device node (`/dev/console` must exist before `/init`
    /// runs, or the kernel has nowhere to send init's output).
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.parents(path);
        self.entries.push((path.to_owned(), Body::CharDevice { major, minor }));
    }

    fn parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                self.entries.push((prefix.clone(), Body::Dir));
            }
        }
    }

    /// Writes the archive to `out`; returns its size in bytes.
    pub fn write(&self, out: &Path) -> Result<u64> {
        let mut w = io::BufWriter::new(fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
        let mut written = 0u64;
        for (ino, (path, body)) in self.entries.iter().enumerate() {
            let ino = ino as u32 + 1;
            let (mode, data, rdev) = match body {
                Body::Dir => (0o040_755, Vec::new(), (0, 0)),
                Body::File { source, mode } => (
                    0o100_000 | mode,
                    fs::read(source).with_context(|| format!("reading {}", source.display()))?,
                    (0, 0),
                ),
                Body::Bytes { data, mode } => (0o100_000 | mode, data.clone(), (0, 0)),
                Body::CharDevice { major, minor } => (0o020_600, Vec::new(), (*major, *minor)),
            };
            let nlink = if matches!(body, Body::Dir) { 2 } else { 1 };
            written += entry(&mut w, ino, mode, nlink, rdev, path, &data)?;
        }
        written += entry(&mut w, 0, 0, 1, (0, 0), "TRAILER!!!", &[])?;
        w.flush()?;
        Ok(written)
    }
}

/// One `newc` record: the 110-byte header, the name (NUL-terminated, padded
/// to 4 bytes with the header), the data (padded to 4).
fn entry(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> Result<u64> {
    let Ok(size) = u32::try_from(data.len()) else { bail!("{name} is over 4 GiB") };
    let namesize = name.len() as u32 + 1;
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
    let mut header = String::from("070701");
    for f in fields {
        header.push_str(&format!("{f:08x}"));
    }
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let head = 110 + namesize as usize;
    let pad = |n: usize| (4 - n % 4) % 4;
    w.write_all(&[0; 3][..pad(head)])?;
    w.write_all(data)?;
    w.write_all(&[0; 3][..pad(data.len())])?;
    Ok((head + pad(head) + data.len() + pad(data.len())) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_records_with_parents_and_padding() {
        let dir = std::env::temp_dir().join(format!("xtask-initramfs-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp");
        let out = dir.join("a.cpio");
        let mut fs_ = Initramfs::default();
        fs_.bytes("bin/x", b"hello".to_vec(), true);
        fs_.char_device("dev/console", 5, 1);
        fs_.dir("bin");
        let size = fs_.write(&out).expect("write");
        let bytes = fs::read(&out).expect("read");
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        // Parent directory first, once, then the file; data padded.
        assert!(text.starts_with("070701"));
        let names: Vec<&str> = ["bin\0", "bin/x\0", "dev\0", "dev/console\0", "TRAILER!!!\0"].into_iter().collect();
        let mut at = 0;
        for name in names {
            let found = text[at..].find(name).map(|i| i + at).unwrap_or_else(|| panic!("{name:?} missing"));
            at = found + name.len();
        }
        // bin/x: mode 100755, size 5, name size 6.
        let x = text.find("bin/x\0").expect("bin/x") - 110;
        assert_eq!(&text[x + 14..x + 22], "000081ed");
        assert_eq!(&text[x + 54..x + 62], "00000005");
        assert_eq!(&text[x + 94..x + 102], "00000006");
        assert!(text.contains("hello\0\0\0"));
        // dev/console: char device 5:1.
        let c = text.find("dev/console\0").expect("console") - 110;
        assert_eq!(&text[c + 14..c + 22], "00002180");
        assert_eq!(&text[c + 78..c + 86], "00000005");
        assert_eq!(&text[c + 86..c + 94], "00000001");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
