//! Frame I/O: moving whole Ethernet frames between a NIC queue and the handlers.
//!
//! Receive and transmit are separate halves ([`FrameRx`], [`FrameTx`]) so that a handler can
//! queue replies while the receive half still lends it the request in place. Handlers never see
//! a backend: they build replies through [`Transmit`], which a [`TxBatch`] implements by filling
//! preallocated buffers and handing them to the backend in one batched call.
//!
//! The io layer knows no protocol field: a handler that needs its frames spread over several
//! workers says by which field ([`Steering`]), and the backend builds its fanout from that.

// Raw sockets, their rings and the few other system calls: the only unsafe of the io layer,
// each block behind a safe API.
#[allow(unsafe_code)]
pub mod sys;

use std::io;
use std::time::{Duration, Instant};

use crate::ether::MIN_FRAME_LEN;

/// Largest frame a buffer must hold: MTU 9000 plus the Ethernet header, rounded up.
pub const MAX_FRAME_LEN: usize = 9216;

/// The receive half of a frame backend.
pub trait FrameRx: Send {
    /// Wait up to `timeout` for frames, then hand each of at most `max` received frames to
    /// `on_frame`, in order, borrowed in place. Returns how many frames were handed over.
    fn recv_batch(
        &mut self,
        timeout: Duration,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> io::Result<usize>;
}

/// The transmit half of a frame backend.
pub trait FrameTx: Send {
    /// Send every frame in `frames`; returns how many the kernel took.
    fn send_frames(&mut self, frames: &[&[u8]]) -> io::Result<usize>;
}

/// Which worker handles the frames of one ethertype when several workers share an interface:
/// a hash of the source MAC (bytes 2-5) and of the field at `offset`, so that frames from
/// one source with the same field value always meet the same worker, in order, while other
/// values spread over all workers. Frames of an ethertype no handler steers, and frames too
/// short to hold the field, go to worker 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steering {
    pub ethertype: u16,
    /// Where the field starts, in bytes from the start of the frame (Ethernet header included).
    pub offset: u16,
    pub width: FieldWidth,
}

/// How many bytes a [`Steering`] field takes (read in network order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldWidth {
    U8,
    U16,
    U32,
}

/// Where a handler builds its replies.
pub trait Transmit {
    /// A buffer of at least `len` bytes for the next frame (`len` at most [`MAX_FRAME_LEN`]).
    /// Its contents are stale: the caller writes every byte it then commits.
    fn buffer(&mut self, len: usize) -> &mut [u8];
    /// Queue the first `len` bytes of the buffer last handed out. Frames shorter than the
    /// Ethernet minimum are padded with zeros, never with stale bytes.
    fn commit(&mut self, len: usize);
    /// The time a reply committed now is handed to the transmit path: the end of a request's
    /// service time, whose start is the `now` the handler was given with the request. A
    /// worker's transmit path reads the clock; a [`TxBatch`] can be given a fixed time
    /// ([`TxBatch::set_now`]) so that tests see exact service times.
    fn now(&self) -> Instant;
}

/// Preallocated transmit buffers, flushed to a [`FrameTx`] when full and at the end of each
/// receive batch. No allocation after construction.
pub struct TxBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    queued: usize,
    /// Frames the backend refused (ENOBUFS and the like); the initiator will retransmit.
    pub dropped: u64,
    pub sent: u64,
    /// What [`Transmit::now`] says for this batch used on its own; `None` reads the clock.
    clock: Option<Instant>,
}

impl TxBatch {
    pub fn new(capacity: usize) -> TxBatch {
        let capacity = capacity.max(1);
        TxBatch {
            bufs: (0..capacity)
                .map(|_| vec![0u8; MAX_FRAME_LEN].into_boxed_slice())
                .collect(),
            lens: vec![0; capacity],
            queued: 0,
            dropped: 0,
            sent: 0,
            clock: None,
        }
    }

    /// From now on, [`Transmit::now`] of this batch (used on its own, by tests and benches)
    /// says `now` instead of reading the clock.
    pub fn set_now(&mut self, now: Instant) {
        self.clock = Some(now);
    }

    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The frames queued so far.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[..self.queued]
            .iter()
            .zip(&self.lens)
            .map(|(b, &l)| &b[..l])
    }

    /// Drop every queued frame without sending.
    pub fn clear(&mut self) {
        self.queued = 0;
    }

    /// Hand every queued frame to `tx`. Errors are counted as drops, never returned: a lost
    /// reply is what the initiators' retransmit timers exist for.
    pub fn flush(&mut self, tx: &mut dyn FrameTx) -> Result<(), io::Error> {
        if self.queued == 0 {
            return Ok(());
        }
        let mut refs: [&[u8]; 64] = [&[]; 64];
        let mut result = Ok(());
        let mut start = 0;
        while start < self.queued {
            let n = (self.queued - start).min(refs.len());
            for (i, r) in refs[..n].iter_mut().enumerate() {
                *r = &self.bufs[start + i][..self.lens[start + i]];
            }
            match tx.send_frames(&refs[..n]) {
                Ok(sent) => {
                    self.sent += sent as u64;
                    self.dropped += (n - sent) as u64;
                }
                Err(e) => {
                    self.dropped += n as u64;
                    result = Err(e);
                }
            }
            start += n;
        }
        self.queued = 0;
        result
    }

    /// A [`Transmit`] that flushes to `tx` whenever the batch is full.
    pub fn with<'a>(&'a mut self, tx: &'a mut dyn FrameTx) -> Flushing<'a> {
        Flushing {
            batch: self,
            tx,
            error: None,
        }
    }

    fn slot(&mut self) -> &mut [u8] {
        &mut self.bufs[self.queued]
    }

    fn push(&mut self, len: usize) {
        let len = len.min(MAX_FRAME_LEN);
        let buf = &mut self.bufs[self.queued];
        if len < MIN_FRAME_LEN {
            buf[len..MIN_FRAME_LEN].fill(0);
        }
        self.lens[self.queued] = len.max(MIN_FRAME_LEN);
        self.queued += 1;
    }

    fn is_full(&self) -> bool {
        self.queued == self.bufs.len()
    }
}

/// A [`TxBatch`] bound to a backend, flushing when full. See [`TxBatch::with`].
pub struct Flushing<'a> {
    batch: &'a mut TxBatch,
    tx: &'a mut dyn FrameTx,
    /// The last send error seen while flushing, for the worker to log.
    pub error: Option<io::Error>,
}

impl Flushing<'_> {
    pub fn flush(&mut self) {
        if let Err(e) = self.batch.flush(self.tx) {
            self.error = Some(e);
        }
    }
}

impl Transmit for Flushing<'_> {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        debug_assert!(len <= MAX_FRAME_LEN);
        if self.batch.is_full() {
            self.flush();
        }
        self.batch.slot()
    }
    fn commit(&mut self, len: usize) {
        self.batch.push(len);
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A batch with nowhere to go: collects frames for tests and benches.
impl Transmit for TxBatch {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        debug_assert!(len <= MAX_FRAME_LEN);
        if self.is_full() {
            // Grow: only tests and benches use a TxBatch without a backend.
            self.bufs.push(vec![0u8; MAX_FRAME_LEN].into_boxed_slice());
            self.lens.push(0);
        }
        self.slot()
    }
    fn commit(&mut self, len: usize) {
        self.push(len);
    }
    fn now(&self) -> Instant {
        self.clock.unwrap_or_else(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sink(Vec<Vec<u8>>, usize);
    impl FrameTx for Sink {
        fn send_frames(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
            let take = frames.len().min(self.1);
            self.0.extend(frames[..take].iter().map(|f| f.to_vec()));
            Ok(take)
        }
    }

    #[test]
    fn short_frames_padded_with_zeros() {
        let mut batch = TxBatch::new(2);
        let buf = batch.buffer(60);
        buf.fill(0xa5);
        buf[..4].copy_from_slice(&[1, 2, 3, 4]);
        batch.commit(4);
        let frames: Vec<_> = batch.frames().collect();
        assert_eq!(frames[0].len(), 60);
        assert_eq!(&frames[0][..4], &[1, 2, 3, 4]);
        assert!(frames[0][4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn flushing_sends_when_full_and_counts_drops() {
        let mut batch = TxBatch::new(2);
        let mut sink = Sink(Vec::new(), 1);
        {
            let mut t = batch.with(&mut sink);
            for i in 0..3u8 {
                let b = t.buffer(100);
                b[..100].fill(i);
                t.commit(100);
            }
            t.flush();
        }
        // Two flushes of which the sink took one frame each.
        assert_eq!(sink.0.len(), 2);
        assert_eq!(sink.0[0][0], 0);
        assert_eq!(sink.0[1][0], 2);
        assert_eq!(batch.sent, 2);
        assert_eq!(batch.dropped, 1);
    }
}
