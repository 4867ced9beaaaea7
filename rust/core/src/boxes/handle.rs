//! `BoxHandle`: the verbs on one box (rules 1, 3 and 6).

use super::*;
use super::spec::ProcessDefaults;

impl BoxHandle {
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    pub fn name(&self) -> Option<String> {
        self.entry.record().name.clone()
    }

    pub fn info(&self) -> BoxInfo {
        self.entry.info(None)
    }

    pub(super) fn check_usable(&self) -> Result<()> {
        if self.spent.load(Ordering::Acquire) {
            return Err(Error::Stopped("Handle invalidated after stop(). Use runtime.get() to get a new handle.".to_string()));
        }
        self.check_exists()
    }

    /// The box still exists and its runtime is open; what does not start the box (snapshots,
    /// clones) may still be done through a handle spent by `stop()`.
    pub(super) fn check_exists(&self) -> Result<()> {
        if self.entry.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("box {} was removed", self.entry.id)));
        }
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Error::Stopped("the runtime has been shut down".to_string()));
        }
        Ok(())
    }

    /// Boots the box. A running box is left as it is (the one no-op); any other state that
    /// cannot start is refused with the state named.
    pub async fn start(&self) -> Result<()> {
        let mut live = self.lock_usable().await?;
        self.start_locked(&mut live).await
    }

    /// The box's lifecycle lock (rule 1), for a verb that needs a usable box: checked before
    /// waiting and again once held, since while this handle waited another may have stopped
    /// and removed the box, this one's own stop may have spent it, or the runtime shut down.
    pub(super) async fn lock_usable(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Live>>> {
        self.check_usable()?;
        let live = self.entry.live.lock().await;
        self.check_usable()?;
        Ok(live)
    }

    pub(super) async fn start_locked(&self, live: &mut Option<Live>) -> Result<()> {
        if live.as_ref().is_some_and(Live::is_alive) {
            return Ok(());
        }
        self.settle_if_dead(live).await?;
        let status = self.entry.record().status;
        if !status.can_start() {
            return Err(Error::InvalidState(format!("box {} is {}; it cannot be started", self.entry.id, status.as_str())));
        }
        let mapped = self.inner.home.id_map().map_or(0, |map| map.size);
        if let Some(map) = self.entry.record().id_map.filter(|map| map.is_rootless() && map.size > mapped) {
            return Err(Error::InvalidState(format!(
                "box {} has {} ids, which needs the subordinate ids it was made with, and this runtime maps {mapped} (this user's ranges in /etc/subuid and /etc/subgid give them, with newuidmap and newgidmap, unless {}=0)",
                self.entry.id,
                map.size,
                crate::host::SUBORDINATE_IDS_VARIABLE
            )));
        }
        if let (Some(made_with), Some(mapped)) = (self.entry.record().subordinate_ids, self.inner.home.subordinate_ids()) {
            if made_with != mapped {
                return Err(Error::InvalidState(format!(
                    "box {} was made with the subordinate uids from {} and gids from {} ({} of each), which own its files, and this runtime maps {} of each from uid {} and gid {}: the box would see its files as nobody's (give this user its former ranges in /etc/subuid and /etc/subgid back to start it)",
                    self.entry.id, made_with.uid, made_with.gid, made_with.count, mapped.count, mapped.uid, mapped.gid
                )));
            }
        }
        let began = std::time::Instant::now();
        let limits = {
            let record = self.entry.record();
            Limits { memory_bytes: u64::from(record.memory_mib) << 20, cpus: record.cpus, pids: record.pids_limit }
        };
        let inner = Arc::clone(&self.inner);
        let id = self.entry.id.clone();
        let config = self.shim_config();
        let dir = self.entry.dir.clone();
        let (allow_net, ports) = {
            let record = self.entry.record();
            (record.network.clone(), record.ports.clone())
        };
        let _admitted = self.inner.box_work.acquire().await;
        crate::host::check_room_for_a_box()?;
        let started = blocking(move || {
            // First: a host port that is taken fails the start before anything is made.
            let published = crate::network::bind_ports(&ports)?;
            let mut warm = inner.warm_shim(&config)?;
            let way_out = match (allow_net, warm.sockets.take()) {
                (Some(allow_net), Some(sockets)) => Some(way_out(&dir, &id, &allow_net, Some(sockets))?),
                _ => None,
            };
            // Served before the box runs: what it sends first waits for no one.
            let network = BoxNetwork::serve(&id, &config.socket_path, way_out, published, &inner.network)?;
            let mut made = None;
            // Where the host gives this runtime no cgroups, a box runs in none: it asked for no
            // limit of its own (`Runtime::create` refused those).
            let cgroups = || match &inner.host.cgroups_refused {
                Some(_) => Ok(Vec::new()),
                None => BoxCgroup::create(&inner.cgroups, &id, limits).map(|cgroup| made.insert(cgroup).membership_files()),
            };
            let started = engine::spawn(warm, &config, cgroups).map(|mut running| {
                running.network = Some(network);
                running
            });
            if started.is_err() {
                if let Some(cgroup) = made {
                    cgroup.remove();
                }
            }
            let runtime = Arc::downgrade(&inner);
            tokio::task::spawn_blocking(move || Inner::refill_warm(&runtime));
            started
        })
        .await;
        let running = match started {
            Ok(running) => running,
            Err(error) => {
                log::warn!("box {} failed to start: {error}", self.entry.id);
                self.inner.counters.boxes_failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.entry.update(|record| record.status = BoxStatus::Failed);
                if self.entry.record().remove_on_stop {
                    // A box that goes when it stops goes when its start fails too, as a
                    // container of `docker run --rm` does: the error says why.
                    let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
                    let _ = blocking(move || settle(&inner, &entry, BoxStatus::Failed)).await;
                }
                return Err(error);
            }
        };
        if self.inner.shut_down.load(Ordering::Acquire) {
            // The runtime closed while this box booted: it must not outlive the close.
            running.kill();
            running.exited_within(CLOSE_WAIT);
            BoxCgroup::locate(&self.inner.cgroups, &self.entry.id).remove();
            return Err(Error::Stopped("the runtime has been shut down".to_string()));
        }
        *lock(&self.entry.traffic) = running.network.as_ref().and_then(BoxNetwork::meter);
        self.entry.boot_us.store(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        *lock(&self.entry.started) = Some(std::time::Instant::now());
        let pid = running.init_pid;
        log::debug!("started box {} in {} ms (init pid {pid})", self.entry.id, began.elapsed().as_millis());
        // The first exec then finds the request connection open.
        running.connector.connect_ahead();
        self.watch_init(&running);
        *lock(&self.entry.killer) = Some(running.killer());
        *live = Some(running);
        self.entry.update(|record| {
            record.status = BoxStatus::Running;
            record.init_pid = Some(pid);
            record.started_at = Some(crate::clock::now().0);
            record.exit_code = None;
            record.published_host_ports = self.published_host_ports();
        })?;
        if self.entry.record().has_detached_network() {
            self.inner.guard_detached_networks();
        }
        let socket_path = self.entry.dir.join("init.sock");
        for waiting in lock(&self.entry.waiting_attaches).drain(..) {
            // Opened now, before the main process can end and the box be removed.
            if let Ok(output) = self.main_output() {
                let _ = waiting.send((socket_path.clone(), output));
            }
        }
        Ok(())
    }

    /// Changes the box's outbound network: `Some(allow_net)` allows what the list allows,
    /// `None` nothing. A running box takes it at once (`BoxNetwork::update_policy`); every
    /// later start takes it too. A box made without a network gets one only at its next
    /// start: while it runs it has no interface to give traffic to.
    pub async fn update_outbound(&self, allow_net: Option<Vec<String>>) -> Result<()> {
        if let Some(list) = &allow_net {
            Policy::parse(list)?;
        }
        let live = self.lock_usable().await?;
        if let Some(running) = live.as_ref().filter(|running| running.is_alive()) {
            match &running.network {
                Some(network) => network.update_policy(allow_net.as_deref())?,
                None if allow_net.is_some() => return Err(crate::network::runs_without_network(&self.entry.id)),
                None => {}
            }
        }
        self.entry.update(|record| record.network = allow_net)
    }

    /// A tunnel to the running box's `port`, for this run of the box (`network::tunnel`).
    pub async fn tunnel(&self, port: u16) -> Result<crate::network::Tunnel> {
        if port == 0 {
            return Err(Error::InvalidArgument("a tunnel's port must be from 1 to 65535".to_string()));
        }
        let live = self.lock_usable().await?;
        match live.as_ref().filter(|running| running.is_alive()).and_then(|running| running.network.as_ref()) {
            Some(network) => Ok(network.tunnel(port)),
            None => Err(Error::InvalidState(format!("box {} is not running: a tunnel needs a started box", self.entry.id))),
        }
    }

    /// Ends the forwarders of the running box's tunnels to `port`.
    pub async fn revoke_tunnel(&self, port: u16) -> Result<()> {
        let live = self.lock_usable().await?;
        if let Some(network) = live.as_ref().and_then(|running| running.network.as_ref()) {
            network.revoke_tunnels(port);
        }
        Ok(())
    }

    /// Serves the network of a box this runtime adopted (`network` rule 5): its way out, and its
    /// ports published anew.
    pub(super) fn serve_adopted_network(&self, running: &mut Live) {
        let (allow_net, ports, where_published) = {
            let record = self.entry.record();
            (record.network.clone(), record.ports.clone(), record.published_host_ports.clone())
        };
        // Each part on its own: a way out that cannot be served leaves the published ports.
        let outbound = allow_net.and_then(|allow_net| {
            let parsed = way_out(&self.entry.dir, &self.entry.id, &allow_net, None);
            parsed.inspect_err(|error| log::warn!("box {} has no way out: {error}", self.entry.id)).ok()
        });
        let again: Vec<crate::network::PortSpec> = ports.iter().enumerate().map(|(index, port)| port.on(where_published.get(index).copied())).collect();
        let published = crate::network::bind_ports(&again)
            .or_else(|error| {
                log::warn!("box {}'s ports cannot be published where they were ({error}): the host picks again", self.entry.id);
                crate::network::bind_ports(&ports)
            })
            .unwrap_or_else(|error| {
                log::warn!("box {}'s ports are not published: {error}", self.entry.id);
                Vec::new()
            });
        let served = BoxNetwork::serve(&self.entry.id, running.connector.socket_path(), outbound, published, &self.inner.network);
        match served {
            Ok(network) => {
                *lock(&self.entry.traffic) = network.meter();
                running.network = Some(network);
                if let Err(error) = self.entry.update(|record| record.published_host_ports = self.published_host_ports()) {
                    log::warn!("box {}'s record keeps its former ports: {error}", self.entry.id);
                }
            }
            Err(error) => log::warn!("box {} has no network: {error}", self.entry.id),
        }
    }

    /// Where the running box's ports are published on the host, in the order of its `ports`.
    fn published_host_ports(&self) -> Vec<u16> {
        lock(&self.entry.traffic).as_ref().map(|meter| meter.published().iter().map(|port| port.host.port()).collect()).unwrap_or_default()
    }

    pub(super) fn main_output(&self) -> Result<exec::MainOutput> {
        let dir = &self.entry.dir;
        exec::MainOutput::open(&dir.join(MAIN_STDOUT), &dir.join(MAIN_STDERR), &dir.join(MAIN_STATUS))
    }

    /// Rule 5: when the init ends on its own (its main process exited, or it was killed), the
    /// box is settled as if stopped. A stop, remove or close that took the init first wins.
    pub(super) fn watch_init(&self, running: &Live) {
        if let Some(check) = self.entry.record().health_check {
            // Starting from now, not from when the watch first runs: `info` after `start` says so.
            *lock(&self.entry.health) = HealthStatus { state: HealthState::Starting, ..HealthStatus::default() };
            tokio::spawn(super::health::watch(Arc::downgrade(&self.entry), Arc::clone(&running.connector), check, running.exit_watch()));
        }
        let exited = running.exit_watch();
        let init_pid = running.init_pid;
        let inner = Arc::clone(&self.inner);
        let entry = Arc::clone(&self.entry);
        tokio::spawn(async move {
            exited.await;
            // Counted before the runtime's state is looked at: a close that finds the box taken
            // waits for the settle instead.
            let settling = inner.begin_settling();
            if inner.shut_down.load(Ordering::Acquire) {
                return; // the next runtime's reconcile settles what is left
            }
            let mut live = entry.live.lock().await;
            if live.as_ref().is_none_or(|running| running.init_pid != init_pid) {
                return;
            }
            *live = None;
            log::info!("box {}'s init ended on its own (its main process exited, or it was killed)", entry.id);
            let (runtime, settled) = (Arc::clone(&inner), Arc::clone(&entry));
            let _ = blocking(move || {
                let _settling = settling;
                settle(&runtime, &settled, BoxStatus::Stopped)
            })
            .await;
            drop(live);
        });
    }

    pub(super) fn shim_config(&self) -> ShimConfig {
        let record = self.entry.record();
        let dir = &self.entry.dir;
        let writable_layer = disk::writable_layer(dir, record.disk_size_gb);
        ShimConfig {
            box_id: record.id.clone(),
            hostname: record.name.clone().filter(|name| name.len() <= 63).unwrap_or_else(|| record.id.clone()),
            lower_dirs: record.prepared.lower_dirs.clone(),
            upper_dir: writable_layer.join("upper"),
            work_dir: writable_layer.join("work"),
            merged_dir: dir.join("rootfs"),
            read_only_binds: record.prepared.read_only_binds.clone(),
            socket_path: dir.join("init.sock"),
            log_path: dir.join("init.log"),
            detached: record.detach,
            volumes: record
                .volumes
                .iter()
                .map(|volume| VolumeMount {
                    source: volume.host_path.clone(),
                    target: volume.guest_path.clone(),
                    read_only: volume.read_only,
                    layers_ids: volume.named.is_some(),
                })
                .collect(),
            capabilities: record.capabilities.clone(),
            process_limits: record.process_limits.clone(),
            user_namespace: record.id_map,
            lower_mounts_dir: dir.join("lower"),
            disk: record.disk_size_gb.map(|_| disk::config(dir, record.id_map)),
            network: record.network.is_some(),
            resolv_conf: record.network.is_some().then(|| self.inner.network.resolv_conf.clone()),
            trusted_authority: record.secrets_authority.clone(),
            rootless: self.inner.host.rootless,
            main: record.main.clone().map(|argv| {
                let (env, cwd, user) = process_defaults(&record).main_process();
                MainProcess {
                    argv,
                    env,
                    cwd,
                    user,
                    stdout_path: dir.join(MAIN_STDOUT),
                    stderr_path: dir.join(MAIN_STDERR),
                    status_path: dir.join(MAIN_STATUS),
                    tty: record.main_tty.then_some(MAIN_TERMINAL),
                }
            }),
        }
    }

    /// Stops the box (graceful, then forced after the default grace) and spends this handle.
    pub async fn stop(&self) -> Result<()> {
        self.stop_with(DEFAULT_STOP_GRACE).await
    }

    pub async fn stop_with(&self, grace: Duration) -> Result<()> {
        if self.spent.swap(true, Ordering::AcqRel) || self.entry.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut live = self.entry.live.lock().await;
        if self.entry.removed.load(Ordering::Acquire) {
            // Removed by another handle while this one waited: nothing is left to stop.
            return Ok(());
        }
        let was_booted = self.entry.record().status != BoxStatus::Configured;
        if let Some(running) = live.take() {
            self.entry.update(|record| record.status = BoxStatus::Stopping)?;
            running.shutdown(grace).await;
        }
        let status = if was_booted { BoxStatus::Stopped } else { BoxStatus::Configured };
        let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
        blocking(move || settle(&inner, &entry, status)).await
    }

    /// Starts a process in the box, booting the box first if it is configured or stopped; its
    /// replies are read on tokio.
    pub async fn exec(&self, request: ExecRequest) -> Result<Execution> {
        let mut execution = self.request_exec(request).await?.run().await?;
        if let Some(replies) = execution.replies.take() {
            replies.read_on_tokio();
        }
        Ok(execution)
    }

    /// Prepares the request to start a command in the box (booting it if needed); sending it,
    /// taking the init's answer and reading the execution's replies are the caller's.
    pub async fn request_exec(&self, request: ExecRequest) -> Result<exec::Requested> {
        self.check_usable()?;
        request.validate()?;
        let connector = self.ensure_running("exec in").await?;
        let spec = self.exec_spec(request);
        self.inner.counters.commands.fetch_add(1, Ordering::Relaxed);
        self.entry.commands.fetch_add(1, Ordering::Relaxed);
        let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
        let failed = Box::new(move || {
            inner.counters.exec_errors.fetch_add(1, Ordering::Relaxed);
            entry.exec_errors.fetch_add(1, Ordering::Relaxed);
        });
        exec::request(connector, spec, Arc::clone(&self.entry.io), failed)
    }

    /// Boots the box if it is configured or stopped; returns the way to its init.
    pub(super) async fn ensure_running(&self, operation: &str) -> Result<Arc<exec::Connector>> {
        let mut live = self.lock_usable().await?;
        if !live.as_ref().is_some_and(Live::is_alive) {
            let status = self.entry.record().status;
            if !status.can_exec() && !status.can_start() {
                return Err(Error::InvalidState(format!("box {} is {}; it must be running", self.entry.id, status.as_str())));
            }
            self.refuse_implicit_start(operation)?;
            self.start_locked(&mut live).await?;
        }
        let running = live.as_ref().ok_or_else(|| Error::Internal("box has no init after start".to_string()))?;
        Ok(Arc::clone(&running.connector))
    }

    /// The running box's root, opened while the lifecycle lock is held and the init is known to
    /// live, so a pid that the kernel recycled can never stand for the box.
    pub(super) async fn open_root(&self, operation: &str) -> Result<std::os::fd::OwnedFd> {
        let mut live = self.lock_usable().await?;
        if !live.as_ref().is_some_and(Live::is_alive) {
            self.refuse_implicit_start(operation)?;
            self.start_locked(&mut live).await?;
        }
        let running = live.as_ref().ok_or_else(|| Error::Internal("box has no init after start".to_string()))?;
        let [root] = crate::exec::fd::ControlSocket::ask_for_descriptors(running.connector.socket_path(), &boxlite_protocol::Request::Root)
            .await
            .map_err(|error| Error::InvalidState(format!("the box is not running: {error}")))?;
        if !running.is_alive() {
            return Err(Error::InvalidState(format!("box {} stopped", self.entry.id)));
        }
        Ok(root)
    }

    pub(super) fn counted(&self, mut execution: Execution) -> Execution {
        execution.io = Arc::clone(&self.entry.io);
        execution
    }

    /// Rule 6.
    pub(super) fn refuse_implicit_start(&self, operation: &str) -> Result<()> {
        let record = self.entry.record();
        if !record.main_chosen {
            return Ok(());
        }
        let consequence = if record.status == BoxStatus::Configured {
            "starting the box would run its main command"
        } else {
            "its main command has already run, and starting the box again would run it a second time"
        };
        Err(Error::InvalidState(format!(
            "Cannot {operation} box {}: it is {}, and {consequence}; start the box explicitly with start() if that is what you want",
            record.id,
            record.status.as_str()
        )))
    }

    /// An init that ended before its monitor settled the box is settled here, under the lock
    /// (rule 5); a box that removes on stop is then gone.
    pub(super) async fn settle_if_dead(&self, live: &mut Option<Live>) -> Result<()> {
        if live.as_ref().is_none_or(Live::is_alive) {
            return Ok(());
        }
        *live = None;
        let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
        blocking(move || settle(&inner, &entry, BoxStatus::Stopped)).await?;
        if self.entry.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("box {} was removed when its main process ended", self.entry.id)));
        }
        Ok(())
    }

    /// Follows the box's main process: live while the box runs (its output from the start of
    /// the run, then as it comes); replayed with its exit code once it has ended; or, before
    /// the box first starts, from the beginning of its coming run.
    pub async fn attach(&self, stdin: bool) -> Result<Execution> {
        let mut live = self.lock_usable().await?;
        if self.entry.record().main.is_none() {
            return Err(Error::InvalidState(format!(
                "box {} has no main command to attach to (its image has no entrypoint or cmd, and none was given); use exec()",
                self.entry.id
            )));
        }
        self.settle_if_dead(&mut live).await?;
        let tty = self.entry.record().main_tty;
        if let Some(running) = live.as_ref() {
            let (output, fallback) = (self.main_output()?, self.main_output()?);
            let socket_path = running.connector.socket_path().to_path_buf();
            let init_exit = running.exit_watch();
            drop(live);
            return match exec::attach(&socket_path, output, stdin, tty).await {
                Ok(execution) => Ok(self.counted(execution)),
                // The main process ended just now: its init is on its way out.
                Err(error) => match tokio::time::timeout(MAIN_END_WAIT, init_exit).await.ok().and(fallback.recorded_exit()) {
                    Some(code) => exec::replay(fallback, code),
                    None => Err(error),
                },
            };
        }
        let (status, exit_code) = {
            let record = self.entry.record();
            (record.status, record.exit_code)
        };
        match (status, exit_code) {
            (BoxStatus::Stopped, Some(code)) => exec::replay(self.main_output()?, code),
            (BoxStatus::Configured, _) => {
                // Registered under the lifecycle lock: no start can slip in between.
                let (sender, receiver) = tokio::sync::oneshot::channel();
                lock(&self.entry.waiting_attaches).push(sender);
                exec::attach_when_started(Box::pin(async move { receiver.await.ok() }), stdin, tty).map(|execution| self.counted(execution))
            }
            _ => Err(Error::InvalidState(format!("Cannot attach to box {}: it is {} and its main process has no run to follow", self.entry.id, status.as_str()))),
        }
    }

    /// Copies a host file or directory into the box (booting it if needed).
    pub async fn copy_in(&self, host_source: PathBuf, box_destination: String, options: CopyOptions) -> Result<()> {
        let root = self.open_root("copy into").await?;
        let box_root = crate::idmap::host_owner(self.entry.record().id_map, 0);
        let helper = self.inner.home.subordinate_helper().cloned();
        blocking(move || crate::files::copy_in(root, &host_source, &box_destination, options, box_root, helper.as_ref())).await
    }

    /// Copies a file or directory out of the box (booting it if needed).
    pub async fn copy_out(&self, box_source: String, host_destination: PathBuf, options: CopyOptions) -> Result<()> {
        let root = self.open_root("copy out of").await?;
        let helper = self.inner.home.subordinate_helper().cloned();
        blocking(move || crate::files::copy_out(root, &box_source, &host_destination, options, helper.as_ref())).await
    }

    pub(super) fn exec_spec(&self, request: ExecRequest) -> ExecSpec {
        process_defaults(&self.entry.record()).exec(request)
    }

    /// As `exec` and `start`, refused through a handle spent by `stop()` (BoxLite's rule).
    pub fn metrics(&self) -> Result<BoxMetrics> {
        self.check_usable()?;
        let milliseconds = |micros: &AtomicU64| Some(micros.load(Ordering::Relaxed)).filter(|micros| *micros > 0).map(|micros| micros / 1000);
        let usage = BoxCgroup::locate(&self.inner.cgroups, &self.entry.id).usage();
        let running_for = lock(&self.entry.started).map(|started| started.elapsed().as_nanos() as f64).filter(|nanos| *nanos > 0.0);
        Ok(BoxMetrics {
            commands_executed_total: self.entry.commands.load(Ordering::Relaxed),
            exec_errors_total: self.entry.exec_errors.load(Ordering::Relaxed),
            boot_duration_ms: milliseconds(&self.entry.boot_us),
            create_duration_ms: milliseconds(&self.entry.create_us),
            memory_bytes: usage.memory_bytes,
            cpu_time_ns: usage.cpu_time_ns,
            cpu_percent: usage.cpu_time_ns.zip(running_for).map(|(cpu, wall)| cpu as f64 / wall * 100.0),
            processes: usage.processes,
            bytes_sent_total: self.entry.io.sent.load(Ordering::Relaxed),
            bytes_received_total: self.entry.io.received.load(Ordering::Relaxed),
            disk_bytes: self.entry.record().disk_size_gb.and_then(|_| super::disk::used_bytes(&self.entry.dir)),
            network: lock(&self.entry.traffic).as_ref().map(crate::network::TrafficMeter::counts),
        })
    }
}

fn process_defaults(record: &BoxRecord) -> ProcessDefaults {
    ProcessDefaults::new(&record.prepared.config, &record.env, record.working_dir.as_deref(), record.user.as_deref())
}

/// How the way out of the box `id` in `dir` is served: its `allow_net`, and its secrets, if it
/// has any. Blocking (it reads the secrets and the host's trust store).
fn way_out(dir: &Path, id: &str, allow_net: &[String], sockets: Option<BoxSockets>) -> Result<WayOut> {
    let secrets = SecretProxy::load(dir, id)?;
    let policy = match &secrets {
        Some(secrets) => Policy::parse(&secrets.widened(allow_net))?,
        None => Policy::parse(allow_net)?,
    };
    Ok(WayOut { sockets, policy, secrets })
}
