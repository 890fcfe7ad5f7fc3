//! The inode table: a dataset's files (the paths `gtio ls` prints) as a
//! directory tree. Inode numbers are assigned in the dataset's file order, so
//! they are the same on every mount of the same dataset.

use std::collections::BTreeMap;

pub const ROOT: u64 = 1;

pub enum Node {
    Dir {
        parent: u64,
        /// Child name to inode, sorted so readdir offsets are stable.
        children: BTreeMap<String, u64>,
    },
    File {
        /// Where the file starts in the dataset's stream.
        offset: u64,
        size: u64,
    },
}

pub struct Tree {
    /// Inode `i` is `nodes[i - 1]`.
    nodes: Vec<Node>,
}

impl Tree {
    /// `files` are (path, stream offset, size). Empty or `.`/`..` path
    /// segments are skipped: the library refuses such names already, this is
    /// only so a bad entry cannot make a loop.
    pub fn new<'a>(files: impl Iterator<Item = (&'a str, u64, u64)>) -> Tree {
        let mut tree = Tree {
            nodes: vec![Node::Dir {
                parent: ROOT,
                children: BTreeMap::new(),
            }],
        };
        for (path, offset, size) in files {
            let parts: Vec<&str> = path
                .split('/')
                .filter(|p| !p.is_empty() && *p != "." && *p != "..")
                .collect();
            let Some((leaf, dirs)) = parts.split_last() else {
                continue;
            };
            let mut dir = ROOT;
            for d in dirs {
                dir = match tree.child(dir, d) {
                    Some(ino) if tree.is_dir(ino) => ino,
                    Some(_) => break,
                    None => tree.add(
                        dir,
                        d,
                        Node::Dir {
                            parent: dir,
                            children: BTreeMap::new(),
                        },
                    ),
                };
            }
            if tree.child(dir, leaf).is_none() && tree.is_dir(dir) {
                tree.add(dir, leaf, Node::File { offset, size });
            }
        }
        tree
    }

    fn add(&mut self, parent: u64, name: &str, node: Node) -> u64 {
        self.nodes.push(node);
        let ino = self.nodes.len() as u64;
        if let Some(Node::Dir { children, .. }) = self.nodes.get_mut(parent as usize - 1) {
            children.insert(name.to_string(), ino);
        }
        ino
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(ino.checked_sub(1)? as usize)
    }

    pub fn is_dir(&self, ino: u64) -> bool {
        matches!(self.get(ino), Some(Node::Dir { .. }))
    }

    pub fn child(&self, dir: u64, name: &str) -> Option<u64> {
        match self.get(dir)? {
            Node::Dir { children, .. } => children.get(name).copied(),
            Node::File { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_make_directories() {
        let t = Tree::new([("d/a", 0, 3), ("d/e/b", 3, 4), ("c", 7, 1)].into_iter());
        let d = t.child(ROOT, "d").unwrap();
        assert!(t.is_dir(d));
        let e = t.child(d, "e").unwrap();
        let b = t.child(e, "b").unwrap();
        assert!(matches!(t.get(b), Some(Node::File { offset: 3, size: 4 })));
        assert!(t.child(ROOT, "x").is_none());
    }
}
