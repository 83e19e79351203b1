//! Who `rdbench serve` lets in, and how much each may hold: connections, submission bytes
//! being received, and tool runs.
//!
//! Agents are counted per uid and together; operators (root and the service's own user) have
//! a lane of their own, so no agent's usage ever makes an operator's command wait or fail:
//!
//! - connections: 8 per agent uid, 64 for all agents, 16 for operators;
//! - receive budget (submission bytes reserved before they are read): 1.25 GiB per agent uid
//!   (three of the largest submission file, restricted-mlm's 397 MiB of weights), 3 GiB for
//!   all agents, 2 GiB for operators;
//! - tool runs (each in a worker process under the tool's declared limits, e.g. scaling-law's
//!   `train`, which uses the CPU for seconds to minutes): one at a time per
//!   attempt, at most half the cores (at least one) at once on the machine, first come first
//!   served; a caller waits in the queue up to 10 min, then is told the service is busy.
//!
//! Every refusal is a [`Busy`] that names the cap it hit, in one line.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Caller;

/// The caps; [`Caps::for_this_machine`] gives the service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub connections_per_agent: usize,
    pub agent_connections: usize,
    pub operator_connections: usize,
    pub bytes_per_agent: u64,
    pub agent_bytes: u64,
    pub operator_bytes: u64,
    pub tools_at_once: usize,
    pub tool_wait: Duration,
}

impl Caps {
    pub fn for_this_machine() -> Caps {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Caps {
            connections_per_agent: 8,
            agent_connections: 64,
            operator_connections: 16,
            bytes_per_agent: 5 << 28,
            agent_bytes: 3 << 30,
            operator_bytes: 2 << 30,
            tools_at_once: (cores / 2).max(1),
            tool_wait: Duration::from_secs(600),
        }
    }
}

/// Why the service cannot take a command now; `Display` is the one line the caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    ConnectionsPerAgent(usize),
    AgentConnections(usize),
    OperatorConnections(usize),
    BytesPerAgent(u64),
    AgentBytes(u64),
    OperatorBytes(u64),
    ToolQueue { waited: Duration, at_once: usize },
}

fn gib(bytes: u64) -> String {
    format!("{} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the scoring service is busy: ")?;
        match *self {
            Busy::ConnectionsPerAgent(n) => write!(
                f,
                "this user has {n} connections open, the most one agent user may have; try again when one ends"
            ),
            Busy::AgentConnections(n) => write!(
                f,
                "agents have {n} connections open, the most for all agents together; try again in a moment"
            ),
            Busy::OperatorConnections(n) => write!(
                f,
                "operators have {n} connections open, the most for operators; try again in a moment"
            ),
            Busy::BytesPerAgent(b) => write!(
                f,
                "this user's uploads in progress hold its receive budget of {}; try again when one ends",
                gib(b)
            ),
            Busy::AgentBytes(b) => write!(
                f,
                "agents' uploads in progress hold the receive budget of {} for all agents; try again in a moment",
                gib(b)
            ),
            Busy::OperatorBytes(b) => write!(
                f,
                "operators' uploads in progress hold their receive budget of {}; try again in a moment",
                gib(b)
            ),
            Busy::ToolQueue { waited, at_once } => write!(
                f,
                "waited {} s in the tool queue ({at_once} tool runs at once on this machine, one per attempt); try again later",
                waited.as_secs()
            ),
        }
    }
}

impl std::error::Error for Busy {}

impl From<Busy> for rdbench_core::Error {
    fn from(b: Busy) -> Self {
        rdbench_core::Error::Environment(b.to_string())
    }
}

/// The caller's lane: an agent's uid, or the operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Agent(u32),
    Operator,
}

impl From<Caller> for Lane {
    fn from(c: Caller) -> Self {
        match c {
            Caller::Agent { uid } => Lane::Agent(uid),
            // The service's callers are agents or operators; a local caller is its own operator.
            Caller::Operator { .. } | Caller::Local => Lane::Operator,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    connections: usize,
    bytes: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Only uids with something held.
    per_agent: HashMap<u32, Usage>,
    agents: Usage,
    operators: Usage,
    tools: Tools,
}

/// The tool queue: who runs, who waits (in arrival order).
#[derive(Debug, Default)]
struct Tools {
    running: HashSet<(u32, PathBuf)>,
    waiting: VecDeque<(u64, (u32, PathBuf))>,
    next_ticket: u64,
}

impl Tools {
    /// Whether `ticket` may start now: a free place on the machine, its attempt not running,
    /// and nobody ahead of it who could start too.
    fn may_start(&self, ticket: u64, at_once: usize) -> bool {
        if self.running.len() >= at_once {
            return false;
        }
        for (t, key) in &self.waiting {
            if *t == ticket {
                return !self.running.contains(key);
            }
            if !self.running.contains(key) {
                return false;
            }
        }
        false
    }
}

/// The service's admission state, shared by every connection's thread.
#[derive(Debug)]
pub struct Admission {
    caps: Caps,
    state: Mutex<State>,
    tool_done: Condvar,
}

impl Admission {
    pub fn new(caps: Caps) -> Self {
        Admission {
            caps,
            state: Mutex::new(State::default()),
            tool_done: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The counters stay consistent under a panic elsewhere: every update is one step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for `caller`, held until the returned slot drops.
    pub fn connect(self: &Arc<Self>, caller: Caller) -> Result<Slot, Busy> {
        let lane = Lane::from(caller);
        let mut s = self.state();
        match lane {
            Lane::Operator => {
                if s.operators.connections >= self.caps.operator_connections {
                    return Err(Busy::OperatorConnections(self.caps.operator_connections));
                }
                s.operators.connections += 1;
            }
            Lane::Agent(uid) => {
                let mine = s.per_agent.get(&uid).map_or(0, |u| u.connections);
                if mine >= self.caps.connections_per_agent {
                    return Err(Busy::ConnectionsPerAgent(self.caps.connections_per_agent));
                }
                if s.agents.connections >= self.caps.agent_connections {
                    return Err(Busy::AgentConnections(self.caps.agent_connections));
                }
                s.agents.connections += 1;
                s.per_agent.entry(uid).or_default().connections += 1;
            }
        }
        Ok(Slot {
            admission: self.clone(),
            lane,
        })
    }

    /// Takes `n` bytes of `caller`'s receive budget; give them back with [`Admission::release`].
    pub fn reserve(&self, caller: Caller, n: u64) -> Result<(), Busy> {
        let mut s = self.state();
        match Lane::from(caller) {
            Lane::Operator => {
                if s.operators.bytes.saturating_add(n) > self.caps.operator_bytes {
                    return Err(Busy::OperatorBytes(self.caps.operator_bytes));
                }
                s.operators.bytes += n;
            }
            Lane::Agent(uid) => {
                let mine = s.per_agent.get(&uid).map_or(0, |u| u.bytes);
                if mine.saturating_add(n) > self.caps.bytes_per_agent {
                    return Err(Busy::BytesPerAgent(self.caps.bytes_per_agent));
                }
                if s.agents.bytes.saturating_add(n) > self.caps.agent_bytes {
                    return Err(Busy::AgentBytes(self.caps.agent_bytes));
                }
                s.agents.bytes += n;
                s.per_agent.entry(uid).or_default().bytes += n;
            }
        }
        Ok(())
    }

    /// Gives back `n` bytes that [`Admission::reserve`] granted to `caller`.
    pub fn release(&self, caller: Caller, n: u64) {
        let mut s = self.state();
        match Lane::from(caller) {
            Lane::Operator => s.operators.bytes = s.operators.bytes.saturating_sub(n),
            Lane::Agent(uid) => {
                s.agents.bytes = s.agents.bytes.saturating_sub(n);
                if let Some(u) = s.per_agent.get_mut(&uid) {
                    u.bytes = u.bytes.saturating_sub(n);
                }
                forget_idle(&mut s, uid);
            }
        }
    }

    /// Waits for a turn to run a tool on `attempt` (its private folder, which names it), at
    /// most the caps' `tool_wait`. Keyed by the caller too, so one user's waits tell it
    /// nothing about another's attempts.
    pub fn tool_turn(&self, caller: Caller, attempt: &Path) -> Result<ToolTurn<'_>, Busy> {
        let key = (caller.uid(), attempt.to_path_buf());
        let start = Instant::now();
        let mut s = self.state();
        let ticket = s.tools.next_ticket;
        s.tools.next_ticket += 1;
        s.tools.waiting.push_back((ticket, key.clone()));
        loop {
            if s.tools.may_start(ticket, self.caps.tools_at_once) {
                s.tools.waiting.retain(|(t, _)| *t != ticket);
                s.tools.running.insert(key.clone());
                return Ok(ToolTurn {
                    admission: self,
                    key,
                });
            }
            let waited = start.elapsed();
            if waited >= self.caps.tool_wait {
                s.tools.waiting.retain(|(t, _)| *t != ticket);
                drop(s);
                // Whoever waited behind this ticket may go now.
                self.tool_done.notify_all();
                return Err(Busy::ToolQueue {
                    waited,
                    at_once: self.caps.tools_at_once,
                });
            }
            s = self
                .tool_done
                .wait_timeout(s, self.caps.tool_wait - waited)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    #[cfg(test)]
    fn tools_waiting(&self) -> usize {
        self.state().tools.waiting.len()
    }
}

/// Drops an agent's entry once it holds nothing, so the map does not grow with every uid.
fn forget_idle(s: &mut State, uid: u32) {
    if s.per_agent
        .get(&uid)
        .is_some_and(|u| u.connections == 0 && u.bytes == 0)
    {
        s.per_agent.remove(&uid);
    }
}

/// One admitted connection; its place is given back on drop.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    lane: Lane,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.admission.state();
        match self.lane {
            Lane::Operator => s.operators.connections = s.operators.connections.saturating_sub(1),
            Lane::Agent(uid) => {
                s.agents.connections = s.agents.connections.saturating_sub(1);
                if let Some(u) = s.per_agent.get_mut(&uid) {
                    u.connections = u.connections.saturating_sub(1);
                }
                forget_idle(&mut s, uid);
            }
        }
    }
}

/// A tool run's turn; the next in the queue goes when it drops.
#[derive(Debug)]
pub struct ToolTurn<'a> {
    admission: &'a Admission,
    key: (u32, PathBuf),
}

impl Drop for ToolTurn<'_> {
    fn drop(&mut self) {
        self.admission.state().tools.running.remove(&self.key);
        self.admission.tool_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A1: Caller = Caller::Agent { uid: 1001 };
    const A2: Caller = Caller::Agent { uid: 1002 };
    const A3: Caller = Caller::Agent { uid: 1003 };
    const OP: Caller = Caller::Operator { uid: 0 };

    fn small(tool_wait_ms: u64) -> Arc<Admission> {
        Arc::new(Admission::new(Caps {
            connections_per_agent: 2,
            agent_connections: 3,
            operator_connections: 1,
            bytes_per_agent: 100,
            agent_bytes: 150,
            operator_bytes: 80,
            tools_at_once: 2,
            tool_wait: Duration::from_millis(tool_wait_ms),
        }))
    }

    #[test]
    fn the_service_caps_are_the_documented_ones() {
        let caps = Caps::for_this_machine();
        assert_eq!(
            (caps.connections_per_agent, caps.agent_connections),
            (8, 64)
        );
        assert_eq!(caps.operator_connections, 16);
        assert_eq!(caps.bytes_per_agent, 1_342_177_280); // 1.25 GiB
        assert_eq!((caps.agent_bytes, caps.operator_bytes), (3 << 30, 2 << 30));
        assert!(caps.tools_at_once >= 1);
        assert!(Busy::BytesPerAgent(caps.bytes_per_agent)
            .to_string()
            .contains("1.25 GiB"));
    }

    #[test]
    fn an_agent_is_refused_at_its_own_cap_and_operators_never_by_agents() {
        let adm = small(10);
        let a1 = [adm.connect(A1).unwrap(), adm.connect(A1).unwrap()];
        assert_eq!(adm.connect(A1).unwrap_err(), Busy::ConnectionsPerAgent(2));
        let a2 = adm.connect(A2).unwrap();
        // All agents together are at their cap; the next agent is told so.
        assert_eq!(adm.connect(A3).unwrap_err(), Busy::AgentConnections(3));
        // The operators' lane is apart, with its own cap.
        let op = adm.connect(OP).unwrap();
        assert_eq!(adm.connect(OP).unwrap_err(), Busy::OperatorConnections(1));
        // A closed connection gives its place back, to its user and to all agents.
        drop(a2);
        let a3 = adm.connect(A3).unwrap();
        drop(a1);
        let again = [adm.connect(A1).unwrap(), adm.connect(A1).unwrap()];
        drop((op, a3, again));
        assert!(adm.state().per_agent.is_empty(), "idle uids are forgotten");
        assert_eq!(adm.state().operators.connections, 0);
    }

    #[test]
    fn receive_budgets_hold_per_agent_and_for_all_agents_with_the_operators_apart() {
        let adm = small(10);
        adm.reserve(A1, 60).unwrap();
        assert_eq!(adm.reserve(A1, 41).unwrap_err(), Busy::BytesPerAgent(100));
        adm.reserve(A1, 40).unwrap();
        adm.reserve(A2, 50).unwrap();
        // A2 is within its own 100, but all agents hold 150.
        assert_eq!(adm.reserve(A2, 1).unwrap_err(), Busy::AgentBytes(150));
        adm.reserve(OP, 80).unwrap();
        assert_eq!(adm.reserve(OP, 1).unwrap_err(), Busy::OperatorBytes(80));
        adm.release(A1, 60);
        adm.reserve(A2, 50).unwrap();
        adm.release(OP, 80);
        adm.reserve(OP, 80).unwrap();
        for (who, n) in [(A1, 40), (A2, 100), (OP, 80)] {
            adm.release(who, n);
        }
        let s = adm.state();
        assert_eq!((s.agents.bytes, s.operators.bytes), (0, 0));
        assert!(s.per_agent.is_empty());
    }

    #[test]
    fn tool_runs_go_one_per_attempt_and_a_few_per_machine_then_busy() {
        let adm = small(30);
        let (x, y, z) = (Path::new("/x"), Path::new("/y"), Path::new("/z"));
        let first = adm.tool_turn(A1, x).unwrap();
        // The same attempt waits its bound, then hears which cap held it.
        assert!(matches!(
            adm.tool_turn(A1, x).unwrap_err(),
            Busy::ToolQueue { at_once: 2, .. }
        ));
        // Another user's attempt at the same path is another attempt.
        let other = adm.tool_turn(A2, x).unwrap();
        // The machine runs two at once.
        assert!(adm.tool_turn(A1, y).is_err());
        drop(first);
        let third = adm.tool_turn(A1, z).unwrap();
        drop((other, third));
        assert_eq!(adm.tools_waiting(), 0);
        assert!(adm.state().tools.running.is_empty());
    }

    #[test]
    fn a_waiting_tool_run_starts_when_a_turn_ends_in_arrival_order() {
        let adm = Arc::new(Admission::new(Caps {
            tools_at_once: 1,
            tool_wait: Duration::from_secs(60),
            ..Caps::for_this_machine()
        }));
        let held = adm.tool_turn(A1, Path::new("/a")).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (i, who) in [A2, A3].into_iter().enumerate() {
            let (theirs, order) = (adm.clone(), order.clone());
            waiters.push(std::thread::spawn(move || {
                let turn = theirs.tool_turn(who, Path::new("/b"))?;
                order.lock().unwrap().push(i);
                drop(turn);
                Ok::<_, Busy>(())
            }));
            // The second queues behind the first.
            while adm.tools_waiting() < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for w in waiters {
            w.join().unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
    }

    #[test]
    fn busy_answers_are_one_line_and_name_their_cap() {
        for busy in [
            Busy::ConnectionsPerAgent(8),
            Busy::AgentConnections(64),
            Busy::OperatorConnections(16),
            Busy::BytesPerAgent(5 << 28),
            Busy::AgentBytes(3 << 30),
            Busy::OperatorBytes(2 << 30),
            Busy::ToolQueue {
                waited: Duration::from_secs(600),
                at_once: 4,
            },
        ] {
            let line = busy.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("the scoring service is busy: "), "{line}");
        }
        assert!(Busy::ConnectionsPerAgent(8)
            .to_string()
            .contains("8 connections"));
        assert!(Busy::AgentBytes(3 << 30).to_string().contains("3 GiB"));
    }
}
