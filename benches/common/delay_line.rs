//! A userspace delay line: a real round-trip time between two network namespaces on a kernel
//! without netem (`CONFIG_NET_SCH_NETEM` is off here, and so are `fq` and every other qdisc that
//! could hold packets back).
//!
//! The link is a pair of TUN devices ([`NetnsPair::create_tun`]); this program opens both
//! (`TUNSETIFF` on `/dev/net/tun` from a thread inside each namespace) and copies every IP
//! packet from one to the other after a fixed one-way delay. Per direction, a reader thread
//! stamps each packet with its due time and queues it; a writer thread writes it out when it is
//! due. The queue is a router's buffer: bounded ([`QUEUE_PACKETS`]), tail drop when full, which
//! is counted. Packets stay in order (a constant delay never reorders). Packets are at most the
//! link's 1,500-byte MTU (no `IFF_VNET_HDR`, so no GSO super-packets cross it: TCP and QUIC both
//! pay per 1,500-byte packet, as on a real link). Random loss is the nftables rule of
//! [`NetnsPair::set_loss`], which matches the TUN devices' input.
//!
//! Every blocking step is bounded (`poll` and `recv_timeout` of [`TICK`]); dropping the
//! [`DelayLine`] stops and joins its threads.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::{NetnsPair, Side};

/// Packets a direction's queue holds before it drops (about 6 MB of 1,500-byte packets: a
/// bandwidth-delay product of 300 MB/s at a 20 ms round trip).
pub const QUEUE_PACKETS: usize = 4096;
/// Longest a thread blocks before it checks whether the line is stopping.
const TICK: Duration = Duration::from_millis(100);
/// Largest packet read from a TUN device (the MTU is 1,500; room for a misconfiguration).
const MAX_PACKET: usize = 65536;

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    /// Dropped because the queue was full (a router's tail drop).
    pub queue_drops: AtomicU64,
}

/// The running line; stops on drop.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// A → B, then B → A.
    pub counters: [Arc<Counters>; 2],
}

/// Opens the TUN device `name` in `side`'s namespace, as a plain IP packet stream.
fn open_tun(net: &NetnsPair, side: Side, name: &str) -> Result<File, String> {
    let name = name.to_string();
    net.run_in(side, move || -> Result<File, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|e| format!("/dev/net/tun: {e}"))?;
        // struct ifreq: the name (IFNAMSIZ = 16 bytes), then the flags (a short); 40 bytes.
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (nix::libc::IFF_TUN | nix::libc::IFF_NO_PI) as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifr` is large enough
        // for (40 bytes on Linux); the descriptor is open for the whole call.
        let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), nix::libc::TUNSETIFF, ifr.as_mut_ptr()) };
        if rc < 0 {
            return Err(format!(
                "TUNSETIFF {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f)
    })?
}

impl DelayLine {
    /// Starts copying packets between the pair's TUN devices, `one_way` late in each direction
    /// (the round trip is twice that).
    pub fn start(net: &NetnsPair, one_way: Duration) -> Result<Self, String> {
        if !net.is_tun() {
            return Err("the delay line needs a TUN pair (NetnsPair::create_tun)".into());
        }
        let a = open_tun(net, Side::A, net.ifname(Side::A))?;
        let b = open_tun(net, Side::B, net.ifname(Side::B))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = [Arc::new(Counters::default()), Arc::new(Counters::default())];
        let mut threads = Vec::new();
        let dirs = [
            (
                a.try_clone().map_err(|e| e.to_string())?,
                b.try_clone().map_err(|e| e.to_string())?,
            ),
            (b, a),
        ];
        for ((from, to), c) in dirs.into_iter().zip(counters.iter().cloned()) {
            let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(QUEUE_PACKETS);
            let (s1, s2) = (stop.clone(), stop.clone());
            let c2 = c.clone();
            threads.push(std::thread::spawn(move || {
                reader(from, tx, one_way, &s1, &c)
            }));
            threads.push(std::thread::spawn(move || writer(to, rx, &s2, &c2)));
        }
        Ok(Self {
            stop,
            threads,
            counters,
        })
    }

    /// Packets dropped because a queue was full, both directions.
    pub fn queue_drops(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.queue_drops.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn reader(
    mut from: File,
    tx: SyncSender<(Instant, Vec<u8>)>,
    one_way: Duration,
    stop: &AtomicBool,
    c: &Counters,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = vec![0u8; MAX_PACKET];
    let tick = PollTimeout::from(TICK.as_millis() as u16);
    while !stop.load(Ordering::Relaxed) {
        let ready = {
            let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, tick).unwrap_or(0)
        };
        if ready == 0 {
            continue;
        }
        // Drain what is there (non-blocking reads until none is left; at most 256 before the
        // stop flag is looked at again).
        for _ in 0..256 {
            let n = match from.read(&mut buf) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            match tx.try_send((Instant::now() + one_way, buf[..n].to_vec())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    c.queue_drops.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

fn writer(mut to: File, rx: Receiver<(Instant, Vec<u8>)>, stop: &AtomicBool, c: &Counters) {
    while !stop.load(Ordering::Relaxed) {
        let (due, pkt) = match rx.recv_timeout(TICK) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A failed write (the device went down) loses the packet, like a link would.
        if to.write(&pkt).is_ok() {
            c.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}
