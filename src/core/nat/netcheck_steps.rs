//! The later steps of a netcheck run: the filtering answers (RFC 5780 §4.4), the port-allocation
//! samples, the mapping-lifetime probes (§4.6), and the final report.

use super::*;
use std::time::Duration;

impl Netcheck {
    pub(super) fn on_filter(&mut self, purpose: Purpose, outcome: Outcome) {
        let server = self.config.server;
        match (purpose, outcome) {
            (Purpose::FilterControl, Outcome::Answered { .. }) => self.filter.control = true,
            // The answer must really come from where we asked it to: a server that ignores
            // CHANGE-REQUEST answers from the primary and would fake an open filter.
            (Purpose::FilterPort, Outcome::Answered { from, .. }) => {
                if from.ip() == server.ip() && from.port() != server.port() {
                    self.filter.port = true;
                } else {
                    self.filter.unusable = Some(format!(
                        "the server answered a change-port request from {from}"
                    ));
                }
            }
            (Purpose::FilterBoth, Outcome::Answered { from, .. }) => {
                if from.ip() != server.ip() && from.port() != server.port() {
                    self.filter.both = true;
                } else {
                    self.filter.unusable = Some(format!(
                        "the server answered a change-IP-and-port request from {from}"
                    ));
                }
            }
            (_, Outcome::Refused(code)) => {
                self.filter.unusable = Some(format!(
                    "the server refused CHANGE-REQUEST with error {code}"
                ));
            }
            _ => {}
        }
        let pending = self.probes.iter().any(|p| {
            matches!(
                p.purpose,
                Purpose::FilterControl | Purpose::FilterPort | Purpose::FilterBoth
            )
        });
        if pending {
            return;
        }
        self.close_socket(self.filter_socket);
        self.profile.filtering = if let Some(why) = self.filter.unusable.take() {
            self.notes.push(format!("{why}, so filtering is unknown"));
            Filtering::Unknown
        } else if !self.filter.control {
            self.notes.push(
                "the filtering test's fresh socket got no answer even to a plain request (a \
                 lossy path?), so filtering is unknown"
                    .into(),
            );
            Filtering::Unknown
        } else {
            classify_filtering(self.filter.both, self.filter.port)
        };
        self.progress
            .push_back(format!("filtering: {}", self.profile.filtering));
    }

    pub(super) fn start_sample(&mut self, i: usize) {
        if let Some(&socket) = self.sample_sockets.get(i) {
            let server = self.config.server;
            self.start(Purpose::Sample(i), socket, server, ChangeRequest::NONE);
            return;
        }
        let wanted = self.config.allocation_samples;
        if self.samples.len() < wanted {
            self.notes.push(format!(
                "{} of {wanted} port-allocation samples got no answer",
                wanted - self.samples.len()
            ));
        }
        let (allocation, note) = classify_allocation(&self.samples);
        self.notes.extend(note);
        if let (PortAllocation::Sequential { delta }, Some((p2, p3))) =
            (allocation, self.mapping_ports)
        {
            let step = i32::from(p3) - i32::from(p2);
            if step != delta {
                self.notes.push(format!(
                    "tests II and III moved the port by {step:+}, the samples by {delta:+}"
                ));
            }
        }
        self.profile.allocation = allocation;
        self.progress
            .push_back(format!("port allocation: {allocation}"));
        if self.config.lifetime {
            self.start_lifetime();
        }
    }

    pub(super) fn on_sample(&mut self, i: usize, outcome: Outcome) {
        let Some(&socket) = self.sample_sockets.get(i) else {
            return;
        };
        if let (Outcome::Answered { resp, .. }, Some(local)) = (outcome, self.local.get(&socket)) {
            self.samples.push(PortSample {
                local: local.port(),
                mapped: resp.mapped.port(),
            });
        }
        self.close_socket(socket);
        self.start_sample(i + 1);
    }

    fn start_lifetime(&mut self) {
        let longest = LIFETIME_STEPS_SECS[LIFETIME_STEPS_SECS.len() - 1];
        self.progress.push_back(format!(
            "mapping lifetime: letting fresh mappings idle for up to {longest} s"
        ));
        let server = self.config.server;
        for k in 0..LIFETIME_STEPS_SECS.len() {
            let socket = self.open_socket();
            self.lifetime_sockets.push(socket);
            self.lifetime_alive.push(None);
            self.start(
                Purpose::LifetimeBind(k),
                socket,
                server,
                ChangeRequest::NONE,
            );
        }
    }

    pub(super) fn on_lifetime_bind(&mut self, k: usize, outcome: Outcome) {
        let (Some(&socket), Some(&secs)) =
            (self.lifetime_sockets.get(k), LIFETIME_STEPS_SECS.get(k))
        else {
            return;
        };
        match outcome {
            // After `secs` idle, MAIN asks the server to answer to this mapping's public port
            // (RESPONSE-PORT, RFC 5780 §4.6); it arrives only if the mapping still exists.
            Outcome::Answered { resp, .. } => {
                let at = self.now + Duration::from_secs(secs);
                let server = self.config.server;
                let port = Some(resp.mapped.port());
                self.start_at(
                    Purpose::LifetimeCheck(k),
                    SocketId::MAIN,
                    server,
                    ChangeRequest::NONE,
                    port,
                    socket,
                    at,
                );
            }
            _ => self.close_socket(socket),
        }
        self.maybe_conclude_lifetime();
    }

    pub(super) fn on_lifetime_check(&mut self, k: usize, outcome: Outcome) {
        let (Some(&socket), Some(&secs)) =
            (self.lifetime_sockets.get(k), LIFETIME_STEPS_SECS.get(k))
        else {
            return;
        };
        match outcome {
            Outcome::Answered { .. } => {
                self.lifetime_alive[k] = Some(true);
                self.progress
                    .push_back(format!("mapping lifetime: alive after {secs} s idle"));
                self.close_socket(socket);
            }
            Outcome::NoAnswer => {
                self.lifetime_alive[k] = Some(false);
                self.progress
                    .push_back(format!("mapping lifetime: gone after {secs} s idle"));
                self.close_socket(socket);
                // Longer idle times cannot do better; stop waiting for them.
                let longer: Vec<usize> = self
                    .probes
                    .iter()
                    .filter_map(|p| match p.purpose {
                        Purpose::LifetimeCheck(j) if LIFETIME_STEPS_SECS[j] > secs => Some(j),
                        _ => None,
                    })
                    .collect();
                self.probes.retain(
                    |p| !matches!(p.purpose, Purpose::LifetimeCheck(j) if longer.contains(&j)),
                );
                for j in longer {
                    self.close_socket(self.lifetime_sockets[j]);
                }
            }
            Outcome::Refused(code) => {
                self.abandon_lifetime(format!(
                    "the server refused RESPONSE-PORT with error {code}, so the mapping \
                     lifetime was not measured"
                ));
                return;
            }
        }
        self.maybe_conclude_lifetime();
    }

    pub(super) fn abandon_lifetime(&mut self, why: String) {
        self.probes.retain(|p| {
            !matches!(
                p.purpose,
                Purpose::LifetimeBind(_) | Purpose::LifetimeCheck(_)
            )
        });
        for socket in self.lifetime_sockets.clone() {
            self.close_socket(socket);
        }
        self.lifetime_alive.iter_mut().for_each(|a| *a = None);
        self.notes.push(why);
    }

    fn maybe_conclude_lifetime(&mut self) {
        let pending = self.probes.iter().any(|p| {
            matches!(
                p.purpose,
                Purpose::LifetimeBind(_) | Purpose::LifetimeCheck(_)
            )
        });
        if pending {
            return;
        }
        // The longest idle time survived below the first one that was not.
        let mut longest = None;
        for (k, alive) in self.lifetime_alive.iter().enumerate() {
            match alive {
                Some(true) => longest = Some(LIFETIME_STEPS_SECS[k]),
                Some(false) => break,
                None => {}
            }
        }
        self.profile.lifetime_secs = longest;
        if longest.is_none() {
            self.notes.push(format!(
                "no mapping survived {} s idle (or the probes were lost)",
                LIFETIME_STEPS_SECS[0]
            ));
        }
    }

    pub(super) fn finish(&mut self) {
        for id in self.open.clone() {
            self.close_socket(id);
        }
        let server = self.config.server;
        let mut profile = self.profile.clone();
        if let Some(m1) = self.m1 {
            profile.behind_nat = match self.local.get(&SocketId::MAIN) {
                Some(local) if !local.ip().is_unspecified() => Some(*local != m1.mapped),
                _ => {
                    self.notes.push(
                        "the main socket's local address is unknown, so whether there is a NAT \
                         at all was not decided"
                            .into(),
                    );
                    None
                }
            };
        }
        let mut report = NetcheckReport::new(server, profile);
        report.local = self.local.get(&SocketId::MAIN).copied();
        report.observed_ports = self.samples.iter().map(|s| s.mapped).collect();
        report.other_address = self.m1.and_then(|r| r.other_address);
        report.rfc5780 = report.other_address.is_some();
        report.notes = std::mem::take(&mut self.notes);
        self.progress.push_back("done".into());
        self.report = Some(report);
    }
}
