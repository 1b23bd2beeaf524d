//! Pacing of new SSH handshakes (ssh mode): how many may be under way at once follows how fast
//! they complete, instead of `--workers` all at once.
//!
//! A handshake costs CPU on both ends (key exchange, signatures, the login shell). Started by the
//! hundred on a small machine they share the CPU, every one of them slows down, and past the
//! connect timeout they fail together: hosts lost to the client's own saturation (issue 14: 922 of
//! 1,000 with `--workers 200`). The window here starts small and, like TCP's congestion window:
//! - grows by one per handshake that finished fast (so it doubles per round: slow start), later by
//!   one per window's worth of fast handshakes;
//! - holds while handshakes are neither fast nor slow;
//! - halves on a slow handshake, or on a handshake timeout while handshakes are not fast anyway
//!   (a timeout amid fast handshakes is that host's own problem: a dead or frozen host), at most
//!   once per round: a handshake started before the last cut does not cut again.
//!
//! "Fast" and "slow" are fractions of the connect timeout (1/8 and 1/4: 1.25 s and 2.5 s with the
//! default 10 s), not of the fastest handshake seen, so far-away hosts (a few round trips of
//! 200 ms each) do not hold the window down. The window only grows while it is full (a pool of
//! fewer workers than the window leaves it where it is).

use std::{
    sync::{Condvar, Mutex},
    time::{Duration, Instant},
};

/// The window at the start.
pub const INITIAL: usize = 8;

/// What a handshake's end says about the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Authenticated in this time.
    Done(Duration),
    /// It timed out (TCP connect, handshake or authentication).
    TimedOut,
    /// Refused, a host key or credential problem, a reset: says nothing about the load.
    Neutral,
}

/// The window's arithmetic, apart from the waiting (unit-tested on its own).
#[derive(Debug, Clone)]
pub struct Window {
    limit: f64,
    max: usize,
    /// Slow start until the first handshake that was not fast.
    slow_start: bool,
    fast: Duration,
    slow: Duration,
    /// When the window was last cut: handshakes started before then do not cut it again.
    last_cut: Option<Instant>,
    /// A smoothed handshake time (successful ones), to tell a lone dead host from a saturation.
    smoothed: Option<Duration>,
}

impl Window {
    /// A window of at most `max` for handshakes whose timeout is `connect_timeout`.
    pub fn new(max: usize, connect_timeout: Duration) -> Self {
        let max = max.max(1);
        Self {
            limit: INITIAL.min(max) as f64,
            max,
            slow_start: true,
            fast: (connect_timeout / 8).max(Duration::from_millis(50)),
            slow: (connect_timeout / 4).max(Duration::from_millis(100)),
            last_cut: None,
            smoothed: None,
        }
    }

    /// How many handshakes may be under way.
    pub fn limit(&self) -> usize {
        (self.limit as usize).clamp(1, self.max)
    }

    /// A handshake started at `started` ended with `signal`; `in_flight` were under way (this one
    /// included) just before it ended.
    pub fn on_end(&mut self, started: Instant, signal: Signal, in_flight: usize, now: Instant) {
        let congested = match signal {
            Signal::Neutral => return,
            Signal::Done(took) => {
                self.smoothed = Some(match self.smoothed {
                    None => took,
                    Some(s) => (s * 7 + took) / 8,
                });
                if took <= self.fast {
                    // grow only a window that is in use (else it would only grow a debt)
                    if in_flight + 1 >= self.limit() {
                        self.limit += if self.slow_start {
                            1.0
                        } else {
                            1.0 / self.limit
                        };
                        self.limit = self.limit.min(self.max as f64);
                    }
                    return;
                }
                self.slow_start = false;
                took > self.slow
            }
            Signal::TimedOut => self.smoothed.is_some_and(|s| s > self.fast),
        };
        if !congested {
            return;
        }
        if self.last_cut.is_some_and(|cut| started < cut) {
            return;
        }
        self.slow_start = false;
        self.limit = (self.limit / 2.0).max(1.0);
        self.last_cut = Some(now);
    }
}

/// The window shared by a fleet's workers: [`Pacer::start`] waits for room.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    room: Condvar,
}

#[derive(Debug)]
struct State {
    window: Window,
    in_flight: usize,
}

/// One place in the window, given back when dropped. The fleet runner holds one for a whole host
/// (handshake, batch, collectors, report), so the window bounds the hosts in memory too; the
/// connector says how each handshake went with [`Pacer::signal`].
#[must_use]
pub struct Permit<'a> {
    pacer: &'a Pacer,
    started: Instant,
}

impl Pacer {
    pub fn new(max: usize, connect_timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                window: Window::new(max, connect_timeout),
                in_flight: 0,
            }),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until the window has room for one more handshake.
    pub fn start(&self) -> Permit<'_> {
        let mut state = self.lock();
        while state.in_flight >= state.window.limit() {
            state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.in_flight += 1;
        Permit {
            pacer: self,
            started: Instant::now(),
        }
    }

    /// The window now (for logs and tests).
    pub fn limit(&self) -> usize {
        self.lock().window.limit()
    }

    /// A handshake started at `started` ended with `signal`: applied to the window now.
    ///
    /// Only as many waiting hosts are woken as the window gained places: waking all of them (up
    /// to `--workers` threads) for every handshake that ended made each re-check and sleep again,
    /// ~100 context switches a host at 100 hosts.
    pub fn signal(&self, started: Instant, signal: Signal) {
        let mut state = self.lock();
        let in_flight = state.in_flight;
        let before = state.window.limit();
        state
            .window
            .on_end(started, signal, in_flight, Instant::now());
        let grown = state.window.limit().saturating_sub(before);
        drop(state);
        for _ in 0..grown {
            self.room.notify_one();
        }
    }

    /// One place freed: one waiting host may take it. (A waiter that finds no room after all,
    /// the window having shrunk, waits again: no place was lost, as none was there.)
    fn release(&self) {
        self.lock().in_flight -= 1;
        self.room.notify_one();
    }
}

impl Permit<'_> {
    /// When the place was granted.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.pacer.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    const TIMEOUT: Duration = Duration::from_secs(10);
    const FAST: Signal = Signal::Done(Duration::from_millis(30));
    const MIDDLING: Signal = Signal::Done(Duration::from_millis(2000));
    const SLOW: Signal = Signal::Done(Duration::from_secs(4));

    /// `n` handshakes end with `signal`, each started just now, the window full.
    fn ends(w: &mut Window, n: usize, signal: Signal) {
        for _ in 0..n {
            let now = Instant::now();
            let full = w.limit();
            w.on_end(now, signal, full, now);
        }
    }

    #[test]
    fn starts_small_and_doubles_per_round_while_handshakes_are_fast() {
        let mut w = Window::new(200, TIMEOUT);
        assert_eq!(w.limit(), INITIAL);
        ends(&mut w, INITIAL, FAST);
        assert_eq!(w.limit(), 2 * INITIAL);
        ends(&mut w, 2 * INITIAL, FAST);
        assert_eq!(w.limit(), 4 * INITIAL);
        ends(&mut w, 1000, FAST);
        assert_eq!(w.limit(), 200, "never above --workers");
        assert_eq!(Window::new(3, TIMEOUT).limit(), 3);
    }

    #[test]
    fn a_window_not_in_use_does_not_grow() {
        let mut w = Window::new(200, TIMEOUT);
        let now = Instant::now();
        for _ in 0..100 {
            w.on_end(now, FAST, 2, now);
        }
        assert_eq!(w.limit(), INITIAL);
    }

    #[test]
    fn slow_handshakes_halve_it_once_per_round_and_middling_ones_hold_it() {
        let mut w = Window::new(200, TIMEOUT);
        ends(&mut w, 56, FAST);
        assert_eq!(w.limit(), 64);
        ends(&mut w, 10, MIDDLING);
        assert_eq!(w.limit(), 64, "between fast and slow: held");
        // a round of slow handshakes, all started before the first of them ended: one cut
        let round_started = Instant::now();
        let later = round_started + Duration::from_millis(1);
        for _ in 0..30 {
            w.on_end(round_started, SLOW, 64, later);
        }
        assert_eq!(w.limit(), 32);
        // a handshake started after the cut and still slow: cut again
        let after = later + Duration::from_millis(1);
        w.on_end(after, SLOW, 32, after + Duration::from_millis(1));
        assert_eq!(w.limit(), 16);
        // after slow start, fast handshakes add one per window's worth
        ends(&mut w, 17, FAST);
        assert_eq!(w.limit(), 17);
        // never below one
        let mut t = Instant::now();
        for _ in 0..20 {
            t += Duration::from_millis(1);
            w.on_end(t, SLOW, 1, t);
        }
        assert_eq!(w.limit(), 1);
    }

    #[test]
    fn a_timeout_amid_fast_handshakes_is_the_hosts_own_but_amid_slow_ones_a_saturation() {
        let mut w = Window::new(200, TIMEOUT);
        ends(&mut w, 24, FAST);
        assert_eq!(w.limit(), 32);
        ends(&mut w, 3, Signal::TimedOut);
        ends(&mut w, 3, Signal::Neutral);
        assert_eq!(w.limit(), 32, "dead hosts among fast ones change nothing");
        let mut w = Window::new(200, TIMEOUT);
        ends(&mut w, 24, FAST);
        ends(&mut w, 20, MIDDLING);
        assert_eq!(w.limit(), 32);
        let now = Instant::now();
        w.on_end(now, Signal::TimedOut, 32, now + Duration::from_millis(1));
        assert_eq!(w.limit(), 16, "timeouts while handshakes are slow: cut");
    }

    #[test]
    fn never_more_under_way_than_the_window_and_every_waiter_gets_in() {
        let pacer = Arc::new(Pacer::new(50, TIMEOUT));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let (pacer, now, most) = (Arc::clone(&pacer), Arc::clone(&now), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let permit = pacer.start();
                        let under_way = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(under_way, Ordering::SeqCst);
                        assert!(under_way <= 50);
                        std::thread::sleep(Duration::from_millis(2));
                        now.fetch_sub(1, Ordering::SeqCst);
                        if i % 7 != 0 {
                            pacer.signal(permit.started(), FAST);
                        }
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert_eq!(now.load(Ordering::SeqCst), 0);
        assert!(most.load(Ordering::SeqCst) >= INITIAL);
        assert!(pacer.limit() > INITIAL, "fast handshakes grew it");
    }

    /// Waiters are woken one per freed place (not all at once): a window cut to one place while
    /// 30 hosts wait, then grown again, still lets every one of them in, never more at once than
    /// the window allowed when they started.
    #[test]
    fn after_cuts_and_growth_every_waiter_still_gets_in() {
        let pacer = Arc::new(Pacer::new(30, TIMEOUT));
        let done = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..30)
            .map(|i| {
                let (pacer, done) = (Arc::clone(&pacer), Arc::clone(&done));
                std::thread::spawn(move || {
                    for round in 0..4 {
                        let permit = pacer.start();
                        std::thread::sleep(Duration::from_millis(1));
                        // the first rounds slow (cuts to one place), the last ones fast (growth)
                        let signal = if round < 2 && i % 3 == 0 { SLOW } else { FAST };
                        // a start after the cut, so that each slow one may cut again
                        let started = Instant::now();
                        pacer.signal(started, signal);
                        drop(permit);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // a lost wake-up leaves hosts waiting for ever: fail, do not hang
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::SeqCst) < 30 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(done.load(Ordering::SeqCst), 30, "every host got its places");
        for t in threads {
            t.join().expect("no panic");
        }
    }
}
