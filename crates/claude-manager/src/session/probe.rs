//! The liveness probe of a stream-json session: a control request the CLI answers without any
//! API traffic.

use std::time::Duration;

use claude_health::Probe;
use claude_proc::SessionControl;

pub(super) struct ControlPing {
    pub(super) control: SessionControl,
    pub(super) timeout: Duration,
}

#[async_trait::async_trait]
impl Probe for ControlPing {
    fn name(&self) -> String {
        "control ping".into()
    }

    async fn probe(&self) -> Result<(), String> {
        self.control
            .initialize(self.timeout)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
