//! Payload fetch over `/lienthong/fetch/1`: the resumable client and the server.

use super::*;

/// A blocking store call that finished.
pub(super) enum Done {
    /// A new fetch looked for the payload locally.
    Probed {
        manifest: [u8; 32],
        result: std::io::Result<bool>,
    },
    /// The manifest (from a peer, verified) and which of its chunks are missing here.
    Checked {
        manifest: Arc<Manifest>,
        result: std::io::Result<BTreeSet<u32>>,
    },
    /// A verified chunk was written.
    ChunkStored {
        manifest: [u8; 32],
        index: u32,
        result: std::io::Result<()>,
    },
    /// The manifest was written last: the payload is complete.
    ManifestStored {
        manifest: [u8; 32],
        result: std::io::Result<()>,
    },
    /// A fetch request was read from the store and can be answered.
    Served {
        peer: PeerId,
        channel: ResponseChannel<FetchResponse>,
        response: FetchResponse,
    },
}

/// Decoded manifests recently served (shared with blocking tasks).
#[derive(Debug, Default)]
pub(super) struct ManifestCache(Mutex<VecDeque<Arc<Manifest>>>);

impl ManifestCache {
    pub(super) fn get(
        &self,
        store: &dyn PayloadStore,
        id: &PayloadId,
    ) -> std::io::Result<Option<Arc<Manifest>>> {
        {
            let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = cache.iter().find(|m| m.id() == *id) {
                return Ok(Some(m.clone()));
            }
        }
        let Some(bytes) = store.get_manifest(id)? else {
            return Ok(None);
        };
        let manifest = Manifest::decode(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stored manifest: {e}"),
            )
        })?;
        let manifest = Arc::new(manifest);
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MANIFEST_CACHE {
            cache.pop_front();
        }
        cache.push_back(manifest.clone());
        Ok(Some(manifest))
    }
}

impl NetTask {
    // ----- payload fetch (client side) ----------------------------------------------

    pub(super) fn fetch(&mut self, peer: PeerId, manifest: [u8; 32]) {
        if let Some(job) = self.fetches.get_mut(&manifest) {
            job.add_peer(peer);
            if !job.busy() {
                self.pump(manifest, Some(peer));
            }
            return;
        }
        if self.fetches.len() >= self.config.max_fetches {
            // Forget the stalest idle fetch; if every one is busy, refuse this one (the
            // relay asks again later).
            let victim = self
                .fetches
                .iter()
                .filter(|(_, j)| !j.busy())
                .min_by_key(|(_, j)| j.touched)
                .map(|(m, _)| *m);
            match victim {
                Some(m) => {
                    self.fetches.remove(&m);
                }
                None => {
                    self.emit(NetEvent::FetchFailed {
                        manifest,
                        reason: "too many fetches under way".into(),
                    });
                    return;
                }
            }
        }
        self.fetches.insert(manifest, FetchJob::new(peer));
        let store = self.store.clone();
        self.spawn_blocking(
            move || {
                let result = store
                    .get_manifest(&PayloadId(manifest))
                    .map(|m| m.is_some());
                Done::Probed { manifest, result }
            },
            Done::Probed {
                manifest,
                result: Err(join_error()),
            },
        );
    }

    /// Runs `f` on the blocking pool; `failed` is reported if the task panics.
    pub(super) fn spawn_blocking(
        &mut self,
        f: impl FnOnce() -> Done + Send + 'static,
        failed: Done,
    ) {
        let handle = tokio::task::spawn_blocking(f);
        self.blocking
            .push(async move { handle.await.unwrap_or(failed) }.boxed());
    }

    /// Sends whatever requests a fetch needs now. `dial` names a peer that may be dialled
    /// if no candidate is connected (the peer the relay just named).
    pub(super) fn pump(&mut self, manifest: [u8; 32], dial: Option<PeerId>) {
        let window = self.config.fetch_window.max(1);
        let Some(job) = self.fetches.get_mut(&manifest) else {
            return;
        };
        let connected = job
            .peers
            .iter()
            .rev()
            .find(|p| self.swarm.is_connected(p))
            .copied();
        let Some(peer) = connected.or(dial) else {
            if job.peers.is_empty() && !job.busy() {
                self.fail_fetch(manifest, "no peer has the payload".into());
            }
            return;
        };
        let mut requests = Vec::new();
        match &mut job.phase {
            Phase::Probing | Phase::Finishing => return,
            Phase::Manifest { asked } => {
                if asked.is_some() {
                    return;
                }
                *asked = Some(peer);
                requests.push(FetchRequest::Manifest(manifest));
            }
            Phase::Chunks {
                missing,
                in_flight,
                storing,
                manifest: m,
            } => {
                while in_flight.len() < window {
                    let Some(index) = missing.pop_first() else {
                        break;
                    };
                    in_flight.insert(index, peer);
                    requests.push(FetchRequest::Chunk { manifest, index });
                }
                if missing.is_empty() && in_flight.is_empty() && storing.is_empty() {
                    let m = m.clone();
                    job.phase = Phase::Finishing;
                    self.finish(m);
                    return;
                }
            }
        }
        job.touched = Instant::now();
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        for request in requests {
            match request {
                FetchRequest::Manifest(_) => inc(&self.metrics.fetch_manifest_requests),
                FetchRequest::Chunk { .. } => inc(&self.metrics.fetch_chunk_requests),
            }
            let id = self
                .swarm
                .behaviour_mut()
                .fetch
                .send_request_with_addresses(&peer, request, addrs.clone());
            self.fetch_requests.insert(id, (manifest, request, peer));
        }
    }

    pub(super) fn finish(&mut self, manifest: Arc<Manifest>) {
        let store = self.store.clone();
        let id = manifest.id();
        self.spawn_blocking(
            move || Done::ManifestStored {
                manifest: id.0,
                result: store.put_manifest(&id, manifest.as_bytes()),
            },
            Done::ManifestStored {
                manifest: id.0,
                result: Err(join_error()),
            },
        );
    }

    pub(super) fn fail_fetch(&mut self, manifest: [u8; 32], reason: String) {
        if self.fetches.remove(&manifest).is_some() {
            self.emit(NetEvent::FetchFailed { manifest, reason });
        }
    }

    pub(super) fn on_fetch_event(
        &mut self,
        event: request_response::Event<FetchRequest, FetchResponse>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => self.serve(peer, request_id, request, channel),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((manifest, request, asked)) = self.fetch_requests.remove(&request_id) {
                    debug_assert_eq!(asked, peer);
                    self.on_fetch_response(peer, manifest, request, response);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((manifest, request, _)) = self.fetch_requests.remove(&request_id) {
                    debug!(%peer, %error, "fetch request failed");
                    // Another connected candidate may take over; otherwise the fetch waits
                    // for a candidate to reconnect or for the relay to ask again.
                    let unsupported = matches!(error, OutboundFailure::UnsupportedProtocols);
                    self.request_failed(peer, manifest, request, unsupported);
                    self.pump(manifest, None);
                }
            }
            Event::InboundFailure { request_id, .. } | Event::ResponseSent { request_id, .. } => {
                self.release(Proto::Fetch, request_id);
            }
        }
    }

    /// Puts a failed request back (the chunk is missing again). `drop_peer`: the peer
    /// does not have the payload or misbehaved.
    pub(super) fn request_failed(
        &mut self,
        peer: PeerId,
        manifest: [u8; 32],
        request: FetchRequest,
        drop_peer: bool,
    ) {
        let Some(job) = self.fetches.get_mut(&manifest) else {
            return;
        };
        if drop_peer {
            job.drop_peer(&peer);
        }
        match (&mut job.phase, request) {
            (Phase::Manifest { asked }, FetchRequest::Manifest(_)) => *asked = None,
            (
                Phase::Chunks {
                    missing, in_flight, ..
                },
                FetchRequest::Chunk { index, .. },
            ) => {
                inc(&self.metrics.fetch_chunk_failures);
                if in_flight.remove(&index).is_some() {
                    missing.insert(index);
                }
            }
            _ => {}
        }
        if job.peers.is_empty() && !job.busy() {
            self.fail_fetch(manifest, "no peer has the payload".into());
        }
    }

    pub(super) fn on_fetch_response(
        &mut self,
        peer: PeerId,
        manifest: [u8; 32],
        request: FetchRequest,
        response: FetchResponse,
    ) {
        match (request, response) {
            (FetchRequest::Manifest(_), FetchResponse::Manifest(bytes)) => {
                let checked = Manifest::decode(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        if m.id().0 == manifest {
                            Ok(m)
                        } else {
                            Err(format!("manifest {} instead of the one asked for", m.id()))
                        }
                    });
                match checked {
                    Ok(m) => {
                        let m = Arc::new(m);
                        let store = self.store.clone();
                        let failed = Done::Checked {
                            manifest: m.clone(),
                            result: Err(join_error()),
                        };
                        self.spawn_blocking(
                            move || {
                                let result = missing_chunks(store.as_ref(), &m);
                                Done::Checked {
                                    manifest: m,
                                    result,
                                }
                            },
                            failed,
                        );
                    }
                    Err(reason) => {
                        inc(&self.metrics.invalid_fetch);
                        self.penalize(peer, &format!("bad manifest: {reason}"));
                        self.request_failed(peer, manifest, request, true);
                        self.pump(manifest, None);
                    }
                }
            }
            (FetchRequest::Chunk { index, .. }, FetchResponse::Chunk(bytes)) => {
                let Some(job) = self.fetches.get_mut(&manifest) else {
                    return;
                };
                let Phase::Chunks {
                    manifest: m,
                    in_flight,
                    storing,
                    ..
                } = &mut job.phase
                else {
                    return;
                };
                if in_flight.get(&index) != Some(&peer) {
                    return;
                }
                match seal::verify_chunk(m, index as usize, &bytes) {
                    Ok(()) => {
                        in_flight.remove(&index);
                        storing.insert(index);
                        job.touched = Instant::now();
                        let store = self.store.clone();
                        self.spawn_blocking(
                            move || Done::ChunkStored {
                                manifest,
                                index,
                                result: store.put_chunk(&ChunkId::of(&bytes), &bytes),
                            },
                            Done::ChunkStored {
                                manifest,
                                index,
                                result: Err(join_error()),
                            },
                        );
                        // Keep the window full while this chunk is written.
                        self.pump(manifest, None);
                    }
                    Err(e) => {
                        inc(&self.metrics.invalid_fetch);
                        self.penalize(peer, &format!("bad chunk {index}: {e}"));
                        self.request_failed(peer, manifest, request, true);
                        self.pump(manifest, None);
                    }
                }
            }
            (_, FetchResponse::NotFound) => {
                self.request_failed(peer, manifest, request, true);
                self.pump(manifest, None);
            }
            (_, FetchResponse::Refused(reason)) => {
                debug!(%peer, reason, "fetch refused");
                // Busy: keep the peer, but wait for the next trigger rather than retrying
                // at once.
                self.request_failed(peer, manifest, request, false);
            }
            (_, _) => {
                inc(&self.metrics.invalid_fetch);
                self.penalize(peer, "fetch response of the wrong kind");
                self.request_failed(peer, manifest, request, true);
                self.pump(manifest, None);
            }
        }
    }

    // ----- payload fetch (server side) ----------------------------------------------

    pub(super) fn serve(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: FetchRequest,
        channel: ResponseChannel<FetchResponse>,
    ) {
        if !self.charge(Proto::Fetch, request_id, peer, MAX_FETCH_LEN) {
            let _ = self.swarm.behaviour_mut().fetch.send_response(
                channel,
                FetchResponse::Refused("over quota; retry later".into()),
            );
            return;
        }
        let store = self.store.clone();
        let cache = self.manifests.clone();
        let handle = tokio::task::spawn_blocking(move || read_for(store.as_ref(), &cache, request));
        self.blocking.push(
            async move {
                let response = handle
                    .await
                    .unwrap_or_else(|_| FetchResponse::Refused("internal error".into()));
                Done::Served {
                    peer,
                    channel,
                    response,
                }
            }
            .boxed(),
        );
    }

    // ----- finished store calls -----------------------------------------------------

    pub(super) fn on_done(&mut self, done: Done) {
        match done {
            Done::Served {
                peer,
                channel,
                response,
            } => {
                match &response {
                    FetchResponse::Manifest(b) | FetchResponse::Chunk(b) => {
                        inc(&self.metrics.fetch_served);
                        add(&self.metrics.fetch_bytes_served, b.len());
                    }
                    FetchResponse::Refused(_) => inc(&self.metrics.store_errors),
                    FetchResponse::NotFound => {}
                }
                if self
                    .swarm
                    .behaviour_mut()
                    .fetch
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!(%peer, "fetch requester went away");
                }
            }
            Done::Probed { manifest, result } => match result {
                Ok(true) => {
                    self.fetches.remove(&manifest);
                    self.emit(NetEvent::PayloadStored { manifest });
                }
                Ok(false) => {
                    if let Some(job) = self.fetches.get_mut(&manifest) {
                        job.phase = Phase::Manifest { asked: None };
                        let dial = job.peers.last().copied();
                        self.pump(manifest, dial);
                    }
                }
                Err(e) => {
                    inc(&self.metrics.store_errors);
                    self.fail_fetch(manifest, format!("store: {e}"));
                }
            },
            Done::Checked { manifest, result } => {
                let id = manifest.id().0;
                match result {
                    Ok(missing) => {
                        if let Some(job) = self.fetches.get_mut(&id) {
                            job.phase = Phase::Chunks {
                                manifest,
                                missing,
                                in_flight: HashMap::new(),
                                storing: HashSet::new(),
                            };
                            self.pump(id, None);
                        }
                    }
                    Err(e) => {
                        inc(&self.metrics.store_errors);
                        self.fail_fetch(id, format!("store: {e}"));
                    }
                }
            }
            Done::ChunkStored {
                manifest,
                index,
                result,
            } => {
                if let Err(e) = result {
                    inc(&self.metrics.store_errors);
                    self.fail_fetch(manifest, format!("store: {e}"));
                    return;
                }
                inc(&self.metrics.fetch_chunks_stored);
                if let Some(job) = self.fetches.get_mut(&manifest)
                    && let Phase::Chunks { storing, .. } = &mut job.phase
                {
                    storing.remove(&index);
                    job.touched = Instant::now();
                }
                self.pump(manifest, None);
            }
            Done::ManifestStored { manifest, result } => {
                self.fetches.remove(&manifest);
                match result {
                    Ok(()) => {
                        inc(&self.metrics.fetch_completed);
                        self.emit(NetEvent::PayloadStored { manifest });
                    }
                    Err(e) => {
                        inc(&self.metrics.store_errors);
                        self.emit(NetEvent::FetchFailed {
                            manifest,
                            reason: format!("store: {e}"),
                        });
                    }
                }
            }
        }
    }
}

fn join_error() -> std::io::Error {
    std::io::Error::other("blocking store task failed")
}

/// Which chunks of `manifest` the store lacks.
fn missing_chunks(store: &dyn PayloadStore, manifest: &Manifest) -> std::io::Result<BTreeSet<u32>> {
    let mut missing = BTreeSet::new();
    for (index, id) in manifest.chunks().iter().enumerate() {
        if !store.has_chunk(id)? {
            missing.insert(u32::try_from(index).unwrap_or(u32::MAX));
        }
    }
    Ok(missing)
}

/// Answers a fetch request from the store (blocking).
fn read_for(
    store: &dyn PayloadStore,
    cache: &ManifestCache,
    request: FetchRequest,
) -> FetchResponse {
    let result = match request {
        FetchRequest::Manifest(id) => store
            .get_manifest(&PayloadId(id))
            .map(|m| m.map(FetchResponse::Manifest)),
        FetchRequest::Chunk { manifest, index } => {
            cache.get(store, &PayloadId(manifest)).and_then(|m| {
                let Some(chunk_id) = m.and_then(|m| m.chunks().get(index as usize).copied()) else {
                    return Ok(None);
                };
                store
                    .get_chunk(&chunk_id)
                    .map(|c| c.map(FetchResponse::Chunk))
            })
        }
    };
    match result {
        Ok(Some(response)) => response,
        Ok(None) => FetchResponse::NotFound,
        Err(e) => {
            warn!(error = %e, "payload store read failed");
            FetchResponse::Refused("store error".into())
        }
    }
}
