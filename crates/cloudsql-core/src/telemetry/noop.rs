//! The metrics twin without the `telemetry` feature: zero-sized types whose methods do nothing,
//! so call sites need no `cfg` and the compiler removes every call.

use crate::{Error, InstanceConnectionName, IpType, RefreshStrategy};

/// No meter to choose without the feature.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MeterChoice;

/// No instruments without the feature.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Metrics;

impl Metrics {
    pub(crate) fn new(_: MeterChoice) -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn connect(&self, _: IpType, _: RefreshStrategy) -> ConnectMeter {
        ConnectMeter
    }

    #[inline(always)]
    pub(crate) fn refresh(&self, _: &InstanceConnectionName, _: RefreshStrategy) -> RefreshMeter {
        RefreshMeter
    }
}

/// Times nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectMeter;

impl ConnectMeter {
    #[inline(always)]
    pub(crate) fn succeeded(self, _: &str) -> ConnectionMeter {
        ConnectionMeter
    }

    #[inline(always)]
    pub(crate) fn failed(self, _: &str, _: Option<&InstanceConnectionName>, _: &Error) {}
}

/// Counts no refresh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefreshMeter;

impl RefreshMeter {
    #[inline(always)]
    pub(crate) fn record(&self, _: Result<(), &Error>) {}
}

/// Counts no byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionMeter;

impl ConnectionMeter {
    #[inline(always)]
    pub(crate) fn inactive() -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn sent(&mut self, _: usize) {}

    #[inline(always)]
    pub(crate) fn received(&mut self, _: usize) {}
}
