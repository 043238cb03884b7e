//! Direct relay messages over `/lienthong/relay/1`: pending responders, quotas, acks.

use super::*;

/// An inbound relay request waiting for the relay's answer.
#[derive(Debug)]
pub(super) struct Pending {
    peer: PeerId,
    request: InboundRequestId,
    channel: ResponseChannel<RelayResponse>,
    key: (PeerId, ContentId),
}

impl NetTask {
    // ----- relay messages -----------------------------------------------------------

    pub(super) fn send_wire(&mut self, peer: PeerId, wire: Wire) {
        let ack_id = match &wire {
            Wire::PushAck { id, .. } | Wire::CustodyAck { id, .. } => Some(*id),
            _ => None,
        };
        if let Some(id) = ack_id {
            let token = self
                .by_content
                .get_mut(&(peer, id))
                .and_then(|queue| queue.pop_front());
            if let Some(token) = token {
                self.respond(token, wire);
                return;
            }
        }
        self.request(peer, wire);
    }

    /// Sends a relay message as a new request.
    pub(super) fn request(&mut self, peer: PeerId, wire: Wire) {
        let bytes = match wire.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(%peer, error = %e, "cannot encode a relay message");
                return;
            }
        };
        let load = self.outbound_load.entry(peer).or_default();
        if *load >= self.config.max_outbound_per_peer {
            inc(&self.metrics.relay_send_failures);
            self.emit(NetEvent::SendFailed {
                peer,
                reason: "too many requests in flight to this peer".into(),
            });
            return;
        }
        *load += 1;
        if matches!(wire, Wire::PushAck { .. } | Wire::CustodyAck { .. }) {
            inc(&self.metrics.acks_as_request);
        }
        inc(&self.metrics.relay_requests_out);
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        let id = self
            .swarm
            .behaviour_mut()
            .relay_rr
            .send_request_with_addresses(&peer, bytes, addrs);
        self.outbound.insert(id, peer);
    }

    /// Answers the pending request `token` (falls back to a new request for an ack whose
    /// stream has gone).
    pub(super) fn respond(&mut self, token: u64, wire: Wire) {
        let Some(pending) = self.pending.remove(&token) else {
            return;
        };
        self.by_request.remove(&pending.request);
        if let Some(queue) = self.by_content.get_mut(&pending.key) {
            queue.retain(|t| *t != token);
            if queue.is_empty() {
                self.by_content.remove(&pending.key);
            }
        }
        let bytes = match wire.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(peer = %pending.peer, error = %e, "cannot encode a relay message");
                return;
            }
        };
        let sent = self
            .swarm
            .behaviour_mut()
            .relay_rr
            .send_response(pending.channel, RelayResponse::Wire(bytes));
        if sent.is_ok() {
            inc(&self.metrics.acks_as_response);
        } else if matches!(wire, Wire::PushAck { .. } | Wire::CustodyAck { .. }) {
            self.request(pending.peer, wire);
        }
    }

    /// Admits an inbound request of `bytes` from `peer` under its quota.
    pub(super) fn charge(
        &mut self,
        proto: Proto,
        request: InboundRequestId,
        peer: PeerId,
        bytes: usize,
    ) -> bool {
        let load = self.load.entry(peer).or_default();
        if load.count >= self.config.max_inbound_per_peer
            || load.bytes + bytes > self.config.max_inbound_bytes_per_peer
        {
            inc(&self.metrics.quota_refusals);
            return false;
        }
        load.count += 1;
        load.bytes += bytes;
        self.charges.insert((proto, request), (peer, bytes));
        true
    }

    pub(super) fn release(&mut self, proto: Proto, request: InboundRequestId) {
        if let Some((peer, bytes)) = self.charges.remove(&(proto, request))
            && let Some(load) = self.load.get_mut(&peer)
        {
            load.count = load.count.saturating_sub(1);
            load.bytes = load.bytes.saturating_sub(bytes);
            if load.count == 0 {
                self.load.remove(&peer);
            }
        }
        if proto == Proto::Relay
            && let Some(token) = self.by_request.remove(&request)
            && let Some(pending) = self.pending.remove(&token)
            && let Some(queue) = self.by_content.get_mut(&pending.key)
        {
            queue.retain(|t| *t != token);
            if queue.is_empty() {
                self.by_content.remove(&pending.key);
            }
        }
    }

    pub(super) fn on_relay_request(
        &mut self,
        peer: PeerId,
        request: InboundRequestId,
        bytes: Vec<u8>,
        channel: ResponseChannel<RelayResponse>,
    ) {
        inc(&self.metrics.relay_requests_in);
        if !self.charge(Proto::Relay, request, peer, bytes.len()) {
            let _ = self.swarm.behaviour_mut().relay_rr.send_response(
                channel,
                RelayResponse::Refused("over quota; retry later".into()),
            );
            return;
        }
        let wire = match Wire::decode(&bytes) {
            Ok(wire) => wire,
            Err(e) => {
                inc(&self.metrics.invalid_wire);
                self.penalize(peer, &format!("malformed relay message: {e}"));
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .relay_rr
                    .send_response(channel, RelayResponse::Refused("malformed".into()));
                return;
            }
        };
        drop(bytes);
        match &wire {
            Wire::Push { envelope } | Wire::Custody { envelope, .. } => {
                let key = (peer, content_id_of(envelope));
                let token = self.next_token;
                self.next_token += 1;
                self.pending.insert(
                    token,
                    Pending {
                        peer,
                        request,
                        channel,
                        key,
                    },
                );
                self.by_request.insert(request, token);
                self.by_content.entry(key).or_default().push_back(token);
                self.emit(NetEvent::Message {
                    peer,
                    wire,
                    responder: Some(Responder(token)),
                });
            }
            Wire::PushAck { .. } | Wire::CustodyAck { .. } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .relay_rr
                    .send_response(channel, RelayResponse::Empty);
                self.emit(NetEvent::Message {
                    peer,
                    wire,
                    responder: None,
                });
            }
        }
    }

    pub(super) fn on_relay_event(
        &mut self,
        event: request_response::Event<Vec<u8>, RelayResponse>,
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
            } => self.on_relay_request(peer, request_id, request, channel),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.outbound_done(request_id);
                match response {
                    RelayResponse::Wire(bytes) => match Wire::decode(&bytes) {
                        Ok(wire) => {
                            inc(&self.metrics.relay_responses_in);
                            self.emit(NetEvent::Response { peer, wire });
                        }
                        Err(e) => {
                            inc(&self.metrics.invalid_wire);
                            self.penalize(peer, &format!("malformed relay response: {e}"));
                        }
                    },
                    RelayResponse::Empty => {}
                    RelayResponse::Refused(reason) => {
                        inc(&self.metrics.relay_send_failures);
                        self.emit(NetEvent::SendFailed { peer, reason });
                    }
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.outbound_done(request_id);
                inc(&self.metrics.relay_send_failures);
                self.emit(NetEvent::SendFailed {
                    peer,
                    reason: error.to_string(),
                });
            }
            Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "inbound relay request failed");
                self.release(Proto::Relay, request_id);
            }
            Event::ResponseSent { request_id, .. } => self.release(Proto::Relay, request_id),
        }
    }

    pub(super) fn outbound_done(&mut self, request: OutboundRequestId) {
        if let Some(peer) = self.outbound.remove(&request)
            && let Some(load) = self.outbound_load.get_mut(&peer)
        {
            *load = load.saturating_sub(1);
            if *load == 0 {
                self.outbound_load.remove(&peer);
            }
        }
    }
}
