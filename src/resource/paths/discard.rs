//! What restoring a path discards: the files (and symlinks, fifos, devices)
//! added, changed and deleted under it since the checkpoint, with the bytes of
//! those on disk now. Counted from the two manifests the restore plan already
//! holds (the disk as scanned, the checkpoint's), not from its list of changes,
//! which folds a removed directory's entries into one line.

use std::collections::HashMap;

use super::Planned;
use crate::resource::discard::Count;
use crate::store::manifest::{Entry, Kind};

impl Planned {
    /// Entries other than directories added, changed and deleted since the
    /// checkpoint; directories themselves hold nothing to lose.
    pub fn discarded(&self) -> Count {
        let counted = |e: &&Entry| e.kind != Kind::Dir && e.kind != Kind::Socket;
        let then: HashMap<&[u8], &Entry> = self
            .target
            .entries
            .iter()
            .filter(counted)
            .map(|e| (e.path.as_slice(), e))
            .collect();
        let mut c = Count {
            bytes_added: Some(0),
            bytes_changed: Some(0),
            ..Count::default()
        };
        let mut seen = 0;
        for now in self.current.entries.iter().filter(counted) {
            match then.get(now.path.as_slice()) {
                None => {
                    c.added += 1;
                    *c.bytes_added.get_or_insert(0) += now.size;
                }
                Some(t) => {
                    seen += 1;
                    let same = t.kind == now.kind
                        && match t.kind {
                            Kind::File => t.size == now.size && t.hash == now.hash,
                            Kind::Symlink => t.target == now.target,
                            Kind::CharDevice | Kind::BlockDevice => t.rdev == now.rdev,
                            _ => true,
                        };
                    if !same {
                        c.changed += 1;
                        *c.bytes_changed.get_or_insert(0) += now.size;
                    }
                }
            }
        }
        c.deleted = (then.len() - seen) as u64;
        c
    }
}
