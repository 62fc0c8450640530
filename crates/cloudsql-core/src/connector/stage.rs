//! Where a connect stands, kept outside its future so a timeout can say what ran out of time.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::ConnectStage;

const STAGES: [ConnectStage; 6] = [
    ConnectStage::ResolvingName,
    ConnectStage::Refreshing,
    ConnectStage::Dialing,
    ConnectStage::Handshake,
    ConnectStage::MetadataExchange,
    ConnectStage::Tunnel,
];

/// The stage a connect is in; written by the connect future, read when its timeout elapses.
#[derive(Debug)]
pub(crate) struct StageCell(AtomicU8);

impl StageCell {
    /// A connect that starts at `stage`.
    pub(crate) fn new(stage: ConnectStage) -> Self {
        let cell = Self(AtomicU8::new(0));
        cell.set(stage);
        cell
    }

    /// Moves the connect to `stage`.
    pub(crate) fn set(&self, stage: ConnectStage) {
        let index = STAGES.iter().position(|s| *s == stage).unwrap_or(0);
        self.0.store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
    }

    /// The current stage.
    pub(crate) fn get(&self) -> ConnectStage {
        STAGES
            .get(usize::from(self.0.load(Ordering::Relaxed)))
            .copied()
            .unwrap_or(ConnectStage::Refreshing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_round_trips() {
        let cell = StageCell::new(ConnectStage::ResolvingName);
        for stage in STAGES {
            cell.set(stage);
            assert_eq!(cell.get(), stage);
        }
    }
}
