//! A minimal tar writer (POSIX ustar, with pax extended headers for names,
//! link targets and sizes that do not fit), for `backout export` of a path:
//! any `tar` reads what it writes.

use std::io::{self, Read, Write};

/// What one archive member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

impl Member {
    fn flag(self) -> u8 {
        match self {
            Member::File => b'0',
            Member::Symlink => b'2',
            Member::CharDevice => b'3',
            Member::BlockDevice => b'4',
            Member::Dir => b'5',
            Member::Fifo => b'6',
        }
    }
}

/// One member's header fields.
pub struct Header<'a> {
    pub path: &'a [u8],
    pub member: Member,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub link: Option<&'a [u8]>,
    /// Major and minor device numbers (devices only).
    pub dev: (u32, u32),
}

pub struct TarWriter<W: Write> {
    out: W,
}

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    let b = s.as_bytes();
    let b = &b[b.len().saturating_sub(width)..];
    field[..b.len()].copy_from_slice(b);
    field[width] = 0;
}

/// A pax record: `LEN key=value\n`, LEN counting itself.
fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    fn block(&mut self, name: &[u8], flag: u8, h: &Header<'_>, size: u64, link: &[u8]) -> io::Result<()> {
        let mut b = [0u8; 512];
        b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        octal(&mut b[100..108], u64::from(h.mode & 0o7777));
        octal(&mut b[108..116], 0);
        octal(&mut b[116..124], 0);
        octal(&mut b[124..136], size.min(0o77777777777));
        octal(&mut b[136..148], h.mtime.max(0) as u64);
        b[156] = flag;
        b[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], u64::from(h.dev.0));
        octal(&mut b[337..345], u64::from(h.dev.1));
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|x| u64::from(*x)).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
        self.out.write_all(&b)
    }

    fn pad(&mut self, n: u64) -> io::Result<()> {
        let rem = (n % 512) as usize;
        if rem != 0 {
            self.out.write_all(&vec![0; 512 - rem])?;
        }
        Ok(())
    }

    /// Writes one member; a file's `size` bytes come from `data`.
    pub fn append(&mut self, h: &Header<'_>, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut path = h.path.to_vec();
        if h.member == Member::Dir && !path.ends_with(b"/") {
            path.push(b'/');
        }
        let link = h.link.unwrap_or(b"");
        let size = if h.member == Member::File { h.size } else { 0 };
        let mut pax = Vec::new();
        if path.len() > 100 {
            pax.extend(record("path", &path));
        }
        if link.len() > 100 {
            pax.extend(record("linkpath", link));
        }
        if size > 0o77777777777 {
            pax.extend(record("size", size.to_string().as_bytes()));
        }
        if !pax.is_empty() {
            let pax_header = Header {
                path: b"././@PaxHeader",
                member: Member::File,
                mode: 0o644,
                size: pax.len() as u64,
                mtime: h.mtime,
                link: None,
                dev: (0, 0),
            };
            self.block(b"././@PaxHeader", b'x', &pax_header, pax.len() as u64, b"")?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        self.block(&path, h.member.flag(), h, size, link)?;
        if let Some(r) = data.filter(|_| h.member == Member::File) {
            let n = io::copy(&mut r.take(size), &mut self.out)?;
            if n != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{n} bytes where {size} were expected"),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// Ends the archive (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(record("path", b"a"), b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = record("path", &long);
        let len: usize = String::from_utf8_lossy(&r).split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn the_system_tar_reads_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("d/{}/file.txt", "n".repeat(150));
        let mut w = TarWriter::new(Vec::new());
        let h = |path: &'static [u8], member, size| Header {
            path,
            member,
            mode: 0o755,
            size,
            mtime: 1_700_000_000,
            link: None,
            dev: (0, 0),
        };
        w.append(&h(b"d", Member::Dir, 0), None).unwrap();
        w.append(&h(b"d/a.txt", Member::File, 5), Some(&mut &b"hello"[..]))
            .unwrap();
        let long_path: &'static [u8] = Box::leak(long.clone().into_bytes().into_boxed_slice());
        w.append(&h(long_path, Member::File, 3), Some(&mut &b"abc"[..]))
            .unwrap();
        let mut link = h(b"d/l", Member::Symlink, 0);
        link.link = Some(b"a.txt");
        w.append(&link, None).unwrap();
        let bytes = w.finish().unwrap();
        let tar = dir.path().join("t.tar");
        std::fs::write(&tar, bytes).unwrap();
        let out = std::process::Command::new("tar")
            .args(["-xf", tar.to_str().unwrap(), "-C", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(dir.path().join("d/a.txt")).unwrap(), "hello");
        assert_eq!(std::fs::read_to_string(dir.path().join(&long)).unwrap(), "abc");
        assert_eq!(
            std::fs::read_link(dir.path().join("d/l")).unwrap(),
            std::path::Path::new("a.txt")
        );
    }
}
