//! Loopback TCP ports for local federations (devnets, demos, tests, benchmarks), handed out
//! so that no two processes on the machine are given the same one.
//!
//! A port is only bound by the node that is given it, often seconds later, so checking
//! that it is free when it is handed out is not enough: two test processes running side by
//! side could both find the same port free and both hand it out (CI saw one node dial
//! another process's node that way). Ports are therefore reserved in blocks, each block
//! claimed by an exclusive lock on a file under the temporary directory that the process
//! holds until it exits (the kernel drops the lock when the process ends, however it ends).

use std::fs::{File, OpenOptions, TryLockError};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use rand_core::RngCore;

/// Ports handed out: below Linux's default ephemeral range (32768–60999), from which the
/// kernel takes the source port of every outgoing connection. A port picked inside it (as
/// binding port 0 does) could be taken, before the node that was given it starts, as the
/// source port of one of the connections the nodes already running make to each other: in
/// a 50-node devnet that happened.
pub const LOCAL_PORTS: Range<u16> = 20_000..32_768;

/// Ports per reserved block: one lock file (and one open file) for every 16 ports.
const BLOCK_PORTS: u16 = 16;

/// A TCP port on 127.0.0.1 that no other process using this function was given and that
/// was free a moment ago (bound and released), inside [`LOCAL_PORTS`]. One process never
/// gets the same port twice until the range is used up. 0 if no port could be found.
pub fn free_loopback_port() -> u16 {
    static RESERVATIONS: OnceLock<Mutex<PortReservations>> = OnceLock::new();
    let reservations = RESERVATIONS.get_or_init(|| {
        Mutex::new(PortReservations::new(
            std::env::temp_dir().join("lienthong-ports"),
            rand_core::OsRng.next_u32(),
        ))
    });
    match reservations.lock() {
        Ok(mut reservations) => reservations.next_port(),
        Err(poisoned) => poisoned.into_inner().next_port(),
    }
}

/// The blocks of ports one process holds and where it is in the newest one.
#[derive(Debug)]
struct PortReservations {
    /// Directory of the lock files, one per block.
    lock_dir: PathBuf,
    /// The block the walk over blocks tries next (taken modulo the number of blocks).
    next_block: u32,
    /// Ports of the newest block not handed out yet.
    current: Range<u16>,
    /// Locked files of the blocks held; dropping one would release its block.
    held: Vec<File>,
}

impl PortReservations {
    fn new(lock_dir: PathBuf, first_block: u32) -> Self {
        Self {
            lock_dir,
            next_block: first_block,
            current: 0..0,
            held: Vec::new(),
        }
    }

    fn block_count() -> u32 {
        u32::from((LOCAL_PORTS.end - LOCAL_PORTS.start) / BLOCK_PORTS)
    }

    /// The next port of the held blocks that can be bound now, reserving another block
    /// when they are used up; 0 when every block is held or taken.
    fn next_port(&mut self) -> u16 {
        loop {
            if let Some(port) = self.current.next() {
                if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return port;
                }
                continue;
            }
            match self.reserve_block() {
                Some(ports) => self.current = ports,
                None => return 0,
            }
        }
    }

    /// Claims the next block no other process holds, walking the blocks once. Where lock
    /// files cannot be made or locked at all (no such directory, another user's files, a
    /// file system without locks), the block is used unlocked: a local run still works, it
    /// just loses the guarantee across processes.
    fn reserve_block(&mut self) -> Option<Range<u16>> {
        let locking = std::fs::create_dir_all(&self.lock_dir).is_ok();
        let blocks = Self::block_count();
        // Blocks this process holds are skipped like any other: a second open of a locked
        // file cannot lock it.
        for _ in 0..blocks {
            let block = self.next_block % blocks;
            self.next_block = self.next_block.wrapping_add(1);
            let start = LOCAL_PORTS.start + u16::try_from(block).ok()? * BLOCK_PORTS;
            let ports = start..start + BLOCK_PORTS;
            if !locking {
                return Some(ports);
            }
            let Ok(file) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.lock_dir.join(format!("{start}")))
            else {
                return Some(ports);
            };
            match file.try_lock() {
                Ok(()) => {
                    self.held.push(file);
                    return Some(ports);
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(_)) => return Some(ports),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use super::*;

    #[test]
    fn free_ports_are_distinct_outside_the_ephemeral_range_and_can_be_bound() {
        // As many as two 50-node federations ask for (a port and an API port each).
        let ports: Vec<u16> = (0..200).map(|_| free_loopback_port()).collect();
        for port in &ports {
            assert!(LOCAL_PORTS.contains(port), "port {port}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).unwrap();
        }
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    #[test]
    fn two_holders_starting_at_the_same_block_never_share_a_port() {
        // Two reservation sets on one lock directory stand for two processes: file locks
        // taken through separate opens exclude each other even within one process.
        let dir = tempfile::tempdir().unwrap();
        let mut first = PortReservations::new(dir.path().to_path_buf(), 7);
        let mut second = PortReservations::new(dir.path().to_path_buf(), 7);
        let mut seen = HashSet::new();
        for _ in 0..40 {
            for reservations in [&mut first, &mut second] {
                let port = reservations.next_port();
                assert_ne!(port, 0);
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
        assert!(first.held.len() >= 3 && second.held.len() >= 3);

        // A holder that is gone (a process that ended) frees its blocks for others.
        let first_block = LOCAL_PORTS.start + 7 * BLOCK_PORTS;
        let mut third = PortReservations::new(dir.path().to_path_buf(), 7);
        assert_ne!(third.reserve_block().unwrap().start, first_block);
        drop(first);
        let mut fourth = PortReservations::new(dir.path().to_path_buf(), 7);
        assert_eq!(fourth.reserve_block().unwrap().start, first_block);
    }

    #[test]
    fn without_a_usable_lock_directory_ports_are_still_handed_out() {
        // A regular file where the directory should be: nothing can be created under it.
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let mut reservations = PortReservations::new(not_a_dir.join("ports"), 3);
        let ports: HashSet<u16> = (0..20).map(|_| reservations.next_port()).collect();
        assert_eq!(ports.len(), 20);
        assert!(!ports.contains(&0));
        assert!(reservations.held.is_empty());
    }
}
