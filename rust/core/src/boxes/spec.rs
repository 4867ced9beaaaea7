//! What a box's processes start with: environment, working directory and user, composed from
//! the image's config, the box's options and what one exec asks for (later ones win).

use std::time::Duration;

use boxlite_protocol::TtySize;

use crate::exec::ExecSpec;
use crate::image::ImageConfig;

/// The PATH a process gets unless the image or the box sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// TERM on a terminal unless something set it (as Docker does).
const DEFAULT_TERM: &str = "xterm";

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

impl ExecRequest {
    /// Refuses what no process can be given (`check_process_strings`), and a zero timeout.
    pub(super) fn validate(&self) -> crate::error::Result<()> {
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(crate::error::Error::InvalidArgument("timeout must be positive".to_string()));
        }
        check_process_strings(std::iter::once(&self.command).chain(&self.args), &self.env, self.cwd.as_deref(), self.user.as_deref())
    }
}

/// Refuses what no process can be given, rather than give it something else: a NUL byte in an
/// argument, a variable, a directory or a user (the C strings a process gets end there), and a
/// variable name that is empty or has `=` in it (which would set another variable).
pub(super) fn check_process_strings<'a>(argv: impl IntoIterator<Item = &'a String>, env: &[(String, String)], cwd: Option<&str>, user: Option<&str>) -> crate::error::Result<()> {
    let refused = |what: String| Err(crate::error::Error::InvalidArgument(what));
    // Named by position: an argument may carry what should not reach a log.
    if let Some(position) = argv.into_iter().position(|argument| argument.contains('\0')) {
        return refused(format!("word {position} of the command has a NUL byte, which no process's argument can hold"));
    }
    for (name, value) in env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return refused(format!("bad environment variable name {name:?}: it must be non-empty, with no '=' or NUL byte"));
        }
        if value.contains('\0') {
            return refused(format!("the value of environment variable {name} has a NUL byte, which no variable can hold"));
        }
    }
    if let Some(cwd) = cwd.filter(|cwd| cwd.contains('\0')) {
        return refused(format!("the working directory {cwd:?} has a NUL byte, which no path can hold"));
    }
    if let Some(user) = user.filter(|user| user.contains('\0')) {
        return refused(format!("the user {user:?} has a NUL byte"));
    }
    Ok(())
}

/// What a box's processes start with unless they ask otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessDefaults {
    env: Vec<(String, String)>,
    cwd: Option<String>,
    user: Option<String>,
}

impl ProcessDefaults {
    /// The environment: a default PATH, then the image's, then the box's options. Working
    /// directory and user: the box's options, else the image's config.
    pub(super) fn new(image: &ImageConfig, box_env: &[(String, String)], box_cwd: Option<&str>, box_user: Option<&str>) -> Self {
        let mut env = vec![("PATH".to_string(), DEFAULT_PATH.to_string())];
        let image_env = image.env.iter().filter_map(|entry| entry.split_once('='));
        merge_env(&mut env, image_env.map(|(key, value)| (key.to_string(), value.to_string())));
        merge_env(&mut env, box_env.iter().cloned());
        Self {
            env,
            cwd: box_cwd.map(str::to_string).or_else(|| image.working_dir.clone()),
            user: box_user.map(str::to_string).or_else(|| image.user.clone()),
        }
    }

    /// The main process's environment (`KEY=value`), working directory and user.
    pub(super) fn main_process(self) -> (Vec<String>, Option<String>, Option<String>) {
        (env_strings(self.env), self.cwd, self.user)
    }

    /// The process `request` asks for: its environment over the box's (and, on a terminal,
    /// TERM unless one of them set it); its working directory and user, else the box's.
    pub(super) fn exec(self, request: ExecRequest) -> ExecSpec {
        let mut env = self.env;
        merge_env(&mut env, request.env);
        if request.tty.is_some() && !env.iter().any(|(key, _)| key == "TERM") {
            env.push(("TERM".to_string(), DEFAULT_TERM.to_string()));
        }
        let mut argv = vec![request.command];
        argv.extend(request.args);
        ExecSpec {
            argv,
            env: env_strings(env),
            cwd: request.cwd.or(self.cwd),
            user: request.user.or(self.user),
            tty: request.tty,
            timeout: request.timeout,
        }
    }
}

/// Sets each of `additions` in `target`: a key already there keeps its place, with the new value.
fn merge_env(target: &mut Vec<(String, String)>, additions: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in additions {
        match target.iter_mut().find(|(existing, _)| *existing == key) {
            Some(slot) => slot.1 = value,
            None => target.push((key, value)),
        }
    }
}

fn env_strings(env: Vec<(String, String)>) -> Vec<String> {
    env.into_iter().map(|(key, value)| format!("{key}={value}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn image(env: &[&str], working_dir: Option<&str>, user: Option<&str>) -> ImageConfig {
        ImageConfig {
            env: env.iter().map(|entry| entry.to_string()).collect(),
            working_dir: working_dir.map(str::to_string),
            user: user.map(str::to_string),
            ..ImageConfig::default()
        }
    }

    fn exec(command: &str, env: &[(&str, &str)], tty: bool) -> ExecRequest {
        ExecRequest { command: command.to_string(), env: pairs(env), tty: tty.then_some(TtySize { rows: 24, cols: 80 }), ..ExecRequest::default() }
    }

    #[test]
    fn later_layers_win_and_keys_keep_their_first_place() {
        let image = image(&["PATH=/image/bin", "LANG=C", "ODD=a=b"], None, None);
        let defaults = ProcessDefaults::new(&image, &pairs(&[("LANG", "C.UTF-8"), ("APP", "1")]), None, None);
        let spec = defaults.exec(exec("env", &[("APP", "2"), ("EXTRA", "")], false));
        assert_eq!(spec.env, ["PATH=/image/bin", "LANG=C.UTF-8", "ODD=a=b", "APP=2", "EXTRA="]);
        assert_eq!(spec.argv, ["env"]);
    }

    #[test]
    fn a_default_path_when_nobody_sets_one_and_malformed_image_entries_are_skipped() {
        let (env, cwd, user) = ProcessDefaults::new(&image(&["NOEQUALS"], None, None), &[], None, None).main_process();
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}")]);
        assert_eq!((cwd, user), (None, None));
    }

    #[test]
    fn cwd_and_user_come_from_the_request_then_the_box_then_the_image() {
        let image = image(&[], Some("/image"), Some("imageuser"));
        let from_image = ProcessDefaults::new(&image, &[], None, None);
        assert_eq!(from_image.clone().main_process().1.as_deref(), Some("/image"));
        let from_box = ProcessDefaults::new(&image, &[], Some("/box"), Some("boxuser"));
        let spec = from_box.clone().exec(exec("pwd", &[], false));
        assert_eq!((spec.cwd.as_deref(), spec.user.as_deref()), (Some("/box"), Some("boxuser")));
        let request = ExecRequest { cwd: Some("/asked".to_string()), user: Some("0".to_string()), ..exec("pwd", &[], false) };
        let spec = from_box.exec(request);
        assert_eq!((spec.cwd.as_deref(), spec.user.as_deref()), (Some("/asked"), Some("0")));
    }

    #[test]
    fn a_terminal_gets_term_unless_the_image_the_box_or_the_request_set_it() {
        let plain = ProcessDefaults::new(&image(&[], None, None), &[], None, None);
        assert!(plain.clone().exec(exec("sh", &[], true)).env.contains(&"TERM=xterm".to_string()));
        assert!(!plain.clone().exec(exec("sh", &[], false)).env.iter().any(|entry| entry.starts_with("TERM=")));
        assert!(plain.exec(exec("sh", &[("TERM", "dumb")], true)).env.contains(&"TERM=dumb".to_string()));
        let from_image = ProcessDefaults::new(&image(&["TERM=vt100"], None, None), &[], None, None);
        assert!(from_image.exec(exec("sh", &[], true)).env.contains(&"TERM=vt100".to_string()));
        let from_box = ProcessDefaults::new(&image(&[], None, None), &pairs(&[("TERM", "screen")]), None, None);
        assert_eq!(from_box.exec(exec("sh", &[], true)).env.iter().filter(|entry| entry.starts_with("TERM=")).count(), 1);
    }
}
