//! Runs every probe on its own interval, concurrently: a slow or dead target
//! delays only its own probe. Samples arrive on one channel.

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::context::Clock;
use crate::oplog::SampleRow;
use crate::plan::Probe;
use crate::probe::ProbeState;

/// Starts one task per probe; they stop when the receiver is dropped.
pub fn start(probes: Vec<Probe>, clock: Clock) -> mpsc::Receiver<SampleRow> {
    start_with(probes, clock, None)
}

/// Like [`start`], with probe state (log cursors) persisted under `state_dir`.
pub fn start_with(probes: Vec<Probe>, clock: Clock, state_dir: Option<PathBuf>) -> mpsc::Receiver<SampleRow> {
    let (tx, rx) = mpsc::channel(1024);
    for p in probes {
        let tx = tx.clone();
        let clock = clock.clone();
        let mut state = match &state_dir {
            Some(d) => ProbeState::persisted(&p, d),
            None => ProbeState::default(),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(p.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = crate::probe::sample_with(&p, &clock, &mut state).await;
                if tx.send(s).await.is_err() {
                    break;
                }
            }
        });
    }
    rx
}
