//! One connection: admit it, then answer its request lines in order until it closes, goes idle
//! or sends an over-long line. Every line is answered as the process that wrote it (per-message
//! credentials, `frame`): the connection remembers each writer it verified, pinned by its
//! pidfd, and re-checks before every request that it still runs the same executable with no
//! tracer attached. A process that executes another program while connected is refused for the
//! rest of the connection.

use super::Broker;
use super::admission::Slot;
use super::approval::{Answer, ApproverEvent, Decision, SubscriptionLine};
use super::conduit;
use super::frame::{Frame, LineReader, Writer};
use super::handler::{self, Reply};
use super::shutdown::Shutdown;
use crate::audit::Record;
use crate::identity::process::FileId;
use crate::identity::sender::Sender;
use crate::identity::{self, Connector, Exe, Hashing, IdentityError, Peer};
use crate::protocol::{AnswerLine, Incoming, Reason, Response, Status};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// A reserve (STATUS-only) connection is closed after this long without a line.
const RESERVE_IDLE: Duration = Duration::from_secs(2);
/// Most distinct writers one connection may have; more is not a client, it is a probe.
const MAX_WRITERS: usize = 16;

/// Keeps the open-connection gauge right however the session ends.
struct Gauge(Arc<Broker>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A writer this connection verified, pinned by the chunk that carried its pidfd (`pin.pid`
/// is the writer's; `peer` is who it is answered as, the same process unless it is a conduit).
struct Known {
    peer: Arc<Peer>,
    pin: Arc<Sender>,
}

/// One admitted connection's state.
struct Session {
    broker: Arc<Broker>,
    connector: Connector,
    /// What the connecting process ran when the connection was accepted.
    connect_exe: Option<FileId>,
    known: Vec<Known>,
}

/// Serves one accepted connection to the end: checks the connecting uid, admits it under the
/// caps, and answers its lines.
pub async fn serve(mut stream: UnixStream, broker: Arc<Broker>, mut shutdown: Shutdown) {
    let connector = match identity::connector(stream.as_fd()) {
        Ok(c) => c,
        Err(e) => return refused(&broker, &e),
    };
    let ticket = match broker.admissions.admit(connector.pid) {
        Ok(t) => t,
        Err(why) => return refuse_busy(stream, &broker, why.to_string()).await,
    };
    // SO_PASSCRED and SO_PASSPIDFD are not set again here: the kernel copies them from the
    // listener to the accepted socket before the connection is established
    // (`unix_sock_inherit_flags`), so no byte arrives without credentials; and a chunk that
    // did would be refused as from an unknown writer (`Writer::Unknown`).
    broker.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _gauge = Gauge(broker.clone());
    let mut session = Session {
        connect_exe: identity::process::exe_id(connector.pid).ok(),
        connector,
        broker,
        known: Vec::new(),
    };
    let reserve = ticket.slot == Slot::Reserve;
    let idle = if reserve {
        RESERVE_IDLE
    } else {
        session.broker.limits.idle_timeout
    };
    let max = session.broker.limits.max_line;
    let mut lines = LineReader::new();
    loop {
        // Waiting for a line is where a stopping broker ends a session (the reader is
        // cancel-safe); a line already read is answered first.
        let frame = tokio::select! {
            // A stopping broker answers no new line, even one already buffered.
            biased;
            () = shutdown.recv() => return,
            read = tokio::time::timeout(idle, lines.next(&stream, max)) => match read {
                Ok(Ok(f)) => f,
                Err(_) | Ok(Err(_)) => return,
            },
        };
        let (writer, too_large) = match frame {
            Frame::Eof => return,
            Frame::Line(w) => (w, false),
            Frame::TooLarge(w) => (w, true),
        };
        let Some(sender) = session.sender(writer) else {
            return;
        };
        if too_large {
            return session.too_large(&mut stream, &sender).await;
        }
        let next = session
            .next(&stream, &sender, lines.line(), reserve, &mut shutdown)
            .await;
        match next {
            Next::Reply(reply) => {
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
            Next::Close => return,
            Next::Busy(why) => return refuse_busy(stream, &session.broker, why).await,
            Next::Approver(label) => {
                return session
                    .approver(&mut stream, &mut lines, label, &mut shutdown)
                    .await;
            }
        }
    }
}

/// What a session does after a line.
enum Next {
    /// Sends this answer and waits for the next line.
    Reply(Vec<u8>),
    /// Closes the connection without an answer (the writer cannot be served at all).
    Close,
    /// Answers that the broker is full and closes (a reserve slot asked for more than STATUS).
    Busy(String),
    /// Becomes an approver connection (a verified SUBSCRIBE).
    Approver(String),
}

impl Session {
    /// Answers an over-long line (audited as its writer) and closes: the stream cannot be
    /// resynchronised.
    async fn too_large(&mut self, stream: &mut UnixStream, sender: &Arc<Sender>) {
        let max = self.broker.limits.max_line;
        let r = Response::failure(
            None,
            Status::Error,
            Reason::RequestTooLarge,
            format!("request line is longer than {max} bytes; the connection is closed"),
        );
        if let Some(peer) = self.peer(sender).await {
            handler::audit_too_large(&self.broker, &peer);
        }
        let _ = stream.write_all(&r.to_line()).await;
        let _ = stream.shutdown().await;
    }

    /// What to do with `line`, written by `sender`: STATUS for anyone, SUBSCRIBE for
    /// keychain-auth itself, requests answered as the verified writer (or held for an
    /// approver), nothing but STATUS and keychain-auth's own SUBSCRIBE on a reserve slot.
    async fn next(
        &mut self,
        stream: &UnixStream,
        sender: &Arc<Sender>,
        line: &[u8],
        reserve: bool,
        shutdown: &mut Shutdown,
    ) -> Next {
        let parsed = handler::parse(line);
        if matches!(parsed, Ok(Incoming::Subscribe)) {
            // Also on a reserve slot: room is kept for the dashboard as for STATUS.
            let refusal = match self.approver_check(sender).await {
                Ok(()) => return Next::Approver(format!("dashboard pid {}", sender.pid)),
                Err(r) => r,
            };
            if reserve {
                return Next::Busy(format!(
                    "the broker is serving its maximum of {} connections; try again shortly",
                    self.broker.limits.max_connections
                ));
            }
            if refusal.reason == Some(Reason::InjectedEnvironment) {
                let _ = self.broker.audit.append(&Record::connection_denied(
                    Some(sender.pid),
                    Some(sender.uid),
                    refusal.message.clone().unwrap_or_default(),
                ));
            }
            return Next::Reply(refusal.to_line());
        }
        if matches!(parsed, Ok(Incoming::Status)) {
            return Next::Reply(handler::status_line(&self.broker));
        }
        if let Ok(Incoming::Admin {
            source,
            admin,
            passphrase,
        }) = parsed
        {
            if reserve {
                return Next::Busy(format!(
                    "the broker is serving its maximum of {} connections; try again shortly",
                    self.broker.limits.max_connections
                ));
            }
            let passphrase = passphrase.map(zeroize::Zeroizing::new);
            return Next::Reply(self.admin(sender, source, admin, passphrase).await);
        }
        if reserve {
            return Next::Busy(format!(
                "the broker is serving its maximum of {} connections; try again shortly",
                self.broker.limits.max_connections
            ));
        }
        if let Some(op) = super::vault_admin::parse(line) {
            let reply = match op {
                Err(r) => r,
                Ok(op) if self.runs_keychain_auth(sender).await => {
                    super::vault_admin::answer(&self.broker, op, sender.pid).await
                }
                Ok(_) => super::vault_admin::not_keychain_auth(),
            };
            return Next::Reply(reply.to_line());
        }
        if let Some(op) = super::owner_view::parse(line) {
            let reply = match op {
                Err(r) => r,
                Ok(op) if self.runs_keychain_auth(sender).await => {
                    super::owner_view::answer(&self.broker, op, sender.pid).await
                }
                Ok(_) => super::owner_view::not_keychain_auth(),
            };
            return Next::Reply(reply.to_line().to_vec());
        }
        let Some(peer) = self.peer(sender).await else {
            return Next::Close;
        };
        // A request while the vault is locked waits for an attached approver to unlock it.
        if let Ok(Incoming::Request(req)) = &parsed
            && !super::presence::wait_for_unlock(
                &self.broker,
                &peer,
                req,
                shutdown.recv(),
                hung_up(stream),
            )
            .await
        {
            return Next::Close;
        }
        match answer(&self.broker, peer.clone(), parsed).await {
            Reply::Line(line) => Next::Reply(line),
            Reply::Ask(ask) => match hold(&self.broker, stream, peer, *ask, shutdown).await {
                Some(line) => Next::Reply(line),
                None => Next::Close,
            },
        }
    }
}

impl Session {
    /// The single, same-uid process that wrote a line; `None` (connection dropped, audited)
    /// otherwise.
    fn sender(&self, writer: Writer) -> Option<Arc<Sender>> {
        match writer {
            Writer::One(s) if s.uid == identity::own_uid() => Some(s),
            Writer::One(s) => {
                refused(
                    &self.broker,
                    &IdentityError::ForeignUid {
                        uid: s.uid,
                        pid: s.pid,
                    },
                );
                None
            }
            Writer::Unknown => {
                refused(&self.broker, &IdentityError::NoSender);
                None
            }
            Writer::Mixed => {
                let rec = Record::connection_denied(
                    Some(self.connector.pid),
                    None,
                    "a request line was written by more than one process; the connection was closed"
                        .into(),
                );
                let _ = self.broker.audit.append(&rec);
                None
            }
        }
    }

    /// The verified identity of the writer `s`; `None` when it cannot be served at all (gone,
    /// too many writers).
    async fn peer(&mut self, s: &Arc<Sender>) -> Option<Arc<Peer>> {
        if let Some(i) = self.known.iter().position(|k| k.pin.pid == s.pid) {
            let verdict = identity::revalidate(&self.known[i].peer);
            // The common case, with no poll of the pidfd: the watch's reads went through the
            // pinned process itself, so it is alive and the pid is still its.
            if verdict.is_ok() && identity::revalidation_pins(&self.known[i].peer) {
                return Some(self.known[i].peer.clone());
            }
            let pinned_alive = self.known[i]
                .pin
                .pidfd
                .as_ref()
                .is_none_or(|fd| !identity::exited(fd.as_fd()));
            if pinned_alive {
                let k = &mut self.known[i];
                if let Err(why) = verdict {
                    // Sticky: an exec or a tracer is not forgotten on this connection.
                    k.peer = Arc::new(unverifiable(&k.peer, why.to_string()));
                    return Some(k.peer.clone());
                }
                if identity::revalidates(&k.peer) {
                    return Some(k.peer.clone());
                }
                return self.reidentify(i, s).await;
            }
            // The process it was is gone; whoever has its pid now is identified afresh.
            self.known.swap_remove(i);
        }
        if self.known.len() >= MAX_WRITERS {
            let rec = Record::connection_denied(
                Some(s.pid),
                None,
                format!("more than {MAX_WRITERS} processes wrote on one connection; it was closed"),
            );
            let _ = self.broker.audit.append(&rec);
            return None;
        }
        // Verified on an earlier connection, alive and unchanged since (revalidated there).
        if let Some(peer) = self.broker.known.get(s) {
            self.known.push(Known {
                peer: peer.clone(),
                pin: s.clone(),
            });
            return Some(peer);
        }
        let mut peer = match self.identify(s).await {
            Ok(p) => p,
            Err(e) => {
                refused(&self.broker, &e);
                return None;
            }
        };
        // The writer's own executable (not that of a conduit's caller) against connect time.
        if s.pid == self.connector.pid
            && let Some(before) = self.connect_exe
            && identity::process::exe_id(s.pid).ok() != Some(before)
        {
            peer = unverifiable(
                &peer,
                format!(
                    "pid {} started another program (execve) after it connected; its requests on this connection are refused: reconnect",
                    s.pid
                ),
            );
        }
        let peer = Arc::new(peer);
        if !matches!(peer.exe, Exe::Unverifiable { .. }) {
            self.broker.known.remember(s, &peer);
        }
        self.known.push(Known {
            peer: peer.clone(),
            pin: s.clone(),
        });
        Some(peer)
    }

    /// A writer the watch cannot vouch for (an empty environment hides an `execve` of the same
    /// program) is identified afresh for each request; if it now runs something else (another
    /// script), it executed since, and is refused for the rest of the connection like any exec.
    async fn reidentify(&mut self, i: usize, s: &Arc<Sender>) -> Option<Arc<Peer>> {
        let before = self.known[i].peer.clone();
        let now = match self.identify(s).await {
            Ok(p) => p,
            Err(e) => {
                refused(&self.broker, &e);
                return None;
            }
        };
        let same = before.same_program(&now);
        let peer = if same {
            Arc::new(now)
        } else {
            Arc::new(unverifiable(
                &before,
                format!(
                    "pid {} started another program (execve) after it wrote on this connection; its requests on this connection are refused: reconnect",
                    s.pid
                ),
            ))
        };
        self.known[i].peer = peer.clone();
        Some(peer)
    }

    /// Identifies `s` on the async worker when its executable's hash is cached, else off it.
    async fn identify(&self, s: &Arc<Sender>) -> Result<Peer, IdentityError> {
        let b = &self.broker;
        // Interpreters config.json adds; a policy that cannot be read denies everything anyway.
        let extra = b
            .policy
            .current()
            .map(|p| p.file.interpreters.clone())
            .unwrap_or_default();
        let cheap = identify_writer(b, s, Hashing::CachedOnly, &extra)?;
        if let Some(p) = cheap {
            return Ok(p);
        }
        let pid = s.pid;
        let (b, s) = (self.broker.clone(), s.clone());
        tokio::task::spawn_blocking(move || identify_writer(&b, &s, Hashing::Allowed, &extra))
            .await
            .map_err(|_| IdentityError::Exited(pid))?
            .and_then(|p| p.ok_or(IdentityError::Exited(pid)))
    }
}

/// Identifies the writer `s`, and through a conduit (`keychain-auth get`/`put`) the program
/// that ran it.
fn identify_writer(
    b: &Broker,
    s: &Sender,
    hashing: Hashing,
    extra: &[String],
) -> Result<Option<Peer>, IdentityError> {
    let fd = s.pidfd.as_ref().map(|f| f.as_fd());
    match identity::identify(s.pid, s.uid, fd, &b.identity, &b.hashes, hashing, extra)? {
        Some(peer) => conduit::resolve(b, peer, hashing, extra),
        None => Ok(None),
    }
}

/// `peer` refused for `why`, keeping its path for the audit record.
fn unverifiable(peer: &Peer, why: String) -> Peer {
    let path = match &peer.exe {
        Exe::Verified { path, .. } => Some(path.clone()),
        Exe::Unverifiable { path, .. } => path.clone(),
    };
    Peer {
        uid: peer.uid,
        pid: peer.pid,
        exe: Exe::Unverifiable { path, why },
        recorded: crate::identity::Recorded::default(),
    }
}

/// Answers a request line: on the async worker when that cannot block, else off it.
async fn answer(broker: &Arc<Broker>, peer: Arc<Peer>, parsed: handler::Parsed) -> Reply {
    if let handler::Lane::Quick(policy) = handler::lane(broker, &peer, &parsed) {
        return handler::respond(broker, &peer, parsed, policy);
    }
    let b = broker.clone();
    tokio::task::spawn_blocking(move || handler::respond(&b, &peer, parsed, None))
        .await
        .unwrap_or_else(|_| Reply::Line(internal_error()))
}

fn internal_error() -> Vec<u8> {
    Response::failure(
        None,
        Status::Error,
        Reason::InternalError,
        "the request could not be processed",
    )
    .to_line()
}

/// Holds a request for an approver (SPEC §11) until the first answer, the prompt timeout, or
/// the caller hanging up; `None` when the caller is gone.
async fn hold(
    broker: &Arc<Broker>,
    stream: &UnixStream,
    peer: Arc<Peer>,
    ask: handler::Ask,
    shutdown: &mut Shutdown,
) -> Option<Vec<u8>> {
    super::front::hold(broker, peer, ask, shutdown.recv(), hung_up(stream), None)
        .await
        .map(|r| r.to_line())
}

/// Resolves once the peer has closed its end entirely (POLLHUP; a half-close that still waits
/// for the answer does not count). Checked every 200 ms: holding is rare and long.
async fn hung_up(stream: &UnixStream) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::empty())];
        if poll(&mut fds, PollTimeout::ZERO).is_err()
            || fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Session {
    /// Serves a subscribed approver (SPEC §11) until it disconnects: every prompt and its
    /// resolution is sent as a line, and `ANSWER` lines decide prompts — accepted only from a
    /// writer running keychain-auth itself, like the subscription.
    async fn approver(
        &mut self,
        stream: &mut UnixStream,
        lines: &mut LineReader,
        label: String,
        shutdown: &mut Shutdown,
    ) {
        let broker = self.broker.clone();
        // While a vault is served, the subscription is attached to the prompts only once the
        // person at it proved presence (SPEC §15).
        let mut present = !super::presence::required(&broker);
        let mut attached = present.then(|| broker.approvals.attach());
        let max = broker.limits.max_line;
        let mut ok = stream.write_all(&subscribed_line(&broker)).await.is_ok();
        while ok {
            tokio::select! {
                () = shutdown.recv() => break,
                ev = next_event(&mut attached) => {
                    let Some(ev) = ev else {
                        // Dropped for falling behind: say so, then close.
                        let _ = tokio::time::timeout(APPROVER_WRITE, stream.write_all(&dropped_line())).await;
                        break;
                    };
                    // An approver that stops reading is dropped, not waited on.
                    ok = matches!(
                        tokio::time::timeout(APPROVER_WRITE, stream.write_all(&event_line(&ev))).await,
                        Ok(Ok(()))
                    );
                }
                frame = lines.next(stream, max) => {
                    let Ok(Frame::Line(writer)) = frame else { break };
                    let Some(sender) = self.sender(writer) else { break };
                    let reply = match handler::parse(lines.line()) {
                        Ok(Incoming::Status) => handler::status_line(&broker),
                        Ok(Incoming::Answer(mut a)) => {
                            if !self.runs_keychain_auth(&sender).await {
                                break;
                            }
                            let passphrase = a.passphrase.take();
                            match super::presence::check_answer(&broker, present, &a.decision, passphrase, sender.pid).await {
                                Ok(()) => answer_line(&broker, a, &label),
                                Err(why) => SubscriptionLine::Answered {
                                    prompt_id: a.prompt,
                                    error: Some(why),
                                }
                                .to_line(),
                            }
                        }
                        Ok(Incoming::Presence(p)) => {
                            if !self.runs_keychain_auth(&sender).await {
                                break;
                            }
                            let what = format!("the presence of {label}");
                            let result = super::presence::prove_async(&broker, p, sender.pid, what).await;
                            if result.is_ok() {
                                present = true;
                                if attached.is_none() {
                                    attached = Some(broker.approvals.attach());
                                }
                            }
                            presence_line(&broker, result)
                        }
                        Ok(_) => Response::malformed(None, "an approver connection takes ANSWER, PRESENCE and STATUS lines").to_line(),
                        Err(resp) => resp.to_line(),
                    };
                    ok = stream.write_all(&reply).await.is_ok();
                }
            }
        }
        if let Some((id, _)) = attached {
            broker.approvals.detach(id);
        }
    }

    /// Carries out an `ADMIN` request (SPEC §19) when its writer runs keychain-auth itself, on
    /// the state this broker holds; anyone else is refused, and nothing changes. While the
    /// broker serves a vault, a change that widens access needs the vault passphrase with it
    /// (SPEC §15): checked here, by the daemon, whatever the sending command saw.
    async fn admin(
        &mut self,
        sender: &Arc<Sender>,
        source: String,
        admin: serde_json::Value,
        passphrase: Option<zeroize::Zeroizing<String>>,
    ) -> Vec<u8> {
        use crate::admin::{AdminReply, Op};
        let check = self.approver_check(sender).await;
        if let Err(refusal) = &check
            && refusal.reason == Some(Reason::InjectedEnvironment)
        {
            // keychain-auth itself, but traced or with an injection variable: refused like an
            // approver would be.
            let _ = self.broker.audit.append(&Record::connection_denied(
                Some(sender.pid),
                Some(sender.uid),
                refusal.message.clone().unwrap_or_default(),
            ));
            return refusal.to_line();
        }
        if check.is_err() {
            let _ = self.broker.audit.append(&Record::connection_denied(
                Some(sender.pid),
                Some(sender.uid),
                "an admin request from a program that is not keychain-auth itself was refused"
                    .into(),
            ));
            return Response::failure(
                None,
                Status::Denied,
                Reason::UnregisteredBinary,
                "only keychain-auth itself may send admin requests",
            )
            .to_line();
        }
        let op = match serde_json::from_value::<Op>(admin) {
            Ok(op) => op,
            Err(e) => return AdminReply::of(Err(format!("not an admin change: {e}"))).to_line(),
        };
        let source = match crate::admin::Source::parse(&source) {
            Ok(s) => s,
            Err(e) => return AdminReply::of(Err(e)).to_line(),
        };
        let b = self.broker.clone();
        let pid = sender.pid;
        tokio::task::spawn_blocking(move || {
            if op.widens()
                && let Some(store) = crate::backend::vault::VaultStore::of(b.backend.as_ref())
            {
                let Some(p) = passphrase else {
                    return AdminReply::of(Err(
                        "this broker serves a vault: a change that widens access needs the vault passphrase, and none came with it; nothing was changed (run the command where it finds the vault, or give --passphrase-fd)"
                            .into(),
                    ))
                    .to_line();
                };
                if let Err(e) = store.verify(p.as_bytes()) {
                    let msg = format!("presence for an admin change ({}): {e}", op.name());
                    let mut rec = super::vault_admin::record("presence", pid, "denied", &msg);
                    rec.reason = Some("wrong_passphrase".into());
                    super::vault_admin::audit(&b, rec);
                    return AdminReply::of(Err(format!("{e}; nothing was changed"))).to_line();
                }
            }
            AdminReply::of(op.run(&b.world(), source).map_err(|e| e.to_string())).to_line()
        })
        .await
        .unwrap_or_else(|_| {
            AdminReply::of(Err("the admin change failed inside the daemon".into())).to_line()
        })
    }

    /// Whether the writer `s` runs the broker's own executable. The writer itself, not the
    /// program a conduit is answered as: a dashboard is keychain-auth run by a shell or tmux.
    async fn runs_keychain_auth(&mut self, s: &Arc<Sender>) -> bool {
        self.approver_check(s).await.is_ok()
    }

    /// Whether the writer `s` may act as an approver or send admin changes: it runs the
    /// broker's own executable and passes the same injection guard as any caller (no tracer, no
    /// injection variable: keychain-auth has no `allow_env`). `Err` is the refusal
    /// (`injected_environment` for keychain-auth itself traced or injected).
    async fn approver_check(&mut self, s: &Arc<Sender>) -> Result<(), Response> {
        let (b, s) = (self.broker.clone(), s.clone());
        tokio::task::spawn_blocking(move || {
            let fd = s.pidfd.as_ref().map(|f| f.as_fd());
            let peer = identity::identify(
                s.pid,
                s.uid,
                fd,
                &b.identity,
                &b.hashes,
                Hashing::Allowed,
                &[],
            );
            approver_verdict(peer.ok().flatten().as_ref(), b.own_hash())
        })
        .await
        .unwrap_or_else(|_| Err(not_an_approver()))
    }
}

/// The refusal of a `SUBSCRIBE` or `ANSWER` from a writer that does not run keychain-auth.
fn not_an_approver() -> Response {
    Response::failure(
        None,
        Status::Denied,
        Reason::UnregisteredBinary,
        "only keychain-auth itself (a connected dashboard) may subscribe as an approver",
    )
}

/// The approver check on an identified writer: keychain-auth itself (`own`), untraced, without
/// injection variables. An approver answers for every caller, so it is held to at least what
/// any caller is.
fn approver_verdict(
    peer: Option<&Peer>,
    own: Option<&crate::identity::BinaryHash>,
) -> Result<(), Response> {
    let Some(Peer {
        pid,
        exe: Exe::Verified {
            hash, integrity, ..
        },
        ..
    }) = peer
    else {
        return Err(not_an_approver());
    };
    if Some(hash) != own {
        return Err(not_an_approver());
    }
    let injected = |message: String| {
        Err(Response::failure(
            None,
            Status::Denied,
            Reason::InjectedEnvironment,
            message,
        ))
    };
    if integrity.tracer != 0 {
        return injected(format!(
            "{}; keychain-auth itself is held to the checks of any caller (as an approver and for admin changes)",
            identity::traced_message(*pid, integrity.tracer)
        ));
    }
    if let Some(var) = integrity.injected.first() {
        return injected(format!(
            "keychain-auth (pid {pid}) runs with {var} set, which can inject code into it; keychain-auth itself is held to the checks of any caller (as an approver and for admin changes): unset {var}"
        ));
    }
    Ok(())
}

/// The next event of an attached approver; never, for one not attached yet (presence first).
/// `None` when the approver was dropped for falling behind.
async fn next_event(
    attached: &mut Option<(u64, super::approval::Events)>,
) -> Option<ApproverEvent> {
    match attached {
        Some((_, events)) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// The first line to an approver: `SUBSCRIBED`, and while a vault is served, that presence is
/// required before it is shown a prompt or may answer one (and whether the vault is locked).
fn subscribed_line(broker: &Broker) -> Vec<u8> {
    let mut v = serde_json::json!({"type": "SUBSCRIBED"});
    if super::presence::required(broker) {
        v["presence"] = "required".into();
        v["locked"] = super::presence::locked(broker).into();
    }
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// The reply to a `PRESENCE` line.
fn presence_line(broker: &Broker, result: Result<(), String>) -> Vec<u8> {
    SubscriptionLine::Presence {
        ok: result.is_ok(),
        locked: super::presence::locked(broker),
        error: result.err(),
    }
    .to_line()
}

/// How long one line to an approver may take to write before the approver is dropped.
const APPROVER_WRITE: Duration = Duration::from_secs(5);

/// The last line to an approver dropped for falling behind (then the connection closes).
fn dropped_line() -> Vec<u8> {
    SubscriptionLine::Dropped {
        message: "this approver fell too far behind the broker's prompts and was dropped; subscribe again".into(),
    }
    .to_line()
}

/// The line an approver event is sent as.
fn event_line(ev: &ApproverEvent) -> Vec<u8> {
    SubscriptionLine::from(ev.clone()).to_line()
}

/// Applies an `ANSWER` line; the reply says whether it decided the prompt.
fn answer_line(broker: &Broker, a: AnswerLine, by: &str) -> Vec<u8> {
    let result = match Decision::from_answer(a.decision) {
        Some(decision) => broker
            .approvals
            .answer(
                &a.prompt,
                Answer {
                    decision,
                    by: by.to_string(),
                },
            )
            .map(|_| ()),
        // Editing: the countdown pauses; the prompt stays open for the real answer.
        None => broker.approvals.editing(&a.prompt).map(|_| ()),
    };
    SubscriptionLine::Answered {
        prompt_id: a.prompt,
        error: result.err().map(|why| why.to_string()),
    }
    .to_line()
}

/// Audits a connection that is dropped because its peer cannot be served.
fn refused(broker: &Broker, e: &IdentityError) {
    let (pid, uid) = match e {
        IdentityError::ForeignUid { uid, pid } => (Some(*pid), Some(*uid)),
        IdentityError::Exited(pid) => (Some(*pid), None),
        IdentityError::Credentials(_) | IdentityError::NoSender => (None, None),
    };
    let _ = broker
        .audit
        .append(&Record::connection_denied(pid, uid, e.to_string()));
}

/// Answers a connection that cannot be admitted with one line and closes it.
async fn refuse_busy(mut stream: UnixStream, broker: &Broker, why: String) {
    let _ = broker.audit.append(&Record::connection_error(why.clone()));
    let r = Response::failure(None, Status::Error, Reason::InternalError, why);
    let _ = stream.write_all(&r.to_line()).await;
    let _ = stream.shutdown().await;
}
