//! Boxes' lifecycle over REST, as BoxLite's API has it: a running box nobody used for
//! `auto_stop` seconds is stopped; a stopped (or failed) one is removed `auto_delete` seconds
//! after it stopped; with `auto_resume` off, using a stopped box is refused (409) instead of
//! starting it. The settings are kept in the home (`serve-lifecycle.json`), so the next server
//! keeps them; idle and stopped times count from when this server last saw the box used or
//! first saw it stopped.
//!
//! Use is what BoxLite counts: starting a box, exec, attaching and writing stdin, files,
//! snapshots and clones; not reading its state or metrics. A box running an execution the
//! server keeps is never idle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boxlite_core::{lock, Runtime};
use serde::{Deserialize, Serialize};


#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Seconds of disuse before a running box is stopped; 0: never.
    pub auto_stop: u64,
    /// Seconds after it stopped before a box is removed; 0: never.
    pub auto_delete: u64,
    /// Whether using a stopped box starts it.
    pub auto_resume: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { auto_stop: 0, auto_delete: 0, auto_resume: true }
    }
}

pub struct Lifecycle {
    path: PathBuf,
    settings: Mutex<HashMap<String, Settings>>,
    used: Mutex<HashMap<String, Instant>>,
    stopped: Mutex<HashMap<String, Instant>>,
}

impl Lifecycle {
    /// The settings kept at `path`, for the boxes that still exist.
    pub fn load(path: PathBuf, runtime: &Runtime) -> Self {
        let kept: HashMap<String, Settings> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                log::warn!("{} does not parse ({error}); boxes' auto_stop and auto_delete start over", path.display());
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        let settings = kept.into_iter().filter(|(id, _)| runtime.get(id).is_some()).collect();
        let lifecycle = Self { path, settings: Mutex::new(settings), used: Mutex::new(HashMap::new()), stopped: Mutex::new(HashMap::new()) };
        lifecycle.save();
        lifecycle
    }

    pub fn settings(&self, box_id: &str) -> Settings {
        lock(&self.settings).get(box_id).copied().unwrap_or_default()
    }

    /// Records a new box's settings (only those that are not the default are kept).
    pub fn set(&self, box_id: &str, settings: Settings) {
        if settings != Settings::default() {
            lock(&self.settings).insert(box_id.to_string(), settings);
            self.save();
        }
        self.touch(box_id);
    }

    pub fn forget(&self, box_id: &str) {
        let removed = lock(&self.settings).remove(box_id).is_some();
        lock(&self.used).remove(box_id);
        lock(&self.stopped).remove(box_id);
        if removed {
            self.save();
        }
    }

    /// The box was used now.
    pub fn touch(&self, box_id: &str) {
        lock(&self.used).insert(box_id.to_string(), Instant::now());
    }

    /// Written whole to a new file, then renamed over the old: a crash leaves one or the other.
    fn save(&self) {
        let settings = lock(&self.settings).clone();
        let staging = self.path.with_extension("json.new");
        let written = serde_json::to_vec(&settings).map_err(std::io::Error::other).and_then(|bytes| std::fs::write(&staging, bytes)).and_then(|()| std::fs::rename(&staging, &self.path));
        if let Err(error) = written {
            log::warn!("failed to keep the boxes' lifecycle settings in {}: {error}", self.path.display());
        }
    }

    /// Stops what was idle long enough (and not `in_use`: running an execution the server
    /// keeps) and removes what was stopped long enough.
    pub async fn tick(&self, runtime: &Runtime, in_use: impl Fn(&str) -> bool) {
        let now = Instant::now();
        let watched: Vec<(String, Settings)> = lock(&self.settings).iter().map(|(id, settings)| (id.clone(), *settings)).collect();
        for (box_id, settings) in watched {
            let Some(info) = runtime.get_info(&box_id) else {
                self.forget(&box_id);
                continue;
            };
            match info.status {
                "running" => {
                    lock(&self.stopped).remove(&box_id);
                    let used = *lock(&self.used).entry(box_id.clone()).or_insert(now);
                    if settings.auto_stop > 0 && now.duration_since(used) >= Duration::from_secs(settings.auto_stop) && !in_use(&box_id) {
                        log::info!("box {box_id}: unused for {} s (auto_stop), stopping it", settings.auto_stop);
                        if let Some(handle) = runtime.get(&box_id) {
                            if let Err(error) = handle.stop().await {
                                log::warn!("box {box_id}: auto_stop failed: {error}");
                            }
                        }
                    }
                }
                "stopped" | "failed" => {
                    let since = *lock(&self.stopped).entry(box_id.clone()).or_insert(now);
                    if settings.auto_delete > 0 && now.duration_since(since) >= Duration::from_secs(settings.auto_delete) {
                        log::info!("box {box_id}: stopped for {} s (auto_delete), removing it", settings.auto_delete);
                        match runtime.remove(&box_id, false).await {
                            Ok(()) => self.forget(&box_id),
                            Err(error) => log::warn!("box {box_id}: auto_delete failed: {error}"),
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
