//! Carrying out a [`ServicePlan`] on a running supervisor, service by service, recording
//! each action's outcome. The order is in the module docs of `services`.

use std::fmt;

use serde::Serialize;

use super::{SETTLE, ServiceError, ServicePlan};

/// A running supervisor on the target root ([`connect`](super::connect) finds it).
///
/// Each action names one service and says what went wrong as a message (what the
/// supervisor's tool said); [`apply`] records it and goes on with the next.
pub trait Supervisor {
    /// `dinit`, `runit`.
    fn name(&self) -> &'static str;
    /// Stops a service, with the definition it was started with. Not running: nothing.
    fn stop(&mut self, svc: &str) -> Result<(), String>;
    /// Makes the new generation's definitions the installed ones, removing nothing.
    fn install(&mut self) -> Result<(), ServiceError>;
    /// Makes the supervisor read a changed definition that is not restarted.
    fn reload(&mut self, svc: &str) -> Result<(), String>;
    /// Restarts a service with its new definition; one that does not run is started.
    fn restart(&mut self, svc: &str) -> Result<(), String>;
    /// Starts a service (and what it depends on) with its new definition.
    fn start(&mut self, svc: &str) -> Result<(), String>;
    /// Whether a service this switch started or restarted still runs the process it was
    /// started with, a settle time later.
    fn check(&mut self, svc: &str) -> Result<(), String>;
    /// Forgets a service the new generation does not have (it was stopped).
    fn remove(&mut self, svc: &str) -> Result<(), String>;
}

/// What was done to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Stopped.
    Stop,
    /// New definition read, not restarted.
    Reload,
    /// Restarted with its new definition.
    Restart,
    /// Started.
    Start,
    /// Forgotten (removed from the supervisor).
    Remove,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Stop => "stop",
            Action::Reload => "reload",
            Action::Restart => "restart",
            Action::Start => "start",
            Action::Remove => "remove",
        })
    }
}

/// How it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Not done, or the service stopped right after starting: why.
    Failed(String),
}

/// One action on one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceAction {
    /// The service.
    pub service: String,
    /// What was done.
    pub action: Action,
    /// How it went.
    pub outcome: Outcome,
}

impl fmt::Display for ServiceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Ok => write!(f, "{} {}", self.action, self.service),
            Outcome::Failed(why) => write!(f, "{} {}: failed: {why}", self.action, self.service),
        }
    }
}

/// Every service action of a switch, in the order they were carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServicesReport {
    /// The supervisor (`dinit`, `runit`).
    pub supervisor: String,
    /// What was done.
    pub actions: Vec<ServiceAction>,
}

impl ServicesReport {
    /// Whether any action failed: the switch did not fully succeed.
    pub fn failed(&self) -> bool {
        self.failures().next().is_some()
    }

    /// The actions that failed.
    pub fn failures(&self) -> impl Iterator<Item = &ServiceAction> {
        self.actions
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Failed(_)))
    }
}

/// Carries out `plan` on `sup`: stop, install, reload, restart, start, check, remove (see
/// the module docs of `services` for why in this order). A failed action is recorded
/// and the others go on; only a failure to install the new definitions is an error.
pub fn apply(plan: &ServicePlan, sup: &mut dyn Supervisor) -> Result<ServicesReport, ServiceError> {
    let mut report = ServicesReport {
        supervisor: sup.name().to_owned(),
        actions: Vec::new(),
    };
    let record =
        |report: &mut ServicesReport, service: &str, action, result: Result<(), String>| {
            report.actions.push(ServiceAction {
                service: service.to_owned(),
                action,
                outcome: result.map_or_else(Outcome::Failed, |()| Outcome::Ok),
            });
        };
    for s in &plan.stop {
        record(&mut report, s, Action::Stop, sup.stop(s));
    }
    sup.install()?;
    for s in &plan.reload {
        record(&mut report, s, Action::Reload, sup.reload(s));
    }
    let first_up = report.actions.len();
    for s in &plan.restart {
        record(&mut report, s, Action::Restart, sup.restart(s));
    }
    for s in &plan.start {
        record(&mut report, s, Action::Start, sup.start(s));
    }
    // Both supervisors call a process started once it is launched: one that exits at
    // once shows only a moment later.
    let up = &mut report.actions[first_up..];
    if up.iter().any(|a| a.outcome == Outcome::Ok) {
        std::thread::sleep(SETTLE);
        for a in up.iter_mut().filter(|a| a.outcome == Outcome::Ok) {
            if let Err(why) = sup.check(&a.service) {
                a.outcome = Outcome::Failed(why);
            }
        }
    }
    for s in &plan.remove {
        record(&mut report, s, Action::Remove, sup.remove(s));
    }
    Ok(report)
}
