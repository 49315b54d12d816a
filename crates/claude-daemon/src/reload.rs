//! Reload: re-read the config file and apply the difference. Sessions the file no longer has
//! are stopped and forgotten, new ones started, changed ones (their table, or the file's
//! top-level settings) stopped and started again from the new definition; sessions created
//! through the API are left alone.

use std::collections::BTreeMap;

use crate::daemon::{Daemon, Origin};
use crate::error::{Error, Result};
use crate::wire::{ReloadReport, SessionDef};

impl Daemon {
    /// Apply the config file as it is now.
    pub async fn reload(&self) -> Result<ReloadReport> {
        let path = self.config.clone().ok_or_else(|| Error::Field {
            field: "(reload)".into(),
            why: "the daemon was started without --config".into(),
        })?;
        if self.draining() {
            return Err(Error::Draining);
        }
        // Checked whole before anything changes: a bad file changes nothing.
        let loaded = crate::config::load(&path)?;
        let defaults_changed = self
            .file_settings
            .lock()
            .map(|s| *s != loaded.settings)
            .unwrap_or(true);
        let wanted: BTreeMap<String, SessionDef> = loaded
            .sessions
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        let mut report = ReloadReport::default();
        let (mut gone, mut changed) = (Vec::new(), Vec::new());
        for (name, session) in self.lock().iter() {
            match (session.origin, wanted.get(name)) {
                (Origin::Config, None) => gone.push(name.clone()),
                (Origin::Config, Some(def)) if defaults_changed || *def != session.def => {
                    changed.push(name.clone())
                }
                (Origin::Api, Some(_)) => report.refused.push(format!(
                    "{name}: a session created through the API has this name"
                )),
                _ => {}
            }
        }
        if let Ok(mut file) = self.file_settings.lock() {
            *file = loaded.settings;
        }
        for name in &gone {
            self.delete(name).await?;
        }
        for name in &changed {
            self.delete(name).await?;
        }
        for (name, def) in wanted {
            let existing = self.lock().contains_key(&name);
            if existing {
                continue;
            }
            match self.create_configured(def) {
                Ok(_) if changed.contains(&name) => report.restarted.push(name),
                Ok(_) => report.started.push(name),
                Err(e) => report.refused.push(format!("{name}: {e}")),
            }
        }
        report.stopped = gone;
        tracing::info!(?report, "reloaded");
        Ok(report)
    }
}
