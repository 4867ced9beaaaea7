//! What a box's processes get from its record: environment, working directory and user.

use super::*;

pub(super) fn merge_env(target: &mut Vec<(String, String)>, additions: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in additions {
        match target.iter_mut().find(|(existing, _)| *existing == key) {
            Some(slot) => slot.1 = value,
            None => target.push((key, value)),
        }
    }
}

/// The environment every process of the box starts with: a default PATH, the image's, then the
/// box's options.
pub(super) fn box_env(record: &BoxRecord) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    merge_env(&mut env, [("PATH".to_string(), DEFAULT_PATH["PATH=".len()..].to_string())]);
    let image = record.prepared.config.env.iter().filter_map(|entry| entry.split_once('='));
    merge_env(&mut env, image.map(|(key, value)| (key.to_string(), value.to_string())));
    merge_env(&mut env, record.env.iter().cloned());
    env
}

pub(super) fn env_strings(env: Vec<(String, String)>) -> Vec<String> {
    env.into_iter().map(|(key, value)| format!("{key}={value}")).collect()
}

/// Working directory and user of a process that does not choose its own: the box's options,
/// else the image's config.
pub(super) fn default_cwd_and_user(record: &BoxRecord) -> (Option<String>, Option<String>) {
    let image = &record.prepared.config;
    (record.working_dir.clone().or_else(|| image.working_dir.clone()), record.user.clone().or_else(|| image.user.clone()))
}

/// What `exec` asks for, before the box's defaults are merged in.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub tty: Option<TtySize>,
    pub timeout: Option<Duration>,
}
