//! An in-process wire for tests and benches: what the generator sends goes straight to a
//! target's frame handler, and what the handler answers is what the generator receives. Time, as the target
//! sees it, is virtual: it moves on by a millisecond, with a timer tick, whenever the
//! generator finds nothing to receive, so that login timers run without real waits.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use l2san_common::io::{FrameRx, FrameTx, TxBatch};

/// Take the frames a handler queued, leaving the batch empty.
fn drain(batch: &mut TxBatch) -> Vec<Vec<u8>> {
    let out = batch.frames().map(|f| f.to_vec()).collect();
    batch.clear();
    out
}

/// The target's frame handler: a frame, the (virtual) time, where to put replies.
pub type Handler = Box<dyn FnMut(&[u8], Instant, &mut TxBatch) + Send>;
/// The target's timers.
pub type Tick = Box<dyn FnMut(Instant, &mut TxBatch) + Send>;

struct State {
    handle: Handler,
    tick: Tick,
    now: Instant,
    batch: TxBatch,
    queue: VecDeque<Vec<u8>>,
}

/// The generator's receive half of a [`wire`].
pub struct WireRx(Arc<Mutex<State>>);
/// The generator's transmit half of a [`wire`].
pub struct WireTx(Arc<Mutex<State>>);

/// A wire to a target whose handler is `handle` and whose timers run in `tick`.
pub fn wire(handle: Handler, tick: Tick) -> (WireRx, WireTx) {
    let state = Arc::new(Mutex::new(State {
        handle,
        tick,
        now: Instant::now(),
        batch: TxBatch::new(64),
        queue: VecDeque::new(),
    }));
    (WireRx(state.clone()), WireTx(state))
}

impl FrameTx for WireTx {
    fn send_frames(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *s;
        for f in frames {
            (s.handle)(f, s.now, &mut s.batch);
            s.queue.extend(drain(&mut s.batch));
        }
        Ok(frames.len())
    }
}

impl FrameRx for WireRx {
    fn recv_batch(
        &mut self,
        _timeout: Duration,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> io::Result<usize> {
        let frames: Vec<Vec<u8>> = {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let s = &mut *s;
            if s.queue.is_empty() {
                s.now += Duration::from_millis(1);
                (s.tick)(s.now, &mut s.batch);
                s.queue.extend(drain(&mut s.batch));
            }
            let n = s.queue.len().min(max);
            s.queue.drain(..n).collect()
        };
        for f in &frames {
            on_frame(f);
        }
        Ok(frames.len())
    }
}
