/// Checkers judge a run. A scenario names them by kind (`[[checks]] kind = "…"`); the kinds come
/// from a `SimulationRegistry`, so a protocol brings its own checkers in its own file and the
/// engine never switches over check names.
///
/// Two phases, as TigerBeetle's simulator runs them:
/// - safety: something that must never happen. The engine asks `violation` after every step
///   (every event of the sequential loop, every merged step of a window) until it first says
///   yes; the check fails with the instant of that first violation.
/// - liveness: something that must happen once faults heal. Judged once at the end of the run,
///   with `SimulationContext.faultsHealedAt` saying when the last fault ended.

/// When a checker is asked.
public enum CheckPhase: String, Sendable, Codable {
    case safety, liveness
}

/// One check of one run, built from the scenario's `[[checks]]` entry. Checkers live on the
/// driver's thread and read the simulation between steps; they never change it.
protocol Checker: AnyObject {
    var spec: Scenario.CheckSpec { get }
    /// Called once, before the run starts: a checker may ask the run to measure something for it
    /// (say, a deadline after every crash).
    func prepare(_ sim: Simulation)
    /// Safety checkers: what went wrong at this step, if anything (nil: all is well). Called after
    /// every step until it returns non-nil once; liveness checkers are never asked.
    func violation(_ sim: Simulation) -> String?
    /// The verdict at the end of the run.
    func verdict(_ sim: Simulation) -> SimReport.Check
}

extension Checker {
    func prepare(_ sim: Simulation) {}
    func violation(_ sim: Simulation) -> String? { nil }
    var name: String { spec.kind }
}

/// A kind of check: its name, its phase, the keys of its `[[checks]]` entry, and how to build one.
struct CheckerKind: Sendable {
    let name: String
    let phase: CheckPhase
    /// Keys the entry must give (beyond `kind`).
    let required: [String]
    /// Keys the entry may give.
    let optional: [String]
    /// What a missing required key is for, for the error message (e.g. "per node per second").
    let hint: String
    let make: @Sendable (Scenario.CheckSpec) -> any Checker

    init(_ name: String, phase: CheckPhase, required: [String] = [], optional: [String] = [], hint: String = "",
         make: @escaping @Sendable (Scenario.CheckSpec) -> any Checker) {
        self.name = name; self.phase = phase; self.required = required; self.optional = optional
        self.hint = hint; self.make = make
    }
}

/// A safety checker's state in a run: its first violation, once there is one.
final class SafetyWatch {
    let checker: any Checker
    var firstViolation: (at: Int64, what: String)?
    init(_ checker: any Checker) { self.checker = checker }
}

extension Simulation {
    /// After every step: asks each safety checker not yet violated. Cheap when there are none.
    @inline(__always) func checkSafety() {
        guard !safetyWatches.isEmpty else { return }
        for w in safetyWatches where w.firstViolation == nil {
            if let what = w.checker.violation(self) {
                w.firstViolation = (now, what)
                log(nil, "SAFETY \(w.checker.name) violated: \(what)")
            }
        }
    }

    /// Every checker's verdict, in the scenario's order, with its phase. A safety checker that was
    /// violated fails whatever its end verdict says, and names the first violation.
    func verdicts() -> [SimReport.Check] {
        checkers.map { checker in
            var v = checker.verdict(self)
            let phase = registry.checkers[checker.name]?.phase ?? .liveness
            v.phase = phase
            if phase == .safety, let w = safetyWatches.first(where: { $0.checker === checker }), let first = w.firstViolation {
                v.passed = false
                v.detail += String(format: "; first violated at %.3f s: ", Double(first.at) / 1e9) + first.what
            }
            return v
        }
    }
}
